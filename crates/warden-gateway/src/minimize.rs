//! Response minimisation: only the fields a client needs leave the gateway. Logprob data
//! (unless the identity's role allows it), `system_fingerprint`, engine timings and any
//! field not on the per-endpoint allowlist are removed, from whole JSON bodies and from
//! every `data:` event of an SSE stream.
//!
//! Responses API (`/v1/responses`): the response object keeps what a client reads
//! (`id`, `object`, `created_at`, `status`, `model`, `output`, `usage`, `error`,
//! `incomplete_details`), not the echo of the request's configuration (instructions,
//! tools, metadata, ...). Output items keep their shape so indices stay valid: `message`
//! items their role, status and content parts (`output_text` with its text, `refusal`),
//! `function_call` items their call id, name and arguments; any other item (reasoning,
//! hosted tool calls) only its `type` and `id`, any other content part only its `type`.
//! Annotations are emptied. Stream events pass only when their type is one of the
//! lifecycle, output item, content part, text, refusal, function-call argument or
//! `error` events, with that event's fields; every other event (reasoning text, hosted
//! tools, annotations, audio) is dropped whole. Each kept field must have its shape
//! (scalar, array or object, see `Kind`): a value of another shape is dropped (an
//! array field becomes `[]`), so text cannot ride past output screening inside an
//! object under `text` or `id`. Chat and completions answers are shaped alike (text
//! fields strings or null, `created` numbers, `index` non-negative integers, tool calls allowlisted), and so are embeddings answers (`data` objects with a slot `index` and an
//! `embedding` of numbers or a base64 string, `usage` and `error` objects). Identifier fields (`id`, `item_id`, `call_id`, `name`,
//! `model`, `status`, `role`, `object`, `type`, `finish_reason`, an error's `code`,
//! `param` and `type`, on every endpoint) keep a string only if it looks like one
//! (printable ASCII without spaces, at most 128 bytes): output screening checks them only
//! for canaries and secrets (not with the prose rules), so they must not carry prose. A top-level `model` or `id` that fails is
//! replaced rather than dropped (typed clients require both): by the model the request
//! was routed to, and by `""`. Tool names may be non-ASCII (no whitespace or controls).

use crate::json::{Fields, Step, string_span};
use crate::validate::Endpoint;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

/// Token usage reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `usage.total_tokens` (or prompt + completion).
    pub total_tokens: u64,
}

/// What may be returned.
#[derive(Debug, Clone, Copy)]
pub struct ResponsePolicy {
    /// Endpoint (chooses the allowlist).
    pub endpoint: Endpoint,
    /// Keep logprob data.
    pub keep_logprobs: bool,
}

/// Token counts kept in `usage` (chat and completions name them prompt/completion, the
/// Responses API input/output): numbers (or null).
const USAGE_SHAPE: &[(&str, Kind)] = &[
    ("prompt_tokens", Kind::Num),
    ("completion_tokens", Kind::Num),
    ("total_tokens", Kind::Num),
    ("input_tokens", Kind::Num),
    ("output_tokens", Kind::Num),
];

fn str_field<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    o.field(k).and_then(Value::as_str)
}

/// What a field kept by [`shape`] may hold.
#[derive(Clone, Copy)]
enum Kind {
    /// A string, number, boolean or null; anything else is dropped.
    Scalar,
    /// An identifier the upstream chose (ids, names, model, status, error codes): a
    /// string passes only if [`is_ident`], a number, boolean or null always; anything
    /// else is dropped.
    Ident,
    /// An array; anything else becomes `[]`.
    Array,
    /// An object (or null, as OpenAI sends an absent `error`); anything else is dropped.
    Object,
    /// Model output a client reads as text (chat and completions `content`, `refusal`,
    /// `text`, tool-call `arguments`): a string or null; anything else is dropped.
    Text,
    /// A number or null (`created`); anything else is dropped.
    Num,
    /// A slot index (choices, tool calls): a non-negative integer; anything else (`0.0`,
    /// `-1`, `"0"`, null) is dropped, so the output screen and the client read the slot
    /// the same way (a `0.0` the screen took for another choice would stream choice 0's
    /// text outside its window).
    Index,
    /// A tool (function) name: a string passes only if [`is_name`] (non-ASCII allowed,
    /// unlike [`Ident`]), a number, boolean or null always; anything else is dropped.
    Name,
    /// An embedding: an array of numbers, or a base64 string (`encoding_format:
    /// base64`); anything else is dropped.
    Vector,
    /// Anything (logprob data, only where the role allows it).
    Any,
}

use Kind::{Any, Array as Arr, Ident, Index, Name, Num, Object as Obj, Scalar, Text, Vector};

/// Keep only `fields`, each with its kind: an allowlisted key never carries a value of
/// another shape (an object under `text` or `id` would pass unscreened, since output
/// screening reads the strings under text keys).
fn shape(o: &mut Map<String, Value>, fields: &[(&str, Kind)]) {
    o.retain(|k, v| {
        let Some((_, kind)) = fields.iter().find(|(f, _)| *f == k.as_str()) else {
            return false;
        };
        match kind {
            Scalar => !matches!(v, Value::Array(_) | Value::Object(_)),
            Ident => ident_value(v),
            Arr => {
                if !v.is_array() {
                    *v = Value::Array(Vec::new());
                }
                true
            }
            Obj => v.is_object() || v.is_null(),
            Text => v.is_string() || v.is_null(),
            Num => v.is_number() || v.is_null(),
            Index => v.is_u64(),
            Name => match v {
                Value::String(s) => is_name(s),
                Value::Array(_) | Value::Object(_) => false,
                _ => true,
            },
            Vector => match v {
                Value::Array(a) => a.iter().all(Value::is_number),
                Value::String(s) => s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')),
                _ => false,
            },
            Any => true,
        }
    });
}

/// The longest identifier kept (OpenAI and llama.cpp ids such as `chatcmpl-…`,
/// `resp_…`, `call_…`, model names such as `org/model:tag` are far shorter).
const MAX_IDENT: usize = 128;

