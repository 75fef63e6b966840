//! The tamper-evident log as the gateway's [`AuditSink`]: every record becomes a
//! `warden-tlog` [`AuditEvent`] (request records as `gateway_request`, kill-switch and
//! policy changes as `block`, `lockdown`, `policy_change`). Request records are appended
//! without waiting (and without a task per record) into the log's bounded queue
//! ([`warden_tlog::LogOptions::max_queued`], `[gateway.audit] max_queued`), into room
//! reserved when the request was admitted ([`warden_tlog::Log::reserve`]); records
//! without a reservation use the room reservations left, then the log's headroom. While
//! the queue is full no request is admitted (the sink stays ready: busy is not
//! unready); a record lost for want of room keeps the sink closed until the queue has
//! drained and a durable `audit-gap` record says how many were lost. Once any commit
//! of the log failed, or its writer stopped, the sink is unhealthy for good and the
//! gateway refuses requests (fail closed).

use crate::Error;
use crate::audit::{AuditPermit, AuditRecord, AuditSink, Gap, Reserved};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use warden_tlog::event::{EventKind, GatewayRecord, Outcome};
use warden_tlog::{AuditEvent, Log};

/// The sink.
#[derive(Debug)]
pub struct TlogSink {
    log: Log,
    /// False for good once a record could not be written (commit failed, writer stopped).
    healthy: Arc<AtomicBool>,
    failures_at_open: u64,
    gap: Gap,
}

impl TlogSink {
    /// Wrap an open log.
    pub fn new(log: Log) -> Self {
        TlogSink {
            failures_at_open: log.failed_commits(),
            log,
            healthy: Arc::new(AtomicBool::new(true)),
            gap: Gap::default(),
        }
    }

