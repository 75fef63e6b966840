//! What screening adds to the request path: the same gateway (in-process, plain HTTP on
//! loopback, mock upstream on loopback) with `[gateway.screening]` all off, then all on
//! (input screen, output screen, behaviour and drift monitors with alert actions, queue),
//! N sequential chat requests with varied prompts of about `BYTES` bytes. Reports p50/p99 of the
//! audit records' `gateway_us` (arrival → forward: includes input screening) and
//! `total_us` (includes output screening and monitor feeding).
//!
//! `cargo run --release -p warden-gateway --example screen_overhead -- [N] [BYTES]`
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark helper"
)]

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::sync::Arc;
use warden_gateway::audit::MemorySink;
use warden_gateway::directory::{Identity, MemoryDirectory};

const WORDS: &str = "meeting notes team action items owner date budget plan review draft report customer \
    order invoice shipment supplier contract deadline project milestone risk issue design test release \
    server database network backup policy training schedule travel hotel flight lunch agenda minutes \
    summary decision vote quarter revenue cost forecast hiring interview candidate office move printer \
    laptop license renewal audit security password update patch bug feature request roadmap launch \
    marketing campaign email newsletter website blog video photo event venue catering invitation guest";

/// A prompt of about `bytes` bytes of words drawn by an LCG seeded with `seed`: ordinary,
/// varied traffic (not near-duplicates the behaviour monitor would throttle).
fn prompt(seed: u64, bytes: usize) -> String {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut s = String::from("Please summarise: ");
    while s.len() < bytes {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        s.push_str(words[(x >> 33) as usize % words.len()]);
        s.push(' ');
    }
    s
}

async fn mock() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let out = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m1",
                        "choices": [{"index": 0, "message": {"role": "assistant",
                            "content": "Action items: Ana drafts the plan by Friday; Ben reviews it on Monday."},
                            "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}});
                        let mut r = Response::new(Full::new(Bytes::from(out.to_string())));
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn pct(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

async fn run(screening: serde_json::Value, n: usize, bytes: usize) -> (Vec<u64>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    let policy = dir.path().join("p.cedar");
    std::fs::write(&policy, "permit(principal, action, resource);").unwrap();
    let up = mock().await;
    let cfg = json!({
        "listen": "127.0.0.1:0", "insecure_plaintext": true,
        "admin": {"listen": "127.0.0.1:0", "tls": {"cert": c, "key": k, "client_ca": c}, "admins": []},
        "models": [{"name": "m1", "upstream": format!("http://{up}")}],
        "policy": policy,
        "limits": {"requests_per_minute": 1000000, "tokens_per_minute": 1000000000, "concurrency": 64},
        "screening": screening,
    });
    let cfg: warden_gateway::config::GatewayConfig = serde_json::from_value(cfg).unwrap();
    let directory = Arc::new(MemoryDirectory::default());
    let (key, hash) = warden_gateway::keys::generate().unwrap();
    directory.add(
        Identity {
            name: "bench".into(),
            roles: vec!["user".into()],
            team: "t".into(),
            clearance: 1,
        },
        Some(hash),
    );
    let audit = Arc::new(MemorySink::default());
    let policies = warden_gateway::authz::Policies::load(&cfg.policy, None).unwrap();
    let listeners = warden_gateway::server::bind(&cfg).await.unwrap();
    let public = listeners.public.local_addr().unwrap();
    let mut cfg = cfg;
    cfg.listen = public;
    let gw =
        warden_gateway::server::Gateway::new(cfg, directory, audit.clone(), policies, Vec::new())
            .unwrap();
    tokio::spawn(warden_gateway::server::run(
        gw,
        listeners,
        Default::default(),
    ));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..n + 50 {
        let b = json!({"model": "m1", "messages": [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt(i as u64, bytes)}], "max_tokens": 64})
        .to_string();
        let req = Request::builder()
            .method("POST")
            .uri(format!("http://{public}/v1/chat/completions"))
            .header("authorization", format!("Bearer {}", key.reveal()))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(b)))
            .unwrap();
        let r = client.request(req).await.unwrap();
        let st = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(st, 200, "request {i}: {}", String::from_utf8_lossy(&b));
    }
    let recs = audit.records.lock().unwrap().clone();
    let recs: Vec<_> = recs
        .into_iter()
        .filter(|r| r.kind == "request")
        .skip(50)
        .collect();
    (
        recs.iter().map(|r| r.gateway_us).collect(),
        recs.iter().map(|r| r.total_us - r.upstream_us).collect(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let bytes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let off = json!({"input": false, "output": false, "monitor": {"enabled": false}, "drift": {"enabled": false}});
    println!("{n} requests, prompt {bytes} B; microseconds");
    println!("| screening | gateway p50 | gateway p99 | total-upstream p50 | total-upstream p99 |");
    println!("|---|---|---|---|---|");
    // Everything on; monitor actions "alert" so the bench's synthetic traffic (one identity,
    // one vocabulary, thousands of requests a minute) is measured, not throttled.
    let on = json!({"actions": {"near_duplicates": "alert", "input_sweep": "alert",
        "parameter_sweep": "alert", "output_volume": "alert", "rate_spike": "alert"}});
    for (name, cfg) in [("off", off), ("on", on)] {
        let (mut g, mut t) = run(cfg, n, bytes).await;
        println!(
            "| {name} | {} | {} | {} | {} |",
            pct(&mut g, 0.5),
            pct(&mut g, 0.99),
            pct(&mut t, 0.5),
            pct(&mut t, 0.99)
        );
    }
}