/// Whether `s` looks like an identifier: printable ASCII without spaces, at most
/// [`MAX_IDENT`] bytes. Output screening checks identifier fields only for canaries and
/// secrets, so prose (or anything long) under an identifier key would pass the rest unread.
fn is_ident(s: &str) -> bool {
    s.len() <= MAX_IDENT && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `s` may be a tool name: at most [`MAX_IDENT`] bytes without whitespace or
/// control characters (names in other scripts pass; prose does not).
fn is_name(s: &str) -> bool {
    s.len() <= MAX_IDENT && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What a non-identifier top-level `model` or `id` becomes, instead of being removed
/// (strictly typed clients require both): `model` the model the request was routed to
/// (`routed`, validated; removed without one), `id` the empty string.
fn fix_model_and_id(o: &mut Map<String, Value>, routed: Option<&str>) {
    if let Some(m) = o.field_mut("model")
        && !ident_value(m)
    {
        match routed {
            Some(r) => *m = Value::String(r.to_owned()),
            None => {
                o.remove("model");
            }
        }
    }
    if let Some(id) = o.field_mut("id")
        && !ident_value(id)
    {
        *id = Value::String(String::new());
    }
}

/// Whether a value may stay under an identifier key.
fn ident_value(v: &Value) -> bool {
    match v {
        Value::String(s) => is_ident(s),
        Value::Array(_) | Value::Object(_) => false,
        _ => true,
    }
}

/// Drop the `keys` of `o` whose value is not an identifier ([`ident_value`]).
fn idents(o: &mut Map<String, Value>, keys: &[&str]) {
    o.retain(|k, v| !keys.contains(&k.as_str()) || ident_value(v));
}

/// Minimise each object of an array with `f`; any other entry becomes `{}` (removing it
/// would shift the `output_index`/`content_index` of what follows).
fn each_object(a: &mut [Value], mut f: impl FnMut(&mut Map<String, Value>)) {
    for x in a.iter_mut() {
        match x {
            Value::Object(o) => f(o),
            other => *other = Value::Object(Map::new()),
        }
    }
}

fn usage_shape(o: &mut Map<String, Value>) {
    shape(o, USAGE_SHAPE);
}

/// One content part of a Responses-API `message` item.
fn minimize_part(part: &mut Map<String, Value>, keep_logprobs: bool) {
    match str_field(part, "type") {
        Some("output_text") => {
            let fields: &[(&str, Kind)] = if keep_logprobs {
                &[
                    ("type", Ident),
                    ("text", Scalar),
                    ("annotations", Arr),
                    ("logprobs", Any),
                ]
            } else {
                &[("type", Ident), ("text", Scalar), ("annotations", Arr)]
            };
            shape(part, fields);
            // Citations come from hosted tools: none of a self-hosted model's business.
            if let Some(a) = part.field_mut("annotations") {
                *a = Value::Array(Vec::new());
            }
        }
        Some("refusal") => shape(part, &[("type", Ident), ("refusal", Scalar)]),
        _ => shape(part, &[("type", Ident)]),
    }
}

/// One item of a Responses-API `output`.
fn minimize_item(item: &mut Map<String, Value>, keep_logprobs: bool) {
    match str_field(item, "type") {
        Some("message") => {
            shape(
                item,
                &[
                    ("type", Ident),
                    ("id", Ident),
                    ("role", Ident),
                    ("status", Ident),
                    ("content", Arr),
                ],
            );
            if let Some(Value::Array(parts)) = item.field_mut("content") {
                each_object(parts, |p| minimize_part(p, keep_logprobs));
            }
        }
        Some("function_call") => shape(
            item,
            &[
                ("type", Ident),
                ("id", Ident),
                ("call_id", Ident),
                ("name", Name),
                ("arguments", Scalar),
                ("status", Ident),
            ],
        ),
        // Reasoning, hosted tool calls, anything newer: kept as a placeholder so the
        // `output_index` of later items and events still points at the right one.
        _ => shape(item, &[("type", Ident), ("id", Ident)]),
    }
}

/// Fields of an error object, all scalars.
const ERROR_SHAPE: &[(&str, Kind)] = &[
    ("code", Ident),
    ("message", Scalar),
    ("type", Ident),
    ("param", Ident),
];

fn minimize_error(o: &mut Map<String, Value>) {
    if let Some(Value::Object(e)) = o.field_mut("error") {
        shape(e, ERROR_SHAPE);
    }
}

/// A Responses-API response object (a body, or the `response` of a lifecycle event).
fn minimize_response(o: &mut Map<String, Value>, keep_logprobs: bool) {
    shape(
        o,
        &[
            ("id", Ident),
            ("object", Ident),
            ("created_at", Num),
            ("status", Ident),
            ("model", Ident),
            ("output", Arr),
            ("usage", Obj),
            ("error", Obj),
            ("incomplete_details", Obj),
        ],
    );
    if let Some(Value::Array(items)) = o.field_mut("output") {
        each_object(items, |it| minimize_item(it, keep_logprobs));
    }
    if let Some(Value::Object(u)) = o.field_mut("usage") {
        usage_shape(u);
    }
    if let Some(Value::Object(d)) = o.field_mut("incomplete_details") {
        shape(d, &[("reason", Ident)]);
    }
    minimize_error(o);
}

/// A Responses-API stream event; false when the event is not passed on at all.
fn minimize_response_event(
    o: &mut Map<String, Value>,
    keep_logprobs: bool,
    routed: Option<&str>,
) -> bool {
    const LOCATED: [(&str, Kind); 4] = [
        ("type", Ident),
        ("sequence_number", Num),
        ("item_id", Ident),
        ("output_index", Num),
    ];
    // `logprobs`: text events only, and only when the role keeps them.
    let with = |extra: &[(&'static str, Kind)], logprobs: bool| -> Vec<(&'static str, Kind)> {
        let mut f: Vec<(&str, Kind)> = LOCATED.iter().chain(extra).copied().collect();
        if logprobs && keep_logprobs {
            f.push(("logprobs", Any));
        }
        f
    };
    let Some(ty) = str_field(o, "type") else {
        // An upstream error sent as a bare `{"error": …}` event.
        if o.field("error").is_some_and(Value::is_object) {
            shape(o, &[("error", Obj)]);
            minimize_error(o);
            return true;
        }
        return false;
    };
    // The object an event carries (kept by `shape` whatever it is, `Any`, so that it is
    // judged here), minimised by `f`; with a value of another shape (null included)
    // the event is dropped.
    fn carried(
        o: &mut Map<String, Value>,
        key: &str,
        f: impl FnOnce(&mut Map<String, Value>),
    ) -> bool {
        match o.field_mut(key) {
            Some(Value::Object(x)) => {
                f(x);
                true
            }
            Some(_) => false,
            None => true,
        }
    }
    match ty {
        "response.created"
        | "response.queued"
        | "response.in_progress"
        | "response.completed"
        | "response.failed"
        | "response.incomplete" => {
            shape(
                o,
                &[("type", Ident), ("sequence_number", Num), ("response", Any)],
            );
            carried(o, "response", |r| {
                fix_model_and_id(r, routed);
                minimize_response(r, keep_logprobs);
            })
        }
        "response.output_item.added" | "response.output_item.done" => {
            shape(
                o,
                &[
                    ("type", Ident),
                    ("sequence_number", Num),
                    ("output_index", Num),
                    ("item", Any),
                ],
            );
            carried(o, "item", |it| minimize_item(it, keep_logprobs))
        }
        "response.content_part.added" | "response.content_part.done" => {
            shape(o, &with(&[("content_index", Num), ("part", Any)], false));
            carried(o, "part", |p| minimize_part(p, keep_logprobs))
        }
        "response.output_text.delta" => {
            shape(o, &with(&[("content_index", Num), ("delta", Scalar)], true));
            true
        }
        "response.output_text.done" => {
            shape(o, &with(&[("content_index", Num), ("text", Scalar)], true));
            true
        }
        "response.refusal.delta" => {
            shape(
                o,
                &with(&[("content_index", Num), ("delta", Scalar)], false),
            );
            true
        }
        "response.refusal.done" => {
            shape(
                o,
                &with(&[("content_index", Num), ("refusal", Scalar)], false),
            );
            true
        }
        "response.function_call_arguments.delta" => {
            shape(o, &with(&[("delta", Scalar)], false));
            true
        }
        "response.function_call_arguments.done" => {
            shape(o, &with(&[("name", Name), ("arguments", Scalar)], false));
            true
        }
        "error" => {
            shape(
                o,
                &[
                    ("type", Ident),
                    ("sequence_number", Num),
                    ("code", Ident),
                    ("message", Scalar),
                    ("param", Ident),
                ],
            );
            true
        }
        // Reasoning text, hosted tools, annotations, audio, anything newer.
        _ => false,
    }
}

fn strip_recursive(v: &mut Value, keep_logprobs: bool) {
    match v {
        Value::Object(o) => {
            // `remove` hashes its key even when it is absent (the usual case); objects
            // here have a handful of keys, so look first and remove only what is there.
            let drop_logprobs: &[&str] = if keep_logprobs {
                &[]
            } else {
                &["logprobs", "top_logprobs"]
            };
            for k in ["system_fingerprint", "timings"]
                .iter()
                .chain(drop_logprobs)
            {
                if o.keys().any(|x| x == k) {
                    o.remove(*k);
                }
            }
            for (_, x) in o.iter_mut() {
                strip_recursive(x, keep_logprobs);
            }
        }
        Value::Array(a) => {
            for x in a {
                strip_recursive(x, keep_logprobs);
            }
        }
        _ => {}
    }
}

fn usage_of(o: &Map<String, Value>) -> Option<Usage> {
    let u = o.field("usage")?.as_object()?;
    let n = |k: &str| u.field(k).and_then(Value::as_u64).unwrap_or(0);
    let total = u
        .field("total_tokens")
        .and_then(Value::as_u64)
        // Chat/completions name them prompt/completion, the Responses API input/output.
        .unwrap_or_else(|| {
            n("prompt_tokens")
                .saturating_add(n("completion_tokens"))
                .saturating_add(n("input_tokens"))
                .saturating_add(n("output_tokens"))
        });
    Some(Usage {
        total_tokens: total,
    })
}

/// A chat or completions answer (a body or a stream chunk). Like the Responses API,
/// every kept field must have its shape: text fields are strings (or null), so nothing
/// rides past output screening inside an object under `content` or `text`, and tool
/// calls keep only their index, id, type and function name and arguments.
fn minimize_chat(o: &mut Map<String, Value>, keep_logprobs: bool) {
    shape(
        o,
        &[
            ("id", Ident),
            ("object", Ident),
            ("created", Num),
            ("model", Ident),
            ("choices", Arr),
            ("usage", Obj),
            ("error", Obj),
        ],
    );
    let choice: &[(&str, Kind)] = if keep_logprobs {
        &[
            ("index", Index),
            ("message", Obj),
            ("delta", Obj),
            ("text", Text),
            ("finish_reason", Ident),
            ("logprobs", Any),
        ]
    } else {
        &[
            ("index", Index),
            ("message", Obj),
            ("delta", Obj),
            ("text", Text),
            ("finish_reason", Ident),
        ]
    };
    if let Some(Value::Array(cs)) = o.field_mut("choices") {
        each_object(cs, |c| {
            shape(c, choice);
            for k in ["message", "delta"] {
                if let Some(Value::Object(m)) = c.field_mut(k) {
                    minimize_message(m);
                }
            }
        });
    }
    minimize_error(o);
}

/// A chat `message` or stream `delta`.
fn minimize_message(m: &mut Map<String, Value>) {
    shape(
        m,
        &[
            ("role", Ident),
            ("content", Text),
            ("tool_calls", Arr),
            ("refusal", Text),
        ],
    );
    if let Some(Value::Array(calls)) = m.field_mut("tool_calls") {
        each_object(calls, |t| {
            shape(
                t,
                &[
                    ("index", Index),
                    ("id", Ident),
                    ("type", Ident),
                    ("function", Obj),
                ],
            );
            if let Some(Value::Object(f)) = t.field_mut("function") {
                shape(f, &[("name", Name), ("arguments", Text)]);
            }
        });
    }
}

/// Minimise one response object in place; returns the usage it reported.
pub fn minimize(v: &mut Value, p: ResponsePolicy) -> Option<Usage> {
    minimize_routed(v, p, None)
}

/// [`minimize`] for a request routed to the model `routed`: a non-identifier `model`
/// becomes that name, a non-identifier `id` the empty string.
pub fn minimize_routed(v: &mut Value, p: ResponsePolicy, routed: Option<&str>) -> Option<Usage> {
    let Value::Object(o) = v else { return None };
    let usage = usage_of(o);
    fix_model_and_id(o, routed);
    match p.endpoint {
        Endpoint::Chat | Endpoint::Completions => minimize_chat(o, p.keep_logprobs),
        Endpoint::Embeddings => {
            shape(
                o,
                &[
                    ("object", Ident),
                    ("data", Arr),
                    ("model", Ident),
                    ("usage", Obj),
                    ("error", Obj),
                ],
            );
            if let Some(Value::Array(ds)) = o.field_mut("data") {
                each_object(ds, |d| {
                    shape(
                        d,
                        &[("object", Ident), ("index", Index), ("embedding", Vector)],
                    );
                });
            }
            minimize_error(o);
        }
        Endpoint::Responses => minimize_response(o, p.keep_logprobs),
        Endpoint::Models => {}
    }
    if p.endpoint != Endpoint::Responses {
        idents(o, &["id", "object", "model"]);
        if let Some(Value::Object(e)) = o.field_mut("error") {
            idents(e, &["code", "param", "type"]);
        }
    }
    if let Some(Value::Object(u)) = o.field_mut("usage") {
        usage_shape(u);
    }
    strip_recursive(v, p.keep_logprobs);
    usage
}

/// Minimise one event of a stream in place: `None` when the event is dropped whole
/// (not a JSON object, or a Responses-API event type not on the allowlist), else the
/// usage it reported.
pub fn minimize_event(v: &mut Value, p: ResponsePolicy) -> Option<Option<Usage>> {
    minimize_event_routed(v, p, None)
}

/// [`minimize_event`] for a request routed to the model `routed` (see
/// [`minimize_routed`]).
pub fn minimize_event_routed(
    v: &mut Value,
    p: ResponsePolicy,
    routed: Option<&str>,
) -> Option<Option<Usage>> {
    // Not an object (an array, a string): no allowlist applies to it, so it is dropped,
    // as a body of that kind is refused (502).
    if !v.is_object() {
        return None;
    }
    if p.endpoint != Endpoint::Responses {
        return Some(minimize_routed(v, p, routed));
    }
    let Value::Object(o) = v else { return None };
    // The usage of a stream comes in its `response.completed` event, under `response`.
    let usage = o
        .field("response")
        .and_then(Value::as_object)
        .and_then(usage_of);
    if !minimize_response_event(o, p.keep_logprobs, routed) {
        return None;
    }
    strip_recursive(v, p.keep_logprobs);
    Some(usage)
}

/// Why a stream had to be cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// One event grew past the limit without a blank line.
    #[error("upstream event exceeds {0} bytes")]
    EventTooLarge(usize),
}

/// Incremental SSE minimiser: feed upstream chunks, get minimised bytes out. Events are
/// re-emitted whole as soon as their terminating blank line arrives.
///
/// Lines are read as the SSE standard (WHATWG HTML, "Parsing an event stream") reads
/// them: a line ends at CRLF, LF or a lone CR, and a byte-order mark before the first
/// line is ignored. Line ends are turned into LF as the bytes arrive (a CR that ends a
/// chunk waits for the next one's first byte), so everything after sees LF alone and
/// reads the same events a browser or the OpenAI client would.
#[derive(Debug)]
pub struct SseMinimizer {
    policy: ResponsePolicy,
    routed: Option<String>,
    /// Upstream bytes not yet part of an emitted event, line ends already LF.
    buf: BytesMut,
    /// How much of `buf` is known to hold no event end (`\n\n`): the next search
    /// starts just before it, so an event arriving in many small chunks is scanned
    /// once, not once per chunk (quadratic in its size).
    scanned: usize,
    /// The last byte fed was a CR (already written as LF): an LF right after it is the
    /// same line end.
    after_cr: bool,
    /// Bytes of the stream's start still being checked for a byte-order mark (the
    /// mark's bytes matched so far); `None` once the start is past.
    bom: Option<u8>,
    max_event: usize,
    drop_usage_only: bool,
    /// Latest usage reported in the stream.
    pub usage: Option<Usage>,
    /// Content events seen (a fallback estimate of tokens).
    pub events: u64,
    /// The last event, when a later one may repeat it with other text ([`Reuse`]).
    reuse: Option<Reuse>,
    /// Whether [`Reuse`] is tried at all (off only to compare against).
    reuse_on: bool,
    /// Events passed as [`MinLine::Text`] (for tests and measurements).
    pub reused: u64,
}

/// A text event of choice 0 that nothing else in the stream can tell apart from the
/// next ones but its text: engines such as llama.cpp and vLLM repeat the `id`, `model`,
/// `created` and shape of every chunk byte for byte. An event whose bytes are `head`,
/// then one JSON string token, then `tail` is the same document as this one with that
/// string in the text slot (JSON's grammar reads `head` and `tail` alike around any
/// string token), so its minimised form is `value` with the new text: no parse, no
/// minimisation, and (see `SseScreen`) no screening besides the text's own.
#[derive(Debug)]
struct Reuse {
    /// The event's bytes before its text slot's string token (`data: ` included).
    head: Vec<u8>,
    /// The bytes after it.
    tail: Vec<u8>,
    /// The event minimised (its slot holds the text last written).
    value: Value,
}

/// Where a chat or completions event's streamed text is: `choices[0].delta.content`,
/// `choices[0].text`.
fn slot_path(ep: Endpoint) -> Option<&'static [Step<'static>]> {
    match ep {
        Endpoint::Chat => Some(&[
            Step::Key("choices"),
            Step::Index(0),
            Step::Key("delta"),
            Step::Key("content"),
        ]),
        Endpoint::Completions => Some(&[Step::Key("choices"), Step::Index(0), Step::Key("text")]),
        _ => None,
    }
}

/// The text slot of a minimised event that carries nothing but choice 0's text (and
/// the chunk's identifiers, null `usage`/`error`/`logprobs`/`finish_reason`; a chat
/// delta with a `role` does not count): an event that output screening would handle as text alone, with
/// no pieces of other fields, no end of choice, no usage.
fn text_slot_only(ep: Endpoint, v: &Value) -> Option<&str> {
    let o = v.as_object()?;
    let ok = o.iter().all(|(k, x)| match k.as_str() {
        "id" | "object" | "created" | "model" | "choices" => true,
        "usage" | "error" => x.is_null(),
        _ => false,
    });
    if !ok {
        return None;
    }
    let Value::Array(cs) = o.field("choices")? else {
        return None;
    };
    let [Value::Object(c)] = cs.as_slice() else {
        return None;
    };
    let slot_key = if ep == Endpoint::Chat {
        "delta"
    } else {
        "text"
    };
    let ok = c.iter().all(|(k, x)| match k.as_str() {
        "index" => x.as_u64() == Some(0),
        "finish_reason" | "logprobs" => x.is_null(),
        k => k == slot_key,
    });
    if !ok {
        return None;
    }
    let slot = c.field(slot_key)?;
    let slot = if ep == Endpoint::Chat {
        let d = slot.as_object()?;
        // Content alone: the output screen writes text released during an event with a
        // `role` with that role, and removes it from its template only afterwards, so
        // a repeat of such an event would be written without it.
        if d.len() != 1 {
            return None;
        }
        d.field("content")?
    } else {
        slot
    };
    slot.as_str()
}

/// The text slot of an event [`text_slot_only`] accepted, to write another text into.
fn slot_mut(ep: Endpoint, v: &mut Value) -> Option<&mut Value> {
    let c = v.field_mut("choices")?.get_mut(0)?;
    if ep == Endpoint::Chat {
        c.field_mut("delta")?.field_mut("content")
    } else {
        c.field_mut("text")
    }
}

/// A Responses-API style event name: 1–64 bytes of `a-z`, `.` and `_`.
fn is_event_name(name: &[u8]) -> bool {
    (1..=64).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_lowercase() || *b == b'.' || *b == b'_')
}

