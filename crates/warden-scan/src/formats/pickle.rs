//! A static simulation of CPython's pickle machine (protocols 0–5).
//!
//! The machine walks opcodes exactly as `_pickle.c` would: an object stack, a mark stack
//! (with the fence semantics of `POP` and friends), the memo (`PUT`, `BINPUT`,
//! `LONG_BINPUT`, `MEMOIZE`), `FRAME` as a transparent hint, and every pickle
//! concatenated in a stream. It never builds Python objects: values are small
//! placeholders that keep only what a decision needs (short strings for `STACK_GLOBAL`,
//! resolved globals, the callable behind a call result, small tuples and dicts).
//! Payloads of `BINBYTES`, `BINUNICODE` and friends are skipped, not materialised,
//! unless they are short enough to be a module or attribute name.
//!
//! Every import (`GLOBAL`, `STACK_GLOBAL`, `INST`, `EXT1/2/4`) is checked against the
//! exact allowlist in [`crate::allowlist`]; every call (`REDUCE`, `INST`, `OBJ`,
//! `NEWOBJ`, `NEWOBJ_EX`) of something outside it is a finding, and so are `BUILD`
//! on a class or function, names the machine cannot resolve, dotted attribute walks and
//! extension-registry codes. Errors do not stop the scan: the machine reports the
//! malformation and keeps going, so one stream yields every finding.
//!
//! Memory is bounded: the stack, memo, mark stack and the bytes of tracked strings and
//! containers all have limits; exceeding one is a finding and makes the scan
//! incomplete.
//!
//! Rules: WS101 import outside the allowlist, WS102 call outside the allowlist, WS103
//! unresolvable import, WS104 dotted or unusual name, WS105 extension code, WS106
//! `BUILD` on a class or function, WS107 call of an unresolved value, WS110 malformed
//! stream, WS111 trailing data, WS112 unsupported protocol, WS113 out-of-band buffer,
//! WS114 persistent id outside a PyTorch checkpoint, WS190 limit exceeded, WS191
//! findings suppressed.

#![deny(clippy::indexing_slicing)]

use crate::allowlist::{self, Verdict};
use crate::{Context, Error, Severity};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

const BUF: usize = 256 * 1024;
/// Longest string the machine keeps (longer ones become a length-only placeholder).
const MAX_KEPT_STR: usize = 1024;
/// Longest text line (protocol 0 arguments) the machine accepts.
const MAX_LINE: usize = 64 * 1024;
/// Largest tuple whose elements are tracked.
const MAX_TUPLE: usize = 16;
/// Largest dict whose pairs are tracked.
const MAX_DICT: usize = 64;
/// Budget of bytes for tracked strings and containers per stream.
const TRACK_BUDGET: usize = 24 << 20;
/// Findings kept per stream before the rest are summarised.
const MAX_FINDINGS: usize = 200;

/// The legacy PyTorch magic number pickled by `torch.save(..., _use_new_zipfile_serialization=False)`.
const TORCH_LEGACY_MAGIC: &[u8] = &[
    0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// True when `prefix` plausibly starts a pickle stream (used for content detection).
pub fn sniff(prefix: &[u8]) -> bool {
    match prefix {
        [0x80, p, op, ..] => (2..=5).contains(p) && is_opcode(*op),
        [0x80, p] => (2..=5).contains(p),
        // Protocol 0/1 pickles have no header; accept the usual first opcodes followed
        // by a plausible second byte, and require an end somewhere in a small stream.
        [first, ..] => {
            matches!(
                first,
                b'(' | b'c' | b']' | b'}' | b')' | b'N' | b'\x88' | b'\x89'
            ) && proto0_plausible(prefix)
        }
        [] => false,
    }
}

fn proto0_plausible(prefix: &[u8]) -> bool {
    match prefix {
        [b'c', rest @ ..] => {
            // GLOBAL: "module\nname\n" of printable ASCII
            let mut lines = 0;
            for &b in rest.iter().take(512) {
                if b == b'\n' {
                    lines += 1;
                    if lines == 2 {
                        return true;
                    }
                } else if !(0x20..0x7f).contains(&b) {
                    return false;
                }
            }
            false
        }
        [_, second, ..] => is_opcode(*second),
        [_] => false,
        [] => false,
    }
}

fn is_opcode(b: u8) -> bool {
    matches!(
        b,
        b'(' | b'.'
            | b'0'
            | b'1'
            | b'2'
            | b'F'
            | b'I'
            | b'J'
            | b'K'
            | b'L'
            | b'M'
            | b'N'
            | b'P'
            | b'Q'
            | b'R'
            | b'S'
            | b'T'
            | b'U'
            | b'V'
            | b'X'
            | b'a'
            | b'b'
            | b'c'
            | b'd'
            | b'}'
            | b'e'
            | b'g'
            | b'h'
            | b'i'
            | b'j'
            | b'l'
            | b']'
            | b'o'
            | b'p'
            | b'q'
            | b'r'
            | b's'
            | b't'
            | b')'
            | b'u'
            | b'G'
            | b'B'
            | b'C'
            | 0x80..=0x98
    )
}

/// Buffered reader over the input with absolute offsets and no allocation per read.
struct Src<'r> {
    r: &'r mut dyn Read,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Absolute offset of `buf[0]`.
    base: u64,
    eof: bool,
    err: Option<std::io::Error>,
}

impl<'r> Src<'r> {
    fn new(r: &'r mut dyn Read, base: u64) -> Self {
        Src {
            r,
            buf: vec![0; BUF],
            pos: 0,
            end: 0,
            base,
            eof: false,
            err: None,
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Make at least `n` bytes available (n <= BUF). False at end of input.
    fn fill(&mut self, n: usize) -> bool {
        if self.end - self.pos >= n {
            return true;
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end < n && !self.eof {
            let Some(space) = self.buf.get_mut(self.end..) else {
                return false;
            };
            match self.r.read(space) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.err = Some(e);
                    self.eof = true;
                }
            }
        }
        self.end - self.pos >= n
    }

    fn u8(&mut self) -> Option<u8> {
        if self.pos < self.end || self.fill(1) {
            let b = self.buf.get(self.pos).copied();
            self.pos += 1;
            b
        } else {
            None
        }
    }

    fn peek(&mut self) -> Option<u8> {
        if self.fill(1) {
            self.buf.get(self.pos).copied()
        } else {
            None
        }
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if n > BUF || !self.fill(n) {
            return None;
        }
        let s = self.buf.get(self.pos..self.pos + n);
        self.pos += n;
        s
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Some(a)
    }

    /// Skip `n` bytes; false if the input ends first.
    fn skip(&mut self, mut n: u64) -> bool {
        loop {
            let avail = (self.end - self.pos) as u64;
            if avail >= n {
                self.pos += n as usize;
                return true;
            }
            n -= avail;
            self.base += self.end as u64;
            self.pos = 0;
            self.end = 0;
            if self.eof || !self.fill(1) {
                return false;
            }
        }
    }

    /// A line without its `\n`; `Err(true)` when longer than `MAX_LINE`, `Err(false)` at end of input.
    fn line(&mut self) -> Result<&[u8], bool> {
        let mut scanned = 0;
        loop {
            let window = self.buf.get(self.pos + scanned..self.end).unwrap_or(&[]);
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                let start = self.pos;
                let stop = self.pos + scanned + i;
                self.pos = stop + 1;
                return self.buf.get(start..stop).ok_or(false);
            }
            scanned = self.end - self.pos;
            if scanned >= MAX_LINE {
                return Err(true);
            }
            if !self.fill(scanned + 1) {
                return Err(false);
            }
        }
    }
}

