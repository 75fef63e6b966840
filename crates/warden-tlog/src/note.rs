//! C2SP `signed-note` with Ed25519 keys.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one or more signature
//! lines `— <name> base64(key ID ‖ signature)`. The key ID of an Ed25519 key is the
//! first four bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
//!
//! Key strings:
//! - verifier: `<name>+<hex key ID>+base64(0x01 ‖ public key)`;
//! - signer: `PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 ‖ 32-byte seed)` (the form
//!   used by Go's `golang.org/x/mod/sumdb/note` and Tessera tooling).
//!
//! Parsing is bounded: notes over [`MAX_NOTE_BYTES`] or with more than
//! [`MAX_SIGNATURES`] signature lines are refused.

#![deny(clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::merkle::sha256;
use aws_lc_rs::signature::{self, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Largest note accepted by [`Note::parse`].
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// Most signature lines accepted by [`Note::parse`] (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// Signature type byte of Ed25519 note signatures.
pub const ED25519: u8 = 0x01;

const DASH: &str = "\u{2014} ";

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (big-endian first four bytes of the decoded signature).
    pub key_id: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

/// A parsed signed note. Its text must not be trusted before [`Note::verify`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The note text, including its final newline.
    pub text: String,
    /// Signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

impl Note {
    /// Parse a signed note from bytes. `what` names the source in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Note> {
        let bad = |reason: &str| Error::malformed(what, format!("malformed note: {reason}"));
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(bad("larger than 1 MiB"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| bad("not valid UTF-8"))?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(bad("contains a control character"));
        }
        if !s.ends_with('\n') {
            return Err(bad("does not end with a newline"));
        }
        // The text is separated from the signatures by the last blank line.
        let Some(sep) = s.rfind("\n\n") else {
            return Err(bad("no blank line before the signatures"));
        };
        let text = s.get(..=sep).ok_or_else(|| bad("no text"))?;
        let sigs = s.get(sep + 2..).ok_or_else(|| bad("no signatures"))?;
        if sigs.is_empty() {
            return Err(bad("no signature lines"));
        }
        let mut signatures = Vec::new();
        for line in sigs.split_terminator('\n') {
            if signatures.len() >= MAX_SIGNATURES {
                return Err(bad("too many signature lines"));
            }
            let rest = line
                .strip_prefix(DASH)
                .ok_or_else(|| bad("signature line does not start with an em dash"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad("signature line has no key name"))?;
            if !valid_key_name(name) {
                return Err(bad("invalid key name in signature line"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| bad("signature is not valid base64"))?;
            let (id, sig) = raw
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("signature is shorter than its key ID"))?;
            if sig.is_empty() {
                return Err(bad("signature is empty"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: u32::from_be_bytes(*id),
                signature: sig.to_vec(),
            });
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Serialize: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            let mut raw = s.key_id.to_be_bytes().to_vec();
            raw.extend_from_slice(&s.signature);
            out.push_str(DASH);
            out.push_str(&s.name);
            out.push(' ');
            out.push_str(&B64.encode(raw));
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Verify the note against a trusted key: every signature whose key name and ID
    /// match the key must verify, and there must be at least one. Signatures by other
    /// keys are ignored (C2SP signed-note). `what` names the source in errors.
    pub fn verify(&self, key: &Verifier, what: &str) -> Result<()> {
        let mut seen = false;
        for s in &self.signatures {
            if s.name != key.name || s.key_id != key.key_id {
                continue;
            }
            seen = true;
            signature::UnparsedPublicKey::new(&signature::ED25519, &key.public)
                .verify(self.text.as_bytes(), &s.signature)
                .map_err(|_| Error::Signature {
                    what: what.to_owned(),
                    reason: format!("signature by {} does not verify", key.name),
                })?;
        }
        if !seen {
            return Err(Error::Signature {
                what: what.to_owned(),
                reason: format!("no signature by the trusted key {}", key),
            });
        }
        Ok(())
    }
}

/// The C2SP key ID of an Ed25519 key.
pub fn key_id(name: &str, public: &[u8]) -> u32 {
    let mut buf = Vec::with_capacity(name.len() + 2 + public.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(0x0a);
    buf.push(ED25519);
    buf.extend_from_slice(public);
    let h = sha256(&buf);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// A trusted Ed25519 verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    public: [u8; 32],
}

impl Verifier {
    /// Parse `<name>+<hex id>+base64(0x01 ‖ public key)`. The key ID must match the key.
    pub fn parse(vkey: &str) -> Result<Verifier> {
        let vkey = vkey.trim();
        let bad = |reason: &str| Error::malformed("verifier key", reason.to_owned());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<base64 key>"));
        };
        if !valid_key_name(name) {
            return Err(bad("invalid key name"));
        }
        if id.len() != 8 {
            return Err(bad("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("key id is not hex"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("key is not valid base64"))?;
        let Some((&ty, public)) = raw.split_first() else {
            return Err(bad("key is empty"));
        };
        if ty != ED25519 {
            return Err(bad(&format!(
                "signature type 0x{ty:02x} is not supported (only Ed25519, 0x01)"
            )));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| bad("Ed25519 public key is not 32 bytes"))?;
        if key_id(name, &public) != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(Verifier {
            name: name.to_owned(),
            key_id: id,
            public,
        })
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(&self.public);
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }
}

/// An Ed25519 note signer. `Debug` never shows the key.
pub struct Signer {
    name: String,
    key_id: u32,
    seed: [u8; 32],
    pair: signature::Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A new random key named `name` (use the log's origin).
    pub fn generate(name: &str) -> Result<Signer> {
        use aws_lc_rs::rand::SecureRandom;
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| Error::Crypto("cannot generate a key: no randomness".into()))?;
        Self::from_seed(name, seed)
    }

    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer> {
        if !valid_key_name(name) {
            return Err(Error::malformed(
                "signer key",
                "key name must be non-empty, without spaces or '+'",
            ));
        }
        let pair = signature::Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| Error::Crypto("invalid Ed25519 seed".into()))?;
        let key_id = key_id(name, pair.public_key().as_ref());
        Ok(Signer {
            name: name.to_owned(),
            key_id,
            seed,
            pair,
        })
    }

    /// Parse `PRIVATE+KEY+<name>+<hex id>+base64(0x01 ‖ seed)`.
    pub fn parse(skey: &str) -> Result<Signer> {
        let bad = |reason: &str| Error::malformed("signer key", reason.to_owned());
        let rest = skey
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+<name>+<key id>+<base64 key>"));
        };
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("key id is not hex"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("key is not valid base64"))?;
        let Some((&ty, seed)) = raw.split_first() else {
            return Err(bad("key is empty"));
        };
        if ty != ED25519 {
            return Err(bad("only Ed25519 (type 0x01) signer keys are supported"));
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("Ed25519 seed is not 32 bytes"))?;
        let s = Self::from_seed(name, seed)?;
        if s.key_id != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(s)
    }

    /// Read a signer key file.
    pub fn from_file(path: &std::path::Path) -> Result<Signer> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        Self::parse(&text).map_err(|e| match e {
            Error::Malformed { reason, .. } => Error::malformed(path.display().to_string(), reason),
            other => other,
        })
    }

    /// The secret key string. Store it with owner-only permissions.
    pub fn to_key_string(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            B64.encode(raw)
        )
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> Verifier {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public,
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sign note text (which must end with a newline) and return the note.
    pub fn sign(&self, text: &str) -> Note {
        let sig = self.pair.sign(text.as_bytes());
        Note {
            text: text.to_owned(),
            signatures: vec![NoteSignature {
                name: self.name.clone(),
                key_id: self.key_id,
                signature: sig.as_ref().to_vec(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the C2SP signed-note specification.
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

    #[test]
    fn verifies_the_spec_example() {
        let v = Verifier::parse(SPEC_VKEY).unwrap();
        assert_eq!(v.to_string(), SPEC_VKEY);
        let n = Note::parse(SPEC_NOTE.as_bytes(), "example").unwrap();
        assert_eq!(n.text, "This is an example message.\n");
        n.verify(&v, "example").unwrap();
        assert_eq!(n.to_bytes(), SPEC_NOTE.as_bytes());
    }

    #[test]
    fn altered_spec_example_fails() {
        let v = Verifier::parse(SPEC_VKEY).unwrap();
        let altered = SPEC_NOTE.replace("example message", "example massage");
        let n = Note::parse(altered.as_bytes(), "example").unwrap();
        let e = n.verify(&v, "example").unwrap_err().to_string();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn wrong_key_id_in_vkey_is_refused() {
        let e = Verifier::parse(&SPEC_VKEY.replace("530d903a", "530d903b")).unwrap_err();
        assert!(e.to_string().contains("key id does not match"), "{e}");
    }

    #[test]
    fn signer_round_trips_and_signs() {
        let s = Signer::generate("warden.test/log").unwrap();
        let s2 = Signer::parse(&s.to_key_string()).unwrap();
        assert_eq!(s.verifier(), s2.verifier());
        let v = Verifier::parse(&s.verifier().to_string()).unwrap();
        let note = s2.sign("hello\n");
        let parsed = Note::parse(&note.to_bytes(), "n").unwrap();
        parsed.verify(&v, "n").unwrap();
        assert!(!format!("{s:?}").contains(&s.to_key_string()));
    }

    #[test]
    fn unknown_keys_are_ignored_but_one_trusted_signature_is_required() {
        let a = Signer::generate("a.example").unwrap();
        let b = Signer::generate("b.example").unwrap();
        let mut note = a.sign("text\n");
        note.signatures.extend(b.sign("other\n").signatures);
        let parsed = Note::parse(&note.to_bytes(), "n").unwrap();
        parsed.verify(&a.verifier(), "n").unwrap();
        let e = parsed.verify(&b.verifier(), "n").unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        let only_b = b.sign("x\n");
        let e = only_b.verify(&a.verifier(), "n").unwrap_err();
        assert!(
            e.to_string().contains("no signature by the trusted key"),
            "{e}"
        );
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            &b"no blank line\n\xe2\x80\x94 a AAAAAAA=\n"[..],
            b"text\n\n",
            b"text\n\n- a AAAAAAE=\n",
            b"text\n\n\xe2\x80\x94 a AAAA\n",
            b"text\n\n\xe2\x80\x94 a !!!!\n",
            b"te\x01xt\n\n\xe2\x80\x94 a AAAAAAE=\n",
            b"\xff\n\n\xe2\x80\x94 a AAAAAAE=\n",
        ] {
            assert!(
                Note::parse(bad, "n").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
