//! File-system events for the integrity monitor (inotify on Linux, through `notify`).
//!
//! [`Watch`] watches every active deployment directory (recursively), the directory
//! that holds each one (so a deployment renamed away or deleted is seen), and the
//! directory of the configuration file (editors replace files by renaming). Events that
//! only read (open, read, close without writing, which the monitor's own hashing
//! causes) are ignored; anything that creates, writes, closes after writing, changes
//! attributes, renames or deletes under a deployment, or touches the configuration file,
//! wakes the monitor. A lost event queue (overflow) or a watcher error also wakes it:
//! the monitor then re-hashes everything, so events only ever make it faster, never
//! less thorough. The interval re-hash stays as the backstop.

use crate::error::{Error, Result};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Why [`Watch::wait`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Something relevant changed (the paths named by the events; empty when the
    /// watcher lost events or failed and everything must be checked).
    Changed(Vec<PathBuf>),
    /// The interval passed without a relevant event.
    Interval,
}

/// Watches deployments and the configuration file.
#[derive(Debug)]
pub struct Watch {
    watcher: RecommendedWatcher,
    rx: Receiver<notify::Result<notify::Event>>,
    /// Armed watches: (path, recursive) → identity of the directory watched. inotify
    /// watches an inode, so a directory replaced under the same path (a restore renames
    /// a fresh copy into place) must be watched again.
    armed: BTreeMap<(PathBuf, bool), Option<(u64, u64)>>,
    dirs: Vec<PathBuf>,
    config: Option<PathBuf>,
}

/// (device, inode) of a directory, to notice it was replaced under the same path.
fn identity(p: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = p;
        None
    }
}

fn werr(what: &Path, e: &notify::Error) -> Error {
    Error::io(
        what.display(),
        std::io::Error::other(format!("cannot watch: {}", e.to_string().to_lowercase())),
    )
}

impl Watch {
    /// A watcher with nothing armed yet.
    pub fn new() -> Result<Self> {
        let (tx, rx) = channel();
        let watcher = notify::recommended_watcher(move |ev| {
            let _ = tx.send(ev);
        })
        .map_err(|e| werr(Path::new("file-system events"), &e))?;
        Ok(Watch {
            watcher,
            rx,
            armed: BTreeMap::new(),
            dirs: Vec::new(),
            config: None,
        })
    }

    /// Watch exactly these deployment directories and this configuration file (the
    /// previous set is replaced). Directories that do not exist are watched through
    /// their parent only; the monitor reports them missing.
    pub fn arm(&mut self, dirs: &[PathBuf], config: Option<&Path>) -> Result<()> {
        let mut want: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
        for d in dirs {
            if d.is_dir() {
                want.insert((d.clone(), true));
            }
            if let Some(p) = d.parent().filter(|p| p.is_dir()) {
                want.insert((p.to_path_buf(), false));
            }
        }
        if let Some(p) = config.and_then(Path::parent).filter(|p| p.is_dir()) {
            want.insert((p.to_path_buf(), false));
        }
        let stale: Vec<(PathBuf, bool)> = self
            .armed
            .iter()
            .filter(|(k, id)| !want.contains(*k) || identity(&k.0) != **id)
            .map(|(k, _)| k.clone())
            .collect();
        for (p, r) in stale {
            // The directory may be gone already (then the kernel dropped the watch).
            let _ = self.watcher.unwatch(&p);
            self.armed.remove(&(p.clone(), r));
            // The same path in the other mode shared that watch: arm it again too.
            self.armed.remove(&(p, !r));
        }
        for (p, r) in &want {
            if self.armed.contains_key(&(p.clone(), *r)) {
                continue;
            }
            let mode = if *r {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            match self.watcher.watch(p, mode) {
                Ok(()) => {
                    self.armed.insert((p.clone(), *r), identity(p));
                }
                // Vanished between the check and the watch: the monitor reports it.
                Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => {}
                Err(e) => return Err(werr(p, &e)),
            }
        }
        self.dirs = dirs.to_vec();
        self.config = config.map(Path::to_path_buf);
        Ok(())
    }

    fn relevant(&self, ev: &notify::Event) -> bool {
        if ev.need_rescan() {
            return true;
        }
        if let EventKind::Access(a) = ev.kind {
            if !matches!(a, AccessKind::Close(AccessMode::Write)) {
                return false;
            }
        }
        ev.paths.iter().any(|p| {
            self.config.as_deref() == Some(p.as_path())
                || self.dirs.iter().any(|d| p.starts_with(d))
        })
    }

    /// Wait up to `timeout` for a relevant event; after the first one, keep collecting
    /// for `settle` so a burst of writes is checked once, after it ends.
    pub fn wait(&self, timeout: Duration, settle: Duration) -> Wake {
        let deadline = Instant::now() + timeout;
        let mut paths = Vec::new();
        let mut everything = false;
        let mut take = |ev: notify::Result<notify::Event>, paths: &mut Vec<PathBuf>| match ev {
            Ok(ev) if self.relevant(&ev) => {
                if ev.need_rescan() {
                    everything = true;
                }
                paths.extend(ev.paths);
                true
            }
            Ok(_) => false,
            Err(_) => {
                everything = true;
                true
            }
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) => {
                    if take(ev, &mut paths) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Wake::Interval,
                // The watcher is gone: fall back to the interval.
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    return Wake::Interval;
                }
            }
        }
        let until = Instant::now() + settle;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) => {
                    take(ev, &mut paths);
                }
                Err(_) => break,
            }
        }
        if everything {
            paths.clear();
        }
        paths.sort();
        paths.dedup();
        Wake::Changed(paths)
    }
}
