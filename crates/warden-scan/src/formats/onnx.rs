//! ONNX structural validation: a bounded protobuf wire-format walker.
//!
//! No generated code: the walker knows the field numbers of the messages that matter
//! (ModelProto → GraphProto → NodeProto → AttributeProto → nested graphs, TensorProto,
//! SparseTensorProto, FunctionProto, TrainingInfoProto, OperatorSetIdProto) and skips
//! everything else by wire type, seeking over raw tensor data without reading it. Every
//! length is checked against its enclosing message before it is followed, and nesting
//! is bounded. Checks: tensors whose `external_data` location is absolute, contains
//! `..`, a drive letter, a UNC path or a URL (it would read files outside the model
//! directory); custom operator domains outside the ONNX standard set and ONNX Runtime's
//! own (informational); malformed protobuf.

#![deny(clippy::indexing_slicing)]

use super::gguf::{R, Rd, Stop, bad};
use crate::{Context, Error, Input, Severity};
use std::collections::HashSet;

/// Deepest message nesting followed (graphs inside If/Loop/Scan inside graphs...).
const MAX_DEPTH: u32 = 64;
/// Longest string field read (names, domains, external-data keys and values).
const MAX_STRING: u64 = 64 << 10;
/// Most findings per model.
const MAX_FINDINGS: usize = 256;

/// Domains of the ONNX standard.
const STANDARD_DOMAINS: &[&str] = &[
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
];
/// ONNX Runtime's own contrib-operator domains.
const ORT_DOMAINS: &[&str] = &[
    "com.microsoft",
    "com.microsoft.nchwc",
    "com.microsoft.experimental",
    "com.microsoft.mlfeaturizers",
    "com.microsoft.dml",
];

/// True when `prefix` looks like a serialized ModelProto: `ir_version` (field 1,
/// varint, 1..=15) first, then another ModelProto field with its proper wire type.
pub fn sniff(prefix: &[u8]) -> bool {
    let (Some(&0x08), Some(&v), Some(&tag)) = (prefix.first(), prefix.get(1), prefix.get(2)) else {
        return false;
    };
    let field = tag >> 3;
    let wt = tag & 7;
    (1..=15).contains(&v)
        && match field {
            2 | 3 | 4 | 6 | 7 | 8 | 14 => wt == 2,
            5 => wt == 0,
            _ => false,
        }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Function,
    TrainingInfo,
    OpsetId,
    Entry,
}

/// Which sub-message a (kind, field) holds, if it is one we follow.
fn child(kind: Kind, field: u64) -> Option<Kind> {
    use Kind::*;
    Some(match (kind, field) {
        (Model, 7) => Graph,
        (Model, 8) => OpsetId,
        (Model, 20) => TrainingInfo,
        (Model, 25) => Function,
        (Graph, 1) => Node,
        (Graph, 5) => Tensor,
        (Graph, 15) => SparseTensor,
        (Node, 5) => Attribute,
        (Attribute, 5 | 10) => Tensor,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 22 | 23) => SparseTensor,
        (Tensor, 13) => Entry,
        (SparseTensor, 1 | 2) => Tensor,
        (Function, 7) => Node,
        (Function, 9) => OpsetId,
        (TrainingInfo, 1 | 2) => Graph,
        _ => return None,
    })
}

/// Which string fields we read for a kind.
fn wanted_string(kind: Kind, field: u64) -> bool {
    matches!(
        (kind, field),
        (Kind::Node, 3 | 4 | 7) | (Kind::Tensor, 8) | (Kind::OpsetId, 1) | (Kind::Entry, 1 | 2)
    )
}

#[derive(Default)]
struct Fields {
    strings: Vec<(u64, String)>,
    varints: Vec<(u64, u64)>,
    entries: Vec<(String, String)>,
    children: Vec<u64>,
}

impl Fields {
    fn string(&self, field: u64) -> Option<&str> {
        self.strings
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, s)| s.as_str())
    }
}

struct Walker<'c, 'a> {
    cx: &'c mut Context<'a>,
    domains: HashSet<String>,
    reported: usize,
}

impl Walker<'_, '_> {
    fn report(&mut self, rule: &'static str, sev: Severity, off: u64, msg: String) {
        if self.reported < MAX_FINDINGS {
            self.reported += 1;
            self.cx.report(rule, sev, Some(off), msg);
        }
    }

