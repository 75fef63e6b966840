//! RFC 6238 time-based one-time passwords (the admin API's second factor), with an
//! RFC 4648 base32 decoder for secrets as authenticator apps show them.

use aws_lc_rs::{constant_time, hmac};

/// The HMAC behind a TOTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA-1 (what authenticator apps use by default).
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

/// The TOTP value for `unix_time` (RFC 6238 §4, dynamic truncation of RFC 4226 §5.3).
pub fn totp(secret: &[u8], unix_time: u64, step: u64, digits: u32, alg: Algorithm) -> u32 {
    hotp(secret, unix_time / step.max(1), digits, alg)
}

fn hotp(secret: &[u8], counter: u64, digits: u32, alg: Algorithm) -> u32 {
    let a = match alg {
        Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Algorithm::Sha256 => hmac::HMAC_SHA256,
        Algorithm::Sha512 => hmac::HMAC_SHA512,
    };
    let key = hmac::Key::new(a, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
        .unwrap_or(0);
    word % 10u32.pow(digits.min(9))
}

/// Check a 6-digit SHA-1 code with ±1 step of clock skew. Returns the matching time step
/// so the caller can refuse its reuse.
pub fn verify(secret: &[u8], code: &str, unix_time: u64) -> Option<u64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_time / 30;
    let mut found = None;
    for step in [now.saturating_sub(1), now, now + 1] {
        let want = format!("{:06}", hotp(secret, step, 6, Algorithm::Sha1));
        if constant_time::verify_slices_are_equal(want.as_bytes(), code.as_bytes()).is_ok() {
            found = Some(step);
        }
    }
    found
}

/// Decode RFC 4648 base32 (case-insensitive, padding and spaces ignored).
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            b'=' | b' ' => continue,
            _ => return None,
        };
        buf = (buf << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B: seeds are the ASCII strings "1234567890" repeated to 20, 32
    // and 64 bytes; 8 digits; step 30 s.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let s1 = b"12345678901234567890";
        let s256 = b"12345678901234567890123456789012";
        let s512 = b"1234567890123456789012345678901234567890123456789012345678901234";
        let rows: [(u64, u32, u32, u32); 6] = [
            (59, 94287082, 46119246, 90693936),
            (1111111109, 7081804, 68084774, 25091201),
            (1111111111, 14050471, 67062674, 99943326),
            (1234567890, 89005924, 91819424, 93441116),
            (2000000000, 69279037, 90698825, 38618901),
            (20000000000, 65353130, 77737706, 47863826),
        ];
        for (t, a, b, c) in rows {
            assert_eq!(totp(s1, t, 30, 8, Algorithm::Sha1), a, "sha1 at {t}");
            assert_eq!(totp(s256, t, 30, 8, Algorithm::Sha256), b, "sha256 at {t}");
            assert_eq!(totp(s512, t, 30, 8, Algorithm::Sha512), c, "sha512 at {t}");
        }
    }

    #[test]
    fn verify_accepts_skew_and_refuses_wrong_codes() {
        let secret = b"12345678901234567890";
        let code = format!("{:06}", totp(secret, 1111111109, 30, 6, Algorithm::Sha1));
        assert_eq!(verify(secret, &code, 1111111109), Some(1111111109 / 30));
        assert!(verify(secret, &code, 1111111109 + 30).is_some());
        assert!(verify(secret, &code, 1111111109 + 120).is_none());
        assert!(verify(secret, "12345", 0).is_none());
        assert!(verify(secret, "abcdef", 0).is_none());
    }

    #[test]
    fn base32_rfc4648_vectors() {
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytb").unwrap(), b"fooba");
        assert_eq!(
            base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
            b"12345678901234567890"
        );
        assert!(base32_decode("MZ1!").is_none());
    }
}
