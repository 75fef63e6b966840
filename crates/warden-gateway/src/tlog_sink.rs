//! The tamper-evident log as the gateway's [`AuditSink`]: every record becomes a
//! `warden-tlog` [`AuditEvent`] (request records as `gateway_request`, kill-switch and
//! policy changes as `block`, `lockdown`, `policy_change`). Request records are appended
//! without waiting; a failed append marks the sink unhealthy, and the gateway then
//! refuses requests (fail closed).

use crate::Error;
use crate::audit::{AuditRecord, AuditSink};
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use warden_tlog::event::{EventKind, GatewayRecord, Outcome};
use warden_tlog::{AuditEvent, Log};

/// The sink.
#[derive(Debug)]
pub struct TlogSink {
    log: Log,
    healthy: Arc<AtomicBool>,
}

impl TlogSink {
    /// Wrap an open log.
    pub fn new(log: Log) -> Self {
        TlogSink {
            log,
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }
}

fn digest(h: &Option<String>) -> String {
    h.as_ref()
        .map_or_else(|| "none".to_owned(), |h| format!("sha256:{h}"))
}

/// The event for a record.
pub fn to_event(r: AuditRecord) -> AuditEvent {
    let actor = r
        .auth
        .as_deref()
        .and_then(|a| a.strip_prefix("admin:"))
        .map(str::to_owned)
        .or_else(|| r.identity.clone())
        .unwrap_or_else(|| "anonymous".into());
    let kind = match r.kind.as_str() {
        "block" | "unblock" => EventKind::Block {
            identity: r.identity.clone().unwrap_or_default(),
            blocked: r.kind == "block",
            reason: r.reason.clone(),
        },
        "lockdown" | "lockdown-lift" => EventKind::Lockdown {
            engaged: r.kind == "lockdown",
            reason: r.reason.clone(),
        },
        "policy-reload" => EventKind::PolicyChange {
            policy: "gateway".into(),
            old_sha256: None,
            new_sha256: r.prompt_sha256.clone().unwrap_or_default(),
        },
        _ => EventKind::GatewayRequest(Box::new(GatewayRecord {
            request_id: r.request_id.to_string(),
            identity: r.identity.clone().unwrap_or_else(|| "-".into()),
            model: r.model.clone().unwrap_or_else(|| "-".into()),
            decision: match r.decision.as_str() {
                "allow" => Outcome::Pass,
                "deny" => Outcome::Fail,
                _ => Outcome::Error,
            },
            reason: format!(
                "{} [{} {} from {}; outcome {}; gateway {}us]",
                r.reason, r.kind, r.endpoint, r.source_ip, r.outcome, r.gateway_us
            ),
            status: r.status,
            request_bytes: r.request_bytes,
            response_bytes: r.response_bytes,
            latency_ms: r.total_us / 1000,
            upstream_ms: (r.upstream_us > 0).then_some(r.upstream_us / 1000),
            prompt_digest: digest(&r.prompt_sha256),
            response_digest: digest(&r.response_sha256),
            prompt_sealed: None,
            response_sealed: None,
        })),
    };
    AuditEvent {
        v: warden_tlog::event::SCHEMA_VERSION,
        time: warden_tlog::event::rfc3339(r.ts_ms as i64),
        actor,
        kind,
    }
}

impl AuditSink for TlogSink {
    fn submit(&self, rec: AuditRecord) -> Result<(), Error> {
        if !self.healthy() {
            return Err(Error::Audit("a previous append failed".into()));
        }
        let entry = to_event(rec)
            .to_entry()
            .map_err(|e| Error::Audit(e.to_string()))?;
        let fut = self.log.append_async(entry);
        let healthy = Arc::clone(&self.healthy);
        tokio::spawn(async move {
            if let Err(e) = fut.await {
                healthy.store(false, Ordering::SeqCst);
                tracing::error!(error = %e, "audit append failed; refusing requests");
            }
        });
        Ok(())
    }

    fn append_durable(&self, rec: AuditRecord) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let entry = to_event(rec)
                .to_entry()
                .map_err(|e| Error::Audit(e.to_string()))?;
            self.log.append_async(entry).await.map_err(|e| {
                self.healthy.store(false, Ordering::SeqCst);
                Error::Audit(e.to_string())
            })?;
            Ok(())
        })
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }
}