impl SseMinimizer {
    /// A minimiser; `drop_usage_only` removes the usage-only chunk the gateway asked for.
    pub fn new(policy: ResponsePolicy, drop_usage_only: bool, max_event: usize) -> Self {
        SseMinimizer {
            policy,
            routed: None,
            buf: BytesMut::new(),
            scanned: 0,
            after_cr: false,
            bom: Some(0),
            max_event,
            drop_usage_only,
            usage: None,
            events: 0,
            reuse: None,
            reuse_on: true,
            reused: 0,
        }
    }

    /// A minimiser that parses every event ([`Reuse`] off): the reference the reuse of
    /// text events is checked against.
    #[must_use]
    pub fn without_reuse(mut self) -> Self {
        self.reuse_on = false;
        self
    }

    /// The model the request was routed to (see [`minimize_routed`]).
    #[must_use]
    pub fn routed_to(mut self, model: &str) -> Self {
        self.routed = Some(model.to_owned());
        self
    }

    /// Appends `chunk` to the buffer with its line ends made LF and a leading
    /// byte-order mark left out (see [`SseMinimizer`]).
    fn take_in(&mut self, mut chunk: &[u8]) {
        while let Some(matched) = self.bom {
            let Some((&b, rest)) = chunk.split_first() else {
                return;
            };
            match BOM.get(usize::from(matched)) {
                Some(&want) if want == b => {
                    chunk = rest;
                    let m = matched + 1;
                    self.bom = (usize::from(m) < BOM.len()).then_some(m);
                }
                _ => {
                    // Not a mark after all: the bytes matched so far are the stream's.
                    self.bom = None;
                    if let Some(seen) = BOM.get(..usize::from(matched)) {
                        self.buf.extend_from_slice(seen);
                    }
                }
            }
        }
        // Runs between CRs are copied whole; each CR becomes an LF and swallows an LF
        // right after it (in this chunk or, through `after_cr`, the next).
        while let Some((&first, rest)) = chunk.split_first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                chunk = rest;
                continue;
            }
            match chunk.iter().position(|b| *b == b'\r') {
                None => {
                    self.buf.extend_from_slice(chunk);
                    return;
                }
                Some(i) => {
                    let (run, cr_on) = chunk.split_at(i);
                    self.buf.extend_from_slice(run);
                    self.buf.extend_from_slice(b"\n");
                    self.after_cr = true;
                    chunk = cr_on.get(1..).unwrap_or_default();
                }
            }
        }
    }

    /// Feed a chunk; returns what to send on.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, SseError> {
        self.take_in(chunk);
        let mut out = BytesMut::new();
        while let Some(event) = self.next_event() {
            if let Some(e) = self.emit(&event) {
                self.write(e, &mut out);
            }
        }
        if self.buf.len() > self.max_event {
            return Err(SseError::EventTooLarge(self.max_event));
        }
        Ok(out.freeze())
    }

    /// The stream ended: flush an unterminated last event.
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        for e in self.finish_events() {
            self.write(e, &mut out);
        }
        out.freeze()
    }

    /// Writes `e`, just emitted: a [`MinLine::Text`] as the event it repeats (the one
    /// [`Reuse`] holds now) with its text.
    fn write(&mut self, e: MinEvent, out: &mut BytesMut) {
        match (e.lines.as_slice(), &mut self.reuse) {
            ([MinLine::Text(t)], Some(r)) => {
                if let Some(slot) = slot_mut(self.policy.endpoint, &mut r.value) {
                    *slot = Value::String(t.clone());
                }
                let mut b = b"data: ".to_vec();
                if serde_json::to_writer(&mut b, &r.value).is_ok() {
                    b.extend_from_slice(b"\n\n");
                    out.extend_from_slice(&b);
                }
            }
            _ => e.write(out),
        }
    }

    /// The next whole event's bytes (without its blank line), taken from the buffer.
    fn next_event(&mut self) -> Option<BytesMut> {
        // An end may straddle the old boundary by one byte (its first LF scanned last).
        let from = self.scanned.saturating_sub(1);
        let Some((end, sep)) = self
            .buf
            .get(from..)
            .and_then(find_event_end)
            .map(|(e, sep)| (from + e, sep))
        else {
            self.scanned = self.buf.len();
            return None;
        };
        let mut event = self.buf.split_to(end + sep);
        event.truncate(end);
        self.scanned = 0;
        Some(event)
    }

    /// [`SseMinimizer::feed`] before serialisation: the minimised events themselves, so
    /// output screening can take them without parsing the bytes again.
    pub fn feed_events(&mut self, chunk: &[u8]) -> Result<Vec<MinEvent>, SseError> {
        self.take_in(chunk);
        let mut out = Vec::new();
        while let Some(event) = self.next_event() {
            out.extend(self.emit(&event));
        }
        if self.buf.len() > self.max_event {
            return Err(SseError::EventTooLarge(self.max_event));
        }
        Ok(out)
    }

    /// [`SseMinimizer::finish`] before serialisation.
    pub fn finish_events(&mut self) -> Vec<MinEvent> {
        // A stream that ended inside a would-be mark: those bytes were its own.
        if let Some(matched) = self.bom.take()
            && let Some(seen) = BOM.get(..usize::from(matched))
        {
            self.buf.extend_from_slice(seen);
        }
        if self.buf.is_empty() {
            return Vec::new();
        }
        let rest = self.buf.split();
        self.scanned = 0;
        self.emit(&rest).into_iter().collect()
    }

    /// The text of `event` when it repeats the last event but for its text ([`Reuse`]).
    fn repeated(&self, event: &[u8]) -> Option<String> {
        let r = self.reuse.as_ref()?;
        let token = event
            .strip_prefix(r.head.as_slice())?
            .strip_suffix(r.tail.as_slice())?;
        // Exactly one string token: quotes at both ends (no whitespace, so no line
        // break either), and `serde_json` reads all of it as one string.
        if token.len() < 2 || token.first() != Some(&b'"') || token.last() != Some(&b'"') {
            return None;
        }
        serde_json::from_slice::<String>(token).ok()
    }

    /// Remembers `event` (minimised to `v`) for [`Reuse`] when it is a text event of
    /// choice 0 alone, written on one line whose text token the bytes locate without
    /// doubt; forgets the last one otherwise.
    fn remember(&mut self, event: &[u8], data_at: usize, v: &Value) {
        self.reuse = None;
        let Some(path) = slot_path(self.policy.endpoint) else {
            return;
        };
        if !self.reuse_on || event.contains(&b'\n') {
            return;
        }
        let Some(text) = text_slot_only(self.policy.endpoint, v) else {
            return;
        };
        let Some(data) = event.get(data_at..) else {
            return;
        };
        let Some((start, end)) = string_span(data, path) else {
            return;
        };
        // The token found must be the slot's text (belt and braces over the scan).
        let found = data
            .get(start..end)
            .and_then(|t| serde_json::from_slice::<String>(t).ok());
        if found.as_deref() != Some(text) {
            return;
        }
        let (Some(head), Some(tail)) = (event.get(..data_at + start), event.get(data_at + end..))
        else {
            return;
        };
        self.reuse = Some(Reuse {
            head: head.to_vec(),
            tail: tail.to_vec(),
            value: v.clone(),
        });
    }

    fn emit(&mut self, event: &[u8]) -> Option<MinEvent> {
        if let Some(text) = self.repeated(event) {
            self.events += 1;
            self.reused += 1;
            return Some(MinEvent {
                lines: vec![MinLine::Text(text)],
            });
        }
        // The event as the SSE standard dispatches it, and as the OpenAI client reads
        // it: its `data:` lines joined by LF into one payload, its last `event:` name.
        // What passes is that one payload, minimised, so the client cannot read a
        // document other than the one screened. `id:`, `retry:`, comments and unknown
        // lines are dropped: OpenAI clients need none of them, and each could carry
        // arbitrary upstream text.
        let mut data: Option<std::borrow::Cow<'_, [u8]>> = None;
        // Where the first data line's payload starts in `event`.
        let mut data_at = 0;
        let mut name: Option<&[u8]> = None;
        let mut line_at = 0;
        for line in event.split(|b| *b == b'\n') {
            if let Some(d) = line.strip_prefix(b"data:") {
                let d = d.strip_prefix(b" ").unwrap_or(d);
                match &mut data {
                    None => {
                        data_at = line_at + (line.len() - d.len());
                        data = Some(std::borrow::Cow::Borrowed(d));
                    }
                    Some(joined) => {
                        let joined = joined.to_mut();
                        joined.push(b'\n');
                        joined.extend_from_slice(d);
                    }
                }
            } else if let Some(n) = line.strip_prefix(b"event:") {
                name = Some(n.strip_prefix(b" ").unwrap_or(n));
            }
            line_at += line.len() + 1;
        }
        // An event passes only with data that was parsed and allowed: without data
        // the standard dispatches nothing, and a name must not pass alone.
        let Some(data) = data else {
            self.reuse = None;
            return None;
        };
        let mut lines_out: Vec<MinLine> = Vec::with_capacity(2);
        // Event names (the Responses API's `response.output_text.delta` etc.) pass only
        // as short lowercase dotted names: an upstream cannot use the field to carry
        // text past screening and minimisation. The last name is the event's; when it
        // is not allowed, the event goes on without one (never with an earlier name
        // the client would not have read).
        if let Some(n) = name.filter(|n| is_event_name(n)) {
            lines_out.push(MinLine::Name(n.to_vec()));
        }
        if *data == *b"[DONE]" {
            self.reuse = None;
            lines_out.push(MinLine::Done);
            return Some(MinEvent { lines: lines_out });
        }
        // Not JSON (two documents on two data lines read as one text are not JSON
        // either): nothing we can vouch for; the event is dropped.
        let Ok(mut v) = serde_json::from_slice::<Value>(&data) else {
            self.reuse = None;
            return None;
        };
        let Some(usage) = minimize_event_routed(&mut v, self.policy, self.routed.as_deref()) else {
            self.reuse = None;
            return None;
        };
        if usage.is_some() {
            self.usage = usage;
        }
        let no_choices = v
            .field("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| c.is_empty());
        if self.drop_usage_only && usage.is_some() && no_choices {
            self.reuse = None;
            return None;
        }
        if self.drop_usage_only
            && let Value::Object(o) = &mut v
        {
            o.remove("usage");
        }
        self.events += 1;
        if lines_out.is_empty() {
            // `remember` takes only an event of one line (no name, one data line).
            self.remember(event, data_at, &v);
        } else {
            self.reuse = None;
        }
        lines_out.push(MinLine::Data(v));
        Some(MinEvent { lines: lines_out })
    }
}

