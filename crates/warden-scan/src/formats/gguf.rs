//! GGUF structural validation and chat-template checks.
//!
//! Layout (little-endian): magic `GGUF`, version (u32), tensor count and metadata count
//! (u64; u32 in version 1), the metadata key/value pairs, the tensor infos (name, dims,
//! ggml type, offset), padding to `general.alignment` (default 32), then the tensor
//! data. Every count and length is checked against the bytes left in the file before
//! anything is allocated or skipped; strings that are not needed are skipped, not read.
//! Only the header is read: validating a multi-gigabyte file costs one pass over its
//! metadata. `tokenizer.chat_template` (and `tokenizer.chat_template.<name>`) values
//! are handed to [`jinja`] for template-injection checks.

#![deny(clippy::indexing_slicing)]

mod jinja;

use crate::{Context, Error, Input, Severity};
use std::collections::HashSet;
use std::io::SeekFrom;

/// Largest chat template read for checking (real ones are a few KiB to ~100 KiB).
const MAX_TEMPLATE: u64 = 4 << 20;
/// Largest key or tensor name (llama.cpp keys are short; names are under 64 bytes).
const MAX_NAME: u64 = 64 << 10;
/// Deepest array nesting accepted.
const MAX_ARRAY_DEPTH: u32 = 4;
/// ggml's maximum number of dimensions.
const MAX_DIMS: u32 = 4;

/// True when `prefix` starts with the GGUF magic.
pub fn sniff(prefix: &[u8]) -> bool {
    prefix.starts_with(b"GGUF")
}

/// Why parsing stopped.
enum Stop {
    /// A structural problem, reported as a finding.
    Bad(&'static str, Severity, u64, String),
    /// The scan could not be done.
    Err(Error),
}

type R<T> = Result<T, Stop>;

fn bad<T>(rule: &'static str, sev: Severity, off: u64, msg: impl Into<String>) -> R<T> {
    Err(Stop::Bad(rule, sev, off, msg.into()))
}

/// A buffered, position-tracking reader that never reads past `len`.
struct Rd<'a> {
    input: &'a mut dyn Input,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
    /// Read position within `buf`.
    pos: usize,
    /// Valid bytes in `buf`.
    filled: usize,
    path: String,
}

impl<'a> Rd<'a> {
    fn new(input: &'a mut dyn Input, len: u64, path: String) -> Self {
        Rd {
            input,
            len,
            buf: vec![0; 1 << 16],
            start: 0,
            pos: 0,
            filled: 0,
            path,
        }
    }

    fn offset(&self) -> u64 {
        self.start + self.pos as u64
    }

    fn left(&self) -> u64 {
        self.len.saturating_sub(self.offset())
    }

