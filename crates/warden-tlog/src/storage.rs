//! Where the log's objects live: the [`Storage`] seam and the POSIX directory default.
//!
//! Object names are the C2SP `tlog-tiles` paths relative to the log root (`checkpoint`,
//! `tile/0/x001/234`, `tile/entries/000.p/17`). The log writes every tile and bundle of
//! a batch with [`Storage::write_durable`], and only then publishes the checkpoint with
//! [`Storage::publish_checkpoint`]; a storage must make both durable before returning.
//! A PostgreSQL sequencer or an S3 bucket with Object Lock can implement the same trait.

use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Name of the checkpoint object.
pub const CHECKPOINT: &str = "checkpoint";

/// Storage of log objects.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Read an object; `Ok(None)` when it does not exist.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Write objects, each replaced atomically, all durable when this returns.
    fn write_durable(&self, objects: &[(String, Vec<u8>)]) -> Result<()>;
    /// Atomically and durably replace the checkpoint: the publication point.
    fn publish_checkpoint(&self, data: &[u8]) -> Result<()>;
    /// Remove an object, or a directory-like prefix and everything below it, if present.
    fn remove(&self, name: &str) -> Result<()>;
    /// Names directly below a directory-like prefix (empty when absent).
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Become the only writer of this log (held until the storage is dropped).
    fn lock_writer(&self) -> Result<()>;
    /// A human-readable location for messages.
    fn location(&self) -> String;
}

/// The embedded default: a directory in the `tlog-tiles` layout, servable as-is by any
/// static file server. Writes go to `.tmp/`, are `fdatasync`ed, renamed into place,
/// and every touched directory is `fsync`ed before returning.
#[derive(Debug)]
pub struct PosixStorage {
    root: PathBuf,
    counter: AtomicU64,
    lock: Mutex<Option<fs::File>>,
}

const TMP: &str = ".tmp";

impl PosixStorage {
    /// Use `root` (created by the first write if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PosixStorage {
            root: root.into(),
            counter: AtomicU64::new(0),
            lock: Mutex::new(None),
        }
    }

    /// The log directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty()
            || name.starts_with('/')
            || name
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::malformed(name, "invalid object name"));
        }
        Ok(self.root.join(name))
    }

    fn disp(&self, p: &Path) -> String {
        p.display().to_string()
    }

    /// Create `dir` and its missing parents, recording every directory whose entries
    /// changed (the parents of created directories) so they can be fsynced.
    fn mkdirs(&self, dir: &Path, touched: &mut BTreeSet<PathBuf>) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.mkdirs(parent, touched)?;
            match fs::create_dir(dir) {
                Ok(()) => {
                    touched.insert(parent.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(self.disp(dir), e)),
            }
        }
        Ok(())
    }

    fn tmp_file(&self, data: &[u8], touched: &mut BTreeSet<PathBuf>) -> Result<PathBuf> {
        let dir = self.root.join(TMP);
        self.mkdirs(&dir, touched)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!("{}-{n}", std::process::id()));
        let mut f = fs::File::create(&p).map_err(|e| Error::io(self.disp(&p), e))?;
        f.write_all(data).map_err(|e| Error::io(self.disp(&p), e))?;
        f.sync_data().map_err(|e| Error::io(self.disp(&p), e))?;
        Ok(p)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let f = fs::File::open(dir).map_err(|e| Error::io(self.disp(dir), e))?;
        f.sync_all().map_err(|e| Error::io(self.disp(dir), e))
    }

    /// Remove leftovers of interrupted writes (called by the writer on open).
    pub fn clean_tmp(&self) -> Result<()> {
        let dir = self.root.join(TMP);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(self.disp(&dir), e)),
        }
    }
}

