//! The tamper-evident log as the gateway's [`AuditSink`]: every record becomes a
//! `warden-tlog` [`AuditEvent`] (request records as `gateway_request`, kill-switch and
//! policy changes as `block`, `lockdown`, `policy_change`). Request records are appended
//! without waiting (and without a task per record); any failed commit of the log makes
//! the sink unhealthy for good, and the gateway then refuses requests (fail closed).

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
    failures_at_open: u64,
}

impl TlogSink {
    /// Wrap an open log.
    pub fn new(log: Log) -> Self {
        TlogSink {
            failures_at_open: log.failed_commits(),
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
        "key-created" => EventKind::KeyCreated {
            key_id: r.key_id.clone().unwrap_or_default(),
            purpose: format!("api:{}", r.identity.as_deref().unwrap_or_default()),
            algorithm: "sha256".into(),
        },
        "key-revoked" => EventKind::KeyRevoked {
            key_id: r.key_id.clone().unwrap_or_default(),
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
        // No task and no wake-up per record: a failed commit is counted by the log and
        // `healthy` sees it before the next request is admitted.
        self.log.append_detached(entry).map_err(|e| {
            self.healthy.store(false, Ordering::SeqCst);
            Error::Audit(e.to_string())
        })
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
        if self.log.failed_commits() != self.failures_at_open {
            if self.healthy.swap(false, Ordering::SeqCst) {
                tracing::error!("audit append failed; refusing requests");
            }
            return false;
        }
        self.healthy.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_tlog::{LogOptions, PosixStorage, Signer, Storage};

    /// Storage whose durable writes can be made to fail.
    #[derive(Debug)]
    struct Flaky {
        inner: PosixStorage,
        fail: AtomicBool,
    }

    impl Storage for Flaky {
        fn read(&self, name: &str) -> warden_tlog::Result<Option<Vec<u8>>> {
            self.inner.read(name)
        }
        fn write_durable(&self, objects: &[(String, Vec<u8>)]) -> warden_tlog::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(warden_tlog::Error::Commit("disk full (test)".into()));
            }
            self.inner.write_durable(objects)
        }
        fn publish_checkpoint(&self, data: &[u8]) -> warden_tlog::Result<()> {
            self.inner.publish_checkpoint(data)
        }
        fn remove(&self, name: &str) -> warden_tlog::Result<()> {
            self.inner.remove(name)
        }
        fn list(&self, prefix: &str) -> warden_tlog::Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn lock_writer(
            &self,
            wait: std::time::Duration,
        ) -> warden_tlog::Result<Box<dyn warden_tlog::storage::WriterLock>> {
            self.inner.lock_writer(wait)
        }
        fn location(&self) -> String {
            self.inner.location()
        }
    }

    fn rec(id: u64) -> AuditRecord {
        AuditRecord {
            kind: "request".into(),
            request_id: id,
            decision: "allow".into(),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn key_records_become_key_events() {
        let e = to_event(AuditRecord {
            kind: "key-created".into(),
            identity: Some("carol".into()),
            auth: Some("admin:alice.admin".into()),
            key_id: Some("0123456789abcdef".into()),
            ..AuditRecord::default()
        });
        assert_eq!(e.actor, "alice.admin");
        assert!(
            matches!(&e.kind, EventKind::KeyCreated { key_id, purpose, .. }
                if key_id == "0123456789abcdef" && purpose == "api:carol"),
            "{e:?}"
        );
        let e = to_event(AuditRecord {
            kind: "key-revoked".into(),
            key_id: Some("0123456789abcdef".into()),
            reason: "revoked by alice.admin".into(),
            ..AuditRecord::default()
        });
        assert!(
            matches!(&e.kind, EventKind::KeyRevoked { key_id, .. } if key_id == "0123456789abcdef"),
            "{e:?}"
        );
    }

    #[test]
    fn a_failed_commit_of_queued_records_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let storage = Arc::new(Flaky {
            inner: PosixStorage::new(d.path()),
            fail: AtomicBool::new(false),
        });
        let signer = Signer::generate("warden.test/audit").unwrap();
        let log = Log::open(
            storage.clone(),
            signer,
            "warden.test/audit",
            LogOptions::default(),
        )
        .unwrap();
        let sink = TlogSink::new(log.clone());
        sink.submit(rec(1)).unwrap();
        let t0 = std::time::Instant::now();
        while log.size() < 1 {
            assert!(t0.elapsed().as_secs() < 10, "record never committed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(sink.healthy());
        storage.fail.store(true, Ordering::SeqCst);
        sink.submit(rec(2)).unwrap();
        let t0 = std::time::Instant::now();
        while sink.healthy() {
            assert!(t0.elapsed().as_secs() < 10, "failure never noticed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Recovery of the writer does not make the sink healthy again: records were lost.
        storage.fail.store(false, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!sink.healthy());
        assert!(sink.submit(rec(3)).is_err());
    }
}
