//! Template-injection (SSTI) checks for Jinja2 chat templates.
//!
//! Chat templates in GGUF files (and Hugging Face tokenizer configs) are rendered by a
//! Jinja2 sandbox or a re-implementation of one (minja in llama.cpp). Sandbox escapes all
//! follow the same shape: reach a dunder attribute (`__class__`, `__globals__`,
//! `__subclasses__`...), or a global with interesting closures (`cycler`, `joiner`,
//! `lipsum`, `self`, `config`, `request`), then walk to `os.popen`. This module tokenizes
//! the expression parts of the template the way Jinja's lexer does (strings with their
//! escapes, names, operators, `.`/`[]` access, filters; text outside `{{ }}`/`{% %}` is
//! data and never inspected), folds string constants built by concatenation (`~`, `+`,
//! adjacent literals, `* n`, `|join`, `|reverse`, `|lower`) and checks names and folded
//! strings. Ordinary templates (loops over messages and tools, `namespace()`,
//! `raise_exception`, `tojson`, `strftime_now`) use none of these constructs.

#![deny(clippy::indexing_slicing)]

use crate::{Context, Severity};

/// The most findings reported for one template (a hostile template could repeat one
/// construct a million times).
const MAX_FINDINGS: usize = 32;

/// Names that reach interpreter internals when used as attributes or subscripts.
const DANGEROUS_ATTRS: &[&str] = &[
    "mro",
    "popen",
    "os",
    "subprocess",
    "func_globals",
    "func_code",
    "f_globals",
    "f_locals",
    "f_builtins",
    "f_back",
    "gi_frame",
    "gi_code",
    "cr_frame",
    "ag_frame",
    "tb_frame",
    "co_code",
    "im_func",
    "check_output",
    "import_module",
    "load_module",
];

/// Bare global names that are dangerous when referenced at all.
const DANGEROUS_NAMES: &[&str] = &[
    "os",
    "subprocess",
    "popen",
    "eval",
    "exec",
    "builtins",
    "importlib",
    "globals",
    "getattr",
    "setattr",
    "mro",
];

