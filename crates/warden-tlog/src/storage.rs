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
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// Make `objects` durable, then publish `checkpoint`: the checkpoint must never be
    /// visible (after a crash either) without every object. The default does the two
    /// steps in turn; a storage may overlap work that does not break that order.
    fn commit(&self, objects: &[(String, Vec<u8>)], checkpoint: &[u8]) -> Result<()> {
        self.write_durable(objects)?;
        self.publish_checkpoint(checkpoint)
    }
    /// Remove an object, or a directory-like prefix and everything below it, if present.
    fn remove(&self, name: &str) -> Result<()>;
    /// Names directly below a directory-like prefix (empty when absent).
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Become the only writer of this log until the returned lock is released or
    /// dropped, waiting up to `wait` for another writer (in this process or another) to
    /// let go; [`Error::Locked`] after that. Writers take it for each commit, so several
    /// processes can append to one log in turn.
    fn lock_writer(&self, wait: Duration) -> Result<Box<dyn WriterLock>>;
    /// A human-readable location for messages.
    fn location(&self) -> String;
    /// The log's journal, where a writer makes entries durable between publications
    /// (see [`crate::journal`]); `None` when this storage keeps none, and then every
    /// batch is published as it is committed. Only the writer lock's holder uses it.
    fn journal(&self) -> Option<&dyn Journal> {
        None
    }
}

/// An append-only file beside the log (see [`Storage::journal`]).
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Append a frame; it is durable when this returns. On error the journal is left
    /// as it was before the call (or the frame is at most a torn tail).
    fn append(&self, frame: &[u8]) -> Result<()>;
    /// The whole journal (empty when there is none).
    fn read(&self) -> Result<Vec<u8>>;
    /// Empty the journal. Need not be durable: a journal that extends an older
    /// checkpoint than the published one is known to be published and is ignored.
    fn clear(&self) -> Result<()>;
}

/// A held writer lock (see [`Storage::lock_writer`]).
pub trait WriterLock: Send + std::fmt::Debug {
    /// True when the previous holder lost the lock without releasing it (its process
    /// died, or its commit failed and it could not clean up): objects beyond the
    /// published checkpoint may be left, and the new holder must remove them before
    /// writing.
    fn interrupted(&self) -> bool;
    /// Release the lock after a commit that left nothing beyond the published
    /// checkpoint. Dropping the lock without this also releases it, but marks it
    /// [`interrupted`](WriterLock::interrupted) for the next holder.
    fn release(self: Box<Self>) -> Result<()>;
}

/// The embedded default: a directory in the `tlog-tiles` layout, servable as-is by any
/// static file server. Writes go to `.tmp/`, are `fdatasync`ed, renamed into place,
/// and every touched directory is `fsync`ed before returning.
#[derive(Debug)]
pub struct PosixStorage {
    root: PathBuf,
    counter: AtomicU64,
    /// Whether this handle has cleaned `.tmp/` since it was created (done under the
    /// writer lock the first time it is taken).
    tmp_cleaned: AtomicBool,
    /// Helper threads that wait on the disk for a commit's files in parallel.
    syncer: Syncer,
    /// The journal file `.journal` (see [`Storage::journal`]).
    journal: PosixJournal,
}

/// The journal of a [`PosixStorage`]: one file, appended and `fdatasync`ed per
/// frame, truncated after each publication.
#[derive(Debug)]
pub struct PosixJournal {
    path: PathBuf,
    /// The open file and its length (what was appended successfully).
    file: std::sync::Mutex<Option<(fs::File, u64)>>,
}

impl PosixJournal {
    fn disp(&self) -> String {
        self.path.display().to_string()
    }

    /// Open (creating it durably if missing) the journal file.
    fn open(&self) -> Result<(fs::File, u64)> {
        let existed = self.path.exists();
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| Error::io(self.disp(), e))?;
        let len = f.metadata().map_err(|e| Error::io(self.disp(), e))?.len();
        if !existed && let Some(dir) = self.path.parent() {
            // The file's name must survive a crash before any frame is acknowledged.
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir.display().to_string(), e))?;
        }
        Ok((f, len))
    }
}

