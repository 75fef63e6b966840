//! GGUF unit tests: a tiny writer builds valid files, then each malformation is checked.

use super::*;
use crate::{Finding, Location, ScanOptions};
use std::io::Cursor;

enum V<'a> {
    U32(u32),
    Str(&'a str),
    StrArr(&'a [&'a str]),
    F32Arr(u64),
    Raw(u32, Vec<u8>),
}

struct G<'a> {
    version: u32,
    kv: Vec<(&'a str, V<'a>)>,
    /// name, dims, type, offset
    tensors: Vec<(&'a str, Vec<u64>, u32, u64)>,
    data: usize,
    align: u64,
}

fn s(out: &mut Vec<u8>, v: &str) {
    out.extend((v.len() as u64).to_le_bytes());
    out.extend(v.as_bytes());
}

impl G<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut o = b"GGUF".to_vec();
        o.extend(self.version.to_le_bytes());
        o.extend((self.tensors.len() as u64).to_le_bytes());
        o.extend((self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            s(&mut o, k);
            match v {
                V::U32(x) => {
                    o.extend(T_U32.to_le_bytes());
                    o.extend(x.to_le_bytes());
                }
                V::Str(x) => {
                    o.extend(T_STRING.to_le_bytes());
                    s(&mut o, x);
                }
                V::StrArr(xs) => {
                    o.extend(T_ARRAY.to_le_bytes());
                    o.extend(T_STRING.to_le_bytes());
                    o.extend((xs.len() as u64).to_le_bytes());
                    for x in *xs {
                        s(&mut o, x);
                    }
                }
                V::F32Arr(n) => {
                    o.extend(T_ARRAY.to_le_bytes());
                    o.extend(T_F32.to_le_bytes());
                    o.extend(n.to_le_bytes());
                    for _ in 0..*n {
                        o.extend(1f32.to_le_bytes());
                    }
                }
                V::Raw(t, b) => {
                    o.extend(t.to_le_bytes());
                    o.extend(b);
                }
            }
        }
        for (name, dims, ty, off) in &self.tensors {
            s(&mut o, name);
            o.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                o.extend(d.to_le_bytes());
            }
            o.extend(ty.to_le_bytes());
            o.extend(off.to_le_bytes());
        }
        while (o.len() as u64) % self.align != 0 {
            o.push(0);
        }
        o.extend(std::iter::repeat_n(0u8, self.data));
        o
    }
}

fn good<'a>() -> G<'a> {
    G {
        version: 3,
        kv: vec![
            ("general.architecture", V::Str("llama")),
            ("tokenizer.ggml.tokens", V::StrArr(&["a", "b", "<s>"])),
            ("tokenizer.ggml.scores", V::F32Arr(3)),
            (
                "tokenizer.chat_template",
                V::Str("{% for m in messages %}{{ m['role'] ~ ': ' ~ m['content'] }}{% endfor %}"),
            ),
        ],
        tensors: vec![
            ("w", vec![4, 2], 0, 0),   // 32 bytes F32
            ("q", vec![32, 1], 8, 32), // one Q8_0 block, 34 bytes
            ("h", vec![8], 1, 96),     // 16 bytes F16
        ],
        data: 112,
        align: 32,
    }
}

fn run(bytes: &[u8], opts: &ScanOptions) -> (Result<(), Error>, Vec<Finding>) {
    let mut findings = Vec::new();
    let mut cx = Context {
        location: Location::file("t.gguf"),
        options: opts,
        findings: &mut findings,
        depth: 0,
    };
    let r = scan(&mut Cursor::new(bytes), bytes.len() as u64, &mut cx);
    (r, findings)
}

fn rules(bytes: &[u8]) -> Vec<&'static str> {
    let (r, f) = run(bytes, &ScanOptions::default());
    r.unwrap();
    f.iter().map(|f| f.rule).collect()
}

const NONE: Vec<&str> = Vec::new();

#[test]
fn valid_file_is_clean() {
    let b = good().bytes();
    assert!(sniff(&b));
    assert_eq!(rules(&b), NONE);
    let mut g = good();
    g.version = 2;
    assert_eq!(rules(&g.bytes()), NONE);
    let mut g = good();
    g.kv.push(("general.alignment", V::U32(64)));
    g.align = 64;
    g.tensors = vec![("w", vec![4, 2], 0, 0), ("h", vec![8], 1, 64)];
    g.data = 80;
    assert_eq!(rules(&g.bytes()), NONE);
}

#[test]
fn versions() {
    let mut g = good();
    g.version = 1;
    assert_eq!(rules(&g.bytes()), vec!["WS502"]);
    g.version = 9;
    assert_eq!(rules(&g.bytes()), vec!["WS502"]);
    assert_eq!(rules(b"GGU"), vec!["WS501"]);
}

#[test]
fn counts_bounded_by_file_size() {
    let mut b = good().bytes();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(rules(&b), vec!["WS503"]);
    let mut b = good().bytes();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_eq!(rules(&b), vec!["WS503"]);
}