/// Jinja (and Flask) globals whose attributes lead to module globals.
const GADGET_NAMES: &[&str] = &[
    "cycler",
    "joiner",
    "lipsum",
    "self",
    "config",
    "request",
    "url_for",
    "get_flashed_messages",
    "session",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Num(String),
    Op(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

const OPS: &[&str] = &[
    "//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}",
    "<", ">", "=", ".", ":", "|", ",", ";",
];

struct Checker<'c, 'a> {
    cx: &'c mut Context<'a>,
    key: &'c str,
    base: u64,
    reported: usize,
}

impl Checker<'_, '_> {
    fn report(&mut self, rule: &'static str, severity: Severity, pos: usize, msg: String) {
        if self.reported >= MAX_FINDINGS {
            return;
        }
        self.reported += 1;
        let key = self.key;
        self.cx.report(
            rule,
            severity,
            Some(self.base + pos as u64),
            format!("chat template {key}: {msg}"),
        );
    }
}

/// Check a chat template. `base` is the file offset of the template's first byte.
pub(crate) fn check_template(key: &str, src: &str, base: u64, cx: &mut Context) {
    let mut ck = Checker {
        cx,
        key,
        base,
        reported: 0,
    };
    let bytes = src.as_bytes();
    let mut i = 0usize;
    while let Some(rel) = find_open(bytes.get(i..).unwrap_or_default()) {
        let start = i + rel;
        let kind = bytes.get(start + 1).copied().unwrap_or(0);
        let mut j = start + 2;
        if matches!(bytes.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        if kind == b'#' {
            match find(bytes, j, b"#}") {
                Some(e) => {
                    i = e + 2;
                    continue;
                }
                None => {
                    ck.report(
                        "WS527",
                        Severity::Medium,
                        start,
                        "unterminated comment; the rest of the template was not checked".into(),
                    );
                    return;
                }
            }
        }
        let (toks, end) = match lex_block(src, j, kind == b'{') {
            Ok(r) => r,
            Err((pos, why)) => {
                ck.report(
                    "WS527",
                    Severity::Medium,
                    pos,
                    format!("{why}; the rest of the template was not checked"),
                );
                return;
            }
        };
        if kind == b'%' {
            if let Some(Token {
                tok: Tok::Name(n), ..
            }) = toks.first()
            {
                if n == "raw" {
                    match find_endraw(bytes, end) {
                        Some(e) => {
                            i = e;
                            continue;
                        }
                        None => {
                            ck.report(
                                "WS527",
                                Severity::Medium,
                                start,
                                "raw block without endraw; the rest of the template was not checked"
                                    .into(),
                            );
                            return;
                        }
                    }
                }
                if matches!(n.as_str(), "import" | "from" | "include" | "extends") {
                    ck.report(
                        "WS526",
                        Severity::High,
                        start,
                        format!("'{n}' statement loads another template"),
                    );
                }
            }
        }
        check_block(&toks, &mut ck);
        i = end;
    }
}

/// Position of the next `{{`, `{%` or `{#`.
fn find_open(b: &[u8]) -> Option<usize> {
    let mut k = 0;
    while let Some(rel) = b.get(k..).and_then(|s| s.iter().position(|&c| c == b'{')) {
        let p = k + rel;
        if matches!(b.get(p + 1), Some(b'{' | b'%' | b'#')) {
            return Some(p);
        }
        k = p + 1;
    }
    None
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// End (exclusive) of the `{% endraw %}` tag at or after `from`.
fn find_endraw(b: &[u8], from: usize) -> Option<usize> {
    let mut k = from;
    while let Some(p) = find(b, k, b"{%") {
        let mut j = p + 2;
        if matches!(b.get(j), Some(b'-' | b'+')) {
            j += 1;
        }
        while b.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if b.get(j..j + 6) == Some(b"endraw") {
            return find(b, j, b"%}").map(|e| e + 2);
        }
        k = p + 2;
    }
    None
}

/// Tokenize one `{{ }}` / `{% %}` block starting after its opening delimiter. Returns
/// the tokens and the position after the closing delimiter.
fn lex_block(
    src: &str,
    mut i: usize,
    variable: bool,
) -> Result<(Vec<Token>, usize), (usize, &'static str)> {
    let b = src.as_bytes();
    let close: &[u8] = if variable { b"}}" } else { b"%}" };
    let mut toks = Vec::new();
    let mut depth = 0usize;
    loop {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            return Err((i, "unterminated block"));
        };
        if depth == 0 {
            let mut k = i;
            if matches!(c, b'-' | b'+') {
                k += 1;
            }
            if b.get(k..k + 2) == Some(close) {
                return Ok((toks, k + 2));
            }
        }
        let pos = i;
        if c == b'\'' || c == b'"' {
            let (s, end) = lex_string(src, i).ok_or((i, "unterminated string"))?;
            toks.push(Token {
                tok: Tok::Str(s),
                pos,
            });
            i = end;
        } else if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 {
            let mut e = i;
            while b
                .get(e)
                .is_some_and(|&c| c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80)
            {
                e += 1;
            }
            let name = src.get(i..e).unwrap_or_default().to_owned();
            toks.push(Token {
                tok: Tok::Name(name),
                pos,
            });
            i = e;
        } else if c.is_ascii_digit() {
            let mut e = i;
            while b
                .get(e)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
            {
                e += 1;
            }
            toks.push(Token {
                tok: Tok::Num(src.get(i..e).unwrap_or_default().to_owned()),
                pos,
            });
            i = e;
        } else {
            let op = OPS
                .iter()
                .find(|op| b.get(i..i + op.len()) == Some(op.as_bytes()))
                .ok_or((i, "unexpected character"))?;
            match *op {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
            toks.push(Token {
                tok: Tok::Op(op),
                pos,
            });
            i += op.len();
        }
    }
}

/// Lex a quoted string at `i` and decode its escapes as Jinja does (Python's
/// `unicode-escape`). Returns the value and the position after the closing quote.
fn lex_string(src: &str, i: usize) -> Option<(String, usize)> {
    let b = src.as_bytes();
    let q = *b.get(i)?;
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            &c if c == q => break,
            _ => j += 1,
        }
    }
    let raw = src.get(i + 1..j)?;
    Some((decode_escapes(raw), j + 1))
}

fn decode_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = it.next() else {
            out.push('\\');
            break;
        };
        let hex = |it: &mut std::iter::Peekable<std::str::Chars>, n: usize| {
            let mut v = 0u32;
            for _ in 0..n {
                let d = it.peek().and_then(|c| c.to_digit(16))?;
                it.next();
                v = v * 16 + d;
            }
            char::from_u32(v)
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            'x' => out.push(hex(&mut it, 2).unwrap_or('?')),
            'u' => out.push(hex(&mut it, 4).unwrap_or('?')),
            'U' => out.push(hex(&mut it, 8).unwrap_or('?')),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match it.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            v = v * 8 + d;
                            it.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('?'));
            }
            'N' => {
                let mut name = String::new();
                if it.peek() == Some(&'{') {
                    it.next();
                    for c in it.by_ref() {
                        if c == '}' {
                            break;
                        }
                        name.push(c);
                    }
                }
                out.push(match name.to_ascii_uppercase().as_str() {
                    "LOW LINE" | "LOWLINE" => '_',
                    "FULL STOP" => '.',
                    _ => '?',
                });
            }
            '\n' => {}
            other => out.push(other),
        }
    }
    out
}