impl Journal for PosixJournal {
    fn append(&self, frame: &[u8]) -> Result<()> {
        let mut g = self
            .file
            .lock()
            .map_err(|_| Error::Commit("journal state poisoned".into()))?;
        let (f, _) = match g.take() {
            Some(open) => open,
            None => self.open()?,
        };
        // Another handle (another Log, another process) may have emptied the file since
        // this one last appended: append at its real end, never behind a hole.
        let len = f.metadata().map_err(|e| Error::io(self.disp(), e))?.len();
        let written = f
            .write_all_at(frame, len)
            .and_then(|()| f.sync_data())
            .map_err(|e| Error::io(self.disp(), e));
        match written {
            Ok(()) => {
                *g = Some((f, len + frame.len() as u64));
                Ok(())
            }
            Err(e) => {
                // Cut the failed frame off so that later frames do not follow garbage;
                // the file is reopened by the next append.
                let _ = f.set_len(len);
                Err(e)
            }
        }
    }

    fn read(&self) -> Result<Vec<u8>> {
        if let Ok(m) = fs::metadata(&self.path)
            && m.len() > MAX_JOURNAL_BYTES
        {
            return Err(Error::tampered(
                self.disp(),
                format!(
                    "{} bytes: larger than any writer makes ({MAX_JOURNAL_BYTES} at most)",
                    m.len()
                ),
            ));
        }
        match fs::read(&self.path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(self.disp(), e)),
        }
    }

    fn clear(&self) -> Result<()> {
        let mut g = self
            .file
            .lock()
            .map_err(|_| Error::Commit("journal state poisoned".into()))?;
        if let Some((f, len)) = g.as_mut() {
            f.set_len(0).map_err(|e| Error::io(self.disp(), e))?;
            *len = 0;
            return Ok(());
        }
        match fs::OpenOptions::new().write(true).open(&self.path) {
            Ok(f) => f.set_len(0).map_err(|e| Error::io(self.disp(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(self.disp(), e)),
        }
    }
}

/// Long-lived helper threads that `fdatasync`/`fsync` files handed to them, so the
/// waits of one commit overlap without spawning threads per commit (a scoped thread
/// per file and per directory cost a `clone3`, a stack `mmap` and its `munmap` each).
/// Started on first use, at most [`Syncer::MAX`]; more files than helpers queue.
#[derive(Debug)]
struct Syncer {
    jobs: std::sync::mpsc::Sender<SyncJob>,
    queue: std::sync::Arc<std::sync::Mutex<std::sync::mpsc::Receiver<SyncJob>>>,
    threads: std::sync::atomic::AtomicUsize,
}

/// One file to make durable, and where to send the outcome (with the job's position).
struct SyncJob {
    file: fs::File,
    data_only: bool,
    at: usize,
    done: std::sync::mpsc::Sender<(usize, std::io::Result<()>)>,
}

impl Syncer {
    const MAX: usize = 8;

    fn new() -> Self {
        let (jobs, rx) = std::sync::mpsc::channel();
        Syncer {
            jobs,
            queue: std::sync::Arc::new(std::sync::Mutex::new(rx)),
            threads: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn sync(file: &fs::File, data_only: bool) -> std::io::Result<()> {
        if data_only {
            file.sync_data()
        } else {
            file.sync_all()
        }
    }

    /// Make every file durable (`fdatasync` if `data_only`, else `fsync`), the first on
    /// this thread and the rest on the helpers; returns each file's outcome in order.
    fn sync_each(&self, files: Vec<fs::File>, data_only: bool) -> Vec<std::io::Result<()>> {
        let mut files = files.into_iter();
        let Some(first) = files.next() else {
            return Vec::new();
        };
        let rest: Vec<fs::File> = files.collect();
        let helpers = self.ensure_threads(rest.len());
        let mut out: Vec<std::io::Result<()>> = Vec::with_capacity(rest.len() + 1);
        let (done, results) = std::sync::mpsc::channel();
        let pending = rest.len();
        for (i, file) in rest.into_iter().enumerate() {
            let job = SyncJob {
                file,
                data_only,
                at: i + 1,
                done: done.clone(),
            };
            // A job the helpers cannot take (none could be started) is done here.
            let unsent = if helpers {
                self.jobs.send(job).err().map(|e| e.0)
            } else {
                Some(job)
            };
            if let Some(job) = unsent {
                let _ = done.send((job.at, Self::sync(&job.file, data_only)));
            }
        }
        drop(done);
        out.push(Self::sync(&first, data_only));
        // Whatever is still queued (no helper was free or alive to take it) is done
        // here, so a commit never waits on a job that nobody will run.
        self.drain_queue();
        let mut rest_out: Vec<Option<std::io::Result<()>>> = (0..pending).map(|_| None).collect();
        for _ in 0..pending {
            // A helper that died without answering drops its sender: reported as an
            // error for every file still missing below.
            let Ok((at, r)) = results.recv() else { break };
            if let Some(slot) = rest_out.get_mut(at - 1) {
                *slot = Some(r);
            }
        }
        out.extend(rest_out.into_iter().map(|r| {
            r.unwrap_or_else(|| Err(std::io::Error::other("a sync helper thread stopped")))
        }));
        out
    }

    /// Runs the queued jobs on this thread, unless an idle helper is waiting on the
    /// queue (it holds the queue's lock and takes each job as it comes).
    fn drain_queue(&self) {
        let rx = match self.queue.try_lock() {
            Ok(rx) => rx,
            // A helper panicked holding the lock: the receiver itself is intact.
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        while let Ok(job) = rx.try_recv() {
            let r = Self::sync(&job.file, job.data_only);
            let _ = job.done.send((job.at, r));
        }
    }

    /// Start helpers until `want` run (at most [`Syncer::MAX`]); false if none runs.
    fn ensure_threads(&self, want: usize) -> bool {
        let want = want.min(Self::MAX);
        while self.threads.load(Ordering::Acquire) < want {
            let queue = std::sync::Arc::clone(&self.queue);
            let started = std::thread::Builder::new()
                .name("warden-tlog-sync".into())
                .spawn(move || {
                    loop {
                        // One idle helper at a time waits on the queue; it lets go of
                        // the lock as soon as it has a job.
                        let job = match queue.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let r = Self::sync(&job.file, job.data_only);
                        let _ = job.done.send((job.at, r));
                    }
                });
            if started.is_err() {
                break;
            }
            self.threads.fetch_add(1, Ordering::AcqRel);
        }
        self.threads.load(Ordering::Acquire) > 0
    }
}

const TMP: &str = ".tmp";
/// The writer lock file (an exclusive `flock` on it is the lock).
const LOCK: &str = ".lock";
/// Name of the journal file in the log directory.
pub const JOURNAL: &str = ".journal";
/// Largest journal read back: a writer publishes before its unpublished entries pass
/// [`crate::log::MAX_PENDING_BYTES`], plus one batch of at most
/// [`crate::log::MAX_BATCH`] entries of at most 64 KiB (and framing).
pub const MAX_JOURNAL_BYTES: u64 =
    crate::log::MAX_PENDING_BYTES as u64 + crate::log::MAX_BATCH as u64 * 65_600;
/// First byte of the lock file while a holder is inside a commit.
const DIRTY: u8 = b'1';
/// First byte of the lock file after a holder released the lock cleanly.
const CLEAN: u8 = b'0';

use rustix::fs::FlockOperation;

/// Wait up to `wait` for an exclusive `flock` on `file`. The blocking call runs on a
/// helper thread so the wait is bounded; the kernel wakes it when the holder unlocks
/// (no polling, so a writer that commits back to back cannot starve it). If the wait
/// times out the helper still owns the file: when its `flock` returns, nobody takes the
/// file and dropping it releases the lock at once.
fn wait_for_lock(file: fs::File, wait: Duration) -> Option<fs::File> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("warden-tlog-lock".into())
        .spawn(move || {
            if rustix::fs::flock(&file, FlockOperation::LockExclusive).is_ok() {
                let _ = tx.send(file);
            }
        });
    if spawned.is_err() {
        return None;
    }
    let deadline = Instant::now() + wait;
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// The lock of a [`PosixStorage`]: an exclusive `flock` on `<root>/.lock`.
#[derive(Debug)]
struct PosixLock {
    file: fs::File,
    path: String,
    interrupted: bool,
}

impl WriterLock for PosixLock {
    fn interrupted(&self) -> bool {
        self.interrupted
    }

    fn release(self: Box<Self>) -> Result<()> {
        // Closing the file (on drop) releases the `flock`.
        self.file
            .write_at(&[CLEAN], 0)
            .map(|_| ())
            .map_err(|e| Error::io(&self.path, e))
    }
}

impl PosixStorage {
    /// Use `root` (created by the first write if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root: PathBuf = root.into();
        PosixStorage {
            journal: PosixJournal {
                path: root.join(JOURNAL),
                file: std::sync::Mutex::new(None),
            },
            root,
            counter: AtomicU64::new(0),
            tmp_cleaned: AtomicBool::new(false),
            syncer: Syncer::new(),
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

    /// Create a temporary file holding `data`, not yet durable.
    fn tmp_write(
        &self,
        data: &[u8],
        touched: &mut BTreeSet<PathBuf>,
    ) -> Result<(PathBuf, fs::File)> {
        let dir = self.root.join(TMP);
        self.mkdirs(&dir, touched)?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!("{}-{n}", std::process::id()));
        let mut f = fs::File::create(&p).map_err(|e| Error::io(self.disp(&p), e))?;
        f.write_all(data).map_err(|e| Error::io(self.disp(&p), e))?;
        Ok((p, f))
    }

    fn tmp_file(&self, data: &[u8], touched: &mut BTreeSet<PathBuf>) -> Result<PathBuf> {
        let (p, f) = self.tmp_write(data, touched)?;
        f.sync_data().map_err(|e| Error::io(self.disp(&p), e))?;
        Ok(p)
    }

    /// The first failure of `results` (one per path, in order) as this path's error.
    fn check_synced(&self, paths: &[PathBuf], results: Vec<std::io::Result<()>>) -> Result<()> {
        for (p, r) in paths.iter().zip(results) {
            r.map_err(|e| Error::io(self.disp(p), e))?;
        }
        Ok(())
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

impl PosixStorage {
    /// Three rounds of waiting on the disk instead of four: (1) every temporary file,
    /// the checkpoint's included, is written, then all are `fdatasync`ed in parallel; (2) objects
    /// are renamed into place and their directories `fsync`ed in parallel; (3) the
    /// checkpoint is renamed and the log directory `fsync`ed. The checkpoint's name
    /// only changes after everything it commits to is durable.
    fn commit_inner(&self, objects: &[(String, Vec<u8>)], checkpoint: Option<&[u8]>) -> Result<()> {
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
        self.mkdirs(&self.root.join(TMP), &mut touched)?;
        let mut payloads: Vec<&[u8]> = objects.iter().map(|(_, d)| d.as_slice()).collect();
        if let Some(c) = checkpoint {
            payloads.push(c);
        }
        // The writes only fill the page cache; the waits on the disk overlap.
        let mut tmps = Vec::with_capacity(payloads.len());
        let mut files = Vec::with_capacity(payloads.len());
        for d in &payloads {
            let (p, f) = self.tmp_write(d, &mut BTreeSet::new())?;
            tmps.push(p);
            files.push(f);
        }
        self.check_synced(&tmps, self.syncer.sync_each(files, true))?;
        for (tmp, dest) in tmps.iter().zip(&dests) {
            fs::rename(tmp, dest).map_err(|e| Error::io(self.disp(dest), e))?;
        }
        let dirs: Vec<PathBuf> = touched.into_iter().collect();
        let mut files = Vec::with_capacity(dirs.len());
        for d in &dirs {
            files.push(fs::File::open(d).map_err(|e| Error::io(self.disp(d), e))?);
        }
        self.check_synced(&dirs, self.syncer.sync_each(files, false))?;
        if checkpoint.is_some()
            && let Some(tmp) = tmps.get(objects.len())
        {
            let dest = self.root.join(CHECKPOINT);
            fs::rename(tmp, &dest).map_err(|e| Error::io(self.disp(&dest), e))?;
        }
        self.sync_dir(&self.root)
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
        self.commit_inner(objects, None)
    }

    fn commit(&self, objects: &[(String, Vec<u8>)], checkpoint: &[u8]) -> Result<()> {
        self.commit_inner(objects, Some(checkpoint))
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

    fn lock_writer(&self, wait: Duration) -> Result<Box<dyn WriterLock>> {
        let mut touched = BTreeSet::new();
        self.mkdirs(&self.root, &mut touched)?;
        let p = self.root.join(LOCK);
        let open = || {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&p)
                .map_err(|e| Error::io(self.disp(&p), e))
        };
        let file = open()?;
        let file = match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => file,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                wait_for_lock(open()?, wait).ok_or_else(|| {
                    Error::Locked(format!(
                        "{}: no writer lock after waiting {} s",
                        self.disp(&self.root),
                        wait.as_secs_f64()
                    ))
                })?
            }
            Err(e) => return Err(Error::io(self.disp(&p), e.into())),
        };
        // The first byte says whether the last holder was inside a commit: set now,
        // cleared by `release`. Neither write needs to be durable: after a crash of the
        // machine every writer opens the log again, and opening always recovers.
        let mut state = [0u8; 1];
        let n = file
            .read_at(&mut state, 0)
            .map_err(|e| Error::io(self.disp(&p), e))?;
        let interrupted = n == 1 && state[0] == DIRTY;
        file.write_at(&[DIRTY], 0)
            .map_err(|e| Error::io(self.disp(&p), e))?;
        if interrupted || !self.tmp_cleaned.swap(true, Ordering::AcqRel) {
            // Temporary files are only written under the lock: any present now are
            // leftovers of an interrupted write.
            self.clean_tmp()?;
        }
        Ok(Box::new(PosixLock {
            file,
            path: self.disp(&p),
            interrupted,
        }))
    }

    fn journal(&self) -> Option<&dyn Journal> {
        Some(&self.journal)
    }

    fn location(&self) -> String {
        self.disp(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_helpers_report_each_file_in_order_and_are_reused() {
        let d = tempfile::tempdir().unwrap();
        let syncer = Syncer::new();
        // `fsync` on /dev/null fails (EINVAL): the failures must land on those files.
        let pattern = [
            true, false, true, true, false, false, true, true, true, false, true,
        ];
        for round in 0..3 {
            let files: Vec<fs::File> = pattern
                .iter()
                .enumerate()
                .map(|(i, &ok)| {
                    if ok {
                        fs::File::create(d.path().join(format!("{round}-{i}"))).unwrap()
                    } else {
                        fs::File::open("/dev/null").unwrap()
                    }
                })
                .collect();
            let got: Vec<bool> = syncer
                .sync_each(files, round % 2 == 0)
                .iter()
                .map(|r| r.is_ok())
                .collect();
            assert_eq!(got, pattern, "round {round}");
            assert_eq!(syncer.threads.load(Ordering::Acquire), Syncer::MAX);
        }
        assert!(syncer.sync_each(Vec::new(), true).is_empty());
    }

    /// Helpers counted but gone (here: never started) must not leave a commit waiting:
    /// the caller runs what they did not take.
    #[test]
    fn jobs_nobody_takes_are_run_by_the_caller() {
        let d = tempfile::tempdir().unwrap();
        let syncer = std::sync::Arc::new(Syncer::new());
        syncer.threads.store(Syncer::MAX, Ordering::Release);
        let files: Vec<fs::File> = (0..5)
            .map(|i| fs::File::create(d.path().join(i.to_string())).unwrap())
            .chain([fs::File::open("/dev/null").unwrap()])
            .collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = std::sync::Arc::clone(&syncer);
        std::thread::spawn(move || {
            let _ = tx.send(s.sync_each(files, true));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("sync_each waited for helpers that do not exist");
        let ok: Vec<bool> = got.iter().map(|r| r.is_ok()).collect();
        assert_eq!(ok, [true, true, true, true, true, false]);
    }

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
    fn a_second_writer_waits_for_the_first_then_times_out() {
        let d = tempfile::tempdir().unwrap();
        let a = PosixStorage::new(d.path());
        let b = PosixStorage::new(d.path());
        let held = a.lock_writer(Duration::ZERO).unwrap();
        assert!(!held.interrupted());
        let t0 = Instant::now();
        let e = b.lock_writer(Duration::from_millis(300)).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(matches!(e, Error::Locked(_)), "{e}");
        assert!(
            e.to_string().contains("no writer lock after waiting 0.3 s"),
            "{e}"
        );
        // The same handle excludes itself too (one lock per commit, not per handle).
        assert!(matches!(
            a.lock_writer(Duration::from_millis(50)),
            Err(Error::Locked(_))
        ));
        // A waiter gets the lock as soon as it is released.
        let waiter = std::thread::spawn(move || {
            let t0 = Instant::now();
            let l = b.lock_writer(Duration::from_secs(20)).unwrap();
            (t0.elapsed(), l.interrupted())
        });
        std::thread::sleep(Duration::from_millis(200));
        held.release().unwrap();
        let (waited, interrupted) = waiter.join().unwrap();
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert!(!interrupted);
    }

    #[test]
    fn a_lock_dropped_without_release_marks_the_next_holder_interrupted() {
        let d = tempfile::tempdir().unwrap();
        let s = PosixStorage::new(d.path());
        drop(s.lock_writer(Duration::ZERO).unwrap());
        let l = s.lock_writer(Duration::ZERO).unwrap();
        assert!(l.interrupted());
        l.release().unwrap();
        assert!(!s.lock_writer(Duration::ZERO).unwrap().interrupted());
    }
}
