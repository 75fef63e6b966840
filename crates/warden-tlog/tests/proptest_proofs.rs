//! Property tests: for random tree sizes every inclusion and consistency proof generated
//! from the tree verifies, and flipping any single bit of a proof, a root or a leaf makes
//! verification fail. Also checks proofs generated from an on-disk log (tiles) equal the
//! ones from the in-memory tree.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use proptest::prelude::*;
use std::sync::Arc;
use warden_tlog::merkle::{self, MemoryTree};
use warden_tlog::tiles::LogReader;
use warden_tlog::{Log, LogOptions, PosixStorage, Signer};

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(&i.to_le_bytes());
    }
    t
}

fn flip(v: &mut [u8], bit: usize) {
    let len = v.len();
    v[(bit / 8) % len] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_proofs_verify_and_bit_flips_fail(n in 1u64..600, seed in any::<u64>(), bit in any::<usize>()) {
        let mut t = tree(n);
        let i = seed % n;
        let root = t.root_at(n).unwrap();
        let leaf = merkle::leaf_hash(&i.to_le_bytes());
        let p = merkle::inclusion_proof(&mut t, i, n).unwrap();
        prop_assert!(merkle::verify_inclusion(&leaf, i, n, &p, &root).is_ok());
        // Flip one bit anywhere in (proof ‖ root ‖ leaf).
        let total = (p.len() + 2) * 256;
        let b = bit % total;
        let (mut p2, mut root2, mut leaf2) = (p.clone(), root, leaf);
        if b < p.len() * 256 {
            flip(&mut p2[b / 256], b % 256);
        } else if b < (p.len() + 1) * 256 {
            flip(&mut root2, b % 256);
        } else {
            flip(&mut leaf2, b % 256);
        }
        prop_assert!(merkle::verify_inclusion(&leaf2, i, n, &p2, &root2).is_err());
        // A wrong index or size fails too (when the path shape changes or hashes differ).
        if n > 1 {
            let j = (i + 1) % n;
            prop_assert!(merkle::verify_inclusion(&leaf, j, n, &p, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_bit_flips_fail(n in 2u64..600, seed in any::<u64>(), bit in any::<usize>()) {
        let mut t = tree(n);
        let m = 1 + seed % (n - 1);
        let (r1, r2) = (t.root_at(m).unwrap(), t.root_at(n).unwrap());
        let p = merkle::consistency_proof(&mut t, m, n).unwrap();
        prop_assert!(merkle::verify_consistency(m, n, &p, &r1, &r2).is_ok());
        let total = (p.len() + 2) * 256;
        let b = bit % total;
        let (mut p2, mut a, mut c) = (p.clone(), r1, r2);
        if b < p.len() * 256 {
            flip(&mut p2[b / 256], b % 256);
        } else if b < (p.len() + 1) * 256 {
            flip(&mut a, b % 256);
        } else {
            flip(&mut c, b % 256);
        }
        prop_assert!(merkle::verify_consistency(m, n, &p2, &a, &c).is_err());
    }
}

#[test]
fn proofs_from_tiles_equal_proofs_from_memory() {
    let d = tempfile::tempdir().unwrap();
    let signer = Signer::generate("warden.test/p").unwrap();
    let v = signer.verifier();
    let n = 66_000u64; // crosses a level-1 tile boundary (65,536)
    let log = Log::open(
        Arc::new(PosixStorage::new(d.path())),
        signer,
        "warden.test/p",
        // Every append is in flight at once: room for all of them.
        LogOptions {
            max_queued: n as usize,
            ..LogOptions::default()
        },
    )
    .unwrap();
    let mut pending = Vec::new();
    for i in 0..n {
        pending.push(log.append_async(i.to_le_bytes().to_vec()));
    }
    for (i, f) in pending.into_iter().enumerate() {
        assert_eq!(block_on(f).unwrap(), i as u64);
    }
    drop(log);
    let mut t = tree(n);
    let storage = PosixStorage::new(d.path());
    let (cp, _, mut r) = LogReader::open(&storage, &v).unwrap();
    assert_eq!(cp.size, n);
    assert_eq!(cp.root, t.root_at(n).unwrap());
    for i in [0, 1, 255, 256, 65_535, 65_536, 65_999] {
        assert_eq!(
            r.inclusion_proof(i).unwrap(),
            merkle::inclusion_proof(&mut t, i, n).unwrap()
        );
    }
    for m in [1, 255, 256, 257, 65_536, 65_537, 65_999] {
        let p = r.consistency_proof(m).unwrap();
        assert_eq!(p, merkle::consistency_proof(&mut t, m, n).unwrap());
        merkle::verify_consistency(m, n, &p, &t.root_at(m).unwrap(), &cp.root).unwrap();
    }
}

/// A minimal executor: the future must work without any async runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
