//! safetensors structural validation.
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of UTF-8 JSON, then the
//! data region. The JSON maps tensor names to `{dtype, shape, data_offsets: [begin,
//! end]}` (offsets relative to the data region) plus an optional `__metadata__` object of
//! strings. Loaders trust these numbers, so the checks here are the ones a confused or
//! hostile file would break: header length against the spec limit and the file size,
//! duplicate JSON keys (loaders disagree on which one wins), dtype × shape against the
//! byte length (overflow-checked), offsets in range, and tensors that tile the data
//! region exactly: no overlap, no gaps, no trailing bytes that no tensor owns (room for
//! a hidden payload). Only the header is read unless `deep` is set.

#![deny(clippy::indexing_slicing)]

use super::keras::json::Json;
use crate::{Context, Error, Input, Severity};
use std::io::SeekFrom;

/// The largest header the reference implementation accepts (100 MB).
pub const SPEC_MAX_HEADER: u64 = 100_000_000;

/// Read exactly `buf.len()` bytes at `offset`, naming the input on failure.
pub(crate) fn read_exact_at(
    input: &mut dyn Input,
    offset: u64,
    buf: &mut [u8],
    cx: &Context,
) -> Result<(), Error> {
    input
        .seek(SeekFrom::Start(offset))
        .and_then(|_| input.read_exact(buf))
        .map_err(|source| Error::Io {
            path: cx.location.to_string(),
            source,
        })
}

/// True when `prefix` looks like safetensors: a plausible header length followed by `{`.
pub fn sniff(prefix: &[u8]) -> bool {
    let (Some(len), Some(&first)) = (prefix.get(..8), prefix.get(8)) else {
        return false;
    };
    let mut b = [0u8; 8];
    b.copy_from_slice(len);
    let n = u64::from_le_bytes(b);
    (2..=SPEC_MAX_HEADER).contains(&n) && first == b'{'
}

/// Bits per element of a safetensors dtype name, `None` when unknown.
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

struct Tensor {
    name: String,
    begin: u64,
    end: u64,
}

/// Validate one safetensors input of `len` bytes.
pub fn scan(input: &mut dyn Input, len: u64, cx: &mut Context) -> Result<(), Error> {
    if len < 8 {
        cx.report(
            "WS401",
            Severity::High,
            Some(0),
            format!("file is {len} bytes, too short for the 8-byte safetensors header length"),
        );
        return Ok(());
    }
    let mut nb = [0u8; 8];
    read_exact_at(input, 0, &mut nb, cx)?;
    let n = u64::from_le_bytes(nb);
    if n > SPEC_MAX_HEADER {
        cx.report(
            "WS401",
            Severity::High,
            Some(0),
            format!("header length {n} exceeds the 100 MB limit of the safetensors format"),
        );
        return Ok(());
    }
    if n > len - 8 {
        cx.report(
            "WS401",
            Severity::High,
            Some(0),
            format!(
                "header length {n} runs past the end of the file ({} bytes after the length field)",
                len - 8
            ),
        );
        return Ok(());
    }
    if n > cx.options.max_header_bytes {
        return Err(Error::Limit {
            path: cx.location.to_string(),
            detail: format!(
                "safetensors header of {n} bytes exceeds the configured maximum of {}",
                cx.options.max_header_bytes
            ),
        });
    }
    let mut header = vec![0u8; usize::try_from(n).unwrap_or(0)];
    read_exact_at(input, 8, &mut header, cx)?;
    let data_start = 8 + n;
    let data_len = len - data_start;
    let Some(tensors) = check_header(&header, data_len, cx) else {
        return Ok(());
    };
    check_layout(&tensors, data_start, data_len, cx);
    if cx.options.deep {
        read_data(input, data_start, data_len, cx)?;
    }
    Ok(())
}

