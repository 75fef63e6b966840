//! Full verification of a log: every entry, every tile, the checkpoint.
//!
//! 1. The checkpoint's signature is checked against the trusted key before its body is
//!    believed.
//! 2. Every entry bundle is read and hashed; the leaf hashes must equal the level-0
//!    tiles. Every full tile is hashed to its subtree root, which must equal the
//!    matching hash in the tile one level up, and so on to the top.
//! 3. The root recomputed from the entries must equal the checkpoint's root.
//! 4. With a previous checkpoint (same key), the log must be consistent with it: a
//!    consistency proof generated from the tiles must verify (RFC 9162 §2.1.4.2).
//!
//! The first discrepancy is reported with the name of the bad tile or entry bundle, and
//! whether the entry or the tile is at fault, judged by which of the two still agrees
//! with the tree above it.

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::merkle::{self, Hash};
use crate::note::Verifier;
use crate::storage::{CHECKPOINT, Storage};
use crate::tiles::{self, LogReader, TILE_WIDTH, tile_path};
use rayon::prelude::*;

/// What a successful verification saw.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// Entries hashed.
    pub entries: u64,
    /// Hash tiles checked.
    pub tiles: u64,
    /// Size of the previous checkpoint the log was proven consistent with.
    pub consistent_with: Option<u64>,
}

/// Verify the whole log in `storage` against `key`, and optionally its consistency with
/// an older signed checkpoint (`previous`, the checkpoint file's bytes).
pub fn verify_log(
    storage: &dyn Storage,
    key: &Verifier,
    previous: Option<&[u8]>,
) -> Result<VerifyReport> {
    let bytes = storage.read(CHECKPOINT)?.ok_or_else(|| {
        Error::malformed(
            format!("{}/{CHECKPOINT}", storage.location()),
            "no checkpoint: not an audit log",
        )
    })?;
    let (cp, _) = Checkpoint::open(&bytes, key, None, CHECKPOINT)?;
    let size = cp.size;

    // Level "-1" → 0: entry bundles against level-0 tiles, in parallel.
    let bundles = size.div_ceil(TILE_WIDTH);
    let leaf_rows: Vec<Result<Vec<Hash>>> = (0..bundles)
        .into_par_iter()
        .map(|n| {
            let mut r = LogReader::new(storage, size);
            let (bname, entries) = r.bundle(n)?;
            let hashes: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
            Ok(hashes).and_then(|h| check_tile(storage, &cp, 0, n, &h, Some(&bname)).map(|()| h))
        })
        .collect();
    let mut tiles_checked = 0u64;
    let mut below: Vec<Hash> = Vec::with_capacity(usize::try_from(bundles).unwrap_or(0));
    // Each level's partial (right-edge) hashes, bottom up, for the root.
    let mut edges: Vec<Vec<Hash>> = vec![Vec::new()];
    for row in leaf_rows {
        let row = row?;
        tiles_checked += 1;
        if row.len() as u64 == TILE_WIDTH {
            below.push(merkle::perfect_root(&row));
        } else {
            edges = vec![row];
        }
    }
    // Levels 1.. : `below` holds the roots of the full tiles of the level under it.
    let mut level = 1u32;
    while tiles::hashes_at_level(size, level) > 0 {
        let n_tiles = tiles::hashes_at_level(size, level).div_ceil(TILE_WIDTH);
        let rows: Vec<Result<Vec<Hash>>> = (0..n_tiles)
            .into_par_iter()
            .map(|n| {
                let start = usize::try_from(n * TILE_WIDTH).unwrap_or(usize::MAX);
                let end = (start.saturating_add(256)).min(below.len());
                let h = below.get(start..end).unwrap_or_default().to_vec();
                check_tile(storage, &cp, level, n, &h, None).map(|()| h)
            })
            .collect();
        let mut next = Vec::new();
        let mut edge = Vec::new();
        for row in rows {
            let row = row?;
            tiles_checked += 1;
            if row.len() as u64 == TILE_WIDTH {
                next.push(merkle::perfect_root(&row));
            } else {
                edge = row;
            }
        }
        edges.push(edge);
        below = next;
        level += 1;
    }

    // Root from the recomputed edge, top level first.
    let mut parts = Vec::new();
    for hs in edges.iter().rev() {
        let mut off = 0usize;
        for b in (0..8).rev() {
            let w = 1usize << b;
            if hs.len() & w != 0 {
                if let Some(s) = hs.get(off..off + w) {
                    parts.push(merkle::perfect_root(s));
                }
                off += w;
            }
        }
    }
    if merkle::root_from_decomposition(&parts) != cp.root {
        return Err(Error::tampered(
            CHECKPOINT,
            "root hash does not match the entries (the checkpoint is signed, so the log signed a wrong tree)",
        ));
    }

    let consistent_with = match previous {
        None => None,
        Some(prev) => {
            let (old, _) = Checkpoint::open(prev, key, Some(&cp.origin), "previous checkpoint")?;
            if old.size > size {
                return Err(Error::tampered(
                    CHECKPOINT,
                    format!(
                        "size {size} is smaller than the previous checkpoint's {}: the log was truncated",
                        old.size
                    ),
                ));
            }
            if old.size == 0 {
                if old.root != merkle::empty_root() {
                    return Err(Error::tampered(
                        "previous checkpoint",
                        "size 0 with a non-empty root",
                    ));
                }
            } else {
                let mut r = LogReader::new(storage, size);
                let proof = r.consistency_proof(old.size)?;
                merkle::verify_consistency(old.size, size, &proof, &old.root, &cp.root).map_err(
                    |e| {
                        Error::tampered(
                            CHECKPOINT,
                            format!(
                                "not consistent with the previous checkpoint of size {}: {e}",
                                old.size
                            ),
                        )
                    },
                )?;
            }
            Some(old.size)
        }
    };
    Ok(VerifyReport {
        checkpoint: cp,
        entries: size,
        tiles: tiles_checked,
        consistent_with,
    })
}

