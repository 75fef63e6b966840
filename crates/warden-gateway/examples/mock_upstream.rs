//! A zero-delay OpenAI-compatible mock upstream for benchmarks:
//! `mock_upstream PORT` answers `/v1/chat/completions` with a fixed JSON completion, or,
//! when the request asks for `"stream": true`, with a short SSE stream.
//! `mock_upstream init-home DIR` writes an audit log key into a fresh Warden home (for
//! benchmark homes, where `warden init` may not be available).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark helper"
)]

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

const JSON: &str = r#"{"id":"cmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#;

fn sse() -> String {
    let mut s = String::new();
    for w in ["Hello", "!", " How", " can", " I", " help", "?"] {
        s.push_str(&format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    s.push_str("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":7,\"total_tokens\":16}}\n\ndata: [DONE]\n\n");
    s
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("init-home") {
        let dir = std::path::PathBuf::from(std::env::args().nth(2).unwrap_or_default());
        std::fs::create_dir_all(dir.join("keys"))?;
        let signer = warden_tlog::Signer::generate("bench.warden.example/audit")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::write(dir.join("keys/audit.key"), signer.to_key_string())?;
        return Ok(());
    }
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(9100);
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let sse = Bytes::from(sse());
    eprintln!("mock upstream on 127.0.0.1:{port}");
    loop {
        let (s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        let sse = sse.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let sse = sse.clone();
                async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let has = |n: &[u8]| body.windows(n.len()).any(|w| w == n);
                    let stream = has(b"\"stream\":true") || has(b"\"stream\": true");
                    let (ct, b) = if stream {
                        ("text/event-stream", sse)
                    } else {
                        ("application/json", Bytes::from_static(JSON.as_bytes()))
                    };
                    let mut r = Response::new(Full::new(b));
                    r.headers_mut()
                        .insert("content-type", hyper::header::HeaderValue::from_static(ct));
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}
