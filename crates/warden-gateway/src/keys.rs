//! API keys: 256 bits from the system CSPRNG, shown once, stored only as a SHA-256 hash.
//!
//! A key has 256 bits of entropy, so a fast hash is enough: nobody can brute-force the
//! preimage, and a leaked table of hashes cannot be replayed as keys.

use crate::Error;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Every Warden API key starts with this, so secret scanners can find leaked ones.
pub const KEY_PREFIX: &str = "wdn_";

/// A freshly generated API key. Its `Debug` never shows the secret.
pub struct ApiKey(String);

impl ApiKey {
    /// The secret, to show to the user exactly once.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Lower-case hex of `bytes`: what `hex::encode` returns, without building the string
/// one `char` at a time through `FromIterator` (1.7k instructions for a SHA-256 there;
/// the gateway hex-encodes two digests per request).
pub fn hex_lower(bytes: impl AsRef<[u8]>) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let b = bytes.as_ref();
    let mut v = Vec::with_capacity(b.len() * 2);
    for &x in b {
        v.push(DIGITS[usize::from(x >> 4)]);
        v.push(DIGITS[usize::from(x & 0x0f)]);
    }
    // Only ASCII digits and letters were written, so this never falls back.
    String::from_utf8(v).unwrap_or_default()
}

/// SHA-256 of an API key: the only form in which a key is stored or compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hash a presented key.
    pub fn of(key: &str) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        KeyHash(out)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex_lower(self.0)
    }

    /// Parse lower- or upper-case hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        let a: [u8; 32] = v.try_into().ok()?;
        Some(KeyHash(a))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// Generate a new key and its hash.
pub fn generate() -> Result<(ApiKey, KeyHash), Error> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| Error::Random)?;
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    let hash = KeyHash::of(&key);
    Ok((ApiKey(key), hash))
}

/// Whether a bearer token has the shape of a Warden API key (prefix + 43 base64url chars).
pub fn looks_like_key(token: &str) -> bool {
    token.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_lower_matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 15, 16, 255, 1]).collect();
        for n in [0usize, 1, 2, 31, 32, 33, bytes.len()] {
            let b = &bytes[bytes.len() - n..];
            assert_eq!(hex_lower(b), hex::encode(b));
        }
    }

    #[test]
    fn keys_are_random_256_bit_and_hash_round_trips() {
        let (a, ha) = generate().unwrap();
        let (b, hb) = generate().unwrap();
        assert_ne!(a.reveal(), b.reveal());
        assert_ne!(ha, hb);
        assert!(looks_like_key(a.reveal()));
        assert_eq!(KeyHash::of(a.reveal()), ha);
        assert_eq!(KeyHash::from_hex(&ha.to_hex()), Some(ha));
        assert!(!format!("{a:?}").contains(&a.reveal()[4..]));
        assert!(!looks_like_key("wdn_short"));
        assert!(!looks_like_key("eyJhbGciOi.x.y"));
    }
}
