//! The sealed file format, version 1 (specified in `docs/sealed-format.md`).
//!
//! A versioned header followed by fixed-size segments, each sealed with AES-256-GCM under
//! a per-file key derived from the release's data key and a random salt. Segment nonces
//! follow the STREAM construction (prefix ‖ segment index ‖ last-segment flag), and every
//! segment's additional data is the SHA-256 of the header, so truncation, reordering,
//! swapping segments between files and editing the header are all detected. Any byte
//! range can be decrypted by opening only the segments it touches.
//!
//! Memory is bounded by a batch of segments (at most 32 MiB), whatever the file size.
//! With one thread, segments go through read → cipher → write one at a time, so the
//! cipher works on data the kernel has just copied into the core's cache; with more,
//! batches are sealed and opened in parallel.

#![deny(clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::key::DataKey;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest;
use aws_lc_rs::hkdf;
use rayon::prelude::*;
use std::io::{Read, Seek, SeekFrom, Write};

/// File magic.
pub const MAGIC: &[u8; 8] = b"WARDSEAL";
/// Format version written and read by this build.
pub const FORMAT_VERSION: u16 = 1;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Smallest allowed segment (1 MiB).
pub const MIN_SEGMENT: u32 = 1 << 20;
/// Largest allowed segment (4 MiB).
pub const MAX_SEGMENT: u32 = 4 << 20;
/// Segment size Warden writes by default.
pub const DEFAULT_SEGMENT: u32 = 1 << 20;
/// Largest header accepted.
pub const MAX_HEADER: usize = 64 * 1024;
/// Largest string or byte field in the header.
pub const MAX_FIELD: usize = 4096;
/// HKDF info string for the per-file key and nonce prefix.
pub const HKDF_INFO: &[u8] = b"warden-seal-v1 file key";
/// Nonce flag of every segment but the last.
pub const FLAG_SEGMENT: u8 = 0x00;
/// Nonce flag of the last segment.
pub const FLAG_LAST: u8 = 0x01;
/// Nonce flag of the header tag.
pub const FLAG_HEADER: u8 = 0x02;
/// Bytes in the fixed part of the header (magic .. manifest digest).
const FIXED_LEN: usize = 8 + 2 + 4 + 4 + 8 + 32 + 32 + 32;
/// Upper bound on bytes held in one batch.
const BATCH_BYTES: usize = 32 << 20;

/// The header of a sealed file. Every field is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Plaintext bytes per segment (all but the last segment are full).
    pub segment_size: u32,
    /// Total plaintext length.
    pub plaintext_len: u64,
    /// Random per-file salt for key derivation.
    pub salt: [u8; 32],
    /// SHA-256 of the whole plaintext.
    pub plaintext_sha256: [u8; 32],
    /// SHA-256 of the release manifest this file belongs to.
    pub manifest_digest: [u8; 32],
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// Path of the file inside the model directory (`/`-separated).
    pub path: String,
    /// Key-encryption key that wraps the data key.
    pub kek_id: String,
    /// Id of the release data key.
    pub data_key_id: String,
    /// The data key wrapped by the KEK.
    pub wrapped_key: Vec<u8>,
}

/// What the reader expects a sealed file to be bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// File path inside the model.
    pub path: String,
    /// Manifest digest of the release.
    pub manifest_digest: [u8; 32],
}

impl Header {
    /// Number of segments (at least one: an empty file has one empty, last segment).
    pub fn segments(&self) -> u64 {
        let seg = u64::from(self.segment_size.max(1));
        self.plaintext_len.div_ceil(seg).max(1)
    }

    /// Plaintext length of segment `i`.
    pub fn segment_plain_len(&self, i: u64) -> usize {
        let seg = u64::from(self.segment_size);
        let start = i.saturating_mul(seg);
        let len = self.plaintext_len.saturating_sub(start).min(seg);
        usize::try_from(len).unwrap_or(0)
    }

