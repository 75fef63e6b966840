//! RFC 9162 (RFC 6962) Merkle tree hashing and proofs.
//!
//! Leaves hash as `SHA-256(0x00 ‖ entry)`, interior nodes as `SHA-256(0x01 ‖ left ‖
//! right)`, the empty tree as `SHA-256("")`. Proof generation follows the recursive
//! definitions of RFC 9162 §2.1.3.1 and §2.1.4.1 over any [`NodeSource`]; verification
//! follows the iterative algorithms of §2.1.3.2 and §2.1.4.2 step by step.
//!
//! Verification functions take byte slices (not `[u8; 32]`) because proofs and roots
//! arrive from untrusted files: a component of the wrong length is a failed proof, not
//! a panic.

#![deny(clippy::indexing_slicing)]

use crate::error::{Error, Result};
use aws_lc_rs::digest;

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    finish(digest::digest(&digest::SHA256, data))
}

fn finish(d: digest::Digest) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The hash of an empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// The leaf hash of an entry, `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(entry);
    finish(ctx.finish())
}

/// The hash of an interior node, `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &[u8], right: &[u8]) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    if left.len() == 32 && right.len() == 32 {
        buf[1..33].copy_from_slice(left);
        buf[33..65].copy_from_slice(right);
        return sha256(&buf);
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx.finish())
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of a perfect subtree whose leaves (or lower subtree roots) are
/// `hashes`; `hashes.len()` must be a power of two (1 gives the hash itself).
pub fn perfect_root(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => empty_root(),
        1 => hashes.first().copied().unwrap_or_else(empty_root),
        _ => {
            let mut level: Vec<Hash> = hashes
                .chunks(2)
                .map(|p| match p {
                    [l, r] => node_hash(l, r),
                    [l] => *l,
                    _ => empty_root(),
                })
                .collect();
            while level.len() > 1 {
                level = level
                    .chunks(2)
                    .map(|p| match p {
                        [l, r] => node_hash(l, r),
                        [l] => *l,
                        _ => empty_root(),
                    })
                    .collect();
            }
            level.first().copied().unwrap_or_else(empty_root)
        }
    }
}

/// The Merkle Tree Hash (RFC 9162 §2.1.1) of a list of leaf hashes of any length.
pub fn root_from_leaf_hashes(hashes: &[Hash]) -> Hash {
    let n = hashes.len();
    if n == 0 {
        return empty_root();
    }
    if n.is_power_of_two() {
        return perfect_root(hashes);
    }
    let k = split_point(n as u64) as usize;
    let (l, r) = hashes.split_at(k);
    node_hash(&perfect_root(l), &root_from_leaf_hashes(r))
}

/// The root of a tree given its decomposition into perfect subtrees, left to right in
/// decreasing size (the binary digits of the tree size). Empty gives the empty root.
pub fn root_from_decomposition(parts: &[Hash]) -> Hash {
    let mut it = parts.iter().rev();
    let Some(last) = it.next() else {
        return empty_root();
    };
    let mut acc = *last;
    for p in it {
        acc = node_hash(p, &acc);
    }
    acc
}

/// Where proof generation gets the hashes of perfect subtrees.
///
/// `node(level, index)` is the Merkle Tree Hash of leaves
/// `[index * 2^level, (index + 1) * 2^level)`, a range that lies inside the tree.
pub trait NodeSource {
    /// The hash of the perfect subtree at `level` and `index`.
    fn node(&mut self, level: u32, index: u64) -> Result<Hash>;
}

/// An in-memory tree: every level kept. For tests and small trees.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append an entry.
    pub fn push(&mut self, entry: &[u8]) {
        self.push_leaf_hash(leaf_hash(entry));
    }

    /// Append a leaf hash.
    pub fn push_leaf_hash(&mut self, mut h: Hash) {
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(h);
            if row.len() % 2 == 1 {
                return;
            }
            let n = row.len();
            match (row.get(n - 2), row.get(n - 1)) {
                (Some(l), Some(r)) => h = node_hash(l, r),
                _ => return,
            }
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Root hash of the first `size` leaves.
    pub fn root_at(&mut self, size: u64) -> Result<Hash> {
        range_hash(self, 0, size)
    }
}

impl NodeSource for MemoryTree {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|row| row.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or_else(|| Error::Proof(format!("no node at level {level} index {index}")))
    }
}