/// Check the JSON header; returns the tensors with valid offsets, or `None` when the
/// header is too broken to continue.
fn check_header(header: &[u8], data_len: u64, cx: &mut Context) -> Option<Vec<Tensor>> {
    if std::str::from_utf8(header).is_err() {
        cx.report(
            "WS402",
            Severity::High,
            Some(8),
            "header is not valid UTF-8",
        );
        return None;
    }
    if header.first() != Some(&b'{') {
        cx.report(
            "WS402",
            Severity::High,
            Some(8),
            "header does not start with '{' as the format requires",
        );
        return None;
    }
    let json = match Json::parse(header) {
        Ok(j) => j,
        Err(e) => {
            cx.report(
                "WS402",
                Severity::High,
                Some(8),
                format!("header is not valid JSON: {e}"),
            );
            return None;
        }
    };
    let Json::Obj(members) = &json else {
        cx.report(
            "WS402",
            Severity::High,
            Some(8),
            "header is not a JSON object",
        );
        return None;
    };
    if let Some(k) = json.duplicate_key() {
        cx.report(
            "WS403",
            Severity::High,
            Some(8),
            format!("header names \"{k}\" twice; loaders disagree on which entry wins"),
        );
    }
    let mut tensors = Vec::with_capacity(members.len());
    for (name, entry) in members {
        if name == "__metadata__" {
            check_metadata(entry, cx);
            continue;
        }
        if let Some(t) = check_entry(name, entry, data_len, cx) {
            tensors.push(t);
        }
    }
    Some(tensors)
}

fn check_metadata(entry: &Json, cx: &mut Context) {
    let Json::Obj(members) = entry else {
        cx.report(
            "WS404",
            Severity::Medium,
            Some(8),
            "__metadata__ is not an object of strings",
        );
        return;
    };
    if let Some(k) = entry.duplicate_key() {
        cx.report(
            "WS403",
            Severity::High,
            Some(8),
            format!("__metadata__ names \"{k}\" twice; loaders disagree on which entry wins"),
        );
    }
    for (k, v) in members {
        if !matches!(v, Json::Str(_)) {
            cx.report(
                "WS404",
                Severity::Medium,
                Some(8),
                format!("__metadata__ entry \"{k}\" is not a string, as the format requires"),
            );
        }
    }
}

fn check_entry(name: &str, entry: &Json, data_len: u64, cx: &mut Context) -> Option<Tensor> {
    let Json::Obj(fields) = entry else {
        cx.report(
            "WS405",
            Severity::High,
            Some(8),
            format!("tensor \"{name}\" is not an object with dtype, shape and data_offsets"),
        );
        return None;
    };
    if let Some(k) = entry.duplicate_key() {
        cx.report(
            "WS403",
            Severity::High,
            Some(8),
            format!("tensor \"{name}\" names \"{k}\" twice; loaders disagree on which wins"),
        );
    }
    for (k, _) in fields {
        if !matches!(k.as_str(), "dtype" | "shape" | "data_offsets") {
            cx.report(
                "WS405",
                Severity::Medium,
                Some(8),
                format!("tensor \"{name}\" has an unknown field \"{k}\""),
            );
        }
    }
    let dtype = entry.get("dtype").and_then(Json::as_str);
    let bits = match dtype {
        None => {
            cx.report(
                "WS405",
                Severity::High,
                Some(8),
                format!("tensor \"{name}\" has no dtype string"),
            );
            return None;
        }
        Some(d) => match dtype_bits(d) {
            Some(b) => b,
            None => {
                cx.report(
                    "WS405",
                    Severity::High,
                    Some(8),
                    format!("tensor \"{name}\" has unknown dtype \"{d}\""),
                );
                return None;
            }
        },
    };
    let shape: Option<Vec<u64>> = match entry.get("shape") {
        Some(Json::Arr(dims)) => dims.iter().map(Json::as_u64).collect(),
        _ => None,
    };
    let Some(shape) = shape else {
        cx.report(
            "WS405",
            Severity::High,
            Some(8),
            format!("tensor \"{name}\" has no shape made of non-negative integers"),
        );
        return None;
    };
    let offsets: Option<Vec<u64>> = match entry.get("data_offsets") {
        Some(Json::Arr(o)) if o.len() == 2 => o.iter().map(Json::as_u64).collect(),
        _ => None,
    };
    let (begin, end) = match offsets.as_deref() {
        Some(&[b, e]) => (b, e),
        _ => {
            cx.report(
                "WS405",
                Severity::High,
                Some(8),
                format!("tensor \"{name}\" has no data_offsets pair of non-negative integers"),
            );
            return None;
        }
    };
    if begin > end || end > data_len {
        cx.report(
            "WS407",
            Severity::High,
            Some(8),
            format!(
                "tensor \"{name}\" has data_offsets [{begin}, {end}] outside the data region of {data_len} bytes"
            ),
        );
        return None;
    }
    let nbits = shape.iter().try_fold(bits, |acc, &d| acc.checked_mul(d));
    match nbits {
        None => cx.report(
            "WS406",
            Severity::High,
            Some(8),
            format!("tensor \"{name}\" shape {shape:?} overflows when multiplied out"),
        ),
        Some(nb) if nb % 8 != 0 => cx.report(
            "WS406",
            Severity::High,
            Some(8),
            format!("tensor \"{name}\" of {} {nb} bits is not a whole number of bytes", dtype.unwrap_or("")),
        ),
        Some(nb) if nb / 8 != end - begin => cx.report(
            "WS406",
            Severity::High,
            Some(8),
            format!(
                "tensor \"{name}\" is {} with shape {shape:?} ({} bytes) but data_offsets span {} bytes",
                dtype.unwrap_or(""),
                nb / 8,
                end - begin
            ),
        ),
        Some(_) => {}
    }
    Some(Tensor {
        name: name.to_owned(),
        begin,
        end,
    })
}