    /// Serialised header without the tag.
    pub fn encode_body(&self) -> Result<Vec<u8>> {
        let vars: [&[u8]; 6] = [
            self.name.as_bytes(),
            self.version.as_bytes(),
            self.path.as_bytes(),
            self.kek_id.as_bytes(),
            self.data_key_id.as_bytes(),
            &self.wrapped_key,
        ];
        let mut total = FIXED_LEN + TAG_LEN;
        for v in vars {
            if v.len() > MAX_FIELD {
                return Err(Error::invalid(
                    &self.path,
                    format!("header field longer than {MAX_FIELD} bytes"),
                ));
            }
            total += 2 + v.len();
        }
        let header_len =
            u32::try_from(total).map_err(|_| Error::invalid(&self.path, "header too large"))?;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&header_len.to_be_bytes());
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.plaintext_len.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.plaintext_sha256);
        out.extend_from_slice(&self.manifest_digest);
        for v in vars {
            let n = u16::try_from(v.len()).map_err(|_| Error::invalid(&self.path, "field"))?;
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(v);
        }
        Ok(out)
    }

    /// Parse a header body (everything before the tag). `path` names the file in errors.
    pub fn decode_body(body: &[u8], path: &str) -> Result<Header> {
        let mal = |d: &str| Error::MalformedHeader {
            path: path.to_owned(),
            detail: d.to_owned(),
        };
        let mut c = Cursor { buf: body, pos: 0 };
        if c.take(8).ok_or_else(|| mal("too short"))? != MAGIC {
            return Err(Error::NotSealed {
                path: path.to_owned(),
            });
        }
        let version = c.u16().ok_or_else(|| mal("too short"))?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                version,
            });
        }
        let _header_len = c.u32().ok_or_else(|| mal("too short"))?;
        let segment_size = c.u32().ok_or_else(|| mal("too short"))?;
        if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&segment_size) {
            return Err(mal(&format!(
                "segment size {segment_size} outside {MIN_SEGMENT}..={MAX_SEGMENT}"
            )));
        }
        let plaintext_len = c.u64().ok_or_else(|| mal("too short"))?;
        let salt = c.arr32().ok_or_else(|| mal("too short"))?;
        let plaintext_sha256 = c.arr32().ok_or_else(|| mal("too short"))?;
        let manifest_digest = c.arr32().ok_or_else(|| mal("too short"))?;
        let mut strs = Vec::with_capacity(5);
        for what in ["name", "version", "path", "kek id", "data key id"] {
            let b = c
                .var()
                .ok_or_else(|| mal(&format!("{what} field truncated")))?;
            let s = std::str::from_utf8(b).map_err(|_| mal(&format!("{what} is not utf-8")))?;
            strs.push(s.to_owned());
        }
        let wrapped_key = c
            .var()
            .ok_or_else(|| mal("wrapped key field truncated"))?
            .to_vec();
        if c.pos != body.len() {
            return Err(mal("unexpected bytes after the last field"));
        }
        let mut it = strs.into_iter();
        let mut next = || it.next().unwrap_or_default();
        Ok(Header {
            segment_size,
            plaintext_len,
            salt,
            plaintext_sha256,
            manifest_digest,
            name: next(),
            version: next(),
            path: next(),
            kek_id: next(),
            data_key_id: next(),
            wrapped_key,
        })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn arr32(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
    fn var(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()? as usize;
        if n > MAX_FIELD {
            return None;
        }
        self.take(n)
    }
}

/// Per-file key material derived from the data key and the salt.
struct FileKeys {
    key: LessSafeKey,
    prefix: [u8; 7],
    /// SHA-256 of the header body: the additional data of every segment.
    header_hash: [u8; 32],
}

struct Okm39;
impl hkdf::KeyType for Okm39 {
    fn len(&self) -> usize {
        39
    }
}

/// Derive the 32-byte file key and 7-byte nonce prefix: HKDF-SHA256(ikm = data key,
/// salt = header salt, info = [`HKDF_INFO`]), 39 bytes of output.
fn derive(data_key: &DataKey, salt: &[u8; 32], header_body: &[u8]) -> Result<FileKeys> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(data_key.as_bytes());
    let mut okm = zeroize::Zeroizing::new([0u8; 39]);
    prk.expand(&[HKDF_INFO], Okm39)
        .and_then(|o| o.fill(okm.as_mut_slice()))
        .map_err(|_| Error::Crypto("hkdf expansion failed".into()))?;
    let (k, p) = okm.split_at(32);
    let key = UnboundKey::new(&AES_256_GCM, k)
        .map_err(|_| Error::Crypto("aes-256-gcm key setup failed".into()))?;
    let mut prefix = [0u8; 7];
    prefix.copy_from_slice(p);
    let mut header_hash = [0u8; 32];
    header_hash.copy_from_slice(digest::digest(&digest::SHA256, header_body).as_ref());
    Ok(FileKeys {
        key: LessSafeKey::new(key),
        prefix,
        header_hash,
    })
}

