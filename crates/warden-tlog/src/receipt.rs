//! C2SP `tlog-proof` receipts: an offline proof that an entry is in the log.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 entry>
//! index <n>
//! <base64 proof hash>…
//!
//! <signed checkpoint>
//! ```
//! Warden puts the entry itself in the `extra` line so a receipt is self-contained; a
//! verifier may instead supply the entry out of band.

#![deny(clippy::indexing_slicing)]

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::merkle::{self, Hash};
use crate::note::Verifier;
use crate::storage::Storage;
use crate::tiles::LogReader;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Largest receipt accepted by [`Receipt::parse`].
pub const MAX_RECEIPT_BYTES: usize = 2 << 20;

/// A parsed receipt (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Opaque extra data (Warden: the entry).
    pub extra: Option<Vec<u8>>,
    /// Index of the entry.
    pub index: u64,
    /// Inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: Vec<u8>,
}

/// What a verified receipt proves.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    /// The checkpoint the entry is included in.
    pub checkpoint: Checkpoint,
    /// Index of the entry.
    pub index: u64,
    /// The entry.
    pub entry: Vec<u8>,
}

impl Receipt {
    /// Build a receipt for entry `index` from the log's current checkpoint.
    pub fn prove(storage: &dyn Storage, key: &Verifier, index: u64) -> Result<Receipt> {
        let (cp, bytes, mut reader) = LogReader::open(storage, key)?;
        if index >= cp.size {
            return Err(Error::malformed(
                format!("index {index}"),
                format!("the log has {} entries", cp.size),
            ));
        }
        let entry = reader.entry(index)?;
        let proof = reader.inclusion_proof(index)?;
        merkle::verify_inclusion(&merkle::leaf_hash(&entry), index, cp.size, &proof, &cp.root)?;
        Ok(Receipt {
            extra: Some(entry),
            index,
            proof,
            checkpoint: bytes,
        })
    }

    /// Serialize.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::from(HEADER);
        s.push('\n');
        if let Some(e) = &self.extra {
            s.push_str("extra ");
            s.push_str(&B64.encode(e));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Parse a receipt. `what` names the source in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Receipt> {
        let bad = |reason: &str| Error::malformed(what, format!("malformed receipt: {reason}"));
        if bytes.len() > MAX_RECEIPT_BYTES {
            return Err(bad("larger than 2 MiB"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not valid UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line"))?;
        let mut extra = None;
        if let Some(x) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(x)
                    .map_err(|_| bad("extra is not valid base64"))?,
            );
            line = lines.next().ok_or_else(|| bad("no index line"))?;
        }
        let idx = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("expected an index line"))?;
        if idx.is_empty()
            || !idx.bytes().all(|b| b.is_ascii_digit())
            || (idx.len() > 1 && idx.starts_with('0'))
        {
            return Err(bad("index is not a decimal number without leading zeroes"));
        }
        let index: u64 = idx
            .parse()
            .map_err(|_| bad("index does not fit in 64 bits"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() >= 64 {
                return Err(bad("inclusion proof has more than 64 hashes"));
            }
            let h = B64
                .decode(l)
                .map_err(|_| bad("proof hash is not valid base64"))?;
            proof.push(
                h.try_into()
                    .map_err(|_| bad("proof hash is not 32 bytes"))?,
            );
        }
        Ok(Receipt {
            extra,
            index,
            proof,
            checkpoint: checkpoint.as_bytes().to_vec(),
        })
    }

    /// Verify against a trusted log key: the checkpoint signature, then the inclusion of
    /// `entry` (or, without it, the `extra` data) at `index`.
    pub fn verify(&self, key: &Verifier, entry: Option<&[u8]>) -> Result<VerifiedReceipt> {
        let (cp, _) = Checkpoint::open(&self.checkpoint, key, None, "receipt checkpoint")?;
        let entry = match (entry, &self.extra) {
            (Some(e), _) => e.to_vec(),
            (None, Some(x)) => x.clone(),
            (None, None) => {
                return Err(Error::malformed(
                    "receipt",
                    "no entry: the receipt has no extra data and none was given",
                ));
            }
        };
        merkle::verify_inclusion(
            &merkle::leaf_hash(&entry),
            self.index,
            cp.size,
            &self.proof,
            &cp.root,
        )?;
        Ok(VerifiedReceipt {
            checkpoint: cp,
            index: self.index,
            entry,
        })
    }
}
