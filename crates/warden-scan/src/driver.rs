//! The driver: walks paths, identifies every input by content, dispatches it to a
//! format module, descends into archives to a bounded depth and collects the
//! [`Report`](crate::Report).
//!
//! Rules: WS220 unsupported container, WS221 nesting too deep, WS250 polyglot (a file
//! that is also a zip), WS901 unrecognised binary, WS902 unreadable, WS903 symlink out
//! of the tree, WS904 Python source next to a model.

use crate::formats::{self, compress, npy, pickle, tar, zip};
use crate::{
    Context, Error, Format, Input, Location, Report, ScanError, ScanOptions, Scanned, Severity,
};
use std::io::{BufReader, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes read from the start of an input to identify it.
pub const SNIFF_LEN: usize = 4096;

/// State of one scan: options, the report being built and a progress callback.
pub struct Walker<'o> {
    /// Options in force.
    pub options: &'o ScanOptions,
    /// The report being built.
    pub report: Report,
    progress: &'o mut dyn FnMut(u64),
}

impl std::fmt::Debug for Walker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Walker")
            .field("options", &self.options)
            .finish()
    }
}

impl<'o> Walker<'o> {
    /// A walker with an empty report.
    pub fn new(options: &'o ScanOptions, progress: &'o mut dyn FnMut(u64)) -> Self {
        Walker {
            options,
            report: Report::default(),
            progress,
        }
    }