/// One line of a minimised event.
#[derive(Debug, Clone, PartialEq)]
pub enum MinLine {
    /// `event: NAME` (a name [`is_event_name`] allowed).
    Name(Vec<u8>),
    /// `data: JSON`, minimised.
    Data(Value),
    /// `data: [DONE]`.
    Done,
    /// The last [`MinLine::Data`] of the stream with this text in its text slot (chat
    /// `choices[0].delta.content`, completions `choices[0].text`): the upstream sent the
    /// same event but for its text ([`SseMinimizer`] checked the bytes), so it was
    /// neither parsed nor minimised again. Only ever alone in its event.
    Text(String),
}

/// A minimised event: at most one [`MinLine::Name`], then exactly one data line
/// ([`MinLine::Data`], [`MinLine::Done`] or [`MinLine::Text`]): the upstream event's
/// data lines joined as the SSE standard joins them.
#[derive(Debug, Clone, PartialEq)]
pub struct MinEvent {
    /// The lines.
    pub lines: Vec<MinLine>,
}

impl MinEvent {
    /// Appends the event as SSE bytes (lines, then the blank line). A [`MinLine::Text`]
    /// event is not written here (only [`SseMinimizer::feed`], which holds the event it
    /// repeats, and `SseScreen`, which holds it as its template, can); such an event is
    /// left out, never written half. An event whose JSON
    /// cannot be written (writing a `Value` into memory does not fail; if it ever did)
    /// is left out whole rather than sent half-written.
    pub fn write(&self, out: &mut BytesMut) {
        let mut b = Vec::new();
        for l in &self.lines {
            match l {
                MinLine::Name(n) => {
                    b.extend_from_slice(b"event: ");
                    b.extend_from_slice(n);
                }
                MinLine::Data(v) => {
                    b.extend_from_slice(b"data: ");
                    if serde_json::to_writer(&mut b, v).is_err() {
                        return;
                    }
                }
                MinLine::Done => b.extend_from_slice(b"data: [DONE]"),
                // Written by `SseMinimizer`, which has the event it repeats; alone it
                // cannot be written, and an event is never sent half-written.
                MinLine::Text(_) => return,
            }
            b.push(b'\n');
        }
        b.push(b'\n');
        out.extend_from_slice(&b);
    }
}

