//! Response minimisation: only the fields a client needs leave the gateway. Logprob data
//! (unless the identity's role allows it), `system_fingerprint`, engine timings and any
//! field not on the per-endpoint allowlist are removed, from whole JSON bodies and from
//! every `data:` event of an SSE stream.

use crate::json::Fields;
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

fn retain(o: &mut Map<String, Value>, allowed: &[&str]) {
    o.retain(|k, _| allowed.contains(&k.as_str()));
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

/// Minimise one response object in place; returns the usage it reported.
pub fn minimize(v: &mut Value, p: ResponsePolicy) -> Option<Usage> {
    let Value::Object(o) = v else { return None };
    // A Responses-API stream reports usage in its `response.completed` event, under
    // `response`.
    let usage = usage_of(o).or_else(|| match p.endpoint {
        Endpoint::Responses => o
            .field("response")
            .and_then(Value::as_object)
            .and_then(usage_of),
        _ => None,
    });
    let choice_fields: &[&str] = if p.keep_logprobs {
        &[
            "index",
            "message",
            "delta",
            "text",
            "finish_reason",
            "logprobs",
        ]
    } else {
        &["index", "message", "delta", "text", "finish_reason"]
    };
    match p.endpoint {
        Endpoint::Chat | Endpoint::Completions => {
            retain(
                o,
                &[
                    "id", "object", "created", "model", "choices", "usage", "error",
                ],
            );
            if let Some(Value::Array(cs)) = o.field_mut("choices") {
                for c in cs.iter_mut() {
                    if let Value::Object(c) = c {
                        retain(c, choice_fields);
                        for k in ["message", "delta"] {
                            if let Some(Value::Object(m)) = c.field_mut(k) {
                                retain(m, &["role", "content", "tool_calls", "refusal"]);
                            }
                        }
                    }
                }
            }
        }
        Endpoint::Embeddings => {
            retain(o, &["object", "data", "model", "usage", "error"]);
            if let Some(Value::Array(ds)) = o.field_mut("data") {
                for d in ds.iter_mut() {
                    if let Value::Object(d) = d {
                        retain(d, &["object", "index", "embedding"]);
                    }
                }
            }
        }
        Endpoint::Models | Endpoint::Responses => {}
    }
    if let Some(Value::Object(u)) = o.field_mut("usage") {
        retain(
            u,
            &[
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "input_tokens",
                "output_tokens",
            ],
        );
    }
    strip_recursive(v, p.keep_logprobs);
    usage
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
#[derive(Debug)]
pub struct SseMinimizer {
    policy: ResponsePolicy,
    buf: BytesMut,
    max_event: usize,
    drop_usage_only: bool,
    /// Latest usage reported in the stream.
    pub usage: Option<Usage>,
    /// Content events seen (a fallback estimate of tokens).
    pub events: u64,
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
            buf: BytesMut::new(),
            max_event,
            drop_usage_only,
            usage: None,
            events: 0,
        }
    }

    /// Feed a chunk; returns what to send on.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some((end, sep)) = find_event_end(&self.buf) {
            let event = self.buf.split_to(end + sep);
            let text = event.get(..end).unwrap_or_default();
            self.emit(text, &mut out);
        }
        if self.buf.len() > self.max_event {
            return Err(SseError::EventTooLarge(self.max_event));
        }
        Ok(out.freeze())
    }

    /// The stream ended: flush an unterminated last event.
    pub fn finish(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            self.emit(&rest, &mut out);
        }
        out.freeze()
    }

    fn emit(&mut self, event: &[u8], out: &mut BytesMut) {
        let mut lines_out: Vec<Vec<u8>> = Vec::new();
        let mut drop_event = false;
        for line in event.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                let data = data.strip_prefix(b" ").unwrap_or(data);
                if data == b"[DONE]" {
                    lines_out.push(b"data: [DONE]".to_vec());
                    continue;
                }
                // Not JSON: nothing we can vouch for; the line is dropped.
                if let Ok(mut v) = serde_json::from_slice::<Value>(data) {
                    let usage = minimize(&mut v, self.policy);
                    if usage.is_some() {
                        self.usage = usage;
                    }
                    let no_choices = v
                        .get("choices")
                        .and_then(Value::as_array)
                        .is_some_and(|c| c.is_empty());
                    if self.drop_usage_only && usage.is_some() && no_choices {
                        drop_event = true;
                        continue;
                    }
                    if self.drop_usage_only
                        && let Value::Object(o) = &mut v
                    {
                        o.remove("usage");
                    }
                    let mut l = b"data: ".to_vec();
                    // Writing a `Value` into a Vec cannot fail; if it ever did, the
                    // event is dropped rather than sent half-written.
                    if serde_json::to_writer(&mut l, &v).is_err() {
                        continue;
                    }
                    self.events += 1;
                    lines_out.push(l);
                }
            } else if let Some(name) = line.strip_prefix(b"event:") {
                // Event names (the Responses API's `response.output_text.delta` etc.)
                // pass only as short lowercase dotted names: an upstream cannot use
                // the field to carry text past screening and minimisation.
                let name = name.strip_prefix(b" ").unwrap_or(name);
                if is_event_name(name) {
                    let mut l = b"event: ".to_vec();
                    l.extend_from_slice(name);
                    lines_out.push(l);
                }
            }
            // `id:`, `retry:`, comments and unknown lines are dropped: OpenAI clients
            // need none of them, and each could carry arbitrary upstream text.
        }
        if drop_event || lines_out.is_empty() {
            return;
        }
        for l in lines_out {
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"\n");
    }
}

fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf.get(i) == Some(&b'\n') {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
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
        assert_eq!(minimize(&mut ev, policy).unwrap().total_tokens, 12);
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
        // Responses are not allowlisted, so only the recursive stripping applies; the
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
                    endpoint: Endpoint::Responses,
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

    #[test]
    fn sse_event_limit() {
        let mut m = SseMinimizer::new(CHAT, false, 16);
        assert!(m.feed(b"data: 0123456789012345678").is_err());
    }
}
