//! Hashed n-gram features of normalised text: the one featurizer used both by the
//! trainer (`examples/train_screen.rs`) and at screening time, so training and serving
//! cannot disagree.
//!
//! Features: byte 3-, 4- and 5-grams of the text padded with one space on each side, and
//! word unigrams and bigrams (a word is a run of ASCII letters and digits or non-ASCII
//! bytes). Each feature hashes to one of [`DIM`] slots with a fixed 64-bit multiplicative
//! hash and a SplitMix64 finaliser; every feature carries the byte offset where it starts,
//! so scores can be computed over windows of a long text.

/// log2 of the number of hashed slots.
pub const DIM_BITS: u32 = 18;
/// Number of hashed slots.
pub const DIM: usize = 1 << DIM_BITS;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const SEED_CHAR: u64 = 0x243f_6a88_85a3_08d3;
const SEED_WORD: u64 = 0x1319_8a2e_0370_7344;
const SEED_BIGRAM: u64 = 0xa409_3822_299f_31d0;

#[inline]
fn finish(h: u64) -> u32 {
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // The top DIM_BITS bits: always < DIM.
    (z >> (64 - DIM_BITS)) as u32
}

#[inline]
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Calls `f(offset, slot)` for every feature of `text`, in a fixed order. `slot < DIM`.
pub fn for_each_feature(text: &str, mut f: impl FnMut(usize, u32)) {
    let b = text.as_bytes();
    let n = b.len();
    // Character n-grams over " " + text + " ": virtual index j maps to b[j - 1].
    let at = |j: usize| -> u8 {
        if j == 0 || j > n {
            b' '
        } else {
            b.get(j - 1).copied().unwrap_or(b' ')
        }
    };
    let padded = n + 2;
    for start in 0..padded {
        let mut h = FNV_OFFSET ^ SEED_CHAR;
        for k in 0..5usize {
            let j = start + k;
            if j >= padded {
                break;
            }
            h = (h ^ u64::from(at(j))).wrapping_mul(FNV_PRIME);
            if k >= 2 {
                f(start.saturating_sub(1), finish(h ^ (k as u64)));
            }
        }
    }
    // Words and bigrams.
    let mut prev: Option<u64> = None;
    let mut i = 0usize;
    while i < n {
        if !b.get(i).copied().is_some_and(is_word_byte) {
            i += 1;
            continue;
        }
        let start = i;
        let mut h = FNV_OFFSET ^ SEED_WORD;
        while let Some(&c) = b.get(i) {
            if !is_word_byte(c) {
                break;
            }
            h = (h ^ u64::from(c)).wrapping_mul(FNV_PRIME);
            i += 1;
        }
        f(start, finish(h));
        if let Some(p) = prev {
            f(
                start,
                finish((p.rotate_left(17) ^ h ^ SEED_BIGRAM).wrapping_mul(FNV_PRIME)),
            );
        }
        prev = Some(h);
    }
}

/// All feature slots of `text` (for training).
pub fn featurize(text: &str) -> Vec<u32> {
    let mut v = Vec::with_capacity(text.len() * 4 + 8);
    for_each_feature(text, |_, s| v.push(s));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_in_range_and_deterministic() {
        let a = featurize("ignore all previous instructions");
        let b = featurize("ignore all previous instructions");
        assert_eq!(a, b);
        assert!(a.iter().all(|&s| (s as usize) < DIM));
        // 34 padded bytes: 32 + 31 + 30 char grams; 4 words + 3 bigrams.
        assert_eq!(a.len(), 32 + 31 + 30 + 4 + 3);
    }

    #[test]
    fn known_hashes_are_stable() {
        // Pinned so that a change to the featurizer (which silently invalidates the
        // committed weights) fails here first: retrain when this changes.
        let v = featurize("hi");
        assert_eq!(v.len(), 2 + 1 + 1);
        assert_eq!(v, PINNED_HI.to_vec());
    }

    const PINNED_HI: [u32; 4] = [98302, 168341, 211320, 61007];

    #[test]
    fn offsets_are_monotone_per_kind() {
        let mut offs = Vec::new();
        for_each_feature("abc def", |o, _| offs.push(o));
        assert!(offs.iter().all(|&o| o <= 7));
    }
}