/// Tensors sorted by offset must tile `[0, data_len)`: no overlap, no gap, nothing after.
fn check_layout(tensors: &[Tensor], data_start: u64, data_len: u64, cx: &mut Context) {
    let mut order: Vec<&Tensor> = tensors.iter().collect();
    order.sort_by_key(|t| (t.begin, t.end));
    let mut cursor = 0u64;
    let mut prev: Option<&str> = None;
    for t in order {
        if t.begin < cursor {
            cx.report(
                "WS408",
                Severity::High,
                Some(data_start + t.begin),
                format!(
                    "tensor \"{}\" overlaps tensor \"{}\" in the data region",
                    t.name,
                    prev.unwrap_or("")
                ),
            );
        } else if t.begin > cursor {
            cx.report(
                "WS409",
                Severity::Medium,
                Some(data_start + cursor),
                format!(
                    "{} bytes before tensor \"{}\" belong to no tensor (room for a hidden payload)",
                    t.begin - cursor,
                    t.name
                ),
            );
        }
        cursor = cursor.max(t.end);
        prev = Some(&t.name);
    }
    if cursor < data_len {
        cx.report(
            "WS410",
            Severity::Medium,
            Some(data_start + cursor),
            format!(
                "{} trailing bytes after the last tensor belong to no tensor",
                data_len - cursor
            ),
        );
    }
}

