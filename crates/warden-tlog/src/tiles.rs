//! The C2SP `tlog-tiles` layout, and a reader that serves entries, tree hashes and
//! proofs from any [`Storage`].
//!
//! Tiles are 256 hashes wide. The `n`-th tile at tile level `L` holds the hashes of the
//! perfect subtrees of height `8·L` that cover entries `[n·256^(L+1), (n+1)·256^(L+1))`.
//! Partial tiles (the right edge) live at `…/<N>.p/<W>`. Entry bundles hold entries as
//! big-endian `u16` length-prefixed byte strings.

#![deny(clippy::indexing_slicing)]

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::merkle::{self, Hash, NodeSource};
use crate::note::Verifier;
use crate::storage::{CHECKPOINT, Storage};
use std::collections::HashMap;

/// Hashes per full tile, entries per full bundle.
pub const TILE_WIDTH: u64 = 256;
/// Bytes in a full hash tile.
pub const TILE_BYTES: usize = 256 * 32;
/// Longest entry an entry bundle can hold.
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// `<N>` as 3-digit path elements, all but the last prefixed with `x`.
pub fn index_path(n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        parts.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

fn with_width(base: String, width: u64) -> String {
    if width == 0 || width >= TILE_WIDTH {
        base
    } else {
        format!("{base}.p/{width}")
    }
}

/// Path of hash tile `n` at tile level `level`; `width` 0 or 256 means full.
pub fn tile_path(level: u32, n: u64, width: u64) -> String {
    with_width(format!("tile/{level}/{}", index_path(n)), width)
}

/// Path of entry bundle `n`; `width` 0 or 256 means full.
pub fn bundle_path(n: u64, width: u64) -> String {
    with_width(format!("tile/entries/{}", index_path(n)), width)
}

/// Width of tile `n` at tile level `level` in a tree of `size` entries: 256 for full
/// tiles, 1..=255 for the partial tile, 0 when the tile does not exist.
pub fn tile_width(size: u64, level: u32, n: u64) -> u64 {
    let hashes = hashes_at_level(size, level);
    let full = hashes / TILE_WIDTH;
    if n < full {
        TILE_WIDTH
    } else if n == full {
        hashes % TILE_WIDTH
    } else {
        0
    }
}

/// Number of hashes at tile level `level` (complete subtrees of 256^level entries).
pub fn hashes_at_level(size: u64, level: u32) -> u64 {
    let shift = 8u64 * u64::from(level);
    if shift >= 64 { 0 } else { size >> shift }
}

/// Append one entry to a bundle being built.
pub fn push_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<()> {
    let len = u16::try_from(entry.len()).map_err(|_| Error::EntryTooLarge(entry.len()))?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Split an entry bundle into entries. `what` names the bundle in errors.
pub fn parse_bundle<'a>(data: &'a [u8], what: &str) -> Result<Vec<&'a [u8]>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(Error::tampered(
                what,
                format!("entry {} has a truncated length prefix", out.len()),
            ));
        };
        let len = usize::from(u16::from_be_bytes(*len));
        let Some(entry) = tail.get(..len) else {
            return Err(Error::tampered(
                what,
                format!(
                    "entry {} is truncated ({} of {len} bytes)",
                    out.len(),
                    tail.len()
                ),
            ));
        };
        out.push(entry);
        rest = tail.get(len..).unwrap_or_default();
        if out.len() as u64 > TILE_WIDTH {
            return Err(Error::tampered(what, "more than 256 entries"));
        }
    }
    Ok(out)
}