/// Nonce = prefix (7 bytes) ‖ segment index (u32, big-endian) ‖ flag (1 byte).
pub fn nonce_bytes(prefix: &[u8; 7], index: u32, flag: u8) -> [u8; 12] {
    let mut n = [0u8; 12];
    let (p, rest) = n.split_at_mut(7);
    p.copy_from_slice(prefix);
    let (i, f) = rest.split_at_mut(4);
    i.copy_from_slice(&index.to_be_bytes());
    f.copy_from_slice(&[flag]);
    n
}

fn seg_nonce(keys: &FileKeys, index: u64, last: bool) -> Result<Nonce> {
    let i = u32::try_from(index).map_err(|_| Error::Crypto("too many segments".into()))?;
    let flag = if last { FLAG_LAST } else { FLAG_SEGMENT };
    Ok(Nonce::assume_unique_for_key(nonce_bytes(
        &keys.prefix,
        i,
        flag,
    )))
}

fn header_tag(keys: &FileKeys, body: &[u8]) -> Result<[u8; TAG_LEN]> {
    let nonce = Nonce::assume_unique_for_key(nonce_bytes(&keys.prefix, 0, FLAG_HEADER));
    let mut empty: [u8; 0] = [];
    let tag = keys
        .key
        .seal_in_place_separate_tag(nonce, Aad::from(body), &mut empty)
        .map_err(|_| Error::Crypto("header sealing failed".into()))?;
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

fn batch_segments(segment_size: u32) -> usize {
    let per = segment_size as usize + TAG_LEN;
    let threads = rayon::current_num_threads().max(1);
    (threads * 4).clamp(1, (BATCH_BYTES / per).max(1))
}

/// Read exactly `buf.len()` bytes, or report how many were there.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

type ReadFn<'a, IO> = dyn Fn(&mut IO, u64, &mut Vec<u8>) -> Result<()> + 'a;
type WorkFn<'a> = dyn Fn(u64, &mut Vec<u8>) -> Result<()> + Sync + 'a;
type WriteFn<'a, IO> = dyn Fn(&mut IO, &[u8]) -> Result<()> + 'a;

/// Alignment of a segment's first byte in the sealing buffers.
const SEG_ALIGN: usize = 64;

/// Bytes skipped at the start of a sealing buffer so its segment starts on a
/// [`SEG_ALIGN`] boundary. A 1 MiB buffer comes from `mmap` at 16 bytes past a page
/// boundary, and the kernel's copy of page-aligned file data into a destination a few
/// bytes past a page boundary ran at 1.5 GiB/s against 6–7 GiB/s when 64-byte aligned
/// (AMD EPYC, tmpfs, `read` of 1 MiB): that copy cost more than AES-GCM. The pad
/// depends only on the buffer's address, which does not move while a segment is in it
/// (capacity is reserved up front).
fn seg_pad(buf: &[u8]) -> usize {
    let pad = buf.as_ptr().align_offset(SEG_ALIGN);
    if pad < SEG_ALIGN { pad } else { 0 }
}

/// Move segments `0..nsegs` through `read` → `work` → `write`, in order, with bounded
/// memory; `progress` gets the number of segments written so far.
///
/// One thread: one segment at a time, in one buffer that stays in the core's cache.
/// More: batches of `batch` segments — read in order, worked on in parallel, written in
/// order, each only after `work` succeeded on every segment of it. (Overlapping the I/O
/// of one batch with the work on another cost more CPU per byte than it saved in wall
/// time on the 2-core benchmark machine, so it is not done.)
fn pipeline<IO>(
    io: &mut IO,
    nsegs: u64,
    batch: usize,
    read: &ReadFn<'_, IO>,
    work: &WorkFn<'_>,
    write: &WriteFn<'_, IO>,
    progress: &dyn Fn(u64),
) -> Result<()> {
    if rayon::current_num_threads() <= 1 || nsegs <= 1 || batch <= 1 {
        let mut buf = Vec::new();
        for i in 0..nsegs {
            read(io, i, &mut buf)?;
            work(i, &mut buf)?;
            write(io, &buf)?;
            progress(i + 1);
        }
        return Ok(());
    }
    let per = batch as u64;
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut first = 0u64;
    while first < nsegs {
        let n = usize::try_from((nsegs - first).min(per)).unwrap_or(batch);
        bufs.resize_with(n, Vec::new);
        for (k, buf) in bufs.iter_mut().enumerate() {
            read(io, first + k as u64, buf)?;
        }
        bufs.par_iter_mut()
            .enumerate()
            .try_for_each(|(k, buf)| work(first + k as u64, buf))?;
        for buf in &bufs {
            write(io, buf)?;
        }
        first += n as u64;
        progress(first);
    }
    Ok(())
}

/// Options for [`seal`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SealOptions {
    /// Hash the plaintext while sealing and fail if it differs from
    /// `Header::plaintext_sha256` (catches a file that changed after it was hashed).
    pub verify_digest: bool,
}