    fn io(&self, source: std::io::Error) -> Stop {
        Stop::Err(Error::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn need(&self, n: u64, what: &str) -> R<()> {
        if n > self.left() {
            return bad(
                "WS501",
                Severity::High,
                self.offset(),
                format!(
                    "{what} needs {n} bytes but only {} remain in the file (truncated or corrupt)",
                    self.left()
                ),
            );
        }
        Ok(())
    }

    /// Refill so that at least one unread byte is buffered.
    fn refill(&mut self) -> R<()> {
        let off = self.offset();
        self.input
            .seek(SeekFrom::Start(off))
            .map_err(|e| self.io(e))?;
        self.start = off;
        self.pos = 0;
        self.filled = 0;
        let want = usize::try_from(self.left().min(self.buf.len() as u64)).unwrap_or(0);
        while self.filled < want {
            let dst = self.buf.get_mut(self.filled..want).unwrap_or_default();
            match self.input.read(dst) {
                Ok(0) => break,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        if self.filled == 0 {
            return bad(
                "WS501",
                Severity::High,
                off,
                "file ended early while reading the header",
            );
        }
        Ok(())
    }

    fn read_into(&mut self, out: &mut [u8], what: &str) -> R<()> {
        self.need(out.len() as u64, what)?;
        let mut done = 0;
        while done < out.len() {
            if self.pos >= self.filled {
                self.refill()?;
            }
            let avail = self.buf.get(self.pos..self.filled).unwrap_or_default();
            let n = avail.len().min(out.len() - done);
            if let (Some(dst), Some(src)) = (out.get_mut(done..done + n), avail.get(..n)) {
                dst.copy_from_slice(src);
            }
            done += n;
            self.pos += n;
        }
        Ok(())
    }

    fn skip(&mut self, n: u64, what: &str) -> R<()> {
        self.need(n, what)?;
        let in_buf = (self.filled - self.pos) as u64;
        if n <= in_buf {
            self.pos += usize::try_from(n).unwrap_or(0);
        } else {
            self.start = self.offset() + n;
            self.pos = 0;
            self.filled = 0;
        }
        Ok(())
    }

    fn u32(&mut self, what: &str) -> R<u32> {
        let mut b = [0u8; 4];
        self.read_into(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self, what: &str) -> R<u64> {
        let mut b = [0u8; 8];
        self.read_into(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read a length-prefixed string of at most `cap` bytes (longer ones are a finding).
    fn string(&mut self, cap: u64, what: &str) -> R<(u64, Vec<u8>)> {
        let n = self.u64(what)?;
        self.need(n, what)?;
        if n > cap {
            return bad(
                "WS504",
                Severity::High,
                self.offset(),
                format!("{what} is {n} bytes long, more than the {cap} bytes accepted"),
            );
        }
        let at = self.offset();
        let mut v = vec![0u8; usize::try_from(n).unwrap_or(0)];
        self.read_into(&mut v, what)?;
        Ok((at, v))
    }

    fn skip_string(&mut self, what: &str) -> R<()> {
        let n = self.u64(what)?;
        self.skip(n, what)
    }
}

/// Metadata value types.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

fn scalar_size(t: u32) -> Option<u64> {
    Some(match t {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 => 8,
        _ => return None,
    })
}

/// (block size in elements, bytes per block) of a ggml tensor type.
fn ggml_type(t: u32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 40),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        40 => (64, 36),   // NVFP4
        41 => (128, 18),  // Q1_0
        _ => return None,
    })
}

struct TensorInfo {
    name: String,
    info_at: u64,
    offset: u64,
    size: u64,
}

/// Validate one GGUF input of `len` bytes.
pub fn scan(input: &mut dyn Input, len: u64, cx: &mut Context) -> Result<(), Error> {
    let path = cx.location.to_string();
    let mut rd = Rd::new(input, len, path);
    match parse(&mut rd, cx) {
        Ok(()) => Ok(()),
        Err(Stop::Bad(rule, sev, off, msg)) => {
            cx.report(rule, sev, Some(off), msg);
            Ok(())
        }
        Err(Stop::Err(e)) => Err(e),
    }
}

fn parse(rd: &mut Rd, cx: &mut Context) -> R<()> {
    let mut magic = [0u8; 4];
    rd.read_into(&mut magic, "magic")?;
    if &magic != b"GGUF" {
        return bad("WS501", Severity::High, 0, "missing GGUF magic");
    }
    let version = rd.u32("version")?;
    if version == 1 {
        return bad(
            "WS502",
            Severity::Medium,
            4,
            "GGUF version 1 is obsolete and not accepted by current loaders",
        );
    }
    if version != 2 && version != 3 {
        return bad(
            "WS502",
            Severity::High,
            4,
            format!("unknown GGUF version {version} (only 2 and 3 are defined)"),
        );
    }
    let n_tensors = rd.u64("tensor count")?;
    let n_kv = rd.u64("metadata count")?;
    // Smallest possible entries: a key/value is 8 (len) + 4 (type) + 1 bytes, a tensor
    // info 8 (len) + 4 (dims) + 4 (type) + 8 (offset) bytes.
    let kv_min = n_kv.checked_mul(13);
    let t_min = n_tensors.checked_mul(24);
    match kv_min.zip(t_min).and_then(|(a, b)| a.checked_add(b)) {
        Some(total) if total <= rd.left() => {}
        _ => {
            return bad(
                "WS503",
                Severity::High,
                8,
                format!(
                    "{n_tensors} tensors and {n_kv} metadata entries cannot fit in the {} bytes left in the file",
                    rd.left()
                ),
            );
        }
    }
    let mut keys: HashSet<Vec<u8>> = HashSet::new();
    let mut alignment: u64 = 32;
    for _ in 0..n_kv {
        let key_at = rd.offset();
        let (_, key) = rd.string(MAX_NAME, "metadata key")?;
        let key_text = String::from_utf8_lossy(&key).into_owned();
        if std::str::from_utf8(&key).is_err() {
            cx.report(
                "WS504",
                Severity::Medium,
                Some(key_at),
                format!("metadata key \"{key_text}\" is not valid UTF-8"),
            );
        }
        let ty = rd.u32("metadata value type")?;
        let is_template =
            key == b"tokenizer.chat_template" || key.starts_with(b"tokenizer.chat_template.");
        if is_template {
            if ty == T_STRING {
                let (at, v) = rd.string(MAX_TEMPLATE, "chat template")?;
                match std::str::from_utf8(&v) {
                    Ok(s) => jinja::check_template(&key_text, s, at, cx),
                    Err(_) => cx.report(
                        "WS520",
                        Severity::Medium,
                        Some(at),
                        format!("chat template {key_text} is not valid UTF-8"),
                    ),
                }
            } else {
                cx.report(
                    "WS520",
                    Severity::Medium,
                    Some(key_at),
                    format!("chat template {key_text} is not a string (type {ty})"),
                );
                skip_value(rd, ty, 0)?;
            }
        } else if key == b"general.alignment" {
            let at = rd.offset();
            if ty != T_U32 {
                return bad(
                    "WS507",
                    Severity::High,
                    key_at,
                    format!("general.alignment has type {ty}, not the required uint32"),
                );
            }
            let a = rd.u32("alignment")?;
            if a == 0 || !a.is_power_of_two() {
                return bad(
                    "WS507",
                    Severity::High,
                    at,
                    format!("general.alignment {a} is not a non-zero power of two"),
                );
            }
            alignment = u64::from(a);
        } else {
            skip_value(rd, ty, 0)?;
        }
        if !keys.insert(key) {
            cx.report(
                "WS506",
                Severity::High,
                Some(key_at),
                format!("metadata key \"{key_text}\" occurs twice; loaders disagree on which wins"),
            );
        }
        check_header_size(rd, cx)?;
    }
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    for _ in 0..n_tensors {
        let info_at = rd.offset();
        let (_, name) = rd.string(MAX_NAME, "tensor name")?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let n_dims = rd.u32("tensor dimension count")?;
        if n_dims > MAX_DIMS {
            return bad(
                "WS508",
                Severity::High,
                info_at,
                format!(
                    "tensor \"{name}\" has {n_dims} dimensions; ggml allows at most {MAX_DIMS}"
                ),
            );
        }
        let mut dims = [1u64; MAX_DIMS as usize];
        for d in dims.iter_mut().take(n_dims as usize) {
            *d = rd.u64("tensor dimension")?;
        }
        let ty = rd.u32("tensor type")?;
        let offset = rd.u64("tensor offset")?;
        check_header_size(rd, cx)?;
        let Some((block, type_size)) = ggml_type(ty) else {
            cx.report(
                "WS508",
                Severity::High,
                Some(info_at),
                format!("tensor \"{name}\" has unknown ggml type {ty}"),
            );
            continue;
        };
        if dims[0] % block != 0 {
            cx.report(
                "WS508",
                Severity::High,
                Some(info_at),
                format!(
                    "tensor \"{name}\" row of {} elements is not a multiple of the type's block size {block}",
                    dims[0]
                ),
            );
            continue;
        }
        let size = dims
            .iter()
            .skip(1)
            .try_fold((dims[0] / block).checked_mul(type_size), |acc, &d| {
                acc.map(|a| a.checked_mul(d))
            })
            .flatten();
        let Some(size) = size else {
            cx.report(
                "WS508",
                Severity::High,
                Some(info_at),
                format!("tensor \"{name}\" dimensions {dims:?} overflow when multiplied out"),
            );
            continue;
        };
        if !names.insert(name.clone()) {
            cx.report(
                "WS506",
                Severity::High,
                Some(info_at),
                format!("tensor name \"{name}\" occurs twice"),
            );
        }
        tensors.push(TensorInfo {
            name,
            info_at,
            offset,
            size,
        });
    }
    let header_end = rd.offset();
    let data_start = header_end.div_ceil(alignment).saturating_mul(alignment);
    let data_len = rd.len.saturating_sub(data_start);
    if n_tensors > 0 && data_start > rd.len {
        return bad(
            "WS509",
            Severity::High,
            header_end,
            "file ends before the aligned start of the tensor data",
        );
    }
    check_layout(&mut tensors, data_start, data_len, alignment, cx);
    Ok(())
}

fn check_header_size(rd: &Rd, cx: &Context) -> R<()> {
    if rd.offset() > cx.options.max_header_bytes {
        return Err(Stop::Err(Error::Limit {
            path: rd.path.clone(),
            detail: format!(
                "GGUF metadata larger than the configured maximum of {} bytes",
                cx.options.max_header_bytes
            ),
        }));
    }
    Ok(())
}

fn skip_value(rd: &mut Rd, ty: u32, depth: u32) -> R<()> {
    if let Some(n) = scalar_size(ty) {
        return rd.skip(n, "metadata value");
    }
    match ty {
        T_STRING => rd.skip_string("metadata string"),
        T_ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return bad(
                    "WS505",
                    Severity::High,
                    rd.offset(),
                    format!("metadata arrays nested deeper than {MAX_ARRAY_DEPTH} levels"),
                );
            }
            let at = rd.offset();
            let et = rd.u32("array element type")?;
            let count = rd.u64("array length")?;
            let min = match scalar_size(et) {
                Some(s) => s,
                None if et == T_STRING => 8,
                None if et == T_ARRAY => 12,
                None => {
                    return bad(
                        "WS505",
                        Severity::High,
                        at,
                        format!("array of unknown metadata type {et}"),
                    );
                }
            };
            match count.checked_mul(min) {
                Some(total) if total <= rd.left() => {}
                _ => {
                    return bad(
                        "WS503",
                        Severity::High,
                        at,
                        format!(
                            "array of {count} elements cannot fit in the {} bytes left in the file",
                            rd.left()
                        ),
                    );
                }
            }
            if scalar_size(et).is_some() {
                return rd.skip(count * min, "array elements");
            }
            for _ in 0..count {
                skip_value(rd, et, depth + 1)?;
            }
            Ok(())
        }
        _ => bad(
            "WS505",
            Severity::High,
            rd.offset().saturating_sub(4),
            format!("unknown metadata value type {ty}"),
        ),
    }
}

fn check_layout(
    tensors: &mut [TensorInfo],
    data_start: u64,
    data_len: u64,
    alignment: u64,
    cx: &mut Context,
) {
    let mut ok: Vec<&TensorInfo> = Vec::with_capacity(tensors.len());
    for t in tensors.iter() {
        if t.offset % alignment != 0 {
            cx.report(
                "WS509",
                Severity::High,
                Some(t.info_at),
                format!(
                    "tensor \"{}\" offset {} is not a multiple of the alignment {alignment}",
                    t.name, t.offset
                ),
            );
        }
        match t.offset.checked_add(t.size) {
            Some(end) if end <= data_len => ok.push(t),
            _ => cx.report(
                "WS509",
                Severity::High,
                Some(t.info_at),
                format!(
                    "tensor \"{}\" ({} bytes at data offset {}) runs past the end of the file",
                    t.name, t.size, t.offset
                ),
            ),
        }
    }
    ok.sort_by_key(|t| (t.offset, t.size));
    let mut cursor = 0u64;
    let mut prev = "";
    for t in ok {
        if t.offset < cursor {
            cx.report(
                "WS509",
                Severity::High,
                Some(t.info_at),
                format!("tensor \"{}\" overlaps tensor \"{prev}\"", t.name),
            );
        } else if t.offset - cursor >= alignment {
            cx.report(
                "WS510",
                Severity::Medium,
                Some(data_start + cursor),
                format!(
                    "{} bytes before tensor \"{}\" belong to no tensor",
                    t.offset - cursor,
                    t.name
                ),
            );
        }
        cursor = cursor.max(t.offset + t.size);
        prev = &t.name;
    }
    if data_len > cursor && data_len - cursor >= alignment {
        cx.report(
            "WS510",
            Severity::Medium,
            Some(data_start + cursor),
            format!(
                "{} trailing bytes after the last tensor belong to no tensor",
                data_len - cursor
            ),
        );
    }
}

#[cfg(test)]
mod tests;