/// `--deep`: read the whole data region in bounded chunks to prove the bytes exist.
fn read_data(input: &mut dyn Input, start: u64, len: u64, cx: &Context) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: cx.location.to_string(),
        source,
    };
    input.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(1 << 20)).unwrap_or(1 << 20);
        let chunk = buf.get_mut(..want).unwrap_or_default();
        input.read_exact(chunk).map_err(io)?;
        left -= want as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Finding, Location, ScanOptions};
    use std::io::Cursor;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data));
        v
    }

    fn run_opts(bytes: &[u8], opts: &ScanOptions) -> (Result<(), Error>, Vec<Finding>) {
        let mut findings = Vec::new();
        let mut cx = Context {
            location: Location::file("t.safetensors"),
            options: opts,
            findings: &mut findings,
            depth: 0,
        };
        let r = scan(&mut Cursor::new(bytes), bytes.len() as u64, &mut cx);
        (r, findings)
    }

    fn rules(bytes: &[u8]) -> Vec<&'static str> {
        let (r, f) = run_opts(bytes, &ScanOptions::default());
        r.unwrap();
        f.iter().map(|f| f.rule).collect()
    }

    const GOOD: &str = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}"#;

    #[test]
    fn valid_file_is_clean_and_sniffed() {
        let f = file(GOOD, 22);
        assert!(sniff(&f));
        assert_eq!(rules(&f), Vec::<&str>::new());
        let opts = ScanOptions {
            deep: true,
            ..ScanOptions::default()
        };
        let (r, findings) = run_opts(&f, &opts);
        r.unwrap();
        assert!(findings.is_empty());
    }

    #[test]
    fn empty_header_and_scalar_and_sub_byte() {
        assert_eq!(rules(&file("{}", 0)), Vec::<&str>::new());
        let h = r#"{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"f":{"dtype":"F4","shape":[4],"data_offsets":[8,10]}}"#;
        assert_eq!(rules(&file(h, 10)), Vec::<&str>::new());
        let h = r#"{"f":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#;
        assert_eq!(rules(&file(h, 2)), vec!["WS406"]);
    }

    #[test]
    fn header_length_bounds() {
        let mut f = file(GOOD, 22);
        f[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(rules(&f), vec!["WS401"]);
        f[..8].copy_from_slice(&500u64.to_le_bytes());
        assert_eq!(rules(&f), vec!["WS401"]);
        assert_eq!(rules(&[1, 2, 3]), vec!["WS401"]);
        let opts = ScanOptions {
            max_header_bytes: 10,
            ..ScanOptions::default()
        };
        assert!(matches!(
            run_opts(&file(GOOD, 22), &opts).0,
            Err(Error::Limit { .. })
        ));
    }

    #[test]
    fn bad_json_and_utf8() {
        assert_eq!(rules(&file("{\"a\":", 0)), vec!["WS402"]);
        assert_eq!(rules(&file("[1,2]", 0)), vec!["WS402"]);
        let mut f = file("{\"\u{e9}\":1}", 0);
        f[10] = 0xff;
        assert_eq!(rules(&f), vec!["WS402"]);
    }

    #[test]
    fn duplicate_keys() {
        let h = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        assert_eq!(rules(&file(h, 2)), vec!["WS403"]);
        let h = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"dtype":"I8"}}"#;
        assert_eq!(rules(&file(h, 1)), vec!["WS403"]);
    }

    #[test]
    fn metadata_must_be_strings() {
        let h = r#"{"__metadata__":{"x":{"y":1}}}"#;
        assert_eq!(rules(&file(h, 0)), vec!["WS404"]);
        let h = r#"{"__metadata__":[1]}"#;
        assert_eq!(rules(&file(h, 0)), vec!["WS404"]);
    }

    #[test]
    fn entry_shape_and_dtype_errors() {
        let h = r#"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#;
        assert_eq!(rules(&file(h, 1)), vec!["WS405", "WS410"]);
        let h = r#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}"#;
        assert_eq!(rules(&file(h, 1)), vec!["WS405", "WS410"]);
        let h = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"evil":1}}"#;
        assert_eq!(rules(&file(h, 1)), vec!["WS405"]);
        let h = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        assert_eq!(rules(&file(h, 8)), vec!["WS406"]);
        let h = r#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
        assert_eq!(rules(&file(h, 8)), vec!["WS406"]);
    }

    #[test]
    fn layout_errors() {
        // out of range
        let h = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#;
        assert_eq!(rules(&file(h, 2)), vec!["WS407", "WS410"]);
        // overlap
        let h = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#;
        assert_eq!(rules(&file(h, 4)), vec!["WS408"]);
        // gap
        let h = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#;
        assert_eq!(rules(&file(h, 6)), vec!["WS409"]);
        // trailing
        let h = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
        assert_eq!(rules(&file(h, 3)), vec!["WS410"]);
        // reversed JSON order is fine
        let h = r#"{"z":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#;
        assert_eq!(rules(&file(h, 4)), Vec::<&str>::new());
    }

    #[test]
    fn sniff_rejects_others() {
        assert!(!sniff(b"GGUF\x03\0\0\0\0\0\0\0"));
        assert!(!sniff(b"\x80\x02}q\0"));
        assert!(!sniff(b"short"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = run_opts(&bytes, &ScanOptions::default());
        }
    }
}
