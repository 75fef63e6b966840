//! `warden-scan`: a static scanner for model files.
//!
//! Bytes in, findings out. The scanner never executes, imports or deserializes model
//! content: every format is parsed with explicit bounds, and anything it cannot prove
//! safe is reported. Decisions come from exact allowlists; block lists only raise the
//! severity of what is already a finding.
//!
//! Entry points: [`scan_paths`] walks files and directories; [`scan_reader`] scans one
//! already-open input. Format parsers live under [`formats`] and share [`Context`].

pub mod allowlist;
pub mod driver;
pub mod finding;
pub mod formats;
pub mod io;
pub mod rules;

pub use finding::{Finding, Location, Severity};

use serde::Serialize;
use std::io::{Read, Seek};
use std::path::PathBuf;

/// Errors that stop the scan of one input. A scan that hits one of these is
/// incomplete, and the CLI exits 2: the scanner fails closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File that failed.
        path: String,
        /// Underlying cause.
        source: std::io::Error,
    },
    /// The input is not a format the scanner knows, so it cannot be vouched for.
    #[error("{path}: unsupported or unrecognised format ({detail})")]
    Unsupported {
        /// File or member.
        path: String,
        /// What was seen instead.
        detail: String,
    },
    /// A bound (size, depth, count) was exceeded and the input could not be fully examined.
    #[error("{path}: scan limit exceeded: {detail}")]
    Limit {
        /// File or member.
        path: String,
        /// Which limit.
        detail: String,
    },
}

/// Bounds and switches for one scan. Every bound has a safe default.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Read tensor data too, not only headers (`--deep`).
    pub deep: bool,
    /// Named optional allowlist profiles turned on by the user, e.g. `sklearn`.
    pub profiles: Vec<String>,
    /// Maximum nesting of archives inside archives.
    pub max_archive_depth: u32,
    /// Maximum total uncompressed bytes read out of one archive.
    pub max_uncompressed_bytes: u64,
    /// Maximum compression ratio of one archive member before it counts as a bomb.
    pub max_compression_ratio: u64,
    /// Maximum pickle opcodes executed per pickle stream.
    pub max_pickle_ops: u64,
    /// Maximum pickle stack / memo entries.
    pub max_pickle_stack: usize,
    /// Maximum size of a header (safetensors JSON, GGUF metadata, ONNX non-tensor fields).
    pub max_header_bytes: u64,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            deep: false,
            profiles: Vec::new(),
            max_archive_depth: 4,
            max_uncompressed_bytes: 64 << 30,
            max_compression_ratio: 200,
            max_pickle_ops: 50_000_000,
            max_pickle_stack: 1 << 20,
            max_header_bytes: 100 << 20,
        }
    }
}

/// A readable, seekable input. Implemented for every `Read + Seek`.
pub trait Input: Read + Seek {}
impl<T: Read + Seek> Input for T {}

/// What every format parser gets: where it is, the options, and where to put findings.
#[derive(Debug)]
pub struct Context<'a> {
    /// The file (and archive members) being scanned.
    pub location: Location,
    /// Options in force.
    pub options: &'a ScanOptions,
    /// Findings so far; parsers push, never remove.
    pub findings: &'a mut Vec<Finding>,
    /// Archive depth of this input (0 for a file on disk).
    pub depth: u32,
}

impl Context<'_> {
    /// Record a finding at `offset` (relative to the current member), or for the whole input.
    pub fn report(
        &mut self,
        rule: &'static str,
        severity: Severity,
        offset: Option<u64>,
        message: impl Into<String>,
    ) {
        let location = match offset {
            Some(o) => self.location.at(o),
            None => self.location.clone(),
        };
        self.findings.push(Finding {
            rule,
            severity,
            location,
            message: message.into(),
        });
    }
}

/// Format identified from content (magic bytes and structure), never from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Format {
    /// A raw pickle stream (also joblib and legacy PyTorch).
    Pickle,
    /// A zip archive (PyTorch checkpoint, `.npz`, `.keras`, or plain zip).
    Zip,
    /// A tar archive.
    Tar,
    /// gzip-compressed data.
    Gzip,
    /// NumPy `.npy`.
    Npy,
    /// safetensors.
    Safetensors,
    /// GGUF v2/v3.
    Gguf,
    /// ONNX protobuf.
    Onnx,
    /// HDF5 (legacy Keras `.h5`).
    Hdf5,
    /// A zlib stream (joblib's compressed files).
    Zlib,
    /// A member of a Keras `.keras` archive checked by the Keras rules.
    Keras,
    /// 7z, RAR, bzip2, xz, zstd and other containers no model loader reads.
    OtherArchive,
    /// Raw tensor bytes of a PyTorch checkpoint (`data/N`), never unpickled by loaders.
    TensorData,
    /// UTF-8 text (configs, tokenizers, READMEs).
    Text,
    /// An empty file.
    Empty,
    /// Something the scanner does not know.
    Unknown,
}

/// The result of scanning a set of paths.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Everything found, in scan order.
    pub findings: Vec<Finding>,
    /// Files (and archive members) examined, with their detected format.
    pub scanned: Vec<Scanned>,
    /// Inputs that could not be fully examined; any entry makes the scan incomplete.
    pub errors: Vec<ScanError>,
}

/// One examined input.
#[derive(Debug, Clone, Serialize)]
pub struct Scanned {
    /// Where.
    pub location: Location,
    /// Detected format.
    pub format: Format,
    /// Size in bytes.
    pub bytes: u64,
}

/// An input the scanner could not finish, with the reason in words.
#[derive(Debug, Clone, Serialize)]
pub struct ScanError {
    /// Where.
    pub location: Location,
    /// Why, in plain words.
    pub message: String,
}

impl Report {
    /// The highest severity found, if any.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// True when the scan examined everything it was given.
    pub fn complete(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Scan files and directories (recursively, without following symbolic links out of
/// the tree). Every problem lands in the report; nothing here panics or stops early.
pub fn scan_paths(paths: &[PathBuf], options: &ScanOptions) -> Report {
    scan_paths_with_progress(paths, options, &mut |_| {})
}

/// [`scan_paths`], calling `progress` with the size of every file once it is done.
pub fn scan_paths_with_progress(
    paths: &[PathBuf],
    options: &ScanOptions,
    progress: &mut dyn FnMut(u64),
) -> Report {
    let mut w = driver::Walker::new(options, progress);
    for p in paths {
        w.scan_path(p);
    }
    w.report
}

/// Scan one already-open input (a file, or bytes in memory) named `name` in findings.
pub fn scan_reader(input: &mut dyn Input, len: u64, name: &str, options: &ScanOptions) -> Report {
    let mut progress = |_| {};
    let mut w = driver::Walker::new(options, &mut progress);
    w.scan_input(input, len, Location::file(name), 0);
    w.report
}

/// Total size of the regular files under `paths` (for a progress bar).
pub fn total_bytes(paths: &[PathBuf]) -> u64 {
    fn walk(p: &std::path::Path, level: u32) -> u64 {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() && level < 64 => std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| walk(&e.path(), level + 1))
                        .sum()
                })
                .unwrap_or(0),
            Ok(m) if m.is_file() => m.len(),
            Ok(m) if m.file_type().is_symlink() && level == 0 => {
                std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
            }
            _ => 0,
        }
    }
    paths.iter().map(|p| walk(p, 0)).sum()
}