    /// A context for findings at `location`.
    pub fn context(&mut self, location: Location, depth: u32) -> Context<'_> {
        Context {
            location,
            options: self.options,
            findings: &mut self.report.findings,
            depth,
        }
    }

    /// Record a finding without a parser context.
    pub fn finding(
        &mut self,
        location: &Location,
        rule: &'static str,
        severity: Severity,
        offset: Option<u64>,
        message: String,
    ) {
        let mut cx = self.context(location.clone(), 0);
        cx.report(rule, severity, offset, message);
    }

    /// Record an input that could not be fully examined.
    pub fn error(&mut self, location: &Location, message: String) {
        self.report.errors.push(ScanError {
            location: location.clone(),
            message,
        });
    }

    fn record_error(&mut self, location: &Location, e: &Error) {
        let text = e.to_string();
        // The error text already starts with the path; keep only the cause.
        let prefix = format!("{location}: ");
        let cause = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
        self.error(location, cause);
    }

    /// Walk one path given by the user.
    pub fn scan_path(&mut self, path: &Path) {
        let loc = Location::file(path.display().to_string());
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                let root = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
                self.walk_dir(path, &root, 0);
            }
            Ok(_) => self.scan_file(path),
            Err(e) => self.error(&loc, format!("cannot read: {e}")),
        }
    }

    fn walk_dir(&mut self, dir: &Path, root: &Path, level: u32) {
        let loc = Location::file(dir.display().to_string());
        if level > 64 {
            self.error(&loc, "directory tree deeper than 64 levels".into());
            return;
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                self.error(&loc, format!("cannot list directory: {e}"));
                return;
            }
        };
        entries.sort();
        for p in entries {
            let ploc = Location::file(p.display().to_string());
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) => {
                    self.error(&ploc, format!("cannot read: {e}"));
                    continue;
                }
            };
            if meta.file_type().is_symlink() {
                match std::fs::canonicalize(&p) {
                    Ok(target) if target.starts_with(root) => {
                        if target.is_file() {
                            // Loaders open the link name; the file is inside the tree.
                            self.scan_file(&p);
                        }
                        // A link to a directory inside the tree is walked via its real path.
                    }
                    Ok(target) => self.finding(
                        &ploc,
                        "WS903",
                        Severity::Medium,
                        None,
                        format!(
                            "symbolic link to {} points outside the scanned tree and was not followed; a loader would read it",
                            target.display()
                        ),
                    ),
                    Err(e) => self.error(&ploc, format!("dangling symbolic link: {e}")),
                }
            } else if meta.is_dir() {
                self.walk_dir(&p, root, level + 1);
            } else if meta.is_file() {
                self.scan_file(&p);
            } else {
                self.finding(
                    &ploc,
                    "WS902",
                    Severity::Low,
                    None,
                    "special file (device, socket or pipe) skipped".into(),
                );
            }
        }
    }

    fn scan_file(&mut self, path: &Path) {
        let loc = Location::file(path.display().to_string());
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                self.error(&loc, format!("cannot open: {e}"));
                return;
            }
        };
        let len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                self.error(&loc, format!("cannot read: {e}"));
                return;
            }
        };
        let mut input = BufReader::with_capacity(256 * 1024, file);
        self.scan_input(&mut input, len, loc, 0);
        (self.progress)(len);
    }

    /// Identify one input by content and scan it; errors land in the report.
    pub fn scan_input(&mut self, input: &mut dyn Input, len: u64, loc: Location, depth: u32) {
        if let Err(e) = self.dispatch(input, len, &loc, depth) {
            self.record_error(&loc, &e);
        }
    }

    fn note(&mut self, loc: &Location, format: Format, bytes: u64) {
        self.report.scanned.push(Scanned {
            location: loc.clone(),
            format,
            bytes,
        });
    }

    fn dispatch(
        &mut self,
        input: &mut dyn Input,
        len: u64,
        loc: &Location,
        depth: u32,
    ) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: loc.to_string(),
            source,
        };
        input.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut prefix = vec![0u8; SNIFF_LEN.min(usize::try_from(len).unwrap_or(SNIFF_LEN))];
        input.read_exact(&mut prefix).map_err(io)?;
        input.seek(SeekFrom::Start(0)).map_err(io)?;
        let format = identify(&prefix, len);
        self.note(loc, format, len);
        let container = matches!(
            format,
            Format::Zip | Format::Tar | Format::Gzip | Format::Zlib
        );
        if container && depth >= self.options.max_archive_depth {
            let max = self.options.max_archive_depth;
            self.finding(
                loc,
                "WS221",
                Severity::High,
                None,
                format!("archive nested more than {max} levels deep; not opened"),
            );
            return Err(Error::Limit {
                path: loc.to_string(),
                detail: format!("archives nested more than {max} levels deep"),
            });
        }
        match format {
            Format::Zip => zip::scan(self, input, len, loc, depth),
            Format::Tar => tar::scan(self, input, len, loc, depth),
            Format::Gzip | Format::Zlib => compress::scan(self, input, len, loc, depth, format),
            Format::Npy => npy::scan(self, input, len, loc, depth),
            Format::Pickle => {
                let r = {
                    let mut cx = self.context(loc.clone(), depth);
                    pickle::scan_stream(input, 0, &mut cx)
                };
                self.check_polyglot(input, len, loc, depth, Format::Pickle)?;
                r
            }
            Format::Safetensors | Format::Gguf | Format::Onnx | Format::Hdf5 => {
                let r = {
                    let mut cx = self.context(loc.clone(), depth);
                    match format {
                        Format::Safetensors => formats::safetensors::scan(input, len, &mut cx),
                        Format::Gguf => formats::gguf::scan(input, len, &mut cx),
                        Format::Onnx => formats::onnx::scan(input, len, &mut cx),
                        _ => formats::hdf5::scan(input, len, &mut cx),
                    }
                };
                if format != Format::Hdf5 {
                    self.check_polyglot(input, len, loc, depth, format)?;
                }
                r
            }
            Format::OtherArchive => {
                let what = other_archive_name(&prefix);
                self.finding(
                    loc,
                    "WS220",
                    Severity::High,
                    Some(0),
                    format!("{what} container where a model is expected; no model loader reads it directly and Warden does not open it"),
                );
                Ok(())
            }
            Format::Text => {
                let is_py = loc
                    .members
                    .last()
                    .map_or(loc.path.as_str(), String::as_str)
                    .ends_with(".py");
                if is_py {
                    self.finding(
                        loc,
                        "WS904",
                        Severity::Info,
                        None,
                        "Python source shipped with the model: it runs if the model is loaded with trust_remote_code; review it".into(),
                    );
                }
                Ok(())
            }
            Format::Empty => Ok(()),
            Format::TensorData | Format::Keras => Ok(()),
            Format::Unknown => {
                self.finding(
                    loc,
                    "WS901",
                    Severity::Medium,
                    None,
                    "unrecognised binary content: not a model format Warden knows, so it cannot vouch for it".into(),
                );
                Err(Error::Unsupported {
                    path: loc.to_string(),
                    detail: "unrecognised binary content".into(),
                })
            }
        }
    }

    /// A file that parses as one format but also carries a zip central directory at
    /// its end is a polyglot: `torch.load` picks pickle or zip by the first bytes,
    /// other tools by the end. Scan the zip side too.
    fn check_polyglot(
        &mut self,
        input: &mut dyn Input,
        len: u64,
        loc: &Location,
        depth: u32,
        format: Format,
    ) -> Result<(), Error> {
        if len < 22 || depth >= self.options.max_archive_depth {
            return Ok(());
        }
        if zip::find_eocd(input, len).ok().flatten().is_some() {
            self.finding(
                loc,
                "WS250",
                Severity::High,
                None,
                format!("polyglot: the file is {} by its first bytes and also a zip archive by its end; different loaders see different content", format_name(format)),
            );
            return zip::scan(self, input, len, loc, depth);
        }
        Ok(())
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Pickle => "a pickle",
        Format::Safetensors => "safetensors",
        Format::Gguf => "GGUF",
        Format::Onnx => "ONNX",
        Format::Npy => "NumPy",
        _ => "another format",
    }
}

