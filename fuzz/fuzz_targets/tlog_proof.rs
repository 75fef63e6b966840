//! Fuzz proof verification with arbitrary sizes, indices, proofs and roots: it must
//! never panic, and must never accept a proof for a leaf that is not in a known tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_tlog::merkle::{self, MemoryTree};

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let a = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let b = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let mode = data[16];
    let rest = &data[17..];
    let proof: Vec<&[u8]> = rest.chunks(32).collect();
    let root = rest.get(..32).unwrap_or(rest);
    let _ = merkle::verify_inclusion(root, a, b, &proof, root);
    let _ = merkle::verify_consistency(a, b, &proof, root, root);

    // Against a real small tree: a proof built from fuzz bytes must not verify a leaf
    // that differs from the tree's leaf at that index.
    let n = 1 + (b % 64);
    let i = a % n;
    let mut t = MemoryTree::new();
    for k in 0..n {
        t.push(&k.to_le_bytes());
    }
    let r = t.root_at(n).unwrap();
    let fake_leaf = merkle::leaf_hash(&[mode, 0xff, 0xfe]);
    let full: Vec<[u8; 32]> = rest
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    assert!(merkle::verify_inclusion(&fake_leaf, i, n, &full, &r).is_err());
    let good = merkle::inclusion_proof(&mut t, i, n).unwrap();
    merkle::verify_inclusion(&merkle::leaf_hash(&i.to_le_bytes()), i, n, &good, &r).unwrap();
    if n > 1 {
        let m = 1 + (u64::from(mode) % (n - 1));
        let p = merkle::consistency_proof(&mut t, m, n).unwrap();
        merkle::verify_consistency(m, n, &p, &t.root_at(m).unwrap(), &r).unwrap();
        if !full.is_empty() && full != p {
            assert!(merkle::verify_consistency(m, n, &full, &t.root_at(m).unwrap(), &r).is_err());
        }
    }
});
