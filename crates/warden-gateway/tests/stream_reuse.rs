//! The SSE minimiser passes a text event that repeats the previous one but for its text
//! without parsing it again (`MinLine::Text`), and the output screen then screens only
//! that text. Whatever the upstream sends, that must change nothing: the bytes that
//! leave, and whether and where the stream is stopped, are those of parsing every event.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests may panic"
)]

use proptest::prelude::*;
use std::sync::Arc;
use warden_gateway::minimize::{ResponsePolicy, SseMinimizer};
use warden_gateway::screening::SseScreen;
use warden_gateway::validate::Endpoint;
use warden_screen::output::{OutputPolicy, OutputRules};

const CANARY: &str = "CANARY-5e1f0c3a9b7d2468";

fn rules() -> Arc<OutputRules> {
    Arc::new(
        OutputRules::new(OutputPolicy {
            canaries: vec![CANARY.into()],
            ..OutputPolicy::default()
        })
        .unwrap(),
    )
}

fn policy(ep: Endpoint) -> ResponsePolicy {
    ResponsePolicy {
        endpoint: ep,
        keep_logprobs: false,
    }
}

fn policy_with(ep: Endpoint, keep_logprobs: bool) -> ResponsePolicy {
    ResponsePolicy {
        endpoint: ep,
        keep_logprobs,
    }
}

/// A JSON string token for `s`, written plainly or with every non-ASCII character (and
/// `/`) escaped: the same string to a parser, other bytes.
fn token(s: &str, escaped: bool) -> String {
    if !escaped {
        return serde_json::to_string(s).unwrap();
    }
    let mut t = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => t.push_str("\\\""),
            '\\' => t.push_str("\\\\"),
            '/' => t.push_str("\\/"),
            c if c.is_ascii() && !c.is_ascii_control() => t.push(c),
            c => {
                let mut b = [0u16; 2];
                for u in c.encode_utf16(&mut b) {
                    t.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    t.push('"');
    t
}

/// What one event of a generated stream is.
#[derive(Debug, Clone)]
enum Ev {
    /// The opening chat event: role and empty content.
    Role,
    /// Text of choice 0: the string, its token escaped, the chunk's id (0 or 1), spaces
    /// around the token.
    Text(String, bool, u8, bool),
    /// Text with the role again, as Ollama sends every chunk.
    RoleText(String),
    /// Text written with the content key twice (the parse keeps the second).
    DupKey(String, String),
    /// Text under an escaped `content` key.
    EscKey(String),
    /// Text with logprob data (stripped) or a second choice.
    Logprobs(String),
    TwoChoices(String, String),
    /// A tool call's argument piece.
    Tool(String),
    /// The end of choice 0.
    Finish,
    /// The usage-only chunk, `[DONE]`, a line that is not JSON.
    Usage,
    Done,
    Garbage,
    /// The same text event behind an `event:` or `id:` line.
    Named(String),
}

fn text_str() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("Hello".to_owned()),
        Just("\"},\"x\":\"".to_owned()),
        Just("\\".to_owned()),
        Just("\u{2028}é😀".to_owned()),
        Just("CANARY-5e1f".to_owned()),
        Just("0c3a9b7d2468".to_owned()),
        Just(CANARY.to_owned()),
        "[ -~é😀\"\\\\/\n\t]{0,12}",
        // Longer than the hold-back window: released while later events come.
        "[a-z ]{150,300}",
    ]
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        2 => Just(Ev::Role),
        12 => (text_str(), any::<bool>(), 0u8..2, any::<bool>()).prop_map(|(s, e, id, sp)| Ev::Text(s, e, id, sp)),
        3 => text_str().prop_map(Ev::RoleText),
        1 => (text_str(), text_str()).prop_map(|(a, b)| Ev::DupKey(a, b)),
        1 => text_str().prop_map(Ev::EscKey),
        1 => text_str().prop_map(Ev::Logprobs),
        1 => (text_str(), text_str()).prop_map(|(a, b)| Ev::TwoChoices(a, b)),
        1 => text_str().prop_map(Ev::Tool),
        1 => Just(Ev::Finish),
        1 => Just(Ev::Usage),
        1 => Just(Ev::Done),
        1 => Just(Ev::Garbage),
        1 => text_str().prop_map(Ev::Named),
    ]
}