fn is_dunder(s: &str) -> bool {
    s.len() > 4
        && s.starts_with("__")
        && s.ends_with("__")
        && s.bytes().all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// The dunder names that matter for sandbox escapes.
const DUNDERS: &[&str] = &[
    "__class__",
    "__globals__",
    "__subclasses__",
    "__builtins__",
    "__init__",
    "__mro__",
    "__base__",
    "__bases__",
    "__import__",
    "__dict__",
    "__getattribute__",
    "__reduce__",
    "__code__",
    "__func__",
    "__self__",
    "__module__",
    "__loader__",
    "__spec__",
];

fn contains_dunder(s: &str) -> Option<&'static str> {
    DUNDERS.iter().copied().find(|d| s.contains(d))
}

fn name_at(toks: &[Token], k: usize) -> Option<&str> {
    match toks.get(k).map(|t| &t.tok) {
        Some(Tok::Name(n)) => Some(n),
        _ => None,
    }
}

fn op_at(toks: &[Token], k: usize) -> Option<&'static str> {
    match toks.get(k).map(|t| &t.tok) {
        Some(Tok::Op(o)) => Some(o),
        _ => None,
    }
}

fn check_block(toks: &[Token], ck: &mut Checker) {
    let formats = toks
        .iter()
        .any(|t| matches!(&t.tok, Tok::Name(n) if n == "format"));
    let mut k = 0;
    while let Some(t) = toks.get(k) {
        match &t.tok {
            Tok::Name(n) => check_name(toks, k, n, t.pos, ck),
            Tok::Str(_) => {
                let (folded, pieces, end) = fold_strings(toks, k);
                check_string(toks, (k, end), &folded, pieces, formats, t.pos, ck);
                k = end;
                continue;
            }
            Tok::Op("|") => check_filter(toks, k, ck),
            _ => {}
        }
        k += 1;
    }
}

fn check_name(toks: &[Token], k: usize, n: &str, pos: usize, ck: &mut Checker) {
    let attribute = k > 0 && op_at(toks, k - 1) == Some(".");
    let filter = k > 0 && op_at(toks, k - 1) == Some("|");
    let kwarg = op_at(toks, k + 1) == Some("=");
    if is_dunder(n) {
        ck.report(
            "WS521",
            Severity::Critical,
            pos,
            format!("access to the interpreter-internal name {n} (sandbox escape)"),
        );
        return;
    }
    if attribute && DANGEROUS_ATTRS.contains(&n) {
        ck.report(
            "WS525",
            Severity::Critical,
            pos,
            format!("attribute access to {n}, which reaches interpreter or process internals"),
        );
        return;
    }
    if attribute || filter || kwarg {
        return;
    }
    if DANGEROUS_NAMES.contains(&n) {
        ck.report(
            "WS525",
            Severity::Critical,
            pos,
            format!("reference to {n}, which reaches interpreter or process internals"),
        );
    } else if GADGET_NAMES.contains(&n) {
        ck.report(
            "WS524",
            Severity::High,
            pos,
            format!(
                "reference to the global {n}, a known gadget for reaching module globals from a template"
            ),
        );
    }
}

