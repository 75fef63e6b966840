//! C2SP `tlog-checkpoint`: the signed tree head.
//!
//! The note text is the origin line, the tree size in decimal (no leading zeroes), the
//! base64 root hash, and optional non-empty extension lines.

#![deny(clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::merkle::Hash;
use crate::note::{Note, Signer, Verifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// A checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity, e.g. `warden.example/audit`.
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// Root hash of the tree.
    pub root: Hash,
    /// Opaque extension lines (Warden writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse the note text of a checkpoint. `what` names the source in errors.
    pub fn parse_text(text: &str, what: &str) -> Result<Checkpoint> {
        let bad = |reason: &str| Error::malformed(what, format!("malformed checkpoint: {reason}"));
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("does not end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("empty origin line"));
        }
        let size = lines.next().ok_or_else(|| bad("no size line"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("size is not a decimal number without leading zeroes"));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad("size does not fit in 64 bits"))?;
        let root = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root = B64
            .decode(root)
            .map_err(|_| bad("root hash is not valid base64"))?;
        let root: Hash = root
            .try_into()
            .map_err(|_| bad("root hash is not 32 bytes"))?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(bad("empty extension line"));
            }
            extensions.push(l.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Sign this checkpoint into note bytes.
    pub fn sign(&self, signer: &Signer) -> Vec<u8> {
        signer.sign(&self.to_text()).to_bytes()
    }

    /// Parse and verify a signed checkpoint against a trusted key; the signature is
    /// checked before the body is believed. With `origin`, the origin must match.
    pub fn open(
        bytes: &[u8],
        key: &Verifier,
        origin: Option<&str>,
        what: &str,
    ) -> Result<(Checkpoint, Note)> {
        let note = Note::parse(bytes, what)?;
        note.verify(key, what)?;
        let cp = Checkpoint::parse_text(&note.text, what)?;
        if let Some(o) = origin
            && cp.origin != o
        {
            return Err(Error::Signature {
                what: what.to_owned(),
                reason: format!("origin {:?} is not the expected {:?}", cp.origin, o),
            });
        }
        Ok((cp, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strict_parsing() {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 20852163,
            root: [7; 32],
            extensions: vec![],
        };
        let t = cp.to_text();
        assert_eq!(Checkpoint::parse_text(&t, "c").unwrap(), cp);
        for bad in [
            "example.com/log\n012\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "example.com/log\n12\nBwcH\n",
            "example.com/log\n12\n",
            "\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "example.com/log\n-1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "example.com/log\n99999999999999999999\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
        ] {
            assert!(Checkpoint::parse_text(bad, "c").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn open_checks_signature_and_origin() {
        let s = Signer::generate("example.com/log").unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 3,
            root: [1; 32],
            extensions: vec![],
        };
        let bytes = cp.sign(&s);
        let (got, _) =
            Checkpoint::open(&bytes, &s.verifier(), Some("example.com/log"), "c").unwrap();
        assert_eq!(got, cp);
        assert!(Checkpoint::open(&bytes, &s.verifier(), Some("other"), "c").is_err());
        let other = Signer::generate("example.com/log").unwrap();
        assert!(Checkpoint::open(&bytes, &other.verifier(), None, "c").is_err());
    }
}