impl Storage for PosixStorage {
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let p = self.path(name)?;
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(self.disp(&p), e)),
        }
    }

    fn write_durable(&self, objects: &[(String, Vec<u8>)]) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        let mut touched = BTreeSet::new();
        let mut dests = Vec::with_capacity(objects.len());
        for (name, _) in objects {
            let dest = self.path(name)?;
            if let Some(parent) = dest.parent() {
                self.mkdirs(parent, &mut touched)?;
                touched.insert(parent.to_path_buf());
            }
            dests.push(dest);
        }
        // Write and fdatasync the temporary files in parallel: one slow fsync does not
        // serialise the others, and the file system can merge journal commits.
        let tmps: Vec<Result<PathBuf>> = std::thread::scope(|s| {
            let handles: Vec<_> = objects
                .iter()
                .map(|(_, data)| {
                    s.spawn(|| {
                        let mut t = BTreeSet::new();
                        self.tmp_file(data, &mut t).map(|p| (p, t))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(Ok((p, t))) => {
                        touched.extend(t);
                        Ok(p)
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Commit("a write thread panicked".into())),
                })
                .collect()
        });
        let mut ok = Vec::with_capacity(tmps.len());
        for t in tmps {
            ok.push(t?);
        }
        for (tmp, dest) in ok.iter().zip(&dests) {
            fs::rename(tmp, dest).map_err(|e| Error::io(self.disp(dest), e))?;
        }
        let dirs: Vec<PathBuf> = touched.into_iter().collect();
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = dirs.iter().map(|d| s.spawn(|| self.sync_dir(d))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Commit("a sync thread panicked".into())))
                })
                .collect()
        });
        results.into_iter().collect()
    }

    fn publish_checkpoint(&self, data: &[u8]) -> Result<()> {
        let mut touched = BTreeSet::new();
        self.mkdirs(&self.root, &mut touched)?;
        let tmp = self.tmp_file(data, &mut touched)?;
        let dest = self.root.join(CHECKPOINT);
        fs::rename(&tmp, &dest).map_err(|e| Error::io(self.disp(&dest), e))?;
        touched.insert(self.root.clone());
        for d in &touched {
            self.sync_dir(d)?;
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<()> {
        let p = self.path(name)?;
        let r = if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(self.disp(&p), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let p = self.path(prefix)?;
        let rd = match fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(self.disp(&p), e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(self.disp(&p), e))?;
            if let Some(n) = ent.file_name().to_str() {
                out.push(n.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn lock_writer(&self) -> Result<()> {
        let mut guard = self
            .lock
            .lock()
            .map_err(|_| Error::Commit("lock state poisoned".into()))?;
        if guard.is_some() {
            return Ok(());
        }
        let mut touched = BTreeSet::new();
        self.mkdirs(&self.root, &mut touched)?;
        let p = self.root.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io(self.disp(&p), e))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| Error::Locked(self.disp(&self.root)))?;
        *guard = Some(f);
        self.clean_tmp()
    }

    fn location(&self) -> String {
        self.disp(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_lists_removes() {
        let d = tempfile::tempdir().unwrap();
        let s = PosixStorage::new(d.path().join("log"));
        assert_eq!(s.read("tile/0/000").unwrap(), None);
        s.write_durable(&[
            ("tile/0/000".into(), vec![1; 32]),
            ("tile/entries/000.p/1".into(), vec![0, 1, 9]),
        ])
        .unwrap();
        s.publish_checkpoint(b"cp\n").unwrap();
        assert_eq!(s.read("tile/0/000").unwrap(), Some(vec![1; 32]));
        assert_eq!(s.read("checkpoint").unwrap(), Some(b"cp\n".to_vec()));
        assert_eq!(s.list("tile/entries/000.p").unwrap(), vec!["1".to_string()]);
        s.remove("tile/entries/000.p").unwrap();
        assert!(s.list("tile/entries/000.p").unwrap().is_empty());
        assert!(s.read("../x").is_err());
    }

    #[test]
    fn second_writer_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = PosixStorage::new(d.path());
        let b = PosixStorage::new(d.path());
        a.lock_writer().unwrap();
        assert!(matches!(b.lock_writer(), Err(Error::Locked(_))));
        drop(a);
        b.lock_writer().unwrap();
    }
}