/// A resolved import.
#[derive(Debug)]
struct Imp {
    module: String,
    name: String,
    offset: u64,
    opcode: &'static str,
    verdict: Verdict,
    /// Set once a call of this global has been reported, so the import is not reported twice.
    called: Cell<bool>,
}

impl Imp {
    fn qualified(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// The result of calling something.
#[derive(Debug)]
struct Obj {
    class: Option<Rc<Imp>>,
    args: V,
    state: RefCell<Option<V>>,
}

/// A placeholder for a Python value: only what decisions need.
#[derive(Debug, Clone)]
enum V {
    /// A value whose content does not matter (numbers, bytes, lists …).
    Other,
    None,
    Int(i64),
    Str(Rc<str>),
    /// A string that was too long (or over budget) to keep.
    LongStr,
    Tuple(Rc<[V]>),
    Dict(Rc<RefCell<Vec<(V, V)>>>),
    Global(Rc<Imp>),
    Obj(Rc<Obj>),
    /// Something the machine cannot know (unresolvable global, malformed input).
    Unknown,
}

impl V {
    fn short(&self) -> String {
        match self {
            V::Str(s) => {
                let t: String = s.chars().take(80).collect();
                let more = if s.chars().count() > 80 { "…" } else { "" };
                format!("{t:?}{more}")
            }
            V::Int(i) => i.to_string(),
            V::None => "None".into(),
            V::Global(g) => g.qualified(),
            V::Tuple(t) => {
                let inner: Vec<String> = t.iter().take(4).map(V::short).collect();
                format!("({})", inner.join(", "))
            }
            _ => "…".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// STOP reached: the pickle ended normally.
    Done,
    /// Input ended before STOP.
    Truncated,
    /// The machine could not continue (unknown opcode, unusable argument).
    Broken,
    /// A limit was hit.
    Limit,
}

/// Scan a byte stream holding one or more concatenated pickles. `base` is the offset of
/// the first byte within the current member (for finding offsets).
pub fn scan_stream(r: &mut dyn Read, base: u64, cx: &mut Context) -> Result<(), Error> {
    let mut src = Src::new(r, base);
    let mut m = Machine::new(cx);
    let legacy = {
        src.fill(2 + TORCH_LEGACY_MAGIC.len());
        src.buf.get(2..2 + TORCH_LEGACY_MAGIC.len()) == Some(TORCH_LEGACY_MAGIC)
    };
    if legacy {
        m.cx.report(
            "WS310",
            Severity::Info,
            None,
            "legacy PyTorch serialization (pre-1.6, not a zip): five pickles followed by raw storages",
        );
    }
    let result = m.run_stream(&mut src, legacy, 0);
    m.finish();
    if let Some(e) = src.err.take() {
        return Err(Error::Io {
            path: m.cx.location.to_string(),
            source: e,
        });
    }
    result
}

struct Machine<'c, 'a> {
    cx: &'c mut Context<'a>,
    stack: Vec<V>,
    marks: Vec<usize>,
    memo: HashMap<u64, V>,
    proto: u8,
    ops: u64,
    budget: usize,
    findings: usize,
    suppressed: usize,
    first_error: Option<String>,
    errors: u64,
    /// Imports outside the allowlist, reported at the end unless a call reported them.
    denied: Vec<Rc<Imp>>,
    nested: u32,
    torch_zip: bool,
}

impl<'c, 'a> Machine<'c, 'a> {
    fn new(cx: &'c mut Context<'a>) -> Self {
        let torch_zip = cx
            .location
            .members
            .last()
            .is_some_and(|m| m.ends_with("data.pkl") || m.ends_with(".pkl"));
        Machine {
            cx,
            stack: Vec::with_capacity(256),
            marks: Vec::new(),
            memo: HashMap::new(),
            proto: 0,
            ops: 0,
            budget: TRACK_BUDGET,
            findings: 0,
            suppressed: 0,
            first_error: None,
            errors: 0,
            denied: Vec::new(),
            nested: 0,
            torch_zip,
        }
    }

    fn report(&mut self, rule: &'static str, sev: Severity, off: u64, msg: String) {
        if self.findings >= MAX_FINDINGS {
            self.suppressed += 1;
            return;
        }
        self.findings += 1;
        self.cx.report(rule, sev, Some(off), msg);
    }

    fn malformed(&mut self, off: u64, what: impl Into<String>) {
        self.errors += 1;
        if self.first_error.is_none() {
            let w = what.into();
            self.first_error = Some(w.clone());
            self.report(
                "WS110",
                Severity::Medium,
                off,
                format!("malformed pickle: {w}; loaders reject this stream, and Warden cannot vouch for what a lenient loader would do"),
            );
        }
    }

    fn finish(&mut self) {
        self.flush_denied();
        if self.errors > 1 {
            let n = self.errors - 1;
            self.cx.report(
                "WS110",
                Severity::Medium,
                None,
                format!("{n} further malformations in this pickle stream"),
            );
        }
        if self.suppressed > 0 {
            let n = self.suppressed;
            self.cx.report(
                "WS191",
                Severity::Info,
                None,
                format!("{n} further pickle findings not listed"),
            );
        }
    }

    fn flush_denied(&mut self) {
        let denied = std::mem::take(&mut self.denied);
        for imp in denied {
            if let Verdict::Denied(sev) = imp.verdict
                && !imp.called.get()
            {
                let msg = format!(
                    "pickle opcode {} at offset {} imports {}, which is not on the allowlist",
                    imp.opcode,
                    imp.offset,
                    imp.qualified()
                );
                self.report("WS101", sev, imp.offset, msg);
            }
        }
    }

    fn reset(&mut self) {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.proto = 0;
    }

    /// Run every pickle in the stream.
    fn run_stream(&mut self, src: &mut Src, legacy: bool, depth: u32) -> Result<(), Error> {
        let mut count = 0u32;
        loop {
            let start = src.offset();
            let stop = self.run_one(src, depth)?;
            count += 1;
            match stop {
                Stop::Done => {}
                Stop::Truncated => {
                    let off = src.offset();
                    self.malformed(off, "the stream ends before its STOP opcode");
                    return Ok(());
                }
                Stop::Broken => return Ok(()),
                Stop::Limit => {
                    return Err(Error::Limit {
                        path: self.cx.location.to_string(),
                        detail: format!("pickle starting at offset {start}"),
                    });
                }
            }
            self.flush_denied();
            if depth > 0 {
                // A nested pickle (joblib object array) is exactly one pickle.
                return Ok(());
            }
            if legacy && count >= 5 {
                // magic, protocol, sys_info, the object, storage keys; raw storages follow.
                return Ok(());
            }
            let Some(next) = src.peek() else {
                return Ok(());
            };
            let looks_like_pickle = if next == 0x80 {
                src.fill(3);
                let p = src.buf.get(src.pos + 1).copied().unwrap_or(0);
                let op = src.buf.get(src.pos + 2).copied().unwrap_or(0);
                (2..=5).contains(&p) && is_opcode(op)
            } else {
                src.fill(512);
                let window = src.buf.get(src.pos..src.end).unwrap_or(&[]);
                !legacy && sniff(window)
            };
            if !looks_like_pickle {
                let off = src.offset();
                let mut rest = 0u64;
                while src.fill(1) {
                    rest += (src.end - src.pos) as u64;
                    src.pos = src.end;
                }
                if !legacy {
                    self.report(
                        "WS111",
                        Severity::Low,
                        off,
                        format!("{rest} bytes after the end of the pickle are not a pickle (ignored by loaders)"),
                    );
                }
                return Ok(());
            }
        }
    }

    fn take_budget(&mut self, n: usize) -> bool {
        if self.budget >= n {
            self.budget -= n;
            true
        } else {
            false
        }
    }

    fn push(&mut self, v: V) -> bool {
        if self.stack.len() >= self.cx.options.max_pickle_stack {
            return false;
        }
        self.stack.push(v);
        true
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, off: u64, op: &str) -> V {
        if self.stack.len() <= self.fence() {
            self.malformed(off, format!("{op} at offset {off} pops an empty stack"));
            return V::Unknown;
        }
        self.stack.pop().unwrap_or(V::Unknown)
    }

    fn top(&mut self, off: u64, op: &str) -> V {
        if self.stack.len() <= self.fence() {
            self.malformed(
                off,
                format!("{op} at offset {off} needs a value on the stack"),
            );
            return V::Unknown;
        }
        self.stack.last().cloned().unwrap_or(V::Unknown)
    }

    /// Pop everything above the last mark, returning the items when `keep` allows.
    fn pop_mark(&mut self, off: u64, op: &str, keep: usize) -> Option<Vec<V>> {
        let Some(m) = self.marks.pop() else {
            self.malformed(off, format!("{op} at offset {off} has no MARK"));
            return None;
        };
        let m = m.min(self.stack.len());
        let n = self.stack.len() - m;
        if n <= keep && self.take_budget(n * 24) {
            Some(self.stack.drain(m..).collect())
        } else {
            self.stack.truncate(m);
            None
        }
    }

    fn tuple_of(&mut self, items: Option<Vec<V>>) -> V {
        match items {
            Some(v) if v.len() <= MAX_TUPLE => V::Tuple(v.into()),
            _ => V::Other,
        }
    }

    fn keep_str(&mut self, bytes: &[u8]) -> V {
        match std::str::from_utf8(bytes) {
            Ok(s) if s.len() <= MAX_KEPT_STR && self.take_budget(s.len() + 32) => V::Str(s.into()),
            Ok(_) => V::LongStr,
            Err(_) => V::Unknown,
        }
    }

    fn import(&mut self, module: &str, name: &str, off: u64, opcode: &'static str) -> V {
        let raw_module = module;
        let module = if self.proto < 3 {
            allowlist::normalize_module(module)
        } else {
            module
        };
        let mut verdict = allowlist::classify(module, name, &self.cx.options.profiles);
        let odd = |s: &str| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                || s.starts_with('.')
                || s.ends_with('.')
                || s.contains("..")
        };
        if odd(raw_module) || odd(name) {
            let sev = Severity::High.max(allowlist::severity(module, name));
            verdict = Verdict::Denied(sev);
            self.report(
                "WS104",
                sev,
                off,
                format!(
                    "pickle opcode {opcode} at offset {off} names {:?} in module {:?}: names with non-ASCII, empty or unusual characters can fool scanners",
                    name, raw_module
                ),
            );
        } else if name.contains('.') {
            // CPython (protocol >= 4, and every protocol since 3.11 for STACK_GLOBAL)
            // resolves a dotted name attribute by attribute.
            let sev = allowlist::dotted_severity(module, name);
            verdict = Verdict::Denied(sev);
            self.report(
                "WS104",
                sev,
                off,
                format!(
                    "pickle opcode {opcode} at offset {off} walks the dotted attribute path {module}.{name}, a known trick to reach dangerous objects through allowed ones"
                ),
            );
        }
        let imp = Rc::new(Imp {
            module: module.to_owned(),
            name: name.to_owned(),
            offset: off,
            opcode,
            verdict,
            called: Cell::new(false),
        });
        if matches!(verdict, Verdict::Denied(_)) {
            if self.denied.len() < 4096 {
                self.denied.push(imp.clone());
            } else {
                let msg = format!(
                    "pickle opcode {opcode} at offset {off} imports {}, which is not on the allowlist",
                    imp.qualified()
                );
                imp.called.set(true);
                if let Verdict::Denied(sev) = verdict {
                    self.report("WS101", sev, off, msg);
                }
            }
        }
        V::Global(imp)
    }

    fn unresolvable(&mut self, off: u64, opcode: &'static str, why: String) -> V {
        self.report(
            "WS103",
            Severity::High,
            off,
            format!("pickle opcode {opcode} at offset {off} imports a global Warden cannot resolve: {why}"),
        );
        let imp = Rc::new(Imp {
            module: "?".into(),
            name: "?".into(),
            offset: off,
            opcode,
            verdict: Verdict::Denied(Severity::High),
            called: Cell::new(true),
        });
        V::Global(imp)
    }

    fn call(&mut self, callee: &V, args: V, off: u64, opcode: &'static str) -> V {
        match callee {
            V::Global(imp) => {
                if let Verdict::Denied(sev) = imp.verdict {
                    let shown = match &args {
                        V::Tuple(t) if !t.is_empty() => format!(" with {}", args.short()),
                        _ => String::new(),
                    };
                    let msg = if imp.module == "?" {
                        format!(
                            "pickle opcode {opcode} at offset {off} calls an unresolvable global (imported at offset {}){shown}",
                            imp.offset
                        )
                    } else {
                        format!(
                            "pickle opcode {opcode} at offset {off} calls {}{shown} (imported by {} at offset {}), which is not on the allowlist",
                            imp.qualified(),
                            imp.opcode,
                            imp.offset
                        )
                    };
                    imp.called.set(true);
                    self.report("WS102", sev, off, msg);
                }
                let cost = 64;
                if self.take_budget(cost) {
                    V::Obj(Rc::new(Obj {
                        class: Some(imp.clone()),
                        args,
                        state: RefCell::new(None),
                    }))
                } else {
                    V::Other
                }
            }
            V::Obj(o) => {
                let what = o
                    .class
                    .as_ref()
                    .map_or_else(|| "an unknown callable".to_owned(), |c| c.qualified());
                self.report(
                    "WS107",
                    Severity::High,
                    off,
                    format!("pickle opcode {opcode} at offset {off} calls the result of {what}(…), not a resolved global"),
                );
                V::Unknown
            }
            V::Unknown => {
                self.report(
                    "WS107",
                    Severity::High,
                    off,
                    format!(
                        "pickle opcode {opcode} at offset {off} calls a value Warden cannot resolve"
                    ),
                );
                V::Unknown
            }
            _ => {
                self.malformed(
                    off,
                    format!("{opcode} at offset {off} calls a value that is not callable"),
                );
                V::Unknown
            }
        }
    }

    fn memo_put(&mut self, idx: u64, v: V, off: u64) -> bool {
        if self.memo.len() >= self.cx.options.max_pickle_stack && !self.memo.contains_key(&idx) {
            return false;
        }
        let _ = off;
        self.memo.insert(idx, v);
        true
    }

    fn memo_get(&mut self, idx: u64, off: u64, op: &str) -> V {
        match self.memo.get(&idx) {
            Some(v) => v.clone(),
            None => {
                self.malformed(
                    off,
                    format!("{op} at offset {off} reads memo entry {idx}, which was never stored"),
                );
                V::Unknown
            }
        }
    }

    fn limit(&mut self, off: u64, what: String) -> Stop {
        self.report(
            "WS190",
            Severity::High,
            off,
            format!("pickle limit exceeded at offset {off}: {what}; the rest of the stream was not examined"),
        );
        Stop::Limit
    }

    /// Run one pickle until STOP.
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per opcode reads best as one match"
    )]
    fn run_one(&mut self, src: &mut Src, depth: u32) -> Result<Stop, Error> {
        self.reset();
        let max_ops = self.cx.options.max_pickle_ops;
        loop {
            let off = src.offset();
            let Some(op) = src.u8() else {
                return Ok(Stop::Truncated);
            };
            self.ops += 1;
            if self.ops > max_ops {
                return Ok(self.limit(off, format!("more than {max_ops} opcodes")));
            }
            macro_rules! need {
                ($e:expr) => {
                    match $e {
                        Some(v) => v,
                        None => return Ok(Stop::Truncated),
                    }
                };
            }
            macro_rules! push {
                ($v:expr) => {{
                    let v = $v;
                    if !self.push(v) {
                        let max = self.cx.options.max_pickle_stack;
                        return Ok(self.limit(off, format!("stack deeper than {max} entries")));
                    }
                }};
            }
            macro_rules! line {
                () => {
                    match src.line() {
                        Ok(l) => l,
                        Err(true) => {
                            return Ok(self.limit(
                                off,
                                format!("a text argument longer than {MAX_LINE} bytes"),
                            ));
                        }
                        Err(false) => return Ok(Stop::Truncated),
                    }
                };
            }
            match op {
                b'(' => {
                    if self.marks.len() >= self.cx.options.max_pickle_stack {
                        return Ok(self.limit(off, "too many MARKs".into()));
                    }
                    self.marks.push(self.stack.len());
                }
                b'.' => {
                    let _ = self.pop(off, "STOP");
                    return Ok(Stop::Done);
                }
                b'0' => {
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        let _ = self.pop(off, "POP");
                    }
                }
                b'1' => {
                    let _ = self.pop_mark(off, "POP_MARK", 0);
                }
                b'2' => {
                    let v = self.top(off, "DUP");
                    push!(v);
                }
                b'F' => {
                    let _ = line!();
                    push!(V::Other);
                }
                b'I' => {
                    let l = line!();
                    let v = match l {
                        b"00" => V::Other, // False
                        b"01" => V::Other, // True
                        _ => std::str::from_utf8(l)
                            .ok()
                            .and_then(|s| s.trim().parse::<i64>().ok())
                            .map_or(V::Other, V::Int),
                    };
                    push!(v);
                }
                b'L' => {
                    let l = line!();
                    let v = std::str::from_utf8(l)
                        .ok()
                        .and_then(|s| s.trim().trim_end_matches('L').parse::<i64>().ok())
                        .map_or(V::Other, V::Int);
                    push!(v);
                }
                b'J' => {
                    let a = need!(src.array::<4>());
                    push!(V::Int(i64::from(i32::from_le_bytes(a))));
                }
                b'K' => {
                    let a = need!(src.u8());
                    push!(V::Int(i64::from(a)));
                }
                b'M' => {
                    let a = need!(src.array::<2>());
                    push!(V::Int(i64::from(u16::from_le_bytes(a))));
                }
                0x8a => {
                    let n = need!(src.u8());
                    let b = need!(src.bytes(usize::from(n)));
                    let v = if b.len() <= 8 {
                        let mut a = [0u8; 8];
                        if b.last().is_some_and(|&x| x & 0x80 != 0) {
                            a = [0xff; 8];
                        }
                        if let Some(dst) = a.get_mut(..b.len()) {
                            dst.copy_from_slice(b);
                        }
                        V::Int(i64::from_le_bytes(a))
                    } else {
                        V::Other
                    };
                    push!(v);
                }
                0x8b => {
                    let n = i32::from_le_bytes(need!(src.array::<4>()));
                    if n < 0 {
                        self.malformed(off, format!("LONG4 at offset {off} has a negative length"));
                        return Ok(Stop::Broken);
                    }
                    if !src.skip(n as u64) {
                        return Ok(Stop::Truncated);
                    }
                    push!(V::Other);
                }
                b'G' => {
                    let _ = need!(src.array::<8>());
                    push!(V::Other);
                }
                b'N' => push!(V::None),
                0x88 | 0x89 => push!(V::Other),
                b'S' => {
                    let l = line!();
                    let v = match l {
                        [q, body @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => {
                            let unescaped = unescape_string(body);
                            self.keep_str(&unescaped)
                        }
                        _ => {
                            self.malformed(off, format!("STRING at offset {off} is not quoted"));
                            V::Unknown
                        }
                    };
                    push!(v);
                }
                b'V' => {
                    let l = line!();
                    let s = raw_unicode_unescape(l);
                    let v = if s.len() <= MAX_KEPT_STR && self.take_budget(s.len() + 32) {
                        V::Str(s.into())
                    } else {
                        V::LongStr
                    };
                    push!(v);
                }
                b'T' => {
                    let n = i32::from_le_bytes(need!(src.array::<4>()));
                    if n < 0 {
                        self.malformed(
                            off,
                            format!("BINSTRING at offset {off} has a negative length"),
                        );
                        return Ok(Stop::Broken);
                    }
                    let v = self.string_payload(src, n as u64, true);
                    push!(need!(v));
                }
                b'U' | 0x8c => {
                    let n = need!(src.u8());
                    let v = self.string_payload(src, u64::from(n), true);
                    push!(need!(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(need!(src.array::<4>()));
                    let v = self.string_payload(src, u64::from(n), true);
                    push!(need!(v));
                }
                0x8d => {
                    let n = u64::from_le_bytes(need!(src.array::<8>()));
                    let v = self.string_payload(src, n, true);
                    push!(need!(v));
                }
                b'B' => {
                    let n = u32::from_le_bytes(need!(src.array::<4>()));
                    if !src.skip(u64::from(n)) {
                        return Ok(Stop::Truncated);
                    }
                    push!(V::Other);
                }
                b'C' => {
                    let n = need!(src.u8());
                    if !src.skip(u64::from(n)) {
                        return Ok(Stop::Truncated);
                    }
                    push!(V::Other);
                }
                0x8e | 0x96 => {
                    let n = u64::from_le_bytes(need!(src.array::<8>()));
                    if !src.skip(n) {
                        return Ok(Stop::Truncated);
                    }
                    push!(V::Other);
                }
                b'a' => {
                    let _ = self.pop(off, "APPEND");
                    let _ = self.top(off, "APPEND");
                }
                b'e' => {
                    let _ = self.pop_mark(off, "APPENDS", 0);
                    let _ = self.top(off, "APPENDS");
                }
                0x90 => {
                    let _ = self.pop_mark(off, "ADDITEMS", 0);
                    let _ = self.top(off, "ADDITEMS");
                }
                b'l' => {
                    let _ = self.pop_mark(off, "LIST", 0);
                    push!(V::Other);
                }
                0x91 => {
                    let _ = self.pop_mark(off, "FROZENSET", 0);
                    push!(V::Other);
                }
                b']' | 0x8f => push!(V::Other),
                b')' => push!(V::Tuple(Rc::from(Vec::new()))),
                b't' => {
                    let items = self.pop_mark(off, "TUPLE", MAX_TUPLE);
                    let t = self.tuple_of(items);
                    push!(t);
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = vec![V::Unknown; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop(off, "TUPLE1/2/3");
                    }
                    push!(V::Tuple(items.into()));
                }
                b'}' => {
                    let v = if self.take_budget(64) {
                        V::Dict(Rc::new(RefCell::new(Vec::new())))
                    } else {
                        V::Other
                    };
                    push!(v);
                }
                b'd' => {
                    let items = self.pop_mark(off, "DICT", MAX_DICT * 2);
                    let v = match items {
                        Some(items) if items.len() % 2 == 0 => {
                            let mut pairs = Vec::with_capacity(items.len() / 2);
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                pairs.push((k, v));
                            }
                            V::Dict(Rc::new(RefCell::new(pairs)))
                        }
                        _ => V::Other,
                    };
                    push!(v);
                }
                b's' => {
                    let v = self.pop(off, "SETITEM");
                    let k = self.pop(off, "SETITEM");
                    let d = self.top(off, "SETITEM");
                    self.dict_insert(&d, vec![k, v]);
                }
                b'u' => {
                    let items = self.pop_mark(off, "SETITEMS", MAX_DICT * 2);
                    let d = self.top(off, "SETITEMS");
                    match items {
                        Some(items) => self.dict_insert(&d, items),
                        None => {
                            if let V::Dict(d) = d {
                                d.borrow_mut().clear();
                            }
                        }
                    }
                }
                b'c' => {
                    let module = String::from_utf8_lossy(line!()).into_owned();
                    let name = String::from_utf8_lossy(line!()).into_owned();
                    let v = self.import(&module, &name, off, "GLOBAL");
                    push!(v);
                }
                0x93 => {
                    let name = self.pop(off, "STACK_GLOBAL");
                    let module = self.pop(off, "STACK_GLOBAL");
                    let v = match (&module, &name) {
                        (V::Str(m), V::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.import(&m, &n, off, "STACK_GLOBAL")
                        }
                        _ => {
                            let why = format!(
                                "module and name are not plain strings on the stack (module: {}, name: {})",
                                describe(&module),
                                describe(&name)
                            );
                            self.unresolvable(off, "STACK_GLOBAL", why)
                        }
                    };
                    push!(v);
                }
                b'i' => {
                    let module = String::from_utf8_lossy(line!()).into_owned();
                    let name = String::from_utf8_lossy(line!()).into_owned();
                    let items = self.pop_mark(off, "INST", MAX_TUPLE);
                    let args = self.tuple_of(items);
                    let g = self.import(&module, &name, off, "INST");
                    let r = self.call(&g, args, off, "INST");
                    push!(r);
                }
                b'o' => {
                    let items = self.pop_mark(off, "OBJ", MAX_TUPLE + 1);
                    let r = match items {
                        Some(mut items) if !items.is_empty() => {
                            let cls = items.remove(0);
                            let args = V::Tuple(items.into());
                            self.call(&cls, args, off, "OBJ")
                        }
                        Some(_) => {
                            self.malformed(off, format!("OBJ at offset {off} has no class"));
                            V::Unknown
                        }
                        None => {
                            // Too many arguments to keep: the class sits right above the mark;
                            // the items are gone, so report a call of something unknown.
                            self.call(&V::Unknown, V::Other, off, "OBJ")
                        }
                    };
                    push!(r);
                }
                0x81 => {
                    let args = self.pop(off, "NEWOBJ");
                    let cls = self.pop(off, "NEWOBJ");
                    let r = self.call(&cls, args, off, "NEWOBJ");
                    push!(r);
                }
                0x92 => {
                    let _kwargs = self.pop(off, "NEWOBJ_EX");
                    let args = self.pop(off, "NEWOBJ_EX");
                    let cls = self.pop(off, "NEWOBJ_EX");
                    let r = self.call(&cls, args, off, "NEWOBJ_EX");
                    push!(r);
                }
                b'R' => {
                    let args = self.pop(off, "REDUCE");
                    let f = self.pop(off, "REDUCE");
                    let r = self.call(&f, args, off, "REDUCE");
                    push!(r);
                }
                b'b' => {
                    let state = self.pop(off, "BUILD");
                    let target = self.top(off, "BUILD");
                    match &target {
                        V::Global(g) => {
                            let q = g.qualified();
                            self.report(
                                "WS106",
                                Severity::High,
                                off,
                                format!("pickle opcode BUILD at offset {off} sets attributes on {q} itself (a class or function), a way to rewire code through setattr"),
                            );
                        }
                        V::Obj(o) => {
                            let wrapper = o.class.as_ref().is_some_and(|c| {
                                (c.module == "joblib.numpy_pickle"
                                    || c.module == "sklearn.externals.joblib.numpy_pickle")
                                    && c.name == "NumpyArrayWrapper"
                            });
                            *o.state.borrow_mut() = Some(state.clone());
                            if wrapper {
                                match self.joblib_array(src, &state, off, depth)? {
                                    Stop::Done => {}
                                    other => return Ok(other),
                                }
                            }
                        }
                        _ => {}
                    }
                }
                b'P' => {
                    let _ = line!();
                    self.persistent(off);
                    push!(V::Other);
                }
                b'Q' => {
                    let _ = self.pop(off, "BINPERSID");
                    self.persistent(off);
                    push!(V::Other);
                }
                b'g' => {
                    let l = line!();
                    let idx = parse_decimal(l);
                    let v = match idx {
                        Some(i) => self.memo_get(i, off, "GET"),
                        None => {
                            self.malformed(off, format!("GET at offset {off} has a bad index"));
                            V::Unknown
                        }
                    };
                    push!(v);
                }
                b'h' => {
                    let i = need!(src.u8());
                    let v = self.memo_get(u64::from(i), off, "BINGET");
                    push!(v);
                }
                b'j' => {
                    let i = u32::from_le_bytes(need!(src.array::<4>()));
                    let v = self.memo_get(u64::from(i), off, "LONG_BINGET");
                    push!(v);
                }
                b'p' | b'q' | b'r' | 0x94 => {
                    let (idx, name) = match op {
                        b'p' => (parse_decimal(line!()), "PUT"),
                        b'q' => (Some(u64::from(need!(src.u8()))), "BINPUT"),
                        b'r' => (
                            Some(u64::from(u32::from_le_bytes(need!(src.array::<4>())))),
                            "LONG_BINPUT",
                        ),
                        _ => (Some(self.memo.len() as u64), "MEMOIZE"),
                    };
                    let v = self.top(off, name);
                    match idx {
                        Some(i) => {
                            if !self.memo_put(i, v, off) {
                                let max = self.cx.options.max_pickle_stack;
                                return Ok(self.limit(off, format!("more than {max} memo entries")));
                            }
                        }
                        None => {
                            self.malformed(off, format!("{name} at offset {off} has a bad index"))
                        }
                    }
                }
                0x80 => {
                    let p = need!(src.u8());
                    if p > 5 {
                        self.report(
                            "WS112",
                            Severity::Medium,
                            off,
                            format!("pickle protocol {p} at offset {off} is newer than any Warden knows (0-5)"),
                        );
                        return Ok(Stop::Broken);
                    }
                    self.proto = p;
                }
                0x95 => {
                    let _ = need!(src.array::<8>());
                    // CPython's C unpickler treats FRAME as a read-ahead hint: opcodes
                    // inside are executed exactly as outside, so the machine just goes on.
                }
                0x82..=0x84 => {
                    let code = match op {
                        0x82 => u32::from(need!(src.u8())),
                        0x83 => u32::from(u16::from_le_bytes(need!(src.array::<2>()))),
                        _ => u32::from_le_bytes(need!(src.array::<4>())),
                    };
                    let name = ["EXT1", "EXT2", "EXT4"]
                        .get(usize::from(op - 0x82))
                        .copied()
                        .unwrap_or("EXT");
                    self.report(
                        "WS105",
                        Severity::High,
                        off,
                        format!("pickle opcode {name} at offset {off} imports extension code {code} from copyreg's registry, which a static scanner cannot resolve"),
                    );
                    let imp = Rc::new(Imp {
                        module: "?".into(),
                        name: format!("extension {code}"),
                        offset: off,
                        opcode: name,
                        verdict: Verdict::Denied(Severity::High),
                        called: Cell::new(true),
                    });
                    push!(V::Global(imp));
                }
                0x97 => {
                    self.report(
                        "WS113",
                        Severity::Low,
                        off,
                        format!(
                            "pickle opcode NEXT_BUFFER at offset {off} expects out-of-band buffers"
                        ),
                    );
                    push!(V::Other);
                }
                0x98 => {
                    let _ = self.top(off, "READONLY_BUFFER");
                }
                _ => {
                    self.malformed(off, format!("unknown opcode 0x{op:02x} at offset {off}"));
                    return Ok(Stop::Broken);
                }
            }
        }
    }

    fn persistent(&mut self, off: u64) {
        if !self.torch_zip && self.nested == 0 {
            self.report(
                "WS114",
                Severity::Low,
                off,
                format!("pickle at offset {off} references a persistent id, which only a loader with a persistent_load hook (such as PyTorch) resolves"),
            );
            self.torch_zip = true; // once per stream is enough
        }
    }

    fn dict_insert(&mut self, d: &V, items: Vec<V>) {
        if let V::Dict(d) = d {
            let mut d = d.borrow_mut();
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if d.len() < MAX_DICT {
                    d.push((k, v));
                }
            }
        }
    }

    fn string_payload(&mut self, src: &mut Src, n: u64, text: bool) -> Option<V> {
        let _ = text;
        if n as usize <= MAX_KEPT_STR && n <= BUF as u64 {
            let b = src.bytes(n as usize)?.to_vec();
            Some(self.keep_str(&b))
        } else if src.skip(n) {
            Some(V::LongStr)
        } else {
            None
        }
    }

    /// joblib writes the bytes of a NumPy array straight into the pickle stream right
    /// after the BUILD of its `NumpyArrayWrapper`; the machine skips them as joblib's
    /// loader reads them, or runs the nested pickle of an object array.
    fn joblib_array(
        &mut self,
        src: &mut Src,
        state: &V,
        off: u64,
        depth: u32,
    ) -> Result<Stop, Error> {
        let V::Dict(d) = state else {
            self.malformed(
                off,
                format!("joblib array wrapper at offset {off} has a state Warden cannot read"),
            );
            return Ok(Stop::Broken);
        };
        let get = |k: &str| {
            d.borrow()
                .iter()
                .find(|(key, _)| matches!(key, V::Str(s) if &**s == k))
                .map(|(_, v)| v.clone())
        };
        let shape = get("shape");
        let dtype = get("dtype");
        let align = get("numpy_array_alignment_bytes");
        let count = match &shape {
            Some(V::Tuple(t)) => t.iter().try_fold(1u64, |acc, v| match v {
                V::Int(i) if *i >= 0 => acc.checked_mul(*i as u64),
                _ => None,
            }),
            _ => None,
        };
        let item = dtype.as_ref().and_then(dtype_itemsize);
        match (count, item) {
            (_, Some(DType::Object)) => {
                if depth >= 4 {
                    return Ok(self.limit(off, "joblib object arrays nested too deeply".into()));
                }
                // pickle.load on the same file: one nested pickle.
                let saved = (
                    std::mem::take(&mut self.stack),
                    std::mem::take(&mut self.marks),
                    std::mem::take(&mut self.memo),
                    self.proto,
                );
                self.nested += 1;
                let r = self.run_one(src, depth + 1);
                self.nested -= 1;
                self.stack = saved.0;
                self.marks = saved.1;
                self.memo = saved.2;
                self.proto = saved.3;
                match r? {
                    Stop::Done => Ok(Stop::Done),
                    Stop::Truncated => Ok(Stop::Truncated),
                    other => Ok(other),
                }
            }
            (Some(count), Some(DType::Size(size))) => {
                if matches!(align, Some(V::Int(_))) {
                    let pad = need_u8(src);
                    let Some(pad) = pad else {
                        return Ok(Stop::Truncated);
                    };
                    if !src.skip(u64::from(pad)) {
                        return Ok(Stop::Truncated);
                    }
                }
                let Some(total) = count.checked_mul(size) else {
                    self.malformed(
                        off,
                        format!("joblib array at offset {off} declares an impossible size"),
                    );
                    return Ok(Stop::Broken);
                };
                if src.skip(total) {
                    Ok(Stop::Done)
                } else {
                    Ok(Stop::Truncated)
                }
            }
            _ => {
                self.malformed(off, format!("joblib array wrapper at offset {off}: shape or dtype Warden cannot read, so the raw array bytes that follow cannot be skipped"));
                Ok(Stop::Broken)
            }
        }
    }
}

fn need_u8(src: &mut Src) -> Option<u8> {
    src.u8()
}

enum DType {
    Object,
    Size(u64),
}

/// Item size of a `numpy.dtype(...)` call result as pickled: `dtype('f8', False, True)`.
fn dtype_itemsize(v: &V) -> Option<DType> {
    let V::Obj(o) = v else { return None };
    let c = o.class.as_ref()?;
    if c.name != "dtype" {
        return None;
    }
    let V::Tuple(args) = &o.args else { return None };
    let V::Str(code) = args.first()? else {
        return None;
    };
    let code = code.trim_start_matches(['<', '>', '|', '=']);
    let (kind, digits) = code.split_at(code.find(|c: char| c.is_ascii_digit())?.min(code.len()));
    let n: u64 = digits.parse().ok()?;
    match kind {
        "O" => Some(DType::Object),
        "U" => {
            // pickled as 'U<bytes>'? NumPy pickles unicode dtypes with the item size in
            // bytes in the state; the code carries characters.
            let elsize = state_elsize(o).unwrap_or(n * 4);
            Some(DType::Size(elsize))
        }
        "V" | "S" => Some(DType::Size(state_elsize(o).unwrap_or(n))),
        "f" | "i" | "u" | "b" | "c" | "M" | "m" => Some(DType::Size(n)),
        _ => None,
    }
}

fn state_elsize(o: &Obj) -> Option<u64> {
    let st = o.state.borrow();
    let V::Tuple(t) = st.as_ref()? else {
        return None;
    };
    match t.get(5)? {
        V::Int(i) if *i > 0 => Some(*i as u64),
        _ => None,
    }
}

fn describe(v: &V) -> &'static str {
    match v {
        V::Str(_) => "a string",
        V::LongStr => "a string too long to be a name",
        V::Obj(_) => "the result of a call",
        V::Global(_) => "a global",
        V::Unknown => "an unknown value",
        V::Int(_) => "an integer",
        V::None => "None",
        V::Tuple(_) => "a tuple",
        V::Dict(_) => "a dict",
        V::Other => "a non-string value",
    }
}

