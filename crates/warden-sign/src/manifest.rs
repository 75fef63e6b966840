//! Manifests: which files (or byte ranges of files) make up a model, and their digests.
//!
//! The walk and the naming follow the OpenSSF Model Signing reference tool so that
//! manifests computed here compare equal with the ones it signs: paths relative to the
//! model root with `/` separators, a single-file model named `.`, the `files`
//! serialization (one digest per file, empty files included) and the `shards`
//! serialization (`path:start:end`, empty files omitted), ignore paths matched as path
//! prefixes, symbolic links refused unless allowed, entries sorted by path components.
//! Hashing runs on the rayon pool, one task per file or shard, largest first.

use crate::Error;
use crate::hashing::{HashAlgorithm, hash_file};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Paths the reference tool ignores by default (relative to the model root).
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// Default shard size of the `shards` serialization (the reference tool's default).
pub const DEFAULT_SHARD_SIZE: u64 = 1_000_000_000;

/// How a model is cut into resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One digest per file.
    Files,
    /// One digest per `shard_size` bytes of each file.
    Shards {
        /// Shard size in bytes (strictly positive).
        shard_size: u64,
    },
}

/// Everything needed to recompute a manifest; recorded in the signed predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    /// Files or shards.
    pub method: Method,
    /// Content hash.
    pub hash: HashAlgorithm,
    /// Whether symbolic links were followed.
    pub allow_symlinks: bool,
    /// Ignored paths relative to the model root, `/`-separated.
    pub ignore_paths: Vec<String>,
}

/// One resource of a manifest: a file, or a byte range of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub(crate) path: String,
    pub(crate) range: Option<(u64, u64)>,
    pub(crate) algorithm: String,
    pub(crate) digest: Vec<u8>,
}

impl Entry {
    /// Path relative to the model root (`.` for a single-file model).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Byte range `[start, end)` for a shard; `None` for a whole file.
    #[must_use]
    pub fn range(&self) -> Option<(u64, u64)> {
        self.range
    }

    /// Resource name as written in the predicate: `path` or `path:start:end`.
    #[must_use]
    pub fn name(&self) -> String {
        match self.range {
            None => self.path.clone(),
            Some((s, e)) => format!("{}:{s}:{e}", self.path),
        }
    }

    /// Algorithm name as written in the predicate.
    #[must_use]
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// Raw digest bytes.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// Lower-case hex digest.
    #[must_use]
    pub fn digest_hex(&self) -> String {
        hex::encode(&self.digest)
    }

    pub(crate) fn sort_key(&self) -> (Vec<&str>, u64, u64) {
        let (s, e) = self.range.unwrap_or((0, 0));
        (self.path.split('/').collect(), s, e)
    }
}

/// A model's resources and their digests, in canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub(crate) model_name: String,
    pub(crate) serialization: Serialization,
    pub(crate) entries: Vec<Entry>,
}

impl Manifest {
    /// Informative model name (the last component of the model path).
    #[must_use]
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// How the manifest was computed.
    #[must_use]
    pub fn serialization(&self) -> &Serialization {
        &self.serialization
    }

    /// Resources in canonical order.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// SHA-256 over the resource digests in manifest order: the in-toto subject digest.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        subject_digest(self.entries.iter().map(|e| e.digest.as_slice()))
    }

    /// Put entries in the reference order: path components, then start, then end.
    pub(crate) fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }
}

/// SHA-256 over concatenated digests, in the order given.
pub(crate) fn subject_digest<'a>(digests: impl Iterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for d in digests {
        ctx.update(d);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Progress callback: bytes hashed since the last call.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Options of [`plan`].
#[derive(Clone)]
pub struct HashOptions {
    /// Files or shards.
    pub method: Method,
    /// Content hash.
    pub hash: HashAlgorithm,
    /// Follow symbolic links to files instead of refusing them.
    pub allow_symlinks: bool,
    /// Paths to leave out, relative to the model root.
    pub ignore_paths: Vec<PathBuf>,
    /// Also leave out `.git`, `.gitattributes`, `.github`, `.gitignore` (default on).
    pub ignore_git_paths: bool,
    /// Hash only these files (paths relative to the root); others are not looked at.
    pub only: Option<BTreeSet<String>>,
}

impl std::fmt::Debug for HashOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashOptions")
            .field("method", &self.method)
            .field("hash", &self.hash)
            .field("allow_symlinks", &self.allow_symlinks)
            .field("ignore_paths", &self.ignore_paths)
            .field("ignore_git_paths", &self.ignore_git_paths)
            .finish_non_exhaustive()
    }
}

impl Default for HashOptions {
    fn default() -> Self {
        HashOptions {
            method: Method::Files,
            hash: HashAlgorithm::Sha256,
            allow_symlinks: false,
            ignore_paths: Vec::new(),
            ignore_git_paths: true,
            only: None,
        }
    }
}