#[test]
fn huge_string_and_array_lengths() {
    let mut g = good();
    let mut raw = T_STRING.to_le_bytes().to_vec();
    raw.extend(u64::MAX.to_le_bytes());
    g.kv.insert(0, ("x.arr", V::Raw(T_ARRAY, raw)));
    assert_eq!(rules(&g.bytes()), vec!["WS503"]);
    let mut g = good();
    g.kv.insert(
        0,
        ("x.s", V::Raw(T_STRING, (1u64 << 50).to_le_bytes().to_vec())),
    );
    assert_eq!(rules(&g.bytes()), vec!["WS501"]);
    let mut g = good();
    g.kv.insert(0, ("x.t", V::Raw(77, vec![0; 8])));
    assert_eq!(rules(&g.bytes()), vec!["WS505"]);
    // arrays of arrays nested too deep
    let mut raw = Vec::new();
    for _ in 0..6 {
        raw.extend(T_ARRAY.to_le_bytes());
        raw.extend(1u64.to_le_bytes());
    }
    raw.extend(T_U8.to_le_bytes());
    raw.extend(1u64.to_le_bytes());
    raw.push(0);
    let mut g = good();
    g.kv.insert(0, ("x.deep", V::Raw(T_ARRAY, raw)));
    assert_eq!(rules(&g.bytes()), vec!["WS505"]);
}

#[test]
fn duplicates() {
    let mut g = good();
    g.kv.push(("general.architecture", V::Str("gpt2")));
    assert_eq!(rules(&g.bytes()), vec!["WS506"]);
    let mut g = good();
    g.tensors[2].0 = "w";
    assert_eq!(rules(&g.bytes()), vec!["WS506"]);
}

#[test]
fn alignment_rules() {
    let mut g = good();
    g.kv.push(("general.alignment", V::U32(3)));
    assert_eq!(rules(&g.bytes()), vec!["WS507"]);
    let mut g = good();
    g.kv.push(("general.alignment", V::Str("32")));
    assert_eq!(rules(&g.bytes()), vec!["WS507"]);
    let mut g = good();
    g.tensors[2].3 = 80; // not a multiple of 32; also leaves a gap < alignment
    assert_eq!(rules(&g.bytes()), vec!["WS509"]);
}

#[test]
fn tensor_info_rules() {
    let mut g = good();
    g.tensors[0].1 = vec![1, 1, 1, 1, 1];
    assert_eq!(rules(&g.bytes()), vec!["WS508"]);
    let mut g = good();
    g.tensors[0].2 = 4; // removed Q4_2
    assert_eq!(rules(&g.bytes()), vec!["WS508", "WS510"]);
    let mut g = good();
    g.tensors[1].1 = vec![33, 1]; // not a whole Q8_0 block
    assert_eq!(rules(&g.bytes()), vec!["WS508", "WS510"]);
    let mut g = good();
    g.tensors[0].1 = vec![u64::MAX, 2];
    assert_eq!(rules(&g.bytes()), vec!["WS508", "WS510"]);
}

#[test]
fn layout_rules() {
    let mut g = good();
    g.tensors[2].3 = 1 << 40; // out of range
    let r = rules(&g.bytes());
    assert!(r.contains(&"WS509"), "{r:?}");
    let mut g = good();
    g.tensors[1].3 = 0; // overlaps w
    assert_eq!(rules(&g.bytes()), vec!["WS509", "WS510"]);
    let mut g = good();
    g.data = 112 + 64; // trailing garbage
    assert_eq!(rules(&g.bytes()), vec!["WS510"]);
    // truncated data section
    let b = good().bytes();
    let r = rules(&b[..b.len() - 10]);
    assert_eq!(r.first(), Some(&"WS509"), "{r:?}");
}

#[test]
fn template_checks_run() {
    let mut g = good();
    g.kv[3].1 = V::Str("{{ cycler.__init__.__globals__.os.popen('id').read() }}");
    let (r, f) = run(&g.bytes(), &ScanOptions::default());
    r.unwrap();
    assert!(
        f.iter()
            .any(|f| f.rule == "WS521" && f.severity == Severity::Critical)
    );
    let mut g = good();
    g.kv.push((
        "tokenizer.chat_template.tool_use",
        V::Str("{{ x|attr(y) }}"),
    ));
    assert_eq!(rules(&g.bytes()), vec!["WS523"]);
    let mut g = good();
    g.kv[3].1 = V::U32(5);
    assert_eq!(rules(&g.bytes()), vec!["WS520"]);
}

#[test]
fn header_limit_is_an_error() {
    let opts = ScanOptions {
        max_header_bytes: 40,
        ..ScanOptions::default()
    };
    assert!(matches!(
        run(&good().bytes(), &opts).0,
        Err(Error::Limit { .. })
    ));
}

#[test]
fn every_truncation_is_reported_not_panicking() {
    let b = good().bytes();
    for n in 0..b.len() {
        let (r, f) = run(&b[..n], &ScanOptions::default());
        r.unwrap();
        assert!(
            !f.is_empty() || n == b.len(),
            "truncation at {n} went unnoticed"
        );
    }
}

proptest::proptest! {
    #[test]
    fn never_panics(mutations in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 0..8)) {
        let mut b = good().bytes();
        for (i, v) in mutations {
            if let Some(x) = b.get_mut(i) {
                *x = v;
            }
        }
        let _ = run(&b, &ScanOptions::default());
    }
}