    fn domain(&mut self, domain: &str, at: u64, what: &str) {
        if STANDARD_DOMAINS.contains(&domain) || ORT_DOMAINS.contains(&domain) {
            return;
        }
        if self.domains.insert(domain.to_owned()) {
            self.report(
                "WS602",
                Severity::Info,
                at,
                format!(
                    "{what} uses the custom operator domain \"{domain}\" (needs a custom operator library to run)"
                ),
            );
        }
    }
}

fn varint(rd: &mut Rd, end: u64) -> R<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        if rd.offset() >= end {
            return bad(
                "WS603",
                Severity::High,
                rd.offset(),
                "protobuf varint runs past the end of its message",
            );
        }
        let mut b = [0u8; 1];
        rd.read_into(&mut b, "protobuf varint")?;
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    bad(
        "WS603",
        Severity::High,
        rd.offset(),
        "protobuf varint longer than 10 bytes",
    )
}

fn message(rd: &mut Rd, w: &mut Walker, end: u64, kind: Kind, depth: u32) -> R<Fields> {
    if depth > MAX_DEPTH {
        return bad(
            "WS605",
            Severity::High,
            rd.offset(),
            format!("messages nested deeper than {MAX_DEPTH} levels"),
        );
    }
    let start = rd.offset();
    let mut f = Fields::default();
    while rd.offset() < end {
        let tag_at = rd.offset();
        let key = varint(rd, end)?;
        let field = key >> 3;
        let wt = key & 7;
        if field == 0 {
            return bad("WS603", Severity::High, tag_at, "protobuf field number 0");
        }
        match wt {
            0 => {
                let v = varint(rd, end)?;
                f.varints.push((field, v));
            }
            1 | 5 => {
                let n = if wt == 1 { 8 } else { 4 };
                if end - rd.offset() < n {
                    return bad(
                        "WS603",
                        Severity::High,
                        tag_at,
                        "fixed-size protobuf field runs past the end of its message",
                    );
                }
                rd.skip(n, "protobuf field")?;
            }
            2 => {
                let n = varint(rd, end)?;
                let at = rd.offset();
                if n > end - at {
                    return bad(
                        "WS603",
                        Severity::High,
                        tag_at,
                        format!(
                            "protobuf field {field} claims {n} bytes but its message has only {} left",
                            end - at
                        ),
                    );
                }
                if let Some(ck) = child(kind, field) {
                    f.children.push(field);
                    let sub = message(rd, w, at + n, ck, depth + 1)?;
                    if ck == Kind::Entry {
                        f.entries.push((
                            sub.string(1).unwrap_or("").to_owned(),
                            sub.string(2).unwrap_or("").to_owned(),
                        ));
                    }
                } else if wanted_string(kind, field) && n <= MAX_STRING {
                    let mut v = vec![0u8; usize::try_from(n).unwrap_or(0)];
                    rd.read_into(&mut v, "protobuf string")?;
                    f.strings
                        .push((field, String::from_utf8_lossy(&v).into_owned()));
                } else {
                    rd.skip(n, "protobuf field")?;
                }
            }
            _ => {
                return bad(
                    "WS603",
                    Severity::High,
                    tag_at,
                    format!("protobuf wire type {wt} is not valid in an ONNX model"),
                );
            }
        }
    }
    if rd.offset() != end {
        return bad(
            "WS603",
            Severity::High,
            rd.offset(),
            "protobuf field runs past the end of its message",
        );
    }
    finish(w, kind, &f, start);
    Ok(f)
}

fn finish(w: &mut Walker, kind: Kind, f: &Fields, at: u64) {
    match kind {
        Kind::Model => {
            if !f.children.contains(&7) {
                w.report(
                    "WS603",
                    Severity::High,
                    at,
                    "malformed ONNX model: no graph (truncated or not a model)".into(),
                );
            } else if !f.children.contains(&8) {
                w.report(
                    "WS603",
                    Severity::Medium,
                    at,
                    "malformed ONNX model: no opset_import (truncated or hand-made)".into(),
                );
            }
        }
        Kind::Node => {
            let op = f.string(4).unwrap_or("");
            if let Some(d) = f.string(7) {
                w.domain(d, at, &format!("operator {op}"));
            }
        }
        Kind::OpsetId => {
            if let Some(d) = f.string(1) {
                w.domain(d, at, "opset_import");
            }
        }
        Kind::Tensor => {
            let external = f.varints.iter().any(|&(k, v)| k == 14 && v == 1);
            if !external && f.entries.is_empty() {
                return;
            }
            let name = f.string(8).unwrap_or("");
            match f.entries.iter().find(|(k, _)| k == "location") {
                None => w.report(
                    "WS606",
                    Severity::Medium,
                    at,
                    format!("tensor \"{name}\" is stored externally but names no location"),
                ),
                Some((_, loc)) => match location_problem(loc) {
                    Some(why) => w.report(
                        "WS601",
                        Severity::High,
                        at,
                        format!(
                            "tensor \"{name}\" reads its data from \"{loc}\", {why}: a file outside the model directory"
                        ),
                    ),
                    None => w.report(
                        "WS604",
                        Severity::Info,
                        at,
                        format!("tensor \"{name}\" keeps its data in the external file \"{loc}\""),
                    ),
                },
            }
            if !external {
                w.report(
                    "WS606",
                    Severity::Medium,
                    at,
                    format!(
                        "tensor \"{name}\" has external_data but data_location is not EXTERNAL"
                    ),
                );
            }
        }
        _ => {}
    }
}

