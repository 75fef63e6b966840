//! Input plumbing for containers: a seekable window over part of another input (stored
//! archive members, tar members) and a spool that holds decompressed data in memory
//! when small and in an unlinked temporary file when large, so memory stays bounded.

use crate::Input;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes kept in memory before a spool moves to a temporary file.
pub const SPOOL_IN_MEMORY: u64 = 8 << 20;

/// A read-only, seekable view of `len` bytes of `inner` starting at `start`.
pub struct Window<'a> {
    inner: &'a mut dyn Input,
    start: u64,
    len: u64,
    pos: u64,
}

impl std::fmt::Debug for Window<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a> Window<'a> {
    /// A window over `inner[start..start + len]`.
    pub fn new(inner: &'a mut dyn Input, start: u64, len: u64) -> Self {
        Window {
            inner,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.read(buf.get_mut(..want).unwrap_or(&mut []))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the member",
            )),
        }
    }
}

/// A spooled input: in memory, or an unlinked temporary file.
#[derive(Debug)]
pub enum Spool {
    /// Small data.
    Memory(io::Cursor<Vec<u8>>),
    /// Large data, in a file already removed from the directory.
    File(std::fs::File),
}

impl Read for Spool {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Spool::Memory(c) => c.read(buf),
            Spool::File(f) => f.read(buf),
        }
    }
}

impl Seek for Spool {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            Spool::Memory(c) => c.seek(to),
            Spool::File(f) => f.seek(to),
        }
    }
}

/// What spooling produced.
#[derive(Debug)]
pub struct Spooled {
    /// The data, rewound.
    pub data: Spool,
    /// Bytes spooled (at most `limit`).
    pub len: u64,
    /// CRC-32 of the spooled bytes.
    pub crc: u32,
    /// True when the source had more than `limit` bytes (only `limit` were kept).
    pub overflow: bool,
}

fn temp_file() -> io::Result<std::fs::File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..16 {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("warden-scan-{}-{n}.spool", std::process::id()));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => {
                // Unlink at once: the file lives only as long as the handle.
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("could not create a temporary spool file"))
}

/// Copy up to `limit` bytes of `r` into a spool, computing the CRC-32 on the way.
pub fn spool(r: &mut dyn Read, limit: u64) -> io::Result<Spooled> {
    let mut mem: Vec<u8> = Vec::new();
    let mut file: Option<std::fs::File> = None;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut overflow = false;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = limit.saturating_sub(total);
        let take = (n as u64).min(room) as usize;
        let chunk = buf.get(..take).unwrap_or(&[]);
        crc.update(chunk);
        if let Some(f) = file.as_mut() {
            f.write_all(chunk)?;
        } else if (mem.len() + take) as u64 > SPOOL_IN_MEMORY {
            let mut f = temp_file()?;
            f.write_all(&mem)?;
            f.write_all(chunk)?;
            mem = Vec::new();
            file = Some(f);
        } else {
            mem.extend_from_slice(chunk);
        }
        total += take as u64;
        if take < n {
            overflow = true;
            break;
        }
    }
    let data = match file {
        Some(mut f) => {
            f.flush()?;
            f.seek(SeekFrom::Start(0))?;
            Spool::File(f)
        }
        None => Spool::Memory(io::Cursor::new(mem)),
    };
    Ok(Spooled {
        data,
        len: total,
        crc: crc.finalize(),
        overflow,
    })
}