/// Fold `'a' ~ 'b' + 'c' 'd' * 2` starting at string token `k`. Returns the folded value,
/// the number of pieces, and the index after the folded run.
fn fold_strings(toks: &[Token], k: usize) -> (String, usize, usize) {
    let mut out = match toks.get(k).map(|t| &t.tok) {
        Some(Tok::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let mut pieces = 1;
    let mut j = k + 1;
    loop {
        match (toks.get(j).map(|t| &t.tok), toks.get(j + 1).map(|t| &t.tok)) {
            (Some(Tok::Str(s)), _) => {
                out.push_str(s);
                pieces += 1;
                j += 1;
            }
            (Some(Tok::Op("~" | "+")), Some(Tok::Str(s))) => {
                out.push_str(s);
                pieces += 1;
                j += 2;
            }
            (Some(Tok::Op("*")), Some(Tok::Num(n))) => {
                let times = n.parse::<usize>().unwrap_or(1).min(64);
                if out.len() < 256 {
                    out = out.repeat(times);
                }
                pieces += 1;
                j += 2;
            }
            _ => break,
        }
    }
    (out, pieces, j)
}

/// `span` is the token range of the folded run; `formats` says the block calls `format`.
fn check_string(
    toks: &[Token],
    (k, end): (usize, usize),
    folded: &str,
    pieces: usize,
    formats: bool,
    pos: usize,
    ck: &mut Checker,
) {
    let subscript = k > 0 && op_at(toks, k - 1) == Some("[") && op_at(toks, end) == Some("]");
    let reversed: String = folded.chars().rev().collect();
    let lower = folded.to_lowercase();
    for (variant, how) in [
        (folded, "builds"),
        (reversed.as_str(), "reversed builds"),
        (lower.as_str(), "lower-cased builds"),
    ] {
        let t = variant.trim();
        if is_dunder(t) {
            ck.report(
                "WS522",
                Severity::Critical,
                pos,
                format!("string constant {how} the interpreter-internal name {t} (sandbox escape)"),
            );
            return;
        }
    }
    if let Some(d) = contains_dunder(folded) {
        if subscript || pieces > 1 || (formats && folded.contains('{')) {
            ck.report(
                "WS522",
                Severity::Critical,
                pos,
                format!(
                    "string constant used as a name or format string contains {d} (sandbox escape)"
                ),
            );
            return;
        }
    }
    if subscript && DANGEROUS_ATTRS.contains(&folded) {
        ck.report(
            "WS525",
            Severity::Critical,
            pos,
            format!("subscript access to {folded}, which reaches interpreter or process internals"),
        );
        return;
    }
    if folded.contains("%c") || folded.contains(":c}") {
        ck.report(
            "WS522",
            Severity::High,
            pos,
            "format string builds characters from numbers, a way to spell names that are checked"
                .into(),
        );
    }
}

/// `k` is the index of a `|`.
fn check_filter(toks: &[Token], k: usize, ck: &mut Checker) {
    let Some(name) = name_at(toks, k + 1) else {
        return;
    };
    let pos = toks.get(k + 1).map_or(0, |t| t.pos);
    match name {
        "attr" => {
            // attr(<single string literal run>) with a harmless name is fine; anything
            // computed is a dynamic attribute lookup.
            let literal = op_at(toks, k + 2) == Some("(")
                && matches!(toks.get(k + 3).map(|t| &t.tok), Some(Tok::Str(_)))
                && {
                    let (_, _, end) = fold_strings(toks, k + 3);
                    op_at(toks, end) == Some(")")
                };
            if !literal {
                ck.report(
                    "WS523",
                    Severity::High,
                    pos,
                    "attr filter with a computed attribute name (dynamic attribute lookup)".into(),
                );
            }
        }
        "join" => {
            // ['__', 'class', '__']|join  or  ('__','class','__')|join
            if k == 0 || !matches!(op_at(toks, k - 1), Some("]" | ")")) {
                return;
            }
            let mut depth = 0usize;
            let mut j = k;
            let mut parts: Vec<&str> = Vec::new();
            while j > 0 {
                j -= 1;
                match toks.get(j).map(|t| &t.tok) {
                    Some(Tok::Op("]" | ")")) => depth += 1,
                    Some(Tok::Op("[" | "(")) => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            break;
                        }
                    }
                    Some(Tok::Str(s)) if depth == 1 => parts.push(s),
                    _ => {}
                }
            }
            parts.reverse();
            let joined: String = parts.concat();
            if parts.len() > 1 && (is_dunder(joined.trim()) || contains_dunder(&joined).is_some()) {
                ck.report(
                    "WS522",
                    Severity::Critical,
                    pos,
                    format!(
                        "join of string constants builds the interpreter-internal name {} (sandbox escape)",
                        joined.trim()
                    ),
                );
            }
        }
        "string" => {
            // ()|select|string  then  [n] or |list: characters pulled out of an object's repr
            let mut j = k + 2;
            while op_at(toks, j) == Some(")") {
                j += 1;
            }
            if op_at(toks, j) == Some("[")
                || (op_at(toks, j) == Some("|") && name_at(toks, j + 1) == Some("list"))
            {
                ck.report(
                    "WS523",
                    Severity::High,
                    pos,
                    "characters taken from an object's text form (a way to spell names that are checked)"
                        .into(),
                );
            }
        }
        _ => {}
    }
    // keyword attribute=... on map/selectattr/rejectattr/sort/groupby/sum/unique
    let mut j = k + 2;
    if op_at(toks, j) != Some("(") {
        return;
    }
    let mut depth = 0usize;
    while let Some(t) = toks.get(j) {
        match &t.tok {
            Tok::Op("(" | "[" | "{") => depth += 1,
            Tok::Op(")" | "]" | "}") => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Tok::Name(n)
                if n == "attribute"
                    && op_at(toks, j + 1) == Some("=")
                    && !matches!(toks.get(j + 2).map(|t| &t.tok), Some(Tok::Str(_))) =>
            {
                ck.report(
                    "WS523",
                    Severity::High,
                    t.pos,
                    format!(
                        "{name} filter with a computed attribute name (dynamic attribute lookup)"
                    ),
                );
            }
            _ => {}
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Finding, Location, ScanOptions};

    fn findings(src: &str) -> Vec<Finding> {
        let opts = ScanOptions::default();
        let mut out = Vec::new();
        let mut cx = Context {
            location: Location::file("t.gguf"),
            options: &opts,
            findings: &mut out,
            depth: 0,
        };
        check_template("tokenizer.chat_template", src, 100, &mut cx);
        out
    }

    fn rules(src: &str) -> Vec<&'static str> {
        findings(src).iter().map(|f| f.rule).collect()
    }

    #[test]
    fn ordinary_templates_are_clean() {
        let chatml = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        assert_eq!(rules(chatml), Vec::<&str>::new());
        let tools = r#"{%- set ns = namespace(found=false, sys='') -%}
{%- if tools %}{{- '<tools>' }}{%- for tool in tools %}{{- tool | tojson(indent=2) }}{%- endfor %}{%- endif %}
{%- for message in messages -%}
  {%- if message.role == 'system' -%}{%- set ns.sys = message.content | trim -%}
  {%- elif message.role not in ['user', 'assistant', 'tool'] -%}{{ raise_exception('Unknown role: ' ~ message.role) }}
  {%- else -%}{{ '<|' ~ message.role ~ '|>' ~ (message.content if message.content is string else message.content | map(attribute='text') | join('')) }}
  {%- endif -%}
{%- endfor -%}
{# a comment mentioning __class__ is data #}
{%- raw %}{{ x.__class__ }}{% endraw %}
{{- 'Today is ' ~ strftime_now('%d %b %Y') ~ '. Python: obj.__init__ runs first; {"a": {"b": 1}}' }}
{%- if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"#;
        assert_eq!(rules(tools), Vec::<&str>::new());
        // dict literal with nested braces inside an expression
        assert_eq!(
            rules("{{ {'a': {'b': 1}} | tojson }} text }} more"),
            Vec::<&str>::new()
        );
        // text outside blocks is never inspected
        assert_eq!(
            rules("hello __class__ __globals__ os.popen lipsum"),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn dunder_attribute_access() {
        let f = findings("{{ ''.__class__.__mro__[1].__subclasses__() }}");
        assert_eq!(f.len(), 3);
        assert!(
            f.iter()
                .all(|f| f.rule == "WS521" && f.severity == Severity::Critical)
        );
        assert_eq!(f[0].location.offset, Some(100 + 6));
        assert_eq!(rules("{% set x = namespace.__init__ %}"), vec!["WS521"]);
    }

    #[test]
    fn built_names_are_caught() {
        assert_eq!(rules("{{ x['__cla' ~ 'ss__'] }}"), vec!["WS522"]);
        assert_eq!(rules("{{ x|attr('__glo' + 'bals__') }}"), vec!["WS522"]);
        assert_eq!(
            rules("{{ x|attr('\\x5f\\x5fclass\\x5f\\x5f') }}"),
            vec!["WS522"]
        );
        assert_eq!(
            rules("{{ x|attr('_'*2 ~ 'class' ~ '_'*2) }}"),
            vec!["WS522"]
        );
        assert_eq!(
            rules("{{ x|attr('__ssalc__'|reverse) }}"),
            vec!["WS523", "WS522"]
        );
        assert_eq!(
            rules("{{ x|attr(['__', 'class', '__']|join) }}"),
            vec!["WS523", "WS522"]
        );
        assert_eq!(rules("{% set a = '__CLASS__' %}"), vec!["WS522"]);
        assert_eq!(rules("{{ '{0.__class__}'.format(x) }}"), vec!["WS522"]);
        assert_eq!(rules("{{ x|attr(name) }}"), vec!["WS523"]);
        assert_eq!(rules("{{ x|map(attribute=n) }}"), vec!["WS523"]);
        assert_eq!(rules("{{ x|map(attribute='__class__') }}"), vec!["WS522"]);
        assert_eq!(rules("{{ (()|select|string)[24] }}"), vec!["WS523"]);
        assert_eq!(rules("{{ '%c%c'|format(95,95) }}"), vec!["WS522"]);
        assert_eq!(
            rules("{{ x['\\N{LOW LINE}\\N{LOW LINE}class__'] }}"),
            vec!["WS522"]
        );
    }

    #[test]
    fn gadgets_and_dangerous_names() {
        assert_eq!(
            rules("{{ cycler.__init__.__globals__.os.popen('id').read() }}"),
            vec!["WS524", "WS521", "WS521", "WS525", "WS525"]
        );
        assert_eq!(
            rules("{{ lipsum['__globals__']['os'] }}"),
            vec!["WS524", "WS522", "WS525"]
        );
        assert_eq!(
            rules("{{ joiner }}{{ self }}{{ config.items() }}{{ request }}"),
            vec!["WS524", "WS524", "WS524", "WS524"]
        );
        assert_eq!(rules("{{ x.mro() }}"), vec!["WS525"]);
        assert_eq!(rules("{% include 'other' %}"), vec!["WS526"]);
        // names as attributes or keyword arguments are fine
        assert_eq!(
            rules("{{ message.config }}{{ f(self=1) }}"),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn unterminated_is_reported() {
        assert_eq!(rules("{{ 'abc }}"), vec!["WS527"]);
        assert_eq!(rules("{% if x "), vec!["WS527"]);
        assert_eq!(rules("{# x"), vec!["WS527"]);
        assert_eq!(rules("{{ x ` }}"), vec!["WS527"]);
    }

    #[test]
    fn findings_are_capped() {
        let src = "{{ x.__class__ }}".repeat(1000);
        assert_eq!(findings(&src).len(), MAX_FINDINGS);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "[{}%#'\"\\\\a-z_|~+*()\\[\\]. 0-9-]{0,64}") {
            let _ = findings(&s);
        }
    }
}