    /// Records lost for want of room and not yet reported by a gap record.
    pub fn lost(&self) -> u64 {
        self.gap.pending()
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

/// Whether `to_event` turns a record of this kind into a `gateway_request` event.
fn is_request_kind(kind: &str) -> bool {
    !matches!(
        kind,
        "block"
            | "unblock"
            | "lockdown"
            | "lockdown-lift"
            | "key-created"
            | "key-revoked"
            | "policy-reload"
    )
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// A JSON string (quoted and escaped exactly as `serde_json` does).
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail, and a `str` always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_digest(out: &mut Vec<u8>, h: Option<&str>) {
    match h {
        // Hex needs no escaping.
        Some(h) if h.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            out.extend_from_slice(b"\"sha256:");
            out.extend_from_slice(h.as_bytes());
            out.push(b'"');
        }
        Some(h) => push_str(out, &format!("sha256:{h}")),
        None => out.extend_from_slice(b"\"none\""),
    }
}

/// `warden_tlog::event::rfc3339` for the years 1970-9999, without a formatter: the
/// civil date from days since the epoch (H. Hinnant's algorithm).
fn push_rfc3339(out: &mut Vec<u8>, ms: u64) {
    const MAX_MS: u64 = 253_402_300_800_000; // 10000-01-01T00:00:00Z
    if ms >= MAX_MS {
        out.push(b'"');
        out.extend_from_slice(warden_tlog::event::rfc3339(ms as i64).as_bytes());
        out.push(b'"');
        return;
    }
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    let digits = |out: &mut Vec<u8>, v: u64, n: u32| {
        for k in (0..n).rev() {
            out.push(b'0' + ((v / 10u64.pow(k)) % 10) as u8);
        }
    };
    out.push(b'"');
    digits(out, y, 4);
    out.push(b'-');
    digits(out, m, 2);
    out.push(b'-');
    digits(out, d, 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod / 60 % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, milli, 3);
    out.extend_from_slice(b"Z\"");
}

/// The log entry of a request record: byte for byte `to_event(rec).to_entry()` (the
/// canonical JSON of a `gateway_request` event), written straight into one buffer
/// instead of through an intermediate event and serde's flattening.
pub fn request_entry(r: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        448 + r.reason.len() + r.endpoint.len() + r.identity.as_ref().map_or(0, String::len) * 2,
    );
    out.extend_from_slice(b"{\"v\":");
    push_u64(&mut out, u64::from(warden_tlog::event::SCHEMA_VERSION));
    out.extend_from_slice(b",\"time\":");
    push_rfc3339(&mut out, r.ts_ms);
    out.extend_from_slice(b",\"actor\":");
    let actor = r
        .auth
        .as_deref()
        .and_then(|a| a.strip_prefix("admin:"))
        .or(r.identity.as_deref())
        .unwrap_or("anonymous");
    push_str(&mut out, actor);
    out.extend_from_slice(b",\"event\":\"gateway_request\",\"request_id\":\"");
    push_u64(&mut out, r.request_id);
    out.extend_from_slice(b"\",\"identity\":");
    push_str(&mut out, r.identity.as_deref().unwrap_or("-"));
    out.extend_from_slice(b",\"model\":");
    push_str(&mut out, r.model.as_deref().unwrap_or("-"));
    out.extend_from_slice(match r.decision.as_str() {
        "allow" => b",\"decision\":\"pass\",\"reason\":",
        "deny" => b",\"decision\":\"fail\",\"reason\":",
        _ => b",\"decision\":\"error\",\"reason\":" as &[u8],
    });
    let mut reason = String::with_capacity(r.reason.len() + r.endpoint.len() + 96);
    {
        use std::fmt::Write as _;
        // Writing into a String cannot fail.
        let _ = write!(
            reason,
            "{} [{} {} from {}; outcome {}; gateway {}us]",
            r.reason, r.kind, r.endpoint, r.source_ip, r.outcome, r.gateway_us
        );
    }
    push_str(&mut out, &reason);
    out.extend_from_slice(b",\"status\":");
    push_u64(&mut out, u64::from(r.status));
    out.extend_from_slice(b",\"request_bytes\":");
    push_u64(&mut out, r.request_bytes);
    out.extend_from_slice(b",\"response_bytes\":");
    push_u64(&mut out, r.response_bytes);
    out.extend_from_slice(b",\"latency_ms\":");
    push_u64(&mut out, r.total_us / 1000);
    if r.upstream_us > 0 {
        out.extend_from_slice(b",\"upstream_ms\":");
        push_u64(&mut out, r.upstream_us / 1000);
    }
    out.extend_from_slice(b",\"prompt_digest\":");
    push_digest(&mut out, r.prompt_sha256.as_deref());
    out.extend_from_slice(b",\"response_digest\":");
    push_digest(&mut out, r.response_sha256.as_deref());
    out.push(b'}');
    out
}

/// The log entry of a record.
fn entry(rec: AuditRecord) -> Result<Vec<u8>, Error> {
    if is_request_kind(&rec.kind) {
        Ok(request_entry(&rec))
    } else {
        to_event(rec)
            .to_entry()
            .map_err(|e| Error::Audit(e.to_string()))
    }
}

/// An error that means the log cannot write (as opposed to no room, or a bad entry).
fn is_storage_error(e: &warden_tlog::Error) -> bool {
    matches!(
        e,
        warden_tlog::Error::Commit(_) | warden_tlog::Error::Closed(_)
    )
}

impl TlogSink {
    /// Whether a record could not be written (a failed commit, a stopped writer): for
    /// good.
    fn failed(&self) -> bool {
        if self.log.failed_commits() != self.failures_at_open {
            if self.healthy.swap(false, Ordering::SeqCst) {
                tracing::error!("audit append failed; refusing requests");
            }
            return true;
        }
        !self.healthy.load(Ordering::SeqCst)
    }