/// Split tile bytes into hashes. `what` names the tile in errors.
pub fn parse_tile(data: &[u8], width: u64, what: &str) -> Result<Vec<Hash>> {
    let want = usize::try_from(width)
        .unwrap_or(usize::MAX)
        .saturating_mul(32);
    if data.len() != want {
        return Err(Error::tampered(
            what,
            format!("{} bytes, expected {want} ({width} hashes)", data.len()),
        ));
    }
    Ok(data
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Read-only access to a log at one checkpoint: entries, tiles, tree hashes, proofs.
#[derive(Debug)]
pub struct LogReader<'a> {
    storage: &'a dyn Storage,
    size: u64,
    cache: HashMap<(u32, u64), Vec<Hash>>,
}

impl<'a> LogReader<'a> {
    /// A reader for the tree of `size` entries (taken from a verified checkpoint).
    pub fn new(storage: &'a dyn Storage, size: u64) -> Self {
        LogReader {
            storage,
            size,
            cache: HashMap::new(),
        }
    }

    /// Read and verify the current checkpoint, and a reader at its size.
    pub fn open(
        storage: &'a dyn Storage,
        key: &Verifier,
    ) -> Result<(Checkpoint, Vec<u8>, LogReader<'a>)> {
        let bytes = storage.read(CHECKPOINT)?.ok_or_else(|| {
            Error::malformed(
                format!("{}/{CHECKPOINT}", storage.location()),
                "no checkpoint: not an audit log",
            )
        })?;
        let (cp, _) = Checkpoint::open(&bytes, key, None, CHECKPOINT)?;
        let r = LogReader::new(storage, cp.size);
        Ok((cp, bytes, r))
    }

    /// Tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Read an object that a tree of this size requires: the partial version first,
    /// then the full one (partial tiles may be removed once full), truncated.
    fn read_sized(
        &self,
        full: String,
        partial: String,
        width: u64,
        unit: Unit,
    ) -> Result<(String, Vec<u8>)> {
        if width < TILE_WIDTH
            && let Some(b) = self.storage.read(&partial)?
        {
            return Ok((partial, b));
        }
        match self.storage.read(&full)? {
            Some(b) if width < TILE_WIDTH => {
                // A full object standing in for a partial one: keep its prefix.
                let cut = match unit {
                    Unit::Hashes => usize::try_from(width).unwrap_or(0) * 32,
                    Unit::Entries => bundle_prefix_len(&b, width),
                };
                Ok((full, b.get(..cut).unwrap_or(&b).to_vec()))
            }
            Some(b) => Ok((full, b)),
            None => Err(Error::tampered(
                if width < TILE_WIDTH { partial } else { full },
                "missing",
            )),
        }
    }

    /// The hashes of tile `n` at tile level `level`.
    pub fn tile(&mut self, level: u32, n: u64) -> Result<&[Hash]> {
        let width = tile_width(self.size, level, n);
        if width == 0 {
            return Err(Error::Proof(format!(
                "tile {level}/{n} is outside a tree of size {}",
                self.size
            )));
        }
        if !self.cache.contains_key(&(level, n)) {
            if self.cache.len() > 4096 {
                self.cache.clear();
            }
            let (name, data) = self.read_sized(
                tile_path(level, n, 0),
                tile_path(level, n, width),
                width,
                Unit::Hashes,
            )?;
            let hashes = parse_tile(&data, width, &name)?;
            self.cache.insert((level, n), hashes);
        }
        Ok(self
            .cache
            .get(&(level, n))
            .map(Vec::as_slice)
            .unwrap_or_default())
    }

    /// The entries of bundle `n`, with the name of the object they came from.
    pub fn bundle(&mut self, n: u64) -> Result<(String, Vec<Vec<u8>>)> {
        let width = tile_width(self.size, 0, n);
        if width == 0 {
            return Err(Error::Proof(format!(
                "entry bundle {n} is outside a tree of size {}",
                self.size
            )));
        }
        let (name, data) = self.read_sized(
            bundle_path(n, 0),
            bundle_path(n, width),
            width,
            Unit::Entries,
        )?;
        let entries = parse_bundle(&data, &name)?;
        if entries.len() as u64 != width {
            return Err(Error::tampered(
                name,
                format!("{} entries, expected {width}", entries.len()),
            ));
        }
        Ok((name, entries.into_iter().map(<[u8]>::to_vec).collect()))
    }

    /// Entry `index`.
    pub fn entry(&mut self, index: u64) -> Result<Vec<u8>> {
        if index >= self.size {
            return Err(Error::Proof(format!(
                "index {index} is outside a tree of size {}",
                self.size
            )));
        }
        let (_, mut entries) = self.bundle(index / TILE_WIDTH)?;
        let i = usize::try_from(index % TILE_WIDTH).unwrap_or(0);
        if i < entries.len() {
            Ok(entries.swap_remove(i))
        } else {
            Err(Error::tampered(
                bundle_path(index / TILE_WIDTH, 0),
                "entry missing",
            ))
        }
    }

    /// Root hash of the first `size` entries (`size` ≤ the reader's size).
    pub fn root_at(&mut self, size: u64) -> Result<Hash> {
        merkle::range_hash(self, 0, size)
    }

    /// Inclusion proof of entry `index` in the reader's tree.
    pub fn inclusion_proof(&mut self, index: u64) -> Result<Vec<Hash>> {
        let size = self.size;
        merkle::inclusion_proof(self, index, size)
    }

    /// Consistency proof from `old_size` to the reader's tree.
    pub fn consistency_proof(&mut self, old_size: u64) -> Result<Vec<Hash>> {
        let size = self.size;
        merkle::consistency_proof(self, old_size, size)
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Hashes,
    Entries,
}

fn bundle_prefix_len(data: &[u8], count: u64) -> usize {
    let mut off = 0usize;
    for _ in 0..count {
        let Some(len) = data.get(off..off + 2) else {
            return data.len();
        };
        let len = usize::from(u16::from_be_bytes([
            len.first().copied().unwrap_or(0),
            len.get(1).copied().unwrap_or(0),
        ]));
        off = off.saturating_add(2 + len).min(data.len());
    }
    off
}

impl NodeSource for LogReader<'_> {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash> {
        let tile_level = level / 8;
        let r = level % 8;
        let first = index << r;
        let n = first / TILE_WIDTH;
        let off = usize::try_from(first % TILE_WIDTH).unwrap_or(0);
        let count = 1usize << r;
        let tile = self.tile(tile_level, n)?;
        let hashes = tile.get(off..off + count).ok_or_else(|| {
            Error::tampered(
                tile_path(tile_level, n, 0),
                format!("too short for node {level}/{index}"),
            )
        })?;
        Ok(merkle::perfect_root(hashes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(tile_path(0, 1234067, 0), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 5, 17), "tile/1/005.p/17");
        assert_eq!(bundle_path(3, 256), "tile/entries/003");
        assert_eq!(bundle_path(3, 255), "tile/entries/003.p/255");
    }

    #[test]
    fn widths_match_the_spec_example() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
        // partial level 0 tile of width 112, one full level 1 tile, one partial level 1
        // tile of width 17, and one partial level 2 tile of width 1."
        let s = 70_000;
        assert_eq!(tile_width(s, 0, 272), 256);
        assert_eq!(tile_width(s, 0, 273), 112);
        assert_eq!(tile_width(s, 0, 274), 0);
        assert_eq!(tile_width(s, 1, 0), 256);
        assert_eq!(tile_width(s, 1, 1), 17);
        assert_eq!(tile_width(s, 2, 0), 1);
        assert_eq!(tile_width(s, 3, 0), 0);
        assert_eq!(tile_width(256, 1, 0), 1);
    }

    #[test]
    fn bundles_round_trip_and_reject_truncation() {
        let mut b = Vec::new();
        push_entry(&mut b, b"abc").unwrap();
        push_entry(&mut b, b"").unwrap();
        assert_eq!(b, [0, 3, b'a', b'b', b'c', 0, 0]);
        assert_eq!(parse_bundle(&b, "x").unwrap(), vec![&b"abc"[..], &b""[..]]);
        assert!(parse_bundle(&b[..4], "x").is_err());
        assert!(parse_bundle(&b[..6], "x").is_err());
        assert!(push_entry(&mut b, &vec![0; 65536]).is_err());
    }
}