/// The Merkle Tree Hash of leaves `[start, end)`, where `start` is aligned to the
/// largest power of two not exceeding `end - start` (as in every RFC 9162 recursion).
pub fn range_hash(src: &mut dyn NodeSource, start: u64, end: u64) -> Result<Hash> {
    let n = end.saturating_sub(start);
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start % n == 0 {
        return src.node(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split_point(n);
    let l = range_hash(src, start, start + k)?;
    let r = range_hash(src, start + k, end)?;
    Ok(node_hash(&l, &r))
}

/// The inclusion proof for leaf `index` in the tree of `size` leaves (RFC 9162
/// §2.1.3.1, `PATH(m, D[n])`), from the leaf's sibling up.
pub fn inclusion_proof(src: &mut dyn NodeSource, index: u64, size: u64) -> Result<Vec<Hash>> {
    if index >= size {
        return Err(Error::Proof(format!(
            "index {index} is outside a tree of size {size}"
        )));
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path(src: &mut dyn NodeSource, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) -> Result<()> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, start, k, out)?;
        out.push(range_hash(src, start + k, start + n)?);
    } else {
        path(src, m - k, start + k, n - k, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of `size1` and `size2` leaves (RFC 9162
/// §2.1.4.1, `PROOF(m, D[n])`). Empty when the sizes are equal.
pub fn consistency_proof(src: &mut dyn NodeSource, size1: u64, size2: u64) -> Result<Vec<Hash>> {
    if size1 > size2 {
        return Err(Error::Proof(format!(
            "old size {size1} is larger than new size {size2}"
        )));
    }
    let mut proof = Vec::new();
    if size1 == 0 || size1 == size2 {
        return Ok(proof);
    }
    subproof(src, size1, 0, size2, true, &mut proof)?;
    Ok(proof)
}

fn subproof(
    src: &mut dyn NodeSource,
    m: u64,
    start: u64,
    n: u64,
    b: bool,
    out: &mut Vec<Hash>,
) -> Result<()> {
    if m == n {
        if !b {
            out.push(range_hash(src, start, start + n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, start, k, b, out)?;
        out.push(range_hash(src, start + k, start + n)?);
    } else {
        subproof(src, m - k, start + k, n - k, false, out)?;
        out.push(range_hash(src, start, start + k)?);
    }
    Ok(())
}

fn component(p: &[u8], i: usize) -> Result<&[u8]> {
    if p.len() == 32 {
        Ok(p)
    } else {
        Err(Error::Proof(format!(
            "component {i} is {} bytes, not 32",
            p.len()
        )))
    }
}

/// Verify an inclusion proof (RFC 9162 §2.1.3.2): `leaf_hash` is leaf `index` of the
/// tree of `size` leaves whose root is `root`.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    leaf_hash: &[u8],
    index: u64,
    size: u64,
    proof: &[P],
    root: &[u8],
) -> Result<()> {
    if index >= size {
        return Err(Error::Proof(format!(
            "index {index} is outside a tree of size {size}"
        )));
    }
    if leaf_hash.len() != 32 {
        return Err(Error::Proof(format!(
            "leaf hash is {} bytes, not 32",
            leaf_hash.len()
        )));
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r: Hash = [0; 32];
    r.copy_from_slice(leaf_hash);
    for (i, p) in proof.iter().enumerate() {
        let p = component(p.as_ref(), i)?;
        if s_n == 0 {
            return Err(Error::Proof("proof is longer than the tree is deep".into()));
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(Error::Proof(
            "proof is shorter than the tree is deep".into(),
        ));
    }
    if r.as_slice() != root {
        return Err(Error::Proof(
            "computed root does not match the tree's root".into(),
        ));
    }
    Ok(())
}

/// Verify a consistency proof (RFC 9162 §2.1.4.2): the tree of `size1` leaves with root
/// `root1` is a prefix of the tree of `size2` leaves with root `root2`.
///
/// Equal sizes need an empty proof and equal roots. A consistency check from the empty
/// tree proves nothing and is refused (the caller compares against the empty root).
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<()> {
    if size1 > size2 {
        return Err(Error::Proof(format!(
            "old size {size1} is larger than new size {size2}"
        )));
    }
    if size1 == 0 {
        return Err(Error::Proof(
            "consistency with the empty tree proves nothing".into(),
        ));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(Error::Proof(
                "sizes are equal but the proof is not empty".into(),
            ));
        }
        if root1 != root2 {
            return Err(Error::Proof("sizes are equal but roots differ".into()));
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(Error::Proof("proof is empty".into()));
    }
    let mut path: Vec<&[u8]> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1);
    }
    for (i, p) in proof.iter().enumerate() {
        path.push(component(p.as_ref(), i)?);
    }
    let mut f_n = size1 - 1;
    let mut s_n = size2 - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut it = path.into_iter();
    let Some(first) = it.next() else {
        return Err(Error::Proof("proof is empty".into()));
    };
    let first = component(first, 0)?;
    let mut fr: Hash = [0; 32];
    fr.copy_from_slice(first);
    let mut sr = fr;
    for c in it {
        if s_n == 0 {
            return Err(Error::Proof("proof is longer than expected".into()));
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(Error::Proof("proof is shorter than expected".into()));
    }
    if fr.as_slice() != root1 {
        return Err(Error::Proof("computed old root does not match".into()));
    }
    if sr.as_slice() != root2 {
        return Err(Error::Proof("computed new root does not match".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn rfc6962_leaf_and_node_prefixes() {
        // Leaf hash of the empty entry is SHA-256(0x00).
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let l = leaf_hash(b"a");
        let r = leaf_hash(b"b");
        let mut buf = vec![1u8];
        buf.extend_from_slice(&l);
        buf.extend_from_slice(&r);
        assert_eq!(node_hash(&l, &r), sha256(&buf));
    }

    #[test]
    fn memory_tree_root_matches_recursive_definition() {
        for n in 0..40u64 {
            let mut t = MemoryTree::new();
            let mut leaves = Vec::new();
            for i in 0..n {
                t.push(&i.to_be_bytes());
                leaves.push(leaf_hash(&i.to_be_bytes()));
            }
            assert_eq!(
                t.root_at(n).unwrap(),
                root_from_leaf_hashes(&leaves),
                "n={n}"
            );
        }
    }
}