    /// Whether requests may be admitted, apart from room: not failed, and no lost
    /// records left unreported (once the queue is at most half full, a durable gap
    /// record reports them; the sink reopens when it is committed).
    fn open_for_requests(&self) -> bool {
        if self.failed() {
            return false;
        }
        let drained = self.log.queued() <= self.log.max_queued() / 2;
        self.gap.open(drained, |rec| {
            let healthy = Arc::clone(&self.healthy);
            match entry(rec) {
                Ok(e) => Box::pin(self.log.append_async(e).map(move |r| match r {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        if is_storage_error(&e) {
                            healthy.store(false, Ordering::SeqCst);
                        }
                        Err(Error::Audit(e.to_string()))
                    }
                })),
                Err(e) => Box::pin(async move { Err(e) }),
            }
        })
    }
}

/// A [`TlogSink`] reservation.
#[derive(Debug)]
struct TlogPermit {
    permit: warden_tlog::Permit,
    healthy: Arc<AtomicBool>,
}

impl Reserved for TlogPermit {
    fn submit(self: Box<Self>, rec: AuditRecord) -> Result<(), Error> {
        let TlogPermit { permit, healthy } = *self;
        let e = entry(rec)?;
        // No task and no wake-up per record: a failed commit is counted by the log and
        // `reserve` sees it before the next request is admitted.
        permit.append_detached(e).map_err(|e| {
            healthy.store(false, Ordering::SeqCst);
            Error::Audit(e.to_string())
        })
    }
}

impl AuditSink for TlogSink {
    fn reserve(&self) -> Result<AuditPermit, Error> {
        if !self.open_for_requests() {
            return Err(Error::Audit(
                "audit log failed, or records lost and not yet recorded".into(),
            ));
        }
        match self.log.reserve() {
            Ok(permit) => Ok(AuditPermit::new(Box::new(TlogPermit {
                permit,
                healthy: Arc::clone(&self.healthy),
            }))),
            Err(e) => {
                if is_storage_error(&e) {
                    self.healthy.store(false, Ordering::SeqCst);
                }
                Err(Error::Audit(e.to_string()))
            }
        }
    }

    fn submit(&self, rec: AuditRecord) -> Result<(), Error> {
        if self.failed() {
            return Err(Error::Audit("a previous append failed".into()));
        }
        self.log.append_detached(entry(rec)?).map_err(|e| {
            if matches!(e, warden_tlog::Error::QueueFull(_)) {
                // Counted, and reported by a gap record once the queue drains.
                self.gap.lost();
            } else {
                self.healthy.store(false, Ordering::SeqCst);
            }
            Error::Audit(e.to_string())
        })
    }