/// Compare the stored tile (`level`, `n`) with `expected` (recomputed from below).
fn check_tile(
    storage: &dyn Storage,
    cp: &Checkpoint,
    level: u32,
    n: u64,
    expected: &[Hash],
    bundle_name: Option<&str>,
) -> Result<()> {
    let mut r = LogReader::new(storage, cp.size);
    let stored = r.tile(level, n)?.to_vec();
    let width = tiles::tile_width(cp.size, level, n);
    let name = stored_name(storage, level, n, width);
    let Some(i) = stored.iter().zip(expected).position(|(a, b)| a != b) else {
        if stored.len() != expected.len() {
            return Err(Error::tampered(
                name,
                format!("{} hashes, expected {}", stored.len(), expected.len()),
            ));
        }
        return Ok(());
    };
    let first_leaf = (n * TILE_WIDTH + i as u64) << (8 * level);
    // Who is at fault: if the stored tile still agrees with the tree above it, the data
    // below it (the entry, or a lower tile) was altered.
    let tile_agrees = stored_tile_agrees(storage, cp, level, n, &stored);
    if tile_agrees {
        if let Some(b) = bundle_name {
            return Err(Error::tampered(
                b,
                format!(
                    "entry {first_leaf} was altered: its hash does not match hash {i} of {name}"
                ),
            ));
        }
        let lower = tile_path(level - 1, n * TILE_WIDTH + i as u64, 0);
        return Err(Error::tampered(
            lower,
            format!("does not hash to hash {i} of {name} (entries from {first_leaf} altered)"),
        ));
    }
    Err(Error::tampered(
        name,
        format!(
            "hash {i} (covering entry {first_leaf}) was altered: it does not match the entries"
        ),
    ))
}

fn stored_name(storage: &dyn Storage, level: u32, n: u64, width: u64) -> String {
    let partial = tile_path(level, n, width);
    if width < TILE_WIDTH && matches!(storage.read(&partial), Ok(Some(_))) {
        partial
    } else {
        tile_path(level, n, 0)
    }
}

/// Whether a stored tile is consistent with the stored tree above it: a full tile must
/// hash to the parent's stored hash; a partial tile must give the checkpoint root.
fn stored_tile_agrees(
    storage: &dyn Storage,
    cp: &Checkpoint,
    level: u32,
    n: u64,
    stored: &[Hash],
) -> bool {
    let mut r = LogReader::new(storage, cp.size);
    if stored.len() as u64 == TILE_WIDTH {
        let parent = r
            .tile(level + 1, n / TILE_WIDTH)
            .ok()
            .and_then(|t| t.get(usize::try_from(n % TILE_WIDTH).ok()?).copied());
        parent == Some(merkle::perfect_root(stored))
    } else {
        r.root_at(cp.size).ok() == Some(cp.root)
    }
}