/// Seal `reader` (exactly `header.plaintext_len` bytes) into `writer`.
///
/// `header.salt` must be fresh random bytes for every file (see [`random_salt`]); the
/// test vectors are the only reason it is a parameter. `progress` is called with the
/// number of plaintext bytes done so far.
pub fn seal<R: Read, W: Write>(
    data_key: &DataKey,
    header: &Header,
    mut reader: R,
    mut writer: W,
    opts: SealOptions,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let path = header.path.clone();
    if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&header.segment_size) {
        return Err(Error::invalid(&path, "segment size outside 1..=4 MiB"));
    }
    let body = header.encode_body()?;
    let keys = derive(data_key, &header.salt, &body)?;
    let tag = header_tag(&keys, &body)?;
    writer
        .write_all(&body)
        .and_then(|()| writer.write_all(&tag))
        .map_err(|e| Error::io(&path, e))?;

    let nsegs = header.segments();
    let seg = u64::from(header.segment_size);
    struct Io<R, W> {
        reader: R,
        writer: W,
        hasher: Option<digest::Context>,
    }
    let mut io = Io {
        reader: &mut reader,
        writer: &mut writer,
        hasher: opts
            .verify_digest
            .then(|| digest::Context::new(&digest::SHA256)),
    };
    let path_r = path.as_str();
    let read = |io: &mut Io<&mut R, &mut W>, i: u64, buf: &mut Vec<u8>| -> Result<()> {
        let len = header.segment_plain_len(i);
        // Room for the alignment pad and the tag, so nothing below reallocates (the pad
        // is recomputed from the buffer's address by `work` and `write`).
        buf.clear();
        buf.reserve(SEG_ALIGN + len + TAG_LEN);
        let pad = seg_pad(buf);
        buf.resize(pad + len, 0);
        let dst = buf.get_mut(pad..).unwrap_or_default();
        let got = read_full(&mut io.reader, dst).map_err(|e| Error::io(path_r, e))?;
        if got != len {
            return Err(Error::DigestMismatch {
                path: path_r.to_owned(),
                detail: format!(
                    "input ended after {} bytes, expected {}",
                    i * seg + got as u64,
                    header.plaintext_len
                ),
            });
        }
        // Hash the plaintext in order, before it is encrypted in place.
        if let Some(h) = io.hasher.as_mut() {
            h.update(buf.get(pad..).unwrap_or_default());
        }
        Ok(())
    };
    let work = |i: u64, buf: &mut Vec<u8>| -> Result<()> {
        let nonce = seg_nonce(&keys, i, i + 1 == nsegs)?;
        let pad = seg_pad(buf);
        let plain = buf.get_mut(pad..).unwrap_or_default();
        let tag = keys
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&keys.header_hash), plain)
            .map_err(|_| Error::Crypto("segment sealing failed".into()))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    };
    let write = |io: &mut Io<&mut R, &mut W>, buf: &[u8]| -> Result<()> {
        let sealed = buf.get(seg_pad(buf)..).unwrap_or_default();
        io.writer
            .write_all(sealed)
            .map_err(|e| Error::io(path_r, e))
    };
    pipeline(
        &mut io,
        nsegs,
        batch_segments(header.segment_size),
        &read,
        &work,
        &write,
        &|n| progress((n * seg).min(header.plaintext_len)),
    )?;
    let hasher = io.hasher.take();
    // Nothing may follow the declared length.
    let mut probe = [0u8; 1];
    if read_full(&mut reader, &mut probe).map_err(|e| Error::io(&path, e))? != 0 {
        return Err(Error::DigestMismatch {
            path,
            detail: format!("input is longer than {} bytes", header.plaintext_len),
        });
    }
    if let Some(h) = hasher {
        if h.finish().as_ref() != header.plaintext_sha256 {
            return Err(Error::DigestMismatch {
                path,
                detail: "sha-256 changed since the manifest was computed".into(),
            });
        }
    }
    writer.flush().map_err(|e| Error::io(&path, e))
}