fn other_archive_name(p: &[u8]) -> &'static str {
    match p {
        [b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c, ..] => "7z",
        [b'R', b'a', b'r', b'!', ..] => "RAR",
        [b'B', b'Z', b'h', ..] => "bzip2",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0x04, 0x22, 0x4d, 0x18, ..] => "lz4",
        [0x5d, 0, 0, ..] => "lzma",
        [b'M', b'S', b'C', b'F', ..] => "cab",
        _ => "an unsupported",
    }
}

/// Identify an input from its first bytes (and length). Never looks at the name.
pub fn identify(p: &[u8], len: u64) -> Format {
    if len == 0 {
        return Format::Empty;
    }
    if p.starts_with(b"PK\x03\x04") || p.starts_with(b"PK\x05\x06") || p.starts_with(b"PK\x07\x08")
    {
        return Format::Zip;
    }
    if p.starts_with(&[0x1f, 0x8b]) {
        return Format::Gzip;
    }
    if p.starts_with(b"\x93NUMPY") {
        return Format::Npy;
    }
    if other_archive_name(p) != "an unsupported" {
        return Format::OtherArchive;
    }
    if formats::gguf::sniff(p) {
        return Format::Gguf;
    }
    if formats::hdf5::sniff(p) {
        return Format::Hdf5;
    }
    if formats::safetensors::sniff(p) {
        return Format::Safetensors;
    }
    if pickle::sniff(p) {
        return Format::Pickle;
    }
    if tar::sniff(p) {
        return Format::Tar;
    }
    if formats::onnx::sniff(p) {
        return Format::Onnx;
    }
    if compress::sniff_zlib(p) {
        return Format::Zlib;
    }
    if looks_like_text(p) {
        return Format::Text;
    }
    Format::Unknown
}

fn looks_like_text(p: &[u8]) -> bool {
    let valid = match std::str::from_utf8(p) {
        Ok(_) => true,
        // A multi-byte character cut by the sniff window is still text.
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 >= p.len(),
    };
    valid
        && p.iter()
            .all(|&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r' | 0x0c))
}