    fn append_durable(&self, rec: AuditRecord) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let entry = to_event(rec)
                .to_entry()
                .map_err(|e| Error::Audit(e.to_string()))?;
            // Never refused for room (a waited append); only a failure to write it
            // closes the sink.
            self.log.append_async(entry).await.map_err(|e| {
                if is_storage_error(&e) {
                    self.healthy.store(false, Ordering::SeqCst);
                }
                Error::Audit(e.to_string())
            })?;
            Ok(())
        })
    }

    fn healthy(&self) -> bool {
        // Not the room left: every permit held by requests in flight means busy, and
        // readiness must not flap with the load (`reserve` refuses those requests).
        self.open_for_requests()
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
        /// The writer cannot take its lock while set: a stalled disk.
        stall: AtomicBool,
    }

    impl Flaky {
        /// A storage in `dir` that neither fails nor stalls until told to.
        fn healthy(dir: &std::path::Path) -> Arc<Self> {
            Arc::new(Flaky {
                inner: PosixStorage::new(dir),
                fail: AtomicBool::new(false),
                stall: AtomicBool::new(false),
            })
        }
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
            while self.stall.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
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
    fn only_request_kinds_take_the_direct_encoder() {
        // `submit` writes request kinds with `request_entry`; every other kind must go
        // through `to_event`, or an admin event would be logged as a request.
        for kind in [
            "request",
            "malformed",
            "alert",
            "block",
            "unblock",
            "lockdown",
            "lockdown-lift",
            "key-created",
            "key-revoked",
            "policy-reload",
        ] {
            let e = to_event(AuditRecord {
                kind: kind.into(),
                ..AuditRecord::default()
            });
            assert_eq!(
                is_request_kind(kind),
                matches!(e.kind, EventKind::GatewayRequest(_)),
                "{kind}"
            );
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
    fn request_entries_are_the_canonical_event_json() {
        let full = AuditRecord {
            ts_ms: 1_764_196_000_123,
            kind: "request".into(),
            request_id: 42,
            identity: Some("al\"ice\u{e9}\n".into()),
            auth: Some("key".into()),
            source_ip: "127.0.0.1".into(),
            endpoint: "/v1/chat/completions".into(),
            model: Some("m\\1".into()),
            decision: "allow".into(),
            reason: "allowed; stripped logprobs \u{1}".into(),
            status: 200,
            request_bytes: 123,
            response_bytes: 4567,
            prompt_sha256: Some("ab".repeat(32)),
            response_sha256: Some("c\"d".into()),
            gateway_us: 17,
            upstream_us: 2500,
            total_us: 3999,
            outcome: "complete".into(),
            key_id: None,
        };
        let mut records = vec![full.clone()];
        for (i, decision) in ["deny", "error", "other"].into_iter().enumerate() {
            records.push(AuditRecord {
                decision: decision.into(),
                identity: None,
                model: None,
                upstream_us: 0,
                prompt_sha256: None,
                response_sha256: None,
                kind: ["malformed", "alert", "request"][i].into(),
                auth: Some("admin:root".into()),
                ..full.clone()
            });
        }
        records.push(AuditRecord::default());
        // Dates across leap years, month ends and the far future.
        let mut ms: u64 = 0;
        while ms < 400_000_000_000_000 {
            records.push(AuditRecord {
                ts_ms: ms,
                ..full.clone()
            });
            ms = ms * 3 + 86_399_999;
        }
        for d in 0..3000u64 {
            records.push(AuditRecord {
                ts_ms: d * 86_400_000 * 17 + d * 1_001,
                ..AuditRecord::default()
            });
        }
        for r in records {
            let want = to_event(r.clone()).to_entry().unwrap();
            assert_eq!(
                String::from_utf8(request_entry(&r)).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn a_failed_commit_of_queued_records_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let storage = Flaky::healthy(d.path());
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

    /// Ends the stall when dropped (also when a test fails), so the log can close.
    struct Unstall<'a>(&'a Flaky);

    impl Drop for Unstall<'_> {
        fn drop(&mut self) {
            self.0.stall.store(false, Ordering::SeqCst);
        }
    }

    /// A state change (block, lockdown, policy reload) is not refused because request
    /// records fill the queue: it waits behind them, and the sink stays healthy.
    #[test]
    fn a_durable_append_waits_for_a_full_queue_instead_of_failing() {
        let d = tempfile::tempdir().unwrap();
        let storage = Flaky::healthy(d.path());
        let signer = Signer::generate("warden.test/audit").unwrap();
        let options = LogOptions {
            max_queued: 1,
            ..LogOptions::default()
        };
        let log = Log::open(storage.clone(), signer, "warden.test/audit", options).unwrap();
        let sink = TlogSink::new(log.clone());
        let unstall = Unstall(&storage);
        storage.stall.store(true, Ordering::SeqCst);
        let permit = sink.reserve().unwrap();
        assert!(sink.reserve().is_err(), "room for two");
        assert!(sink.healthy(), "a full queue made the sink unready");
        let mut durable = sink.append_durable(AuditRecord {
            kind: "block".into(),
            identity: Some("mallory".into()),
            ..AuditRecord::default()
        });
        assert!(
            (&mut durable).now_or_never().is_none(),
            "a durable append was answered while the disk stalled"
        );
        permit.submit(rec(1)).unwrap();
        drop(unstall);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(durable).unwrap();
        let t0 = std::time::Instant::now();
        while log.size() < 2 {
            assert!(t0.elapsed().as_secs() < 10, "never committed");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(sink.healthy());
        sink.reserve().unwrap();
    }
}