/// Fresh random salt for a new sealed file.
pub fn random_salt() -> Result<[u8; 32]> {
    let mut s = [0u8; 32];
    aws_lc_rs::rand::fill(&mut s).map_err(|_| Error::Crypto("random generator failed".into()))?;
    Ok(s)
}

/// Read just the header of a sealed file (not authenticated: use [`SealedFile::open`]
/// before trusting it).
pub fn read_header<R: Read>(mut r: R, path: &str) -> Result<(Header, Vec<u8>, [u8; TAG_LEN])> {
    let mut start = [0u8; 14];
    let got = read_full(&mut r, &mut start).map_err(|e| Error::io(path, e))?;
    let start = start.get(..got).unwrap_or_default();
    if got < 8 || start.get(..8) != Some(MAGIC.as_slice()) {
        return Err(Error::NotSealed {
            path: path.to_owned(),
        });
    }
    if got < 14 {
        return Err(Error::MalformedHeader {
            path: path.to_owned(),
            detail: "too short".into(),
        });
    }
    let version = u16::from_be_bytes([
        start.get(8).copied().unwrap_or(0),
        start.get(9).copied().unwrap_or(0),
    ]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            version,
        });
    }
    let mut hl = [0u8; 4];
    hl.copy_from_slice(start.get(10..14).unwrap_or(&[0; 4]));
    let header_len = u32::from_be_bytes(hl) as usize;
    if !(FIXED_LEN + TAG_LEN..=MAX_HEADER).contains(&header_len) {
        return Err(Error::MalformedHeader {
            path: path.to_owned(),
            detail: format!(
                "header length {header_len} outside {}..={MAX_HEADER}",
                FIXED_LEN + TAG_LEN
            ),
        });
    }
    let mut full = vec![0u8; header_len];
    full.get_mut(..14)
        .unwrap_or_default()
        .copy_from_slice(start);
    let rest = full.get_mut(14..).unwrap_or_default();
    let want = rest.len();
    if read_full(&mut r, rest).map_err(|e| Error::io(path, e))? != want {
        return Err(Error::Length {
            path: path.to_owned(),
            expected: header_len as u64,
            actual: got as u64,
            what: "truncated inside the header",
        });
    }
    let tag_at = header_len - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(full.get(tag_at..).unwrap_or(&[0; TAG_LEN]));
    full.truncate(tag_at);
    let header = Header::decode_body(&full, path)?;
    Ok((header, full, tag))
}

/// An opened, authenticated sealed file: read any range, or unseal it all.
#[derive(Debug)]
pub struct SealedFile<F> {
    file: F,
    path: String,
    header: Header,
    header_len: u64,
    keys: FileKeysBox,
}

/// Keeps key material out of `Debug` output.
struct FileKeysBox(FileKeys);
impl std::fmt::Debug for FileKeysBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileKeys(..)")
    }
}