/// UTF-8's byte-order mark, which the SSE standard skips at a stream's start.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Where the first event in `buf` (line ends already LF) ends: the offset of its last
/// line's LF and the length of the separator (that LF and the blank line's).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHAT: ResponsePolicy = ResponsePolicy {
        endpoint: Endpoint::Chat,
        keep_logprobs: false,
    };

    #[test]
    fn json_minimisation() {
        let mut v = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "system_fingerprint": "b1234", "timings": {"a": 1},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "reasoning_content": "secret"},
                         "logprobs": {"content": [{"token": "hi", "logprob": -0.1}]}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "prompt_tokens_details": {}}});
        let u = minimize(&mut v, CHAT).unwrap();
        assert_eq!(u.total_tokens, 4);
        assert_eq!(
            v,
            json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        );
        let mut v = json!({"choices": [{"index": 0, "logprobs": {"content": []}}]});
        minimize(
            &mut v,
            ResponsePolicy {
                endpoint: Endpoint::Chat,
                keep_logprobs: true,
            },
        );
        assert!(v["choices"][0].get("logprobs").is_some());
    }

    #[test]
    fn completions_and_responses_are_minimised_and_report_usage() {
        let mut v = json!({"id": "c", "object": "text_completion", "created": 1, "model": "m",
            "system_fingerprint": "fp", "choices": [{"index": 0, "text": "hi", "finish_reason": "length",
            "logprobs": {"tokens": ["hi"], "token_logprobs": [-0.2], "top_logprobs": [{"hi": -0.2}], "text_offset": [0]}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}});
        let policy = ResponsePolicy {
            endpoint: Endpoint::Completions,
            keep_logprobs: false,
        };
        assert_eq!(minimize(&mut v, policy).unwrap().total_tokens, 3);
        assert_eq!(
            v,
            json!({"id": "c", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "text": "hi", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}})
        );
        // Responses API: logprobs inside the output are stripped; a stream's usage comes
        // in the response.completed event, with input/output token names.
        let policy = ResponsePolicy {
            endpoint: Endpoint::Responses,
            keep_logprobs: false,
        };
        let mut ev = json!({"type": "response.completed", "response": {"id": "r", "status": "completed",
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "hi",
                "logprobs": [{"token": "hi", "logprob": -0.1, "top_logprobs": []}]}]}],
            "usage": {"input_tokens": 5, "output_tokens": 7}}});
        assert_eq!(
            minimize_event(&mut ev, policy)
                .unwrap()
                .unwrap()
                .total_tokens,
            12
        );
        assert!(
            ev["response"]["output"][0]["content"][0]
                .get("logprobs")
                .is_none()
        );
        assert_eq!(ev["response"]["output"][0]["content"][0]["text"], "hi");
        let mut sse = SseMinimizer::new(policy, false, 1 << 16);
        let out = sse
            .feed(format!("event: response.completed\ndata: {ev}\n\n").as_bytes())
            .unwrap();
        assert!(out.starts_with(b"event: response.completed\n"));
        assert_eq!(sse.usage.map(|u| u.total_tokens), Some(12));
    }

    /// The stripping before it looked for keys first: remove every key unconditionally.
    fn strip_unconditionally(v: &mut Value, keep_logprobs: bool) {
        match v {
            Value::Object(o) => {
                o.remove("system_fingerprint");
                o.remove("timings");
                if !keep_logprobs {
                    o.remove("logprobs");
                    o.remove("top_logprobs");
                }
                for (_, x) in o.iter_mut() {
                    strip_unconditionally(x, keep_logprobs);
                }
            }
            Value::Array(a) => a
                .iter_mut()
                .for_each(|x| strip_unconditionally(x, keep_logprobs)),
            _ => {}
        }
    }

    #[test]
    fn stripping_at_any_depth_keeps_the_same_bytes() {
        // Model lists are not allowlisted, so only the recursive stripping applies; the
        // removed keys sit first, in the middle and last, nested in objects and arrays.
        let doc = r#"{"timings":{"x":1},"id":"r","output":[{"type":"message",
            "content":[{"type":"output_text","text":"hi","logprobs":[{"token":"hi",
            "top_logprobs":[]}],"annotations":[]}],"system_fingerprint":"b"},
            {"logprobs":null,"a":1,"b":{"top_logprobs":[1],"c":{"timings":2,"d":3}}}],
            "z":[[{"system_fingerprint":"x","keep":true}]],"logprobs":{"content":[]}}"#;
        for keep_logprobs in [false, true] {
            let mut got: Value = serde_json::from_str(doc).unwrap();
            let mut want = got.clone();
            minimize(
                &mut got,
                ResponsePolicy {
                    endpoint: Endpoint::Models,
                    keep_logprobs,
                },
            );
            strip_unconditionally(&mut want, keep_logprobs);
            let (got, want) = (got.to_string(), want.to_string());
            assert_eq!(got, want);
            for k in ["system_fingerprint", "timings"] {
                assert!(!got.contains(k), "{got}");
            }
            assert_eq!(got.contains("logprobs"), keep_logprobs, "{got}");
        }
    }

    const RESPONSES: ResponsePolicy = ResponsePolicy {
        endpoint: Endpoint::Responses,
        keep_logprobs: false,
    };

    #[test]
    fn responses_bodies_keep_only_allowlisted_fields() {
        let output = json!([
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "why"}],
                 "content": [{"type": "reasoning_text", "text": "chain of thought"}],
                 "encrypted_content": "opaque"},
                {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                 "engine": "llama", "content": [
                    {"type": "output_text", "text": "hi", "extra": 1,
                     "annotations": [{"type": "url_citation", "url": "https://x.example/?q=secret"}],
                     "logprobs": [{"token": "hi", "logprob": -0.1, "top_logprobs": []}]},
                    {"type": "refusal", "refusal": "no", "why": "policy"},
                    {"type": "reasoning_text", "text": "hidden"},
                    "not an object"]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get",
                 "arguments": "{}", "status": "completed", "debug": "x"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed",
                 "action": {"query": "q"}},
                7
        ]);
        let mut v = json!({
            "id": "resp_1", "object": "response", "created_at": 1_741_476_542,
            "status": "incomplete", "model": "m",
            "incomplete_details": {"reason": "max_output_tokens", "detail": "x"},
            "error": null,
            "instructions": "the system prompt", "metadata": {"k": "v"},
            "tools": [{"type": "function", "name": "f", "parameters": {}}],
            "tool_choice": "auto", "parallel_tool_calls": true, "temperature": 1.0,
            "top_p": 1.0, "user": "u", "store": true, "reasoning": {"effort": null},
            "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "service_tier": "default", "output_text": "unscreened copy", "kv_cache": [1, 2],
            "output": output,
            "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 3}}
        });
        let u = minimize(&mut v, RESPONSES).unwrap();
        assert_eq!(u.total_tokens, 12);
        assert_eq!(
            v,
            json!({
                "id": "resp_1", "object": "response", "created_at": 1_741_476_542,
                "status": "incomplete", "model": "m",
                "incomplete_details": {"reason": "max_output_tokens"}, "error": null,
                "output": [
                    {"type": "reasoning", "id": "rs_1"},
                    {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                     "content": [
                        {"type": "output_text", "text": "hi", "annotations": []},
                        {"type": "refusal", "refusal": "no"},
                        {"type": "reasoning_text"},
                        // Not removed: later parts keep their `content_index`.
                        {}]},
                    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get",
                     "arguments": "{}", "status": "completed"},
                    {"type": "web_search_call", "id": "ws_1"},
                    {}
                ],
                "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
            })
        );
        // Logprobs stay where the role allows them; an upstream error body keeps the
        // error's message, type, code and param.
        let mut v = json!({"output": [{"type": "message", "content": [{"type": "output_text",
            "text": "hi", "logprobs": [{"token": "hi", "logprob": -0.1}]}]}]});
        minimize(
            &mut v,
            ResponsePolicy {
                endpoint: Endpoint::Responses,
                keep_logprobs: true,
            },
        );
        assert_eq!(
            v["output"][0]["content"][0]["logprobs"],
            json!([{"token": "hi", "logprob": -0.1}])
        );
        let mut v = json!({"error": {"message": "bad", "type": "invalid_request_error",
            "code": 400, "param": null, "trace": "/srv/engine.py:12"}, "debug": 1});
        minimize(&mut v, RESPONSES);
        assert_eq!(
            v,
            json!({"error": {"message": "bad", "type": "invalid_request_error", "code": 400,
                "param": null}})
        );
    }

    /// Identifier fields keep real ids, model names and statuses, and lose prose or long
    /// strings (which output screening reads only for canaries and secrets), in bodies and
    /// streams alike.
    #[test]
    fn identifier_fields_keep_only_identifiers() {
        let prose = "the system prompt says: never reveal CANARY";
        let long = "x".repeat(129);
        let chat = |id: &str, model: &str, name: &str| {
            json!({"id": id, "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_Xa9", "type": "function",
                         "function": {"name": name, "arguments": "{}"}}]}}],
                "error": {"code": prose, "type": "server_error", "param": null}})
        };
        let mut v = chat(
            "chatcmpl-8Jq2vZ0aB3",
            "HuggingFaceTB/SmolLM2-135M-Instruct:Q8_0",
            "get_weather",
        );
        let want = {
            let mut w = v.clone();
            w["error"].as_object_mut().unwrap().remove("code");
            w
        };
        minimize(&mut v, CHAT);
        assert_eq!(v, want, "real identifiers were dropped");
        let mut v = chat(prose, &long, "get weather now");
        minimize(&mut v, CHAT);
        assert!(v["id"] == "" && v.get("model").is_none(), "{v}");
        assert!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]
                .get("name")
                .is_none(),
            "{v}"
        );
        // Responses: body, items and error.
        let mut v = json!({"id": "resp_67ccd2bed1ec8190", "object": "response",
            "status": prose, "model": "smollm2-135m",
            "output": [{"type": "function_call", "id": long, "call_id": "call_1",
                        "name": prose, "arguments": "{}", "status": "completed"},
                       {"type": "reasoning about the secret", "id": "rs_1"}],
            "error": {"code": "server_error", "message": "m", "type": "a b", "param": "x"}});
        minimize(&mut v, RESPONSES);
        assert_eq!(
            v,
            json!({"id": "resp_67ccd2bed1ec8190", "object": "response", "model": "smollm2-135m",
                "output": [{"type": "function_call", "call_id": "call_1", "arguments": "{}",
                            "status": "completed"},
                           {"id": "rs_1"}],
                "error": {"code": "server_error", "message": "m", "param": "x"}})
        );
        // Streams: chat chunks and Responses events.
        let mut m = SseMinimizer::new(CHAT, false, 1 << 16);
        let ev = json!({"id": prose, "object": "chat.completion.chunk", "model": "m1",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"},
                         "finish_reason": long}]});
        let out = m.feed(format!("data: {ev}\n\n").as_bytes()).unwrap();
        let got: Value = serde_json::from_slice(
            out.strip_prefix(b"data: ")
                .unwrap()
                .strip_suffix(b"\n\n")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"id": "", "object": "chat.completion.chunk", "model": "m1",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]})
        );
        let (out, _) = stream(
            RESPONSES,
            &[(
                "response.function_call_arguments.done",
                json!({"type": "response.function_call_arguments.done", "sequence_number": 1,
                    "item_id": prose, "output_index": 0, "name": "get", "arguments": "{}"}),
            )],
        );
        assert_eq!(
            out[0].1,
            json!({"type": "response.function_call_arguments.done", "sequence_number": 1,
                "output_index": 0, "name": "get", "arguments": "{}"})
        );
    }

    /// Feeds `events` (name, data) as one stream; returns the (name, data) pairs sent on.
    fn stream(
        policy: ResponsePolicy,
        events: &[(&str, Value)],
    ) -> (Vec<(String, Value)>, Option<Usage>) {
        let mut m = SseMinimizer::new(policy, false, 1 << 16);
        let mut out = Vec::new();
        for (name, data) in events {
            out.extend_from_slice(
                &m.feed(format!("event: {name}\ndata: {data}\n\n").as_bytes())
                    .unwrap(),
            );
        }
        out.extend_from_slice(&m.finish());
        let text = String::from_utf8(out).unwrap();
        let sent = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                (
                    name.strip_prefix("event: ").unwrap().to_owned(),
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
                )
            })
            .collect();
        (sent, m.usage)
    }

    #[test]
    fn responses_stream_events_keep_only_allowlisted_fields_and_types() {
        let response = |status: &str| {
            json!({"id": "resp_1", "object": "response",
            "created_at": 1, "status": status, "model": "m", "output": [],
            "instructions": "the system prompt", "tools": [], "metadata": {"k": "v"},
            "system_fingerprint": "fp"})
        };
        let mut completed = response("completed");
        completed["usage"] = json!({"input_tokens": 5, "output_tokens": 7, "total_tokens": 12,
            "output_tokens_details": {"reasoning_tokens": 3}});
        let loc = |seq: u64| {
            json!({"sequence_number": seq, "item_id": "msg_1", "output_index": 1,
            "content_index": 0, "obfuscation": "pad"})
        };
        let with = |seq: u64, ty: &str, extra: Value| {
            let mut v = loc(seq);
            v["type"] = json!(ty);
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let events = [
            (
                "response.created",
                json!({"type": "response.created", "sequence_number": 0,
                "response": response("in_progress"), "debug": 1}),
            ),
            (
                "response.output_item.added",
                json!({"type": "response.output_item.added",
                "sequence_number": 1, "output_index": 0, "item": {"type": "reasoning",
                "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]}}),
            ),
            (
                "response.reasoning_text.delta",
                with(
                    2,
                    "response.reasoning_text.delta",
                    json!({"delta": "chain of thought", "item_id": "rs_1", "output_index": 0}),
                ),
            ),
            (
                "response.output_item.added",
                json!({"type": "response.output_item.added",
                "sequence_number": 3, "output_index": 1, "item": {"type": "message", "id": "msg_1",
                "role": "assistant", "status": "in_progress", "content": [], "engine": "x"}}),
            ),
            (
                "response.content_part.added",
                with(
                    4,
                    "response.content_part.added",
                    json!({"part": {"type": "output_text", "text": "", "annotations": [], "extra": 1}}),
                ),
            ),
            (
                "response.output_text.delta",
                with(
                    5,
                    "response.output_text.delta",
                    json!({"delta": "hi", "logprobs": [{"token": "hi", "logprob": -0.1}]}),
                ),
            ),
            (
                "response.output_text.annotation.added",
                with(
                    6,
                    "response.output_text.annotation.added",
                    json!({"annotation_index": 0, "annotation": {"type": "url_citation", "url": "https://x.example/?q=s"}}),
                ),
            ),
            (
                "response.output_text.done",
                with(
                    7,
                    "response.output_text.done",
                    json!({"text": "hi", "logprobs": []}),
                ),
            ),
            (
                "response.refusal.delta",
                with(8, "response.refusal.delta", json!({"delta": "no"})),
            ),
            (
                "response.refusal.done",
                with(9, "response.refusal.done", json!({"refusal": "no"})),
            ),
            (
                "response.function_call_arguments.delta",
                json!({"type": "response.function_call_arguments.delta",
                "sequence_number": 10, "item_id": "fc_1", "output_index": 2, "delta": "{}", "x": 1}),
            ),
            (
                "response.function_call_arguments.done",
                json!({"type": "response.function_call_arguments.done",
                "sequence_number": 11, "item_id": "fc_1", "output_index": 2, "name": "get",
                "arguments": "{}", "x": 1}),
            ),
            (
                "response.web_search_call.searching",
                json!({"type": "response.web_search_call.searching",
                "sequence_number": 12, "item_id": "ws_1", "output_index": 3}),
            ),
            (
                "response.completed",
                json!({"type": "response.completed", "sequence_number": 13,
                "response": completed}),
            ),
            (
                "error",
                json!({"type": "error", "sequence_number": 14, "code": "server_error",
                "message": "boom", "param": null, "trace": "/srv/engine.py"}),
            ),
            (
                "something.new",
                json!({"type": "something.new", "sequence_number": 15, "text": "x"}),
            ),
        ];
        let (sent, usage) = stream(RESPONSES, &events);
        assert_eq!(usage, Some(Usage { total_tokens: 12 }));
        let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.output_item.added",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.refusal.delta",
                "response.refusal.done",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.completed",
                "error",
            ]
        );
        let lean = |status: &str| {
            json!({"id": "resp_1", "object": "response", "created_at": 1,
            "status": status, "model": "m", "output": []})
        };
        let located = |seq: u64, ty: &str, extra: Value| {
            let mut v = json!({"type": ty, "sequence_number": seq, "item_id": "msg_1",
                "output_index": 1, "content_index": 0});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let mut done = lean("completed");
        done["usage"] = json!({"input_tokens": 5, "output_tokens": 7, "total_tokens": 12});
        let want = [
            json!({"type": "response.created", "sequence_number": 0, "response": lean("in_progress")}),
            json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                "item": {"type": "reasoning", "id": "rs_1"}}),
            json!({"type": "response.output_item.added", "sequence_number": 3, "output_index": 1,
                "item": {"type": "message", "id": "msg_1", "role": "assistant",
                         "status": "in_progress", "content": []}}),
            located(
                4,
                "response.content_part.added",
                json!({"part": {"type": "output_text", "text": "", "annotations": []}}),
            ),
            located(5, "response.output_text.delta", json!({"delta": "hi"})),
            located(7, "response.output_text.done", json!({"text": "hi"})),
            located(8, "response.refusal.delta", json!({"delta": "no"})),
            located(9, "response.refusal.done", json!({"refusal": "no"})),
            json!({"type": "response.function_call_arguments.delta", "sequence_number": 10,
                "item_id": "fc_1", "output_index": 2, "delta": "{}"}),
            json!({"type": "response.function_call_arguments.done", "sequence_number": 11,
                "item_id": "fc_1", "output_index": 2, "name": "get", "arguments": "{}"}),
            json!({"type": "response.completed", "sequence_number": 13, "response": done}),
            json!({"type": "error", "sequence_number": 14, "code": "server_error",
                "message": "boom", "param": null}),
        ];
        for ((name, got), want) in sent.iter().zip(want.iter()) {
            assert_eq!(got, want, "{name}");
        }
        // With logprobs allowed, the text events keep them.
        let (sent, _) = stream(
            ResponsePolicy {
                endpoint: Endpoint::Responses,
                keep_logprobs: true,
            },
            &events[5..6],
        );
        assert_eq!(
            sent[0].1["logprobs"],
            json!([{"token": "hi", "logprob": -0.1}])
        );
        // A bare upstream error event passes with the error's fields only.
        let (sent, _) = stream(
            RESPONSES,
            &[(
                "error",
                json!({"error": {"message": "m", "type": "t", "code": 1, "param": null,
                "trace": "x"}, "debug": 1}),
            )],
        );
        assert_eq!(
            sent[0].1,
            json!({"error": {"message": "m", "type": "t", "code": 1, "param": null}})
        );
    }

    #[test]
    fn sse_split_across_chunks() {
        let mut m = SseMinimizer::new(CHAT, true, 1 << 20);
        let ev1 = r#"data: {"id":"1","choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[]}}],"system_fingerprint":"b1"}"#;
        let ev2 = r#"data: {"id":"1","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#;
        let all = format!("{ev1}\n\n: keepalive\n\n{ev2}\n\ndata: [DONE]\n\n");
        let mut out = Vec::new();
        for ch in all.as_bytes().chunks(7) {
            out.extend_from_slice(&m.feed(ch).unwrap());
        }
        out.extend_from_slice(&m.finish());
        let out = String::from_utf8(out).unwrap();
        let events: Vec<&str> = out.split("\n\n").collect();
        assert_eq!(events.len(), 3, "{out}");
        let first: Value = serde_json::from_str(events[0].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(
            first,
            json!({"id": "1", "choices": [{"index": 0, "delta": {"content": "a"}}]})
        );
        assert_eq!(events[1], "data: [DONE]");
        assert_eq!(events[2], "");
        assert_eq!(m.usage, Some(Usage { total_tokens: 5 }));
    }

    /// Every line end the SSE standard allows (CRLF, LF, a lone CR, mixed) and a leading
    /// byte-order mark give the events the LF stream gives, however the bytes are
    /// chunked: before, a CR-only stream was one event that never ended and a mark hid
    /// the first event.
    #[test]
    fn sse_lines_end_at_crlf_lf_or_cr_and_a_leading_mark_is_skipped() {
        let events = [
            r#"data: {"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"data: {"id":"1","choices":[{"index":0,"delta":{"content":"Hel"}}],"system_fingerprint":"x"}"#,
            r#"data: {"id":"1","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            ": keep-alive",
            r#"data: {"id":"1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "data: [DONE]",
        ];
        let stream = |nl: &dyn Fn(usize) -> &'static str, bom: bool| {
            let mut s = if bom {
                "\u{feff}".to_owned()
            } else {
                String::new()
            };
            for (i, e) in events.iter().enumerate() {
                s.push_str(e);
                s.push_str(nl(2 * i));
                s.push_str(nl(2 * i + 1));
            }
            s.into_bytes()
        };
        let run = |input: &[u8], size: usize| {
            let mut m = SseMinimizer::new(CHAT, false, 1 << 20);
            let mut out = Vec::new();
            for ch in input.chunks(size) {
                out.extend_from_slice(&m.feed(ch).unwrap());
            }
            out.extend_from_slice(&m.finish());
            (out, m.events)
        };
        let reference = run(&stream(&|_| "\n", false), 1 << 20);
        assert_eq!(reference.1, 4, "four content events");
        assert!(String::from_utf8_lossy(&reference.0).contains("Hel"));
        let endings: [(&str, &dyn Fn(usize) -> &'static str); 5] = [
            ("crlf", &|_| "\r\n"),
            ("cr", &|_| "\r"),
            ("lf", &|_| "\n"),
            // (a CR followed by an LF would be one CRLF, so no pattern puts them so)
            ("mixed", &|i| ["\n", "\r", "\r\n"][i % 3]),
            ("mixed2", &|i| ["\r\n", "\r", "\n", "\r"][i % 4]),
        ];
        for (name, nl) in endings {
            for bom in [false, true] {
                let input = stream(nl, bom);
                for size in 1..=8 {
                    assert_eq!(
                        run(&input, size),
                        reference,
                        "{name}, mark {bom}, chunks of {size}"
                    );
                }
            }
        }
        // Bytes that only start like a mark are the stream's own (here a data line of
        // a non-JSON value, dropped as any is), and a mark later in the stream is not
        // skipped: it makes its line another field's.
        let mut odd = vec![0xEF, 0xBB];
        odd.extend_from_slice(b"data: x\n\n");
        odd.extend_from_slice(&stream(&|_| "\n", false));
        for size in 1..=4 {
            assert_eq!(run(&odd, size), reference, "chunks of {size}");
        }
        let mut late = stream(&|_| "\n", false);
        late.extend_from_slice("\u{feff}data: {\"id\":\"2\",\"choices\":[]}\n\n".as_bytes());
        assert_eq!(run(&late, 3), reference);
        // A stream that is a mark's first bytes alone ends with nothing to send.
        assert_eq!(run(&[0xEF, 0xBB], 1).1, 0);
    }

    #[test]
    fn sse_event_limit() {
        let mut m = SseMinimizer::new(CHAT, false, 16);
        assert!(m.feed(b"data: 0123456789012345678").is_err());
    }

    /// An event's data lines are one payload joined by LF, as the SSE standard and the
    /// OpenAI client read them: JSON spread over several lines passes as one document,
    /// minimised (before, each line was read alone and the event was dropped), and two
    /// documents on two lines (which the client reads as one text, not JSON) pass as
    /// nothing. The last `event:` name is the event's.
    #[test]
    fn data_lines_are_joined_and_the_last_event_name_counts() {
        let run = |policy: ResponsePolicy, input: &[u8], size: usize| {
            let mut m = SseMinimizer::new(policy, false, 1 << 16);
            let mut out = Vec::new();
            for c in input.chunks(size) {
                out.extend_from_slice(&m.feed(c).unwrap());
            }
            out.extend_from_slice(&m.finish());
            String::from_utf8(out).unwrap()
        };
        let ev = json!({"id": "1", "object": "chat.completion.chunk", "created": 1,
            "model": "m", "system_fingerprint": "fp-LEAK",
            "choices": [{"index": 0, "delta": {"content": "Hello\nthere"},
                "logprobs": {"content": [{"token": "LEAK", "logprob": -0.1}]}}]});
        let pretty = serde_json::to_string_pretty(&ev).unwrap();
        let mut multi = String::new();
        for l in pretty.lines() {
            multi.push_str(&format!("data: {l}\n"));
        }
        multi.push('\n');
        // The same event on one line, minimised, is what the joined lines must give.
        let single = run(CHAT, format!("data: {ev}\n\n").as_bytes(), 1 << 10);
        assert!(single.contains("Hello\\nthere") && !single.contains("LEAK"));
        for size in [1, 2, 7, 1 << 10] {
            assert_eq!(
                run(CHAT, multi.as_bytes(), size),
                single,
                "chunks of {size}"
            );
        }
        // `data:` without the space, and CRLF line ends, join the same way.
        let tight = multi.replace("data: ", "data:").replace('\n', "\r\n");
        assert_eq!(run(CHAT, tight.as_bytes(), 3), single);
        // Two whole documents in one event: the client reads `{..}\n{..}`, not JSON.
        let two = format!("data: {ev}\ndata: {ev}\n\n");
        assert_eq!(run(CHAT, two.as_bytes(), 5), "");
        // `[DONE]` is the whole payload or nothing.
        assert_eq!(run(CHAT, b"data: [DONE]\n\n", 4), "data: [DONE]\n\n");
        assert_eq!(run(CHAT, b"data: [DONE]\ndata: [DONE]\n\n", 4), "");
        // The last name counts: an allowed one after a refused one passes; a refused
        // one after an allowed one leaves the event without a name, not with the
        // earlier name the client would not have read.
        let delta = r#"data: {"type":"response.output_text.delta","delta":"hi"}"#;
        let want = "event: response.output_text.delta\n\
                    data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n";
        let input = format!("event: Leak Name\nevent: response.output_text.delta\n{delta}\n\n");
        assert_eq!(run(RESPONSES, input.as_bytes(), 6), want);
        let input = format!("event: response.output_text.delta\nevent: Leak Name\n{delta}\n\n");
        assert_eq!(
            run(RESPONSES, input.as_bytes(), 6),
            want.strip_prefix("event: response.output_text.delta\n")
                .unwrap()
        );
        // A name after the data line is still the event's, written first.
        let input = format!("{delta}\nevent: response.output_text.delta\n\n");
        assert_eq!(run(RESPONSES, input.as_bytes(), 6), want);
    }

    /// An allowlisted key keeps only a value of its shape: text planted in objects or
    /// arrays under scalar fields (which output screening would read only for canaries and
    /// secrets), non-array
    /// `output`/`content`, non-object `usage`/`error`/`incomplete_details`, and events
    /// whose item, part or response is not an object, never reach the client.
    #[test]
    fn responses_fields_of_the_wrong_type_are_dropped_bodies_and_streams() {
        let mut v = json!({
            "id": {"x": "LEAK-id"}, "object": ["LEAK-object"], "status": "completed",
            "model": "m", "created_at": 1,
            "output": [
                {"type": "message", "id": "msg_1", "role": {"x": "LEAK-role"},
                 "status": ["LEAK-status"], "content": "LEAK-content"},
                {"type": "message", "id": "msg_2", "content": [
                    {"type": "output_text", "text": {"nested": "LEAK-text"},
                     "annotations": "LEAK-annotations"},
                    {"type": "refusal", "refusal": ["LEAK-refusal"]}]},
                {"type": "function_call", "id": "fc_1", "call_id": {"x": "LEAK-call"},
                 "name": ["LEAK-name"], "arguments": {"cmd": "LEAK-arguments"}},
                {"type": {"x": "LEAK-type"}, "id": ["LEAK-item-id"]}
            ],
            "usage": "LEAK-usage", "incomplete_details": ["LEAK-details"],
            "error": "LEAK-error"
        });
        minimize(&mut v, RESPONSES);
        assert!(!v.to_string().contains("LEAK"), "{v}");
        assert_eq!(
            v,
            json!({"id": "", "status": "completed", "model": "m", "created_at": 1, "output": [
                {"type": "message", "id": "msg_1", "content": []},
                {"type": "message", "id": "msg_2", "content": [
                    {"type": "output_text", "annotations": []}, {"type": "refusal"}]},
                {"type": "function_call", "id": "fc_1"},
                {}
            ]})
        );
        let mut v = json!({"output": {"x": "LEAK-output"}, "usage": {"total_tokens": {"x": "LEAK"}},
            "error": {"message": {"x": "LEAK-message"}, "code": 500}});
        minimize(&mut v, RESPONSES);
        assert_eq!(
            v,
            json!({"output": [], "usage": {}, "error": {"code": 500}})
        );

        let events = [
            json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "m",
                   "output_index": 0, "content_index": 0, "delta": {"x": "LEAK-delta"}}),
            json!({"type": "response.output_text.delta", "sequence_number": 2,
                   "item_id": {"x": "LEAK-item-id"}, "output_index": 0, "delta": "ok"}),
            json!({"type": "response.output_item.added", "sequence_number": 3,
                   "output_index": 0, "item": "LEAK-item"}),
            json!({"type": "response.output_item.done", "sequence_number": 4,
                   "output_index": 0}),
            json!({"type": "response.content_part.added", "sequence_number": 5,
                   "part": ["LEAK-part"]}),
            json!({"type": "response.completed", "sequence_number": 6,
                   "response": "LEAK-response"}),
            json!({"type": "response.in_progress", "sequence_number": 7,
                   "response": {"status": "in_progress", "output": "LEAK-output"}}),
            json!({"type": "response.function_call_arguments.done", "sequence_number": 8,
                   "name": "f", "arguments": {"cmd": "LEAK-arguments"}}),
            json!({"type": "error", "sequence_number": 9, "message": {"x": "LEAK-message"},
                   "code": ["LEAK-code"]}),
            json!({"error": "LEAK-bare-error"}),
        ];
        let mut sse = SseMinimizer::new(RESPONSES, false, 1 << 20);
        let mut input = String::new();
        for e in &events {
            input.push_str(&format!("data: {e}\n\n"));
        }
        let out = String::from_utf8(sse.feed(input.as_bytes()).unwrap().to_vec()).unwrap();
        assert!(!out.contains("LEAK"), "{out}");
        let got: Vec<Value> = out
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                json!({"type": "response.output_text.delta", "sequence_number": 1,
                       "item_id": "m", "output_index": 0, "content_index": 0}),
                json!({"type": "response.output_text.delta", "sequence_number": 2,
                       "output_index": 0, "delta": "ok"}),
                json!({"type": "response.output_item.done", "sequence_number": 4,
                       "output_index": 0}),
                json!({"type": "response.in_progress", "sequence_number": 7,
                       "response": {"status": "in_progress", "output": []}}),
                json!({"type": "response.function_call_arguments.done", "sequence_number": 8,
                       "name": "f"}),
                json!({"type": "error", "sequence_number": 9}),
            ]
        );
    }

    /// Chat and completions answers keep text only as strings: an object under `content`,
    /// `refusal` or `text`, extra keys in a tool call, strings under `index` or `created`
    /// are dropped, so no planted text passes output screening unread (bodies and streams).
    #[test]
    fn chat_fields_of_the_wrong_type_are_dropped_bodies_and_streams() {
        let completions = ResponsePolicy {
            endpoint: Endpoint::Completions,
            keep_logprobs: false,
        };
        let mut v = json!({
            "id": "c1", "object": "chat.completion", "created": "CANARY-created", "model": "m",
            "choices": [
                {"index": "CANARY-index", "finish_reason": "stop",
                 "message": {"role": "assistant", "content": {"x": "CANARY-content"},
                     "refusal": ["CANARY-refusal"],
                     "tool_calls": [
                         {"index": 0, "id": "call_1", "type": "function", "x": "CANARY-extra",
                          "function": {"name": "f", "arguments": {"x": "CANARY-args"},
                              "x": "CANARY-fn-extra"}},
                         "CANARY-call"]}},
                "CANARY-choice"
            ],
            "error": {"message": {"x": "CANARY-error"}, "code": 500, "x": "CANARY-error-extra"}
        });
        minimize(&mut v, CHAT);
        assert!(!v.to_string().contains("CANARY"), "{v}");
        assert_eq!(
            v,
            json!({"id": "c1", "object": "chat.completion", "model": "m", "choices": [
                {"finish_reason": "stop", "message": {"role": "assistant", "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}},
                    {}]}},
                {}], "error": {"code": 500}})
        );
        let mut v = json!({"id": "c2", "choices": [{"index": 0, "text": {"x": "CANARY-text"}}]});
        minimize(&mut v, completions);
        assert_eq!(v, json!({"id": "c2", "choices": [{"index": 0}]}));

        let events = [
            json!({"id": "c3", "choices": [{"index": 0, "delta": {"content": {"x": "CANARY-delta"}}}]}),
            json!({"id": "c3", "choices": [{"index": 0, "delta": {"refusal": {"x": "CANARY-r"}}}]}),
            json!({"id": "c3", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": "{}", "y": "CANARY-fn"}, "z": {"x": "CANARY-tc"}}]}}]}),
            json!({"id": "c3", "created": {"x": "CANARY-c"}, "choices": [{"index": 0,
                "delta": {"content": "ok"}}]}),
        ];
        let mut sse = SseMinimizer::new(CHAT, false, 1 << 20);
        let mut input = String::new();
        for e in &events {
            input.push_str(&format!("data: {e}\n\n"));
        }
        let out = String::from_utf8(sse.feed(input.as_bytes()).unwrap().to_vec()).unwrap();
        assert!(!out.contains("CANARY"), "{out}");
        assert!(out.contains(r#""content":"ok""#), "{out}");
        let mut sse = SseMinimizer::new(completions, false, 1 << 20);
        let e = json!({"id": "c4", "choices": [{"index": 0, "text": {"x": "CANARY-text"}}]});
        let out = sse.feed(format!("data: {e}\n\n").as_bytes()).unwrap();
        assert!(!String::from_utf8_lossy(&out).contains("CANARY"));
    }

    /// An embedding's `object` keeps only an identifier, as every other `object` does.
    #[test]
    fn embedding_data_object_keeps_only_identifiers() {
        let policy = ResponsePolicy {
            endpoint: Endpoint::Embeddings,
            keep_logprobs: false,
        };
        let mut v = json!({"object": "list", "model": "e", "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5]},
            {"object": "never reveal CANARY", "index": 1, "embedding": [0.25]}]});
        minimize(&mut v, policy);
        assert_eq!(
            v,
            json!({"object": "list", "model": "e", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5]},
                {"index": 1, "embedding": [0.25]}]})
        );
    }

    /// Embeddings answers are shaped like every other endpoint's: `data` an array of
    /// objects, each `index` a slot, each `embedding` numbers or a base64 string, `usage`
    /// counts, `error` an error object. Output screening reads strings under other keys
    /// only for canaries and secrets, so prose (an e-mail, a card number) under them
    /// would leave unredacted.
    #[test]
    fn embeddings_fields_of_the_wrong_type_are_dropped() {
        let policy = ResponsePolicy {
            endpoint: Endpoint::Embeddings,
            keep_logprobs: false,
        };
        let pii = "write to jane.doe@example.com";
        let mut v = json!({"object": "list", "model": "e", "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1]},
            {"object": "embedding", "index": 1, "embedding": "AAAAPw=="},
            {"object": "embedding", "index": pii, "embedding": {"text": pii}},
            {"object": "embedding", "index": 3, "embedding": [0.5, pii]},
            {"object": "embedding", "index": 4, "embedding": pii},
            pii],
            "usage": {"total_tokens": 2},
            "error": {"message": "m", "detail": pii}});
        minimize(&mut v, policy);
        assert!(!v.to_string().contains("jane"), "{v}");
        assert_eq!(
            v,
            json!({"object": "list", "model": "e", "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -1]},
                {"object": "embedding", "index": 1, "embedding": "AAAAPw=="},
                {"object": "embedding"},
                {"object": "embedding", "index": 3},
                {"object": "embedding", "index": 4},
                {}],
                "usage": {"total_tokens": 2},
                "error": {"message": "m"}})
        );
        for (k, bad) in [
            ("data", json!(pii)),
            ("usage", json!(pii)),
            ("error", json!(pii)),
        ] {
            let mut v = json!({"object": "list", "model": "e"});
            v[k] = bad;
            minimize(&mut v, policy);
            assert!(!v.to_string().contains("jane"), "{k}: {v}");
        }
    }

    /// Counts are numbers: a string under a `usage` count, `created_at`,
    /// `sequence_number` or an index of a Responses event is dropped (output screening
    /// reads such strings only for canaries and secrets, so prose there would leave
    /// unredacted).
    #[test]
    fn counts_keep_only_numbers() {
        let pii = "write to jane.doe@example.com";
        let mut v = json!({"id": "c1", "choices": [],
            "usage": {"prompt_tokens": pii, "completion_tokens": 1, "total_tokens": 1}});
        minimize(&mut v, CHAT);
        assert_eq!(
            v,
            json!({"id": "c1", "choices": [], "usage": {"completion_tokens": 1, "total_tokens": 1}})
        );
        let responses = ResponsePolicy {
            endpoint: Endpoint::Responses,
            keep_logprobs: false,
        };
        let mut v = json!({"id": "r1", "created_at": pii, "output": [],
            "usage": {"input_tokens": 1, "output_tokens": pii}});
        minimize(&mut v, responses);
        assert_eq!(
            v,
            json!({"id": "r1", "output": [], "usage": {"input_tokens": 1}})
        );
        let events = [
            json!({"type": "response.output_text.delta", "sequence_number": pii,
                "item_id": "m1", "output_index": pii, "content_index": pii, "delta": "ok"}),
            json!({"type": "response.output_item.added", "sequence_number": 1,
                "output_index": pii, "item": {"type": "message", "id": "m1"}}),
            json!({"type": "error", "sequence_number": pii, "message": "m"}),
        ];
        let mut sse = SseMinimizer::new(responses, false, 1 << 20);
        let mut input = String::new();
        for e in &events {
            input.push_str(&format!("data: {e}\n\n"));
        }
        let out = String::from_utf8(sse.feed(input.as_bytes()).unwrap().to_vec()).unwrap();
        assert!(!out.contains("jane"), "{out}");
        assert!(out.contains(r#""delta":"ok""#), "{out}");
    }

    /// A `model` or `id` that is not an identifier is replaced, not removed (typed
    /// clients require both): `model` by the routed model, `id` by ""; tool names may
    /// be non-ASCII but not contain whitespace.
    #[test]
    fn non_identifier_model_and_id_are_replaced() {
        let body = json!({"id": "a long prose id", "object": "chat.completion", "created": 1,
            "model": "/models/My Model.gguf", "choices": [{"index": 0, "message": {
                "role": "assistant", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "wetter_prüfen"}},
                    {"id": "c2", "type": "function", "function": {"name": "get weather"}}]}}]});
        let mut v = body.clone();
        minimize_routed(&mut v, CHAT, Some("smollm2"));
        assert_eq!(v["model"], "smollm2", "{v}");
        assert_eq!(v["id"], "", "{v}");
        let calls = &v["choices"][0]["message"]["tool_calls"];
        assert_eq!(calls[0]["function"]["name"], "wetter_prüfen", "{v}");
        assert!(calls[1]["function"].get("name").is_none(), "{v}");
        // Streams, chat chunks and Responses lifecycle events.
        let mut m = SseMinimizer::new(CHAT, false, 1 << 16).routed_to("smollm2");
        let out = m.feed(format!("data: {body}\n\n").as_bytes()).unwrap();
        let got: Value =
            serde_json::from_slice(out.strip_prefix(b"data: ").unwrap().trim_ascii_end()).unwrap();
        assert_eq!((&got["model"], &got["id"]), (&json!("smollm2"), &json!("")));
        let ev = json!({"type": "response.completed", "sequence_number": 1, "response": {
            "id": "prose id", "model": "/models/My Model.gguf", "status": "completed"}});
        let mut m = SseMinimizer::new(RESPONSES, false, 1 << 16).routed_to("smollm2");
        let out = m.feed(format!("data: {ev}\n\n").as_bytes()).unwrap();
        let got: Value =
            serde_json::from_slice(out.strip_prefix(b"data: ").unwrap().trim_ascii_end()).unwrap();
        assert_eq!(
            got["response"],
            json!({"id": "", "model": "smollm2", "status": "completed"})
        );
    }

    /// An event whose data is not JSON passes nothing, not even its `event:` name; for
    /// every endpoint a data line that is not a JSON object is dropped.
    #[test]
    fn events_without_an_allowed_data_line_are_dropped_whole() {
        let mut sse = SseMinimizer::new(RESPONSES, false, 1 << 20);
        let out = sse
            .feed(
                b"event: response.reasoning_text.delta\ndata: not json at all\n\n\
                  event: response.leak_name_here\ndata: {\"type\": \"response.reasoning_text.delta\"}\n\n\
                  event: response.output_text.delta\ndata: {\"type\": \"response.output_text.delta\", \"delta\": \"hi\"}\n\n",
            )
            .unwrap();
        assert_eq!(
            &out[..],
            b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n"
        );
        for ep in [Endpoint::Chat, Endpoint::Completions, Endpoint::Responses] {
            let p = ResponsePolicy {
                endpoint: ep,
                keep_logprobs: false,
            };
            let mut sse = SseMinimizer::new(p, false, 1 << 20);
            let out = sse
                .feed(b"data: [\"LEAK-array\"]\n\ndata: \"LEAK-string\"\n\nevent: x\ndata: 7\n\n")
                .unwrap();
            assert!(out.is_empty(), "{ep:?}: {out:?}");
        }
    }

    /// Choice and tool-call indexes are kept only as non-negative integers: the screen
    /// and the client then agree on which choice an event is about.
    #[test]
    fn slot_indexes_are_kept_only_as_non_negative_integers() {
        let mut m = SseMinimizer::new(CHAT, false, 1 << 16);
        let mut out = Vec::new();
        for i in [json!(0.0), json!(-1), json!("0"), json!(null), json!(1)] {
            let ev = json!({"id": "c1", "object": "chat.completion.chunk",
                "choices": [{"index": i, "delta": {"content": "hi", "tool_calls": [
                    {"index": i, "function": {"arguments": "{}"}}]}}]});
            out.extend_from_slice(&m.feed(format!("data: {ev}\n\n").as_bytes()).unwrap());
        }
        let text = String::from_utf8(out).unwrap();
        let got: Vec<Value> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(got.len(), 5, "{text}");
        for (g, kept) in got.iter().zip([false, false, false, false, true]) {
            let c = &g["choices"][0];
            assert_eq!(c.get("index").is_some(), kept, "{g}");
            assert_eq!(
                c["delta"]["tool_calls"][0].get("index").is_some(),
                kept,
                "{g}"
            );
        }
    }
}
