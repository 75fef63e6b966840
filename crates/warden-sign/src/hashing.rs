//! Content hashing: SHA-256 (aws-lc-rs, SHA-NI/AVX where the CPU has them), BLAKE2b
//! and BLAKE3, over whole files or byte ranges, with large reads and no `mmap`.

use crate::Error;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Read size per `read` call: large enough to amortise system calls, small enough to
/// stay in L2/L3 per worker.
const READ_SIZE: usize = 4 << 20;

/// A content hash named as in the `hash_type` / `algorithm` fields of the predicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256 (the default; what the reference tool writes).
    Sha256,
    /// BLAKE2b-512 (accepted on input; written only on request).
    Blake2b,
    /// BLAKE3-256.
    Blake3,
}

impl HashAlgorithm {
    /// The name used in the predicate.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Blake2b => "blake2b",
            HashAlgorithm::Blake3 => "blake3",
        }
    }

    /// Parse a predicate name (`sha256`, `blake2b`, `blake3`; `blake2` is taken as
    /// `blake2b`, the reference tool's option name).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(HashAlgorithm::Sha256),
            "blake2b" | "blake2" => Some(HashAlgorithm::Blake2b),
            "blake3" => Some(HashAlgorithm::Blake3),
            _ => None,
        }
    }

    /// Digest length in bytes.
    #[must_use]
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 | HashAlgorithm::Blake3 => 32,
            HashAlgorithm::Blake2b => 64,
        }
    }

    fn start(self) -> Hasher {
        match self {
            HashAlgorithm::Sha256 => {
                Hasher::Sha256(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
            }
            HashAlgorithm::Blake2b => {
                Hasher::Blake2b(Box::new(<blake2::Blake2b512 as blake2::Digest>::new()))
            }
            HashAlgorithm::Blake3 => Hasher::Blake3(Box::new(blake3::Hasher::new())),
        }
    }

    /// Digest of bytes in memory.
    #[must_use]
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.start();
        h.update(data);
        h.finish()
    }
}

enum Hasher {
    Sha256(aws_lc_rs::digest::Context),
    Blake2b(Box<blake2::Blake2b512>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(c) => c.update(data),
            Hasher::Blake2b(c) => blake2::Digest::update(c.as_mut(), data),
            Hasher::Blake3(c) => {
                // Large blocks spread over the rayon pool; small ones stay on this thread.
                if data.len() >= 1 << 20 {
                    c.update_rayon(data);
                } else {
                    c.update(data);
                }
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(c) => c.finish().as_ref().to_vec(),
            Hasher::Blake2b(c) => blake2::Digest::finalize(*c).to_vec(),
            Hasher::Blake3(c) => c.finalize().as_bytes().to_vec(),
        }
    }
}

thread_local! {
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hash `path` from `start`; to end of file when `end` is `None`, else exactly up to
/// `end` (an early end of file is an error: the file changed under us).
/// `progress` is told how many bytes were read after each read.
pub(crate) fn hash_file(
    algorithm: HashAlgorithm,
    path: &Path,
    start: u64,
    end: Option<u64>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<u8>, Error> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io(path, e))?;
    }
    let mut hasher = algorithm.start();
    BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < READ_SIZE {
            buf.resize(READ_SIZE, 0);
        }
        let mut remaining = end.map(|e| e.saturating_sub(start));
        loop {
            let want = match remaining {
                Some(0) => break,
                Some(r) => usize::try_from(r).unwrap_or(usize::MAX).min(READ_SIZE),
                None => READ_SIZE,
            };
            let Some(slice) = buf.get_mut(..want) else {
                break;
            };
            let n = match file.read(slice) {
                Ok(0) => {
                    if remaining.is_some() {
                        return Err(Error::ChangedWhileHashing {
                            path: path.to_path_buf(),
                        });
                    }
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(path, e)),
            };
            if let Some(data) = slice.get(..n) {
                hasher.update(data);
            }
            progress(n as u64);
            if let Some(r) = remaining.as_mut() {
                *r -= n as u64;
            }
        }
        Ok(())
    })?;
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            hex::encode(HashAlgorithm::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(HashAlgorithm::Blake3.digest(b"")),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        // RFC 7693 appendix A: BLAKE2b-512("abc").
        assert!(hex::encode(HashAlgorithm::Blake2b.digest(b"abc")).starts_with("ba80a53f981c4d0d"));
    }

    #[test]
    fn range_hash_matches_slice_and_detects_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let noop = |_: u64| {};
        let got = hash_file(HashAlgorithm::Sha256, &p, 100, Some(9_000), &noop).unwrap();
        assert_eq!(got, HashAlgorithm::Sha256.digest(&data[100..9_000]));
        let err = hash_file(HashAlgorithm::Sha256, &p, 0, Some(20_000), &noop).unwrap_err();
        assert!(err.to_string().contains("changed while"), "{err}");
    }
}