#[derive(Debug)]
struct Job {
    abs: PathBuf,
    name: String,
    range: Option<(u64, u64)>,
    size: u64,
}

/// The files of a model, enumerated and checked, ready to hash.
#[derive(Debug)]
pub struct Plan {
    model_name: String,
    serialization: Serialization,
    jobs: Vec<Job>,
    total_bytes: u64,
}

impl Plan {
    /// Bytes that hashing will read.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Number of files or shards to hash.
    #[must_use]
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True when there is nothing to hash.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Hash every file or shard in parallel and return the manifest.
    ///
    /// # Errors
    /// I/O errors, naming the file; a file that shrank while being hashed.
    pub fn hash(self, progress: Option<Progress>) -> Result<Manifest, Error> {
        let algorithm = self.serialization.hash;
        let shard_algorithm = match self.serialization.method {
            Method::Files => algorithm.name().to_owned(),
            Method::Shards { shard_size } => format!("{}-sharded-{shard_size}", algorithm.name()),
        };
        let noop = |_: u64| {};
        let report: &(dyn Fn(u64) + Sync) = match &progress {
            Some(p) => p.as_ref(),
            None => &noop,
        };
        let mut jobs = self.jobs;
        // Largest first so that the long jobs start early and the pool drains evenly.
        jobs.sort_by_key(|j| std::cmp::Reverse(j.size));
        let entries: Result<Vec<Entry>, Error> = jobs
            .par_iter()
            .with_max_len(1)
            .map(|job| {
                let (start, end) = match job.range {
                    Some((s, e)) => (s, Some(e)),
                    None => (0, None),
                };
                let digest = hash_file(algorithm, &job.abs, start, end, report)?;
                Ok(Entry {
                    path: job.name.clone(),
                    range: job.range,
                    algorithm: if job.range.is_some() {
                        shard_algorithm.clone()
                    } else {
                        algorithm.name().to_owned()
                    },
                    digest,
                })
            })
            .collect();
        let mut manifest = Manifest {
            model_name: self.model_name,
            serialization: self.serialization,
            entries: entries?,
        };
        manifest.sort();
        Ok(manifest)
    }
}

/// Compute the manifest of a model file or directory in one call.
///
/// # Errors
/// See [`plan`] and [`Plan::hash`].
pub fn hash_model(model_path: &Path, options: &HashOptions) -> Result<Manifest, Error> {
    plan(model_path, options)?.hash(None)
}

/// Enumerate and check the files of a model (symlinks, special files, names).
///
/// # Errors
/// A symbolic link when links are not allowed, a special file, a name that is not
/// UTF-8 (or contains `:` in shard mode), I/O errors.
pub fn plan(model_path: &Path, options: &HashOptions) -> Result<Plan, Error> {
    if let Method::Shards { shard_size: 0 } = options.method {
        return Err(Error::Bundle("shard size must be strictly positive".into()));
    }
    let mut ignore: Vec<PathBuf> = options.ignore_paths.clone();
    if options.ignore_git_paths {
        ignore.extend(GIT_PATHS.iter().map(PathBuf::from));
    }
    let mut files: Vec<(PathBuf, String, u64)> = Vec::new();
    let meta = std::fs::symlink_metadata(model_path).map_err(|e| Error::io(model_path, e))?;
    let mut followed = meta.clone();
    if meta.file_type().is_symlink() {
        if !options.allow_symlinks {
            return Err(Error::Symlink {
                path: model_path.to_path_buf(),
            });
        }
        followed = std::fs::metadata(model_path).map_err(|e| Error::io(model_path, e))?;
    }
    if followed.is_file() {
        files.push((model_path.to_path_buf(), ".".to_owned(), followed.len()));
    } else if followed.is_dir() {
        match &options.only {
            Some(only) => collect_listed(model_path, only, &ignore, options, &mut files)?,
            None => walk(model_path, Path::new(""), &ignore, options, &mut files)?,
        }
    } else {
        return Err(Error::SpecialFile {
            path: model_path.to_path_buf(),
        });
    }

    let mut jobs = Vec::new();
    let mut total_bytes = 0u64;
    for (abs, name, size) in files {
        match options.method {
            Method::Files => {
                total_bytes += size;
                jobs.push(Job {
                    abs,
                    name,
                    range: None,
                    size,
                });
            }
            Method::Shards { shard_size } => {
                if name.contains(':') {
                    return Err(Error::BadFileName {
                        path: abs,
                        reason: "file name contains ':' and cannot be named in a shard manifest",
                    });
                }
                total_bytes += size;
                let mut start = 0u64;
                while start < size {
                    let end = start.saturating_add(shard_size).min(size);
                    jobs.push(Job {
                        abs: abs.clone(),
                        name: name.clone(),
                        range: Some((start, end)),
                        size: end - start,
                    });
                    start = end;
                }
            }
        }
    }

    let mut recorded: Vec<String> = ignore
        .iter()
        .filter_map(|p| p.to_str().map(|s| s.replace('\\', "/")))
        .filter(|s| !s.is_empty())
        .collect();
    recorded.sort();
    recorded.dedup();
    Ok(Plan {
        model_name: model_name(model_path),
        serialization: Serialization {
            method: options.method,
            hash: options.hash,
            allow_symlinks: options.allow_symlinks,
            ignore_paths: recorded,
        },
        jobs,
        total_bytes,
    })
}

