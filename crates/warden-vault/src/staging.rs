//! Staging directories that never outlive their operation.
//!
//! Evaluation, deploy and export unseal plaintext into a staging directory before it is
//! renamed into place (or, for an evaluation, deleted). Each staging directory is
//! registered in the staging registry (`<home>/staging/`) by a `<tag>.lock` file that
//! names it and that the owning process holds an exclusive `flock` on for the whole
//! operation. The lock goes away with the process however it ends (SIGKILL included), so
//! [`sweep`] — run whenever a vault is opened and on every monitor pass — can tell a
//! live operation from a dead one without trusting process ids, and deletes what dead
//! ones left behind. On every ordinary exit path (success, error, panic unwinding) the
//! [`Staging`] guard deletes its directory itself; on a fatal signal the CLI calls
//! [`abandon`], which kills this process's evaluation commands and deletes its staging
//! directories before it exits.

use crate::error::{Error, Result};
use crate::key::create_private_dir;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;

/// Marker every staging directory name contains; the sweep deletes nothing else.
const MARKER: &str = "warden-";

/// This process's live staging directories (directory, lock file), for [`abandon`].
static LIVE: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
/// Child processes (evaluation commands) running in a staging directory, for [`abandon`].
static CHILDREN: Mutex<Vec<(u64, Child)>> = Mutex::new(Vec::new());
static NEXT_CHILD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called when the process is about to die of a signal: kill the evaluation commands it
/// started and delete the staging directories it owns (and their registry entries).
/// Returns the directories deleted. Anything it cannot finish the next sweep finishes.
pub fn abandon() -> Vec<PathBuf> {
    if let Ok(mut children) = CHILDREN.lock() {
        for (_, c) in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        children.clear();
    }
    let mut removed = Vec::new();
    if let Ok(mut live) = LIVE.lock() {
        for (dir, lock) in live.drain(..) {
            crate::registry::remove_tree(&dir);
            if std::fs::symlink_metadata(&dir).is_err() {
                let _ = std::fs::remove_file(&lock);
                removed.push(dir);
            }
        }
    }
    removed
}

/// A child process known to [`abandon`]; reaped (killed first if still running) when
/// dropped.
#[derive(Debug)]
pub(crate) struct TrackedChild(u64);

impl TrackedChild {
    pub(crate) fn new(child: Child) -> TrackedChild {
        let id = NEXT_CHILD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut c) = CHILDREN.lock() {
            c.push((id, child));
        }
        TrackedChild(id)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Child) -> T) -> Option<T> {
        let mut c = CHILDREN.lock().ok()?;
        c.iter_mut()
            .find(|(id, _)| *id == self.0)
            .map(|(_, ch)| f(ch))
    }

    /// `Child::try_wait`; `Ok(None)` while running. A child that [`abandon`] already
    /// reaped reports an error.
    pub(crate) fn try_wait(&self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.with(Child::try_wait)
            .unwrap_or_else(|| Err(std::io::Error::other("evaluation command was killed")))
    }

    /// Kill and reap.
    pub(crate) fn kill(&self) {
        self.with(|c| {
            let _ = c.kill();
            let _ = c.wait();
        });
    }
}

impl Drop for TrackedChild {
    fn drop(&mut self) {
        if let Ok(mut c) = CHILDREN.lock() {
            if let Some(i) = c.iter().position(|(id, _)| *id == self.0) {
                let (_, mut ch) = c.swap_remove(i);
                if matches!(ch.try_wait(), Ok(None)) {
                    let _ = ch.kill();
                }
                let _ = ch.wait();
            }
        }
    }
}

/// A staging directory owned by this process.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    lock: Option<File>,
    keep: bool,
}

impl Staging {
    /// Register and create the staging directory `dir` (which must not exist; its file
    /// name must contain `warden-`), mode `mode`.
    pub(crate) fn create(registry: &Path, dir: PathBuf, mode: u32) -> Result<Staging> {
        let mut st = Staging::register(registry, dir)?;
        std::fs::create_dir(&st.dir).map_err(|e| Error::io(st.dir.display(), e))?;
        if let Err(e) = set_mode(&st.dir, mode) {
            st.release();
            return Err(e);
        }
        Ok(st)
    }