impl<F: Read + Seek> SealedFile<F> {
    /// Open `file` (named `path` in errors): parse and bound-check the header, check it
    /// is bound to `expect`, check the file length, derive the file key from `data_key`
    /// and authenticate the header.
    pub fn open(mut file: F, path: &str, expect: &Binding, data_key: &DataKey) -> Result<Self> {
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, e))?;
        let (header, body, tag) = read_header(&mut file, path)?;
        let header_len = (body.len() + TAG_LEN) as u64;
        let keys = derive(data_key, &header.salt, &body)?;
        let want = header_tag(&keys, &body)?;
        if !constant_time_eq(&want, &tag) {
            return Err(Error::HeaderTampered {
                path: path.to_owned(),
            });
        }
        for (field, e, f) in [
            ("model name", &expect.name, &header.name),
            ("version", &expect.version, &header.version),
            ("file path", &expect.path, &header.path),
        ] {
            if e != f {
                return Err(Error::WrongBinding {
                    path: path.to_owned(),
                    field,
                    expected: e.clone(),
                    found: f.clone(),
                });
            }
        }
        if expect.manifest_digest != header.manifest_digest {
            return Err(Error::WrongBinding {
                path: path.to_owned(),
                field: "manifest digest",
                expected: hex::encode(expect.manifest_digest),
                found: hex::encode(header.manifest_digest),
            });
        }
        let expected = header_len
            .checked_add(header.plaintext_len)
            .and_then(|v| v.checked_add(header.segments().checked_mul(TAG_LEN as u64)?))
            .ok_or_else(|| Error::MalformedHeader {
                path: path.to_owned(),
                detail: "length overflows".into(),
            })?;
        let actual = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(path, e))?;
        if actual != expected {
            return Err(Error::Length {
                path: path.to_owned(),
                expected,
                actual,
                what: if actual < expected {
                    "truncated"
                } else {
                    "trailing data"
                },
            });
        }
        Ok(SealedFile {
            file,
            path: path.to_owned(),
            header,
            header_len,
            keys: FileKeysBox(keys),
        })
    }

    /// The authenticated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn seg_offset(&self, i: u64) -> u64 {
        self.header_len + i * (u64::from(self.header.segment_size) + TAG_LEN as u64)
    }

    fn open_segment(&self, i: u64, buf: &mut Vec<u8>) -> Result<()> {
        open_seg(&self.keys.0, self.header.segments(), &self.path, i, buf)
    }

    fn read_segment_ct(&mut self, i: u64, buf: &mut Vec<u8>) -> Result<()> {
        let len = self.header.segment_plain_len(i) + TAG_LEN;
        buf.resize(len, 0);
        let off = self.seg_offset(i);
        self.file
            .seek(SeekFrom::Start(off))
            .map_err(|e| Error::io(&self.path, e))?;
        let got = read_full(&mut self.file, buf).map_err(|e| Error::io(&self.path, e))?;
        if got != len {
            return Err(Error::SegmentTampered {
                path: self.path.clone(),
                index: i,
            });
        }
        Ok(())
    }

    /// Decrypt `len` bytes starting at plaintext `offset`, touching only the segments
    /// that hold them.
    pub fn read_range(&mut self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let size = self.header.plaintext_len;
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= size)
            .ok_or_else(|| Error::Range {
                path: self.path.clone(),
                offset,
                len,
                size,
            })?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        if len == 0 {
            return Ok(out);
        }
        let seg = u64::from(self.header.segment_size);
        let mut buf = Vec::new();
        for i in offset / seg..=(end - 1) / seg {
            self.read_segment_ct(i, &mut buf)?;
            self.open_segment(i, &mut buf)?;
            let s0 = i * seg;
            let from = usize::try_from(offset.max(s0) - s0).unwrap_or(0);
            let to = usize::try_from(end.min(s0 + buf.len() as u64) - s0).unwrap_or(0);
            out.extend_from_slice(buf.get(from..to).unwrap_or_default());
        }
        Ok(out)
    }

    /// Decrypt the whole file into `writer`, in parallel batches with bounded memory.
    /// Nothing unauthenticated is written: each batch is verified before it is written.
    pub fn unseal_to<W: Write>(&mut self, mut writer: W, progress: &dyn Fn(u64)) -> Result<()> {
        let nsegs = self.header.segments();
        let seg = u64::from(self.header.segment_size);
        self.file
            .seek(SeekFrom::Start(self.header_len))
            .map_err(|e| Error::io(&self.path, e))?;
        let (keys, path, header) = (&self.keys.0, self.path.as_str(), &self.header);
        let mut io = (&mut self.file, &mut writer);
        let read = |io: &mut (&mut F, &mut W), i: u64, buf: &mut Vec<u8>| -> Result<()> {
            let len = header.segment_plain_len(i) + TAG_LEN;
            buf.resize(len, 0);
            let got = read_full(&mut io.0, buf).map_err(|e| Error::io(path, e))?;
            if got != len {
                return Err(Error::SegmentTampered {
                    path: path.to_owned(),
                    index: i,
                });
            }
            Ok(())
        };
        let work = |i: u64, buf: &mut Vec<u8>| open_seg(keys, nsegs, path, i, buf);
        let write = |io: &mut (&mut F, &mut W), buf: &[u8]| -> Result<()> {
            io.1.write_all(buf).map_err(|e| Error::io(path, e))
        };
        pipeline(
            &mut io,
            nsegs,
            batch_segments(header.segment_size),
            &read,
            &work,
            &write,
            &|n| progress((n * seg).min(header.plaintext_len)),
        )?;
        writer.flush().map_err(|e| Error::io(&self.path, e))
    }
}

fn open_seg(keys: &FileKeys, nsegs: u64, path: &str, i: u64, buf: &mut Vec<u8>) -> Result<()> {
    let nonce = seg_nonce(keys, i, i + 1 == nsegs)?;
    let plain = keys
        .key
        .open_in_place(nonce, Aad::from(&keys.header_hash), buf)
        .map_err(|_| Error::SegmentTampered {
            path: path.to_owned(),
            index: i,
        })?
        .len();
    buf.truncate(plain);
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