fn model_name(model_path: &Path) -> String {
    let last = model_path.file_name().and_then(|n| n.to_str());
    match last {
        Some(n) if n != ".." => n.to_owned(),
        _ => std::fs::canonicalize(model_path)
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .unwrap_or_default(),
    }
}

fn is_ignored(rel: &Path, ignore: &[PathBuf]) -> bool {
    ignore.iter().any(|i| rel.starts_with(i))
}

fn rel_name(abs: &Path, rel: &Path) -> Result<String, Error> {
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(s) => match s.to_str() {
                Some(s) => parts.push(s),
                None => {
                    return Err(Error::BadFileName {
                        path: abs.to_path_buf(),
                        reason: "file name is not valid UTF-8",
                    });
                }
            },
            _ => {
                return Err(Error::BadFileName {
                    path: abs.to_path_buf(),
                    reason: "unexpected path component",
                });
            }
        }
    }
    Ok(parts.join("/"))
}

/// Classify one path below the root: `Some(size)` for a file to hash, `None` for a
/// directory to descend into (when `descend`) or to skip.
fn check_entry(abs: &Path, options: &HashOptions) -> Result<(Option<u64>, bool), Error> {
    let meta = std::fs::symlink_metadata(abs).map_err(|e| Error::io(abs, e))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        if !options.allow_symlinks {
            return Err(Error::Symlink {
                path: abs.to_path_buf(),
            });
        }
        let target = std::fs::metadata(abs).map_err(|e| Error::io(abs, e))?;
        if target.is_file() {
            return Ok((Some(target.len()), false));
        }
        if target.is_dir() {
            // Like the reference tool, links to directories are not descended into.
            return Ok((None, false));
        }
        return Err(Error::SpecialFile {
            path: abs.to_path_buf(),
        });
    }
    if ft.is_file() {
        Ok((Some(meta.len()), false))
    } else if ft.is_dir() {
        Ok((None, true))
    } else {
        Err(Error::SpecialFile {
            path: abs.to_path_buf(),
        })
    }
}

fn walk(
    root: &Path,
    rel: &Path,
    ignore: &[PathBuf],
    options: &HashOptions,
    out: &mut Vec<(PathBuf, String, u64)>,
) -> Result<(), Error> {
    let dir = root.join(rel);
    let reader = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    for item in reader {
        let item = item.map_err(|e| Error::io(&dir, e))?;
        let child_rel = rel.join(item.file_name());
        if is_ignored(&child_rel, ignore) {
            continue;
        }
        let abs = root.join(&child_rel);
        match check_entry(&abs, options)? {
            (Some(size), _) => out.push((abs.clone(), rel_name(&abs, &child_rel)?, size)),
            (None, true) => walk(root, &child_rel, ignore, options, out)?,
            (None, false) => {}
        }
    }
    Ok(())
}

fn collect_listed(
    root: &Path,
    only: &BTreeSet<String>,
    ignore: &[PathBuf],
    options: &HashOptions,
    out: &mut Vec<(PathBuf, String, u64)>,
) -> Result<(), Error> {
    for name in only {
        let rel = Path::new(name);
        if is_ignored(rel, ignore) {
            continue;
        }
        let abs = root.join(rel);
        match std::fs::symlink_metadata(&abs) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&abs, e)),
            Ok(_) => {}
        }
        if let (Some(size), _) = check_entry(&abs, options)? {
            out.push((abs, name.clone(), size));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_by_path_components() {
        let mk = |p: &str| Entry {
            path: p.into(),
            range: None,
            algorithm: "sha256".into(),
            digest: vec![],
        };
        let mut m = Manifest {
            model_name: "m".into(),
            serialization: Serialization {
                method: Method::Files,
                hash: HashAlgorithm::Sha256,
                allow_symlinks: false,
                ignore_paths: vec![],
            },
            entries: vec![mk("a.b"), mk("a/b"), mk("B"), mk("a-c")],
        };
        m.sort();
        let names: Vec<_> = m.entries.iter().map(|e| e.path.as_str()).collect();
        // Python's PurePosixPath ordering: component lists, code-point order.
        assert_eq!(names, ["B", "a/b", "a-c", "a.b"]);
    }
}