    /// Register `dir` (not created here: e.g. the target of a rename that moves a
    /// previous deployment aside) so that it is deleted if this process dies.
    pub(crate) fn register(registry: &Path, dir: PathBuf) -> Result<Staging> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(MARKER) {
            return Err(Error::invalid(
                dir.display().to_string(),
                "internal: staging directory name without the warden- marker",
            ));
        }
        create_private_dir(registry)?;
        let tag = crate::registry::random_hex(8)?;
        let new_path = registry.join(format!("{tag}.new"));
        let lock_path = registry.join(format!("{tag}.lock"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&new_path)
            .map_err(|e| Error::io(new_path.display(), e))?;
        // Locked and filled under a name the sweep does not act on, then renamed (the
        // lock stays with the file): a `.lock` file is always complete and, while its
        // operation runs, locked. The path is durable before the directory exists, so
        // a crash at any later point leaves something the sweep can find.
        let filled = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(std::io::Error::from)
            .and_then(|()| f.write_all(dir.as_os_str().as_encoded_bytes()))
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&new_path, &lock_path));
        if let Err(e) = filled {
            let _ = std::fs::remove_file(&new_path);
            return Err(Error::io(new_path.display(), e));
        }
        if let Ok(mut live) = LIVE.lock() {
            live.push((dir.clone(), lock_path.clone()));
        }
        Ok(Staging {
            dir,
            lock_path,
            lock: Some(f),
            keep: false,
        })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// The directory was renamed into place: forget it (do not delete it) and unregister.
    pub(crate) fn keep(mut self) {
        self.keep = true;
        self.release();
    }

    fn release(&mut self) {
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|(d, _)| d != &self.dir);
        }
        if !self.keep {
            crate::registry::remove_tree(&self.dir);
        }
        let _ = std::fs::remove_file(&self.lock_path);
        self.lock = None;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.lock.is_some() {
            self.release();
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(path.display(), e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Delete the staging directories of operations whose process is gone. Returns the
/// directories deleted. Entries whose lock is held are left alone; a registry entry
/// that names a path without the `warden-` marker is unregistered without deleting
/// anything (the registry lives in the 0700 home, but the sweep still never deletes a
/// path that Warden could not have created).
pub fn sweep(registry: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let rd = match std::fs::read_dir(registry) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(Error::io(registry.display(), e)),
    };
    for e in rd.flatten() {
        let lock_path = e.path();
        let ext = lock_path.extension().and_then(|x| x.to_str()).unwrap_or("");
        if !matches!(ext, "lock" | "new") {
            continue;
        }
        if ext == "new" {
            // Never renamed to `.lock`: its directory was never created. Fresh ones
            // belong to an operation starting right now (do not even lock them); old
            // ones were left by a crash.
            let old = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60);
            if old {
                let _ = std::fs::remove_file(&lock_path);
            }
            continue;
        }
        let mut f = match std::fs::OpenOptions::new().read(true).open(&lock_path) {
            Ok(f) => f,
            Err(_) => continue,
        };
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            // Held: the operation is alive.
            Err(rustix::io::Errno::WOULDBLOCK) => continue,
            Err(e) => return Err(Error::io(lock_path.display(), e.into())),
        }
        // Read through the locked descriptor: the owner may have just finished and
        // unlinked the file (then what it names is gone or was renamed into place).
        let mut named = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut named)
            .map_err(|e| Error::io(lock_path.display(), e))?;

        #[cfg(unix)]
        let dir = {
            use std::os::unix::ffi::OsStringExt;
            PathBuf::from(std::ffi::OsString::from_vec(named))
        };
        #[cfg(not(unix))]
        let dir = PathBuf::from(String::from_utf8_lossy(&named).into_owned());
        let ours = dir.is_absolute()
            && dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(MARKER));
        let kind = std::fs::symlink_metadata(&dir).map(|m| m.file_type());
        if ours && kind.as_ref().is_ok_and(|t| !t.is_dir()) {
            // Not what Warden made (a link or file planted in its place): remove the
            // entry itself, never what it points to.
            let _ = std::fs::remove_file(&dir);
        } else if ours && kind.is_ok() {
            crate::registry::remove_tree(&dir);
            if std::fs::symlink_metadata(&dir).is_ok() {
                return Err(Error::io(
                    dir.display(),
                    std::io::Error::other("could not delete a stale staging directory"),
                ));
            }
            removed.push(dir);
        }
        match std::fs::remove_file(&lock_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(lock_path.display(), e)),
        }
        drop(f);
    }
    Ok(removed)
}