/// The SSE bytes of `evs` as a chat (or completions) upstream would send them.
fn stream(ep: Endpoint, evs: &[Ev], crlf: bool) -> Vec<u8> {
    let chat = ep == Endpoint::Chat;
    let head = |id: u8| {
        if chat {
            format!(
                r#"{{"id":"chatcmpl-{id}","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":["#
            )
        } else {
            format!(
                r#"{{"id":"cmpl-{id}","object":"text_completion","created":1,"model":"m","choices":["#
            )
        }
    };
    let text = |tok: &str, extra: &str| {
        if chat {
            format!(
                r#"{{"index":0,"delta":{{"content":{tok}}},"logprobs":null,"finish_reason":null{extra}}}"#
            )
        } else {
            format!(r#"{{"index":0,"text":{tok},"logprobs":null,"finish_reason":null{extra}}}"#)
        }
    };
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    for e in evs {
        let data = match e {
            Ev::Role if chat => format!(
                r#"{}{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#,
                head(0)
            ),
            Ev::Role => format!("{}{}]}}", head(0), text("\"\"", "")),
            Ev::Text(s, esc, id, sp) => {
                let tok = token(s, *esc);
                let tok = if *sp { format!(" {tok} ") } else { tok };
                format!("{}{}]}}", head(*id), text(&tok, ""))
            }
            Ev::RoleText(s) if chat => format!(
                r#"{}{{"index":0,"delta":{{"role":"assistant","content":{}}},"finish_reason":null}}]}}"#,
                head(0),
                token(s, false)
            ),
            Ev::RoleText(s) => format!("{}{}]}}", head(0), text(&token(s, false), "")),
            Ev::DupKey(a, b) if chat => format!(
                r#"{}{{"index":0,"delta":{{"content":{},"content":{}}},"finish_reason":null}}]}}"#,
                head(0),
                token(a, false),
                token(b, false)
            ),
            Ev::DupKey(a, b) => format!(
                r#"{}{{"index":0,"text":{},"text":{},"finish_reason":null}}]}}"#,
                head(0),
                token(a, false),
                token(b, false)
            ),
            Ev::EscKey(s) if chat => format!(
                r#"{}{{"index":0,"delta":{{"c\u006fntent":{}}},"finish_reason":null}}]}}"#,
                head(0),
                token(s, false)
            ),
            Ev::EscKey(s) => format!(
                r#"{}{{"index":0,"t\u0065xt":{},"finish_reason":null}}]}}"#,
                head(0),
                token(s, false)
            ),
            Ev::Logprobs(s) => {
                let lp = format!(
                    r#","logprobs":{{"content":[{{"token":{},"logprob":-0.1}}]}}"#,
                    token(s, false)
                );
                // A second `logprobs` member after the null one (the parse keeps this
                // one; minimisation strips it).
                format!("{}{}]}}", head(0), text(&token(s, false), &lp))
            }
            Ev::TwoChoices(a, b) => {
                let second = if chat {
                    format!(r#"{{"index":1,"delta":{{"content":{}}}}}"#, token(b, false))
                } else {
                    format!(r#"{{"index":1,"text":{}}}"#, token(b, false))
                };
                format!("{}{},{second}]}}", head(0), text(&token(a, false), ""))
            }
            Ev::Tool(s) if chat => format!(
                r#"{}{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"f","arguments":{}}}}}]}},"finish_reason":null}}]}}"#,
                head(0),
                token(s, false)
            ),
            Ev::Tool(s) => format!("{}{}]}}", head(1), text(&token(s, true), "")),
            Ev::Finish if chat => format!(
                r#"{}{{"index":0,"delta":{{}},"finish_reason":"stop"}}]}}"#,
                head(0)
            ),
            Ev::Finish => format!(
                r#"{}{{"index":0,"text":"","finish_reason":"stop"}}]}}"#,
                head(0)
            ),
            Ev::Usage => format!(
                r#"{}],"usage":{{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}}}"#,
                head(0)
            ),
            Ev::Done => "[DONE]".to_owned(),
            Ev::Garbage => "{not json".to_owned(),
            Ev::Named(s) => {
                out.push_str(if s.len() % 2 == 0 {
                    "event: x"
                } else {
                    "id: 7"
                });
                out.push_str(nl);
                format!("{}{}]}}", head(0), text(&token(s, false), ""))
            }
        };
        out.push_str("data: ");
        out.push_str(&data);
        out.push_str(nl);
        out.push_str(nl);
    }
    out.into_bytes()
}

/// The minimiser alone (`feed`): the bytes out, or the error.
fn minimised(m: &mut SseMinimizer, s: &[u8], step: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for c in s.chunks(step) {
        out.extend_from_slice(&m.feed(c).map_err(|e| e.to_string())?);
    }
    out.extend_from_slice(&m.finish());
    Ok(out)
}

/// The gateway's pipeline (minimiser's events into the screen): the bytes out and where
/// it stopped, if it did.
fn screened(
    m: &mut SseMinimizer,
    ep: Endpoint,
    s: &[u8],
    step: usize,
) -> (Vec<u8>, Option<String>) {
    let mut sc = SseScreen::standalone(rules(), ep);
    let mut out = Vec::new();
    for c in s.chunks(step) {
        let evs = match m.feed_events(c) {
            Ok(e) => e,
            Err(e) => return (out, Some(e.to_string())),
        };
        match sc.feed_events(evs) {
            Ok(b) => out.extend_from_slice(&b),
            Err(r) => return (out, Some(r)),
        }
    }
    match sc.feed_events(m.finish_events()).and_then(|b| {
        out.extend_from_slice(&b);
        sc.finish()
    }) {
        Ok(b) => {
            out.extend_from_slice(&b);
            (out, None)
        }
        Err(r) => (out, Some(r)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(768))]

    #[test]
    fn reusing_text_events_changes_nothing(
        chat in any::<bool>(),
        evs in prop::collection::vec(ev(), 0..24),
        crlf in any::<bool>(),
        step in prop_oneof![Just(usize::MAX), 1usize..80],
        drop_usage in any::<bool>(),
        keep_logprobs in any::<bool>(),
    ) {
        let ep = if chat { Endpoint::Chat } else { Endpoint::Completions };
        let s = stream(ep, &evs, crlf);
        let step = step.min(s.len().max(1));
        let fresh = || {
            SseMinimizer::new(policy_with(ep, keep_logprobs), drop_usage, 1 << 20).routed_to("m")
        };
        let (mut a, mut b) = (fresh(), fresh().without_reuse());
        prop_assert_eq!(minimised(&mut a, &s, step), minimised(&mut b, &s, step));
        prop_assert_eq!(b.reused, 0);
        prop_assert_eq!((a.usage, a.events), (b.usage, b.events));
        let (mut a, mut b) = (fresh(), fresh().without_reuse());
        let (got, want) = (screened(&mut a, ep, &s, step), screened(&mut b, ep, &s, step));
        prop_assert_eq!(&got, &want, "stream: {}", String::from_utf8_lossy(&s));
        prop_assert!(!String::from_utf8_lossy(&got.0).contains(CANARY));
    }
}

/// A stream shaped as llama.cpp sends it: after the first text event, every one is
/// passed on without a parse, and the output is the parsing path's.
#[test]
fn an_engines_repeated_chunks_are_not_parsed_again() {
    let words = [
        "Hello", "!", " How", " can", " I", " help", " you", " today", "?",
    ];
    let mut evs = vec![Ev::Role];
    evs.extend(
        words
            .iter()
            .map(|w| Ev::Text((*w).to_owned(), false, 0, false)),
    );
    evs.extend([Ev::Finish, Ev::Usage, Ev::Done]);
    let s = stream(Endpoint::Chat, &evs, false);
    for step in [1, 7, usize::MAX] {
        let step = step.min(s.len());
        let fresh = || SseMinimizer::new(policy(Endpoint::Chat), true, 1 << 20);
        let (mut a, mut b) = (fresh(), fresh().without_reuse());
        let (got, want) = (
            screened(&mut a, Endpoint::Chat, &s, step),
            screened(&mut b, Endpoint::Chat, &s, step),
        );
        assert_eq!(got, want);
        assert_eq!(got.1, None);
        let text = String::from_utf8_lossy(&got.0);
        assert!(
            text.contains("How can I help you today?") || text.contains(" today"),
            "{text}"
        );
        // The first text event (after the role's) is parsed; the other eight are not.
        assert_eq!((a.reused, b.reused), (8, 0), "step {step}");
    }
    // A canary split over repeated events is still stopped, and never leaves.
    let mut evs = vec![Ev::Role];
    evs.extend(
        ["Sure: ", "CANARY-5e1f", "0c3a9b7d2468", " ok"]
            .iter()
            .map(|w| Ev::Text((*w).to_owned(), false, 0, false)),
    );
    evs.push(Ev::Done);
    let s = stream(Endpoint::Chat, &evs, false);
    let mut m = SseMinimizer::new(policy(Endpoint::Chat), true, 1 << 20);
    let (out, stop) = screened(&mut m, Endpoint::Chat, &s, s.len());
    assert!(m.reused >= 2, "{}", m.reused);
    assert!(stop.is_some(), "{}", String::from_utf8_lossy(&out));
    assert!(!String::from_utf8_lossy(&out).contains("CANARY-5e1f"));
}
