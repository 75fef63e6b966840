//! The linear tier: logistic regression over hashed n-grams ([`crate::features`]).
//!
//! A text's logit is `bias + Σ w[slot] / sqrt(count)` over its features (an L2-normalised
//! binary bag, duplicates counted). Long texts are also scored in overlapping windows of
//! [`WINDOW`] bytes (step [`WINDOW`]/2) and the highest logit wins, so a short injection
//! appended to a long benign document is not diluted away.
//!
//! Weight file: `WSCRLM01`, `u32` little-endian `DIM_BITS`, `f32` bias, then `DIM` `f32`
//! weights, all little-endian. The committed weights are embedded in the library.

use crate::Error;
use crate::features::{DIM, DIM_BITS, for_each_feature};

const MAGIC: &[u8; 8] = b"WSCRLM01";
/// Window length in bytes for long texts.
pub const WINDOW: usize = 512;
const HALF: usize = WINDOW / 2;
/// Fewest features a window needs to be scored on its own.
const MIN_WINDOW_FEATURES: u32 = 24;

/// Logistic regression weights over hashed features.
#[derive(Clone)]
pub struct LinearModel {
    bias: f32,
    weights: Vec<f32>,
}

impl std::fmt::Debug for LinearModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinearModel")
            .field("bias", &self.bias)
            .field("dim", &self.weights.len())
            .finish()
    }
}

/// Logistic function.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl LinearModel {
    /// A model from its parts (the trainer's output). `weights.len()` must be `DIM`.
    pub fn new(bias: f32, weights: Vec<f32>) -> Result<Self, Error> {
        if weights.len() != DIM {
            return Err(Error::Model(format!(
                "expected {DIM} weights, found {}",
                weights.len()
            )));
        }
        Ok(Self { bias, weights })
    }

    /// Parses a weight file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let head = bytes
            .get(..16)
            .ok_or_else(|| Error::Model("weight file shorter than its header".into()))?;
        if head.get(..8) != Some(MAGIC.as_slice()) {
            return Err(Error::Model("not a warden screening weight file".into()));
        }
        let word = |i: usize| -> [u8; 4] {
            let mut w = [0u8; 4];
            if let Some(s) = head.get(i..i + 4) {
                w.copy_from_slice(s);
            }
            w
        };
        let bits = u32::from_le_bytes(word(8));
        if bits != DIM_BITS {
            return Err(Error::Model(format!(
                "weight file has 2^{bits} slots, this build hashes into 2^{DIM_BITS}"
            )));
        }
        let bias = f32::from_le_bytes(word(12));
        let body = bytes.get(16..).unwrap_or_default();
        if body.len() != DIM * 4 {
            return Err(Error::Model(format!(
                "weight file body is {} bytes, expected {}",
                body.len(),
                DIM * 4
            )));
        }
        let weights: Vec<f32> = body
            .chunks_exact(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w.copy_from_slice(c);
                f32::from_le_bytes(w)
            })
            .collect();
        if !bias.is_finite() || weights.iter().any(|w| !w.is_finite()) {
            return Err(Error::Model("weight file holds a non-finite weight".into()));
        }
        Self::new(bias, weights)
    }

    /// Serialises to the weight file format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + DIM * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&DIM_BITS.to_le_bytes());
        out.extend_from_slice(&self.bias.to_le_bytes());
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Bias term.
    pub fn bias(&self) -> f32 {
        self.bias
    }

    /// Weight of one slot (0 outside the table).
    pub fn weight(&self, slot: u32) -> f32 {
        self.weights.get(slot as usize).copied().unwrap_or(0.0)
    }

    /// Logit of the whole text only (what the trainer optimises).
    pub fn logit_whole(&self, text: &str) -> f32 {
        let mut sum = 0.0f32;
        let mut cnt = 0u32;
        for_each_feature(text, |_, s| {
            sum += self.weight(s);
            cnt += 1;
        });
        self.bias
            + if cnt == 0 {
                0.0
            } else {
                sum / (cnt as f32).sqrt()
            }
    }

    /// Highest logit over the whole text and its windows.
    pub fn logit(&self, text: &str) -> f32 {
        if text.len() <= WINDOW {
            return self.logit_whole(text);
        }
        let nwin = text.len() / HALF + 1;
        let mut sums = vec![0.0f32; nwin];
        let mut cnts = vec![0u32; nwin];
        let mut sum = 0.0f32;
        let mut cnt = 0u32;
        for_each_feature(text, |off, s| {
            let w = self.weight(s);
            sum += w;
            cnt += 1;
            let j = off / HALF;
            if let (Some(a), Some(c)) = (sums.get_mut(j), cnts.get_mut(j)) {
                *a += w;
                *c += 1;
            }
            if j > 0
                && let (Some(a), Some(c)) = (sums.get_mut(j - 1), cnts.get_mut(j - 1))
            {
                *a += w;
                *c += 1;
            }
        });
        let mut best = self.bias
            + if cnt == 0 {
                0.0
            } else {
                sum / (cnt as f32).sqrt()
            };
        for (a, c) in sums.iter().zip(&cnts) {
            if *c >= MIN_WINDOW_FEATURES {
                best = best.max(self.bias + a / (*c as f32).sqrt());
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = vec![0.0f32; DIM];
        w[7] = 1.5;
        let m = LinearModel::new(-0.25, w).unwrap();
        let b = m.to_bytes();
        let m2 = LinearModel::from_bytes(&b).unwrap();
        assert_eq!(m2.bias(), -0.25);
        assert_eq!(m2.weight(7), 1.5);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(LinearModel::from_bytes(b"short").is_err());
        assert!(LinearModel::from_bytes(&[0u8; 64]).is_err());
        let m = LinearModel::new(0.0, vec![0.0; DIM]).unwrap();
        let mut b = m.to_bytes();
        b.pop();
        assert!(LinearModel::from_bytes(&b).is_err());
        let mut b = m.to_bytes();
        b[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(LinearModel::from_bytes(&b).is_err());
    }

    #[test]
    fn window_catches_appended_payload() {
        // A model that only likes one word: the window with the word beats the diluted
        // whole-text logit.
        let mut w = vec![0.0f32; DIM];
        for s in crate::features::featurize("zzqx") {
            w[s as usize] = 1.0;
        }
        let m = LinearModel::new(0.0, w).unwrap();
        let long = format!("{} zzqx", "benign words here ".repeat(200));
        assert!(m.logit(&long) > m.logit_whole(&long) * 2.0);
    }
}