fn parse_decimal(l: &[u8]) -> Option<u64> {
    std::str::from_utf8(l).ok()?.trim().parse().ok()
}

/// Python's `codecs.escape_decode` for the body of a protocol 0 STRING.
fn unescape_string(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut it = body.iter().copied().peekable();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'\'') => out.push(b'\''),
            Some(b'"') => out.push(b'"'),
            Some(b'x') => {
                let h: Vec<u8> = it.by_ref().take(2).collect();
                let v = std::str::from_utf8(&h)
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok());
                out.push(v.unwrap_or(b'?'));
            }
            Some(d @ b'0'..=b'7') => {
                let mut v = u32::from(d - b'0');
                for _ in 0..2 {
                    match it.peek() {
                        Some(&n @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(n - b'0');
                            it.next();
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            Some(other) => {
                out.push(b'\\');
                out.push(other);
            }
            None => out.push(b'\\'),
        }
    }
    out
}

/// Python's `raw-unicode-escape` decoding (protocol 0 UNICODE).
fn raw_unicode_unescape(l: &[u8]) -> String {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while let Some(&b) = l.get(i) {
        if b == b'\\' {
            let (digits, skip) = match l.get(i + 1) {
                Some(b'u') => (4, 2),
                Some(b'U') => (8, 2),
                _ => (0, 0),
            };
            if digits > 0
                && let Some(hex) = l.get(i + skip..i + skip + digits)
                && let Some(c) = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|s| u32::from_str_radix(s, 16).ok())
                    .and_then(char::from_u32)
            {
                out.push(c);
                i += skip + digits;
                continue;
            }
        }
        out.push(char::from(b));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Finding, Location, ScanOptions};

    fn scan_with(bytes: &[u8], profiles: &[&str]) -> Vec<Finding> {
        let options = ScanOptions {
            profiles: profiles.iter().map(|s| (*s).to_owned()).collect(),
            ..ScanOptions::default()
        };
        let mut findings = Vec::new();
        let mut cx = Context {
            location: Location::file("t.pkl"),
            options: &options,
            findings: &mut findings,
            depth: 0,
        };
        let mut r = bytes;
        scan_stream(&mut r, 0, &mut cx).unwrap();
        findings
    }

    fn scan(bytes: &[u8]) -> Vec<Finding> {
        scan_with(bytes, &[])
    }

    fn rules(f: &[Finding]) -> Vec<(&'static str, Severity)> {
        f.iter().map(|f| (f.rule, f.severity)).collect()
    }

    #[test]
    fn os_system_via_global_reduce_is_critical_call() {
        // cos\nsystem\n(S'id'\ntR.
        let f = scan(b"cos\nsystem\n(S'id'\ntR.");
        assert_eq!(rules(&f), vec![("WS102", Severity::Critical)]);
        assert!(
            f[0].message.contains("calls os.system with (\"id\")"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].location.offset, Some(19));
    }

    #[test]
    fn stack_global_from_memo_is_resolved() {
        // proto 4: "builtins" BINPUT 0, "eval" BINPUT 1, POP POP, BINGET 0, BINGET 1, STACK_GLOBAL
        let mut p = vec![0x80, 4];
        p.extend_from_slice(b"\x8c\x08builtinsq\x00\x8c\x04evalq\x0100h\x00h\x01\x93");
        p.extend_from_slice(b"\x8c\x041+1\x85R.");
        let f = scan(&p);
        assert_eq!(rules(&f), vec![("WS102", Severity::Critical)]);
        assert!(f[0].message.contains("builtins.eval"));
    }

    #[test]
    fn allowed_torch_globals_are_silent() {
        let mut p = vec![0x80, 2];
        p.extend_from_slice(b"ccollections\nOrderedDict\nq\x00)R}b.");
        assert!(scan(&p).is_empty(), "{:?}", scan(&p));
    }

    #[test]
    fn py2_builtin_name_is_mapped() {
        let f = scan(b"c__builtin__\nexec\n(S'x'\ntR.");
        assert_eq!(rules(&f), vec![("WS102", Severity::Critical)]);
        assert!(f[0].message.contains("builtins.exec"));
    }

    #[test]
    fn import_without_call_is_reported() {
        let f = scan(b"\x80\x02csubprocess\nPopen\nq\x00.");
        assert_eq!(rules(&f), vec![("WS101", Severity::Critical)]);
    }

    #[test]
    fn dotted_and_unicode_names_are_findings() {
        let f = scan(b"\x80\x04\x8c\x0bcollections\x8c\x1dOrderedDict.__init__.__code__\x93.");
        assert!(
            f.iter()
                .any(|f| f.rule == "WS104" && f.severity == Severity::Critical),
            "{f:?}"
        );
        let f = scan("\u{80}\u{4}".as_bytes());
        let _ = f;
        let f = scan(b"\x80\x04\x8c\x08builtins\x8c\x06\xef\xbd\x85val\x93.");
        assert!(f.iter().any(|f| f.rule == "WS104"), "{f:?}");
    }

    #[test]
    fn ext_opcodes_and_unresolvable_stack_global() {
        let f = scan(b"\x80\x02\x82\x01)R.");
        assert_eq!(f[0].rule, "WS105");
        // STACK_GLOBAL whose module comes from a call result (_codecs.encode rot13 trick)
        let f = scan(b"\x80\x04\x8c\x07_codecs\x8c\x06encode\x93\x8c\x02bf\x8c\x05rot13\x86R\x8c\x06system\x93.");
        assert!(f.iter().any(|f| f.rule == "WS103"), "{f:?}");
    }

    #[test]
    fn build_on_a_class_is_a_finding() {
        let f = scan(b"\x80\x02ccollections\nOrderedDict\n}b.");
        assert_eq!(rules(&f), vec![("WS106", Severity::High)]);
    }

    #[test]
    fn concatenated_pickles_are_all_scanned() {
        let f = scan(b"\x80\x02K\x01.\x80\x02cos\nsystem\n.");
        assert_eq!(rules(&f), vec![("WS101", Severity::Critical)]);
        assert_eq!(f[0].location.offset, Some(7));
    }

    #[test]
    fn malformed_streams_continue_and_report() {
        // underflow then a dangerous call still reported
        let f = scan(b"\x80\x02acos\nsystem\n(S'x'\ntR.");
        let r = rules(&f);
        assert!(r.contains(&("WS110", Severity::Medium)));
        assert!(r.contains(&("WS102", Severity::Critical)));
        // truncated
        let f = scan(b"\x80\x02cos\nsys");
        assert!(rules(&f).contains(&("WS110", Severity::Medium)));
    }

    #[test]
    fn big_payloads_are_skipped_not_kept() {
        let mut p = vec![0x80, 4, 0x8e];
        p.extend_from_slice(&(1u64 << 20).to_le_bytes());
        p.extend(std::iter::repeat_n(0u8, 1 << 20));
        p.push(b'.');
        assert!(scan(&p).is_empty());
    }

    #[test]
    fn limits_are_findings() {
        let options = ScanOptions {
            max_pickle_stack: 10,
            ..ScanOptions::default()
        };
        let mut findings = Vec::new();
        let mut cx = Context {
            location: Location::file("t.pkl"),
            options: &options,
            findings: &mut findings,
            depth: 0,
        };
        let p = b"\x80\x02NNNNNNNNNNNNNNNNNNN.";
        let mut r = &p[..];
        let res = scan_stream(&mut r, 0, &mut cx);
        assert!(matches!(res, Err(Error::Limit { .. })));
        assert_eq!(findings[0].rule, "WS190");
    }

    #[test]
    fn pop_removes_a_mark_like_cpython() {
        // MARK POP: pops the mark; then TUPLE without mark is malformed
        let f = scan(b"\x80\x02(0N.");
        assert!(f.is_empty(), "{f:?}");
        let f = scan(b"\x80\x02(0t.");
        assert!(rules(&f).contains(&("WS110", Severity::Medium)));
    }

    #[test]
    fn sniff_rejects_text() {
        assert!(sniff(b"\x80\x02}q\x00."));
        assert!(sniff(b"cos\nsystem\n"));
        assert!(!sniff(b"hello world"));
        assert!(!sniff(b"{\"a\": 1}"));
    }
}