/// Why an external-data location escapes the model directory, if it does.
fn location_problem(loc: &str) -> Option<&'static str> {
    let b = loc.as_bytes();
    if loc.is_empty() {
        return Some("an empty path");
    }
    if loc.contains('\0') {
        return Some("a path with a NUL byte");
    }
    if loc.starts_with('/') || loc.starts_with('\\') {
        return Some("an absolute path");
    }
    if b.get(1) == Some(&b':') && b.first().is_some_and(u8::is_ascii_alphabetic) {
        return Some("a path with a drive letter");
    }
    if loc.contains("://") || loc.to_ascii_lowercase().starts_with("file:") {
        return Some("a URL");
    }
    if loc.starts_with('~') {
        return Some("a home-directory path");
    }
    if loc.split(['/', '\\']).any(|c| c == "..") {
        return Some("a path that climbs out with '..'");
    }
    None
}

/// Validate one ONNX model of `len` bytes.
pub fn scan(input: &mut dyn Input, len: u64, cx: &mut Context) -> Result<(), Error> {
    let path = cx.location.to_string();
    let mut rd = Rd::new(input, len, path, "WS603");
    let mut w = Walker {
        cx,
        domains: HashSet::new(),
        reported: 0,
    };
    match message(&mut rd, &mut w, len, Kind::Model, 0) {
        Ok(_) => Ok(()),
        Err(Stop::Bad(rule, sev, off, msg)) => {
            w.cx.report(rule, sev, Some(off), format!("malformed ONNX model: {msg}"));
            Ok(())
        }
        Err(Stop::Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Finding, Location, ScanOptions};
    use std::io::Cursor;

    fn var(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn ld(field: u64, body: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        var(field << 3 | 2, &mut o);
        var(body.len() as u64, &mut o);
        o.extend_from_slice(body);
        o
    }
    fn vi(field: u64, v: u64) -> Vec<u8> {
        let mut o = Vec::new();
        var(field << 3, &mut o);
        var(v, &mut o);
        o
    }
    fn node(op: &str, domain: &str, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut n = ld(1, b"x");
        n.extend(ld(2, b"y"));
        n.extend(ld(4, op.as_bytes()));
        n.extend(ld(7, domain.as_bytes()));
        for a in attrs {
            n.extend(ld(5, a));
        }
        n
    }
    fn tensor(name: &str, external: Option<&str>) -> Vec<u8> {
        let mut t = vi(1, 4);
        t.extend(vi(2, 1));
        t.extend(ld(8, name.as_bytes()));
        match external {
            None => t.extend(ld(9, &[0u8; 16])),
            Some(loc) => {
                let mut e = ld(1, b"location");
                e.extend(ld(2, loc.as_bytes()));
                t.extend(ld(13, &e));
                t.extend(vi(14, 1));
            }
        }
        t
    }
    fn model(nodes: &[Vec<u8>], inits: &[Vec<u8>], opsets: &[&str]) -> Vec<u8> {
        let mut g = Vec::new();
        for n in nodes {
            g.extend(ld(1, n));
        }
        g.extend(ld(2, b"graph"));
        for t in inits {
            g.extend(ld(5, t));
        }
        let mut m = vi(1, 8);
        m.extend(ld(2, b"pytorch"));
        m.extend(ld(7, &g));
        for d in opsets {
            let mut o = ld(1, d.as_bytes());
            o.extend(vi(2, 17));
            m.extend(ld(8, &o));
        }
        m
    }

    fn run(b: &[u8]) -> Vec<Finding> {
        let opts = ScanOptions::default();
        let mut out = Vec::new();
        let mut cx = Context {
            location: Location::file("m.onnx"),
            options: &opts,
            findings: &mut out,
            depth: 0,
        };
        scan(&mut Cursor::new(b), b.len() as u64, &mut cx).unwrap();
        out
    }
    fn rules(b: &[u8]) -> Vec<(&'static str, Severity)> {
        run(b).iter().map(|f| (f.rule, f.severity)).collect()
    }

    #[test]
    fn standard_model_is_clean() {
        let m = model(
            &[
                node("Relu", "", &[]),
                node("FusedMatMul", "com.microsoft", &[]),
            ],
            &[tensor("w", None)],
            &["", "ai.onnx.ml", "com.microsoft"],
        );
        assert!(sniff(&m));
        assert_eq!(rules(&m), vec![]);
    }

    #[test]
    fn custom_domains_are_info_once() {
        let m = model(
            &[node("Foo", "my.ops", &[]), node("Bar", "my.ops", &[])],
            &[],
            &["", "my.ops", "ai.onnx.contrib"],
        );
        assert_eq!(
            rules(&m),
            vec![("WS602", Severity::Info), ("WS602", Severity::Info)]
        );
    }

    #[test]
    fn external_data_locations() {
        for bad_loc in [
            "/etc/passwd",
            "../../secret.bin",
            "a/../../b",
            "C:\\Windows\\win.ini",
            "\\\\host\\share\\x",
            "https://evil.example/w.bin",
            "~/.ssh/id_rsa",
            "weights\\..\\..\\x",
        ] {
            let m = model(&[], &[tensor("w", Some(bad_loc))], &[""]);
            assert_eq!(rules(&m), vec![("WS601", Severity::High)], "{bad_loc}");
        }
        let m = model(&[], &[tensor("w", Some("weights/w.bin"))], &[""]);
        assert_eq!(rules(&m), vec![("WS604", Severity::Info)]);
        // EXTERNAL with no location
        let mut t = ld(8, b"w");
        t.extend(vi(14, 1));
        assert_eq!(
            rules(&model(&[], &[t], &[""])),
            vec![("WS606", Severity::Medium)]
        );
    }

    #[test]
    fn nested_subgraphs_are_walked() {
        // If node whose then_branch (attribute g) holds an initializer with a bad location
        let mut inner = ld(5, &tensor("w", Some("/abs")));
        inner.extend(ld(1, &node("Evil", "x.y", &[])));
        let mut attr = ld(1, b"then_branch");
        attr.extend(ld(6, &inner));
        attr.extend(vi(20, 5));
        let m = model(&[node("If", "", &[attr])], &[], &[""]);
        assert_eq!(
            rules(&m),
            vec![("WS601", Severity::High), ("WS602", Severity::Info)]
        );
    }

    #[test]
    fn malformed_protobuf() {
        let m = model(&[node("Relu", "", &[])], &[], &[""]);
        // truncation anywhere is a finding, never a panic
        for n in 1..m.len() {
            let f = run(&m[..n]);
            assert!(f.iter().any(|f| f.rule == "WS603"), "cut at {n}: {f:?}");
        }
        // length larger than the enclosing message
        let mut bad_len = vi(1, 8);
        bad_len.extend([0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(rules(&bad_len), vec![("WS603", Severity::High)]);
        // group wire type
        assert_eq!(rules(&[0x08, 0x08, 0x0b]), vec![("WS603", Severity::High)]);
        // over-long varint
        let mut long = vec![0x08];
        long.extend([0xff; 11]);
        assert_eq!(rules(&long), vec![("WS603", Severity::High)]);
    }

    #[test]
    fn nesting_is_bounded() {
        // graph -> node -> attribute -> graph ... 200 deep
        let mut g = Vec::new();
        for _ in 0..200 {
            let attr = ld(6, &g);
            let n = ld(5, &attr);
            g = ld(1, &n);
        }
        let mut m = vi(1, 8);
        m.extend(ld(7, &g));
        m.extend(ld(8, &ld(1, b"")));
        assert_eq!(rules(&m), vec![("WS605", Severity::High)]);
    }

    #[test]
    fn sniff_rejects_others() {
        assert!(!sniff(b"PK\x03\x04"));
        assert!(!sniff(b"\x80\x02"));
        assert!(!sniff(b"\x08\x00\x12"));
        assert!(!sniff(b"\x08\x07\x10"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(mutations in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 0..6)) {
            let mut b = model(&[node("Relu", "", &[])], &[tensor("w", Some("a.bin"))], &["", "x"]);
            for (i, v) in mutations {
                if let Some(x) = b.get_mut(i) {
                    *x = v;
                }
            }
            let _ = run(&b);
        }
    }
}
