//! Audit records: one per request (allowed or refused) and one per kill-switch or policy
//! change. They go through the [`AuditSink`] trait; the CLI wires the tamper-evident log.
//! Prompts and responses appear only as SHA-256 hashes; keys and tokens never appear.
//!
//! Every request the gateway admits reserves room for its record first
//! ([`AuditSink::reserve`], held until the response ends), so a record is never lost
//! after the client has its answer; when no room can be reserved (the log's writer fell
//! behind: a stalled or slow disk) the request is refused with 503 and nothing is
//! forwarded (readiness is not affected: a busy gateway is still ready). Records
//! without a reservation (refusals before admission, malformed requests, alerts) use
//! the room reservations left, then a small headroom beyond `max_queued`; one that
//! finds no room is counted, the sink is not ready and admits nothing until its queue
//! has drained, writes a durable `audit-gap` record (`audit gap: n records lost`) and
//! then reopens. Only a record
//! that could not be written (a failed commit, a stopped writer) closes the gateway
//! until it is restarted. State changes (block, lockdown) use
//! [`AuditSink::append_durable`]: never refused for room, acknowledged only once the
//! record is durable.

use crate::Error;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// One audit record.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub ts_ms: u64,
    /// Kind: `request`, `block`, `unblock`, `lockdown`, `lockdown-lift`, `policy-reload`,
    /// `key-created`, `key-revoked`, `admin-denied` (a refused mutating admin call),
    /// `malformed` (refused by the HTTP parser), `alert` (behaviour, drift, screening),
    /// `audit-gap` (records lost while the queue was full; `reason` says how many).
    pub kind: String,
    /// Gateway-local request id.
    pub request_id: u64,
    /// Who (absent when authentication failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// How they authenticated (`key`, `jwt`, `mtls`, `admin`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Client address.
    pub source_ip: String,
    /// Method and path as received (path clipped, query never recorded).
    pub endpoint: String,
    /// Model asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// API key id (`key-created`, `key-revoked`; never key material).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `allow` or `deny` or `error`.
    pub decision: String,
    /// The check and reason (e.g. `authz: default deny`, `limits: requests per minute`).
    pub reason: String,
    /// HTTP status returned.
    pub status: u16,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// SHA-256 of the request body (the prompt), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_sha256: Option<String>,
    /// SHA-256 of the response body as sent, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_sha256: Option<String>,
    /// Time spent in the gateway before forwarding, microseconds.
    pub gateway_us: u64,
    /// Time to the upstream's response headers, microseconds.
    pub upstream_us: u64,
    /// Total, microseconds.
    pub total_us: u64,
    /// How the response ended: `complete`, `cut` (kill switch), `client-gone`,
    /// `upstream-error`, `refused`.
    pub outcome: String,
}

/// Room for one record, reserved with [`AuditSink::reserve`] when a request is admitted
/// and used when its response ends; dropping it unused gives the room back.
#[derive(Debug)]
pub struct AuditPermit(Box<dyn Reserved>);

/// What a sink's permit does with its record.
pub trait Reserved: Send + Sync + std::fmt::Debug {
    /// Queue the record into the reserved room (never refused for room).
    fn submit(self: Box<Self>, rec: AuditRecord) -> Result<(), Error>;
}

impl AuditPermit {
    /// Wrap a sink's permit.
    pub fn new(r: Box<dyn Reserved>) -> Self {
        AuditPermit(r)
    }

    /// Queue the record into the reserved room.
    pub fn submit(self, rec: AuditRecord) -> Result<(), Error> {
        self.0.submit(rec)
    }
}

/// Where audit records go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Reserve room for the record of a request being admitted. An error means the
    /// request must be refused (queue full, a gap not yet recorded, or the sink failed).
    fn reserve(&self) -> Result<AuditPermit, Error>;
    /// Queue a record that holds no reservation (refusals before admission, malformed
    /// requests, alerts) without waiting, into the headroom if need be. An error means
    /// the record could not be queued: it is counted for the next `audit-gap` record.
    fn submit(&self, rec: AuditRecord) -> Result<(), Error>;
    /// Append a state-change record and resolve once it is durable (never refused for
    /// room: it waits behind the queue).
    fn append_durable(&self, rec: AuditRecord) -> BoxFuture<'_, Result<(), Error>>;
    /// Whether the gateway is ready for traffic (`/readyz`): not failed, and no lost
    /// records waiting for their gap record. A queue whose room is all reserved by
    /// requests in flight is busy, not unready: a request that finds no room is refused
    /// (503) by [`AuditSink::reserve`], while readiness does not flap with the load.
    fn healthy(&self) -> bool;
}

/// Headroom for records without a reservation, beyond `max_queued`.
pub fn headroom(max_queued: usize) -> usize {
    (max_queued / 16).clamp(16, 4096)
}

/// A gap record being made durable.
type GapWrite = BoxFuture<'static, Result<(), Error>>;

/// Records lost for want of room, and the `audit-gap` record that reports them.
#[derive(Default)]
pub struct Gap {
    lost: AtomicU64,
    /// The gap record on its way to durable storage, and how many it reports.
    writing: Mutex<Option<(u64, GapWrite)>>,
}

impl std::fmt::Debug for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gap")
            .field("lost", &self.lost.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Gap {
    /// A record could not be queued.
    pub fn lost(&self) {
        if self.lost.fetch_add(1, Ordering::SeqCst) == 0 {
            tracing::error!(
                "audit queue full: a record was lost; refusing requests until it drains"
            );
        }
    }

    /// Records lost and not yet reported (tests, metrics).
    pub fn pending(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }

    /// Whether requests may be admitted: no lost records, or they are reported by a
    /// durable gap record. Once the queue has `drained`, `write` starts the gap record;
    /// the sink reopens when it is durable. An error of the gap record leaves the gap
    /// open (the sink's own failure state closes it for good).
    pub fn open(
        &self,
        drained: bool,
        write: impl FnOnce(AuditRecord) -> BoxFuture<'static, Result<(), Error>>,
    ) -> bool {
        let Ok(mut w) = self.writing.lock() else {
            return false;
        };
        if let Some((n, f)) = w.as_mut() {
            match f.now_or_never() {
                None => return false,
                Some(Ok(())) => *w = None,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "the audit gap record could not be written");
                    // Still unreported: the next gap record counts them.
                    self.lost.fetch_add(*n, Ordering::SeqCst);
                    *w = None;
                    return false;
                }
            }
        }
        if self.lost.load(Ordering::SeqCst) == 0 {
            return true;
        }
        if !drained {
            return false;
        }
        let n = self.lost.swap(0, Ordering::SeqCst);
        tracing::warn!(lost = n, "audit queue drained: recording the gap");
        let mut f = write(AuditRecord {
            ts_ms: now_ms(),
            kind: "audit-gap".into(),
            decision: "error".into(),
            reason: format!("audit gap: {n} records lost (audit queue full)"),
            outcome: "lost".into(),
            ..AuditRecord::default()
        });
        match (&mut f).now_or_never() {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                tracing::error!(error = %e, "the audit gap record could not be written");
                self.lost.fetch_add(n, Ordering::SeqCst);
                false
            }
            None => {
                *w = Some((n, f));
                false
            }
        }
    }
}

type Job = (AuditRecord, Option<oneshot::Sender<Result<(), Error>>>);

/// JSON lines appended to a file, `fsync`ed per batch: the fallback when no
/// tamper-evident log is configured (and what tests read). Its queue is bounded like
/// the log's: `max_queued` records (reserved or queued), plus [`headroom`] for records
/// without a reservation.
#[derive(Debug)]
pub struct JsonlSink {
    tx: mpsc::UnboundedSender<Job>,
    /// Records queued and not yet written, and room held by permits.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    /// False for good once a write failed or the writer stopped.
    healthy: Arc<AtomicBool>,
    gap: Gap,
    path: PathBuf,
}

/// Default queue capacity of a [`JsonlSink`] (`[gateway.audit] max_queued` configures
/// the tamper-evident log, which `warden serve` uses; this sink is for embedding and
/// tests and takes its bound from [`JsonlSink::with_capacity`]).
pub const JSONL_QUEUE: usize = 65_536;

impl JsonlSink {
    /// Open (append) `path` and start the writer task. Must be called inside a runtime.
    pub fn open(path: &Path) -> Result<JsonlSink, Error> {
        JsonlSink::with_capacity(path, JSONL_QUEUE)
    }

    /// [`JsonlSink::open`] with room for at most `max_queued` (at least 1) records
    /// waiting for the writer, plus [`headroom`].
    pub fn with_capacity(path: &Path, max_queued: usize) -> Result<JsonlSink, Error> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|cause| Error::Read {
                path: path.display().to_string(),
                cause,
            })?;
        // Unbounded channel, bounded by `queued`: reservations, room for records
        // without one, and durable records that wait are counted alike.
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let healthy = Arc::new(AtomicBool::new(true));
        let queued = Arc::new(AtomicUsize::new(0));
        let h = Arc::clone(&healthy);
        let q = Arc::clone(&queued);
        let p = path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut w = std::io::BufWriter::new(file);
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                let mut result: Result<(), String> = Ok(());
                for (rec, _) in &batch {
                    if let Err(e) = serde_json::to_writer(&mut w, rec)
                        .map_err(|e| e.to_string())
                        .and_then(|()| w.write_all(b"\n").map_err(|e| e.to_string()))
                    {
                        result = Err(e);
                    }
                }
                if result.is_ok() {
                    result = w
                        .flush()
                        .and_then(|()| w.get_ref().sync_data())
                        .map_err(|e| e.to_string());
                }
                if result.is_err() {
                    h.store(false, Ordering::SeqCst);
                }
                q.fetch_sub(batch.len(), Ordering::AcqRel);
                for (_, ack) in batch {
                    if let Some(ack) = ack {
                        let _ = ack.send(
                            result
                                .clone()
                                .map_err(|e| Error::Audit(format!("{p}: {e}"))),
                        );
                    }
                }
            }
        });
        Ok(JsonlSink {
            tx,
            queued,
            max_queued: max_queued.max(1),
            healthy,
            gap: Gap::default(),
            path: path.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records lost for want of room and not yet reported by a gap record.
    pub fn lost(&self) -> u64 {
        self.gap.pending()
    }

    fn failed(&self) -> bool {
        !self.healthy.load(Ordering::SeqCst) || self.tx.is_closed()
    }

    /// Count one record if fewer than `limit` are.
    fn take(&self, limit: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < limit).then_some(q + 1)
            })
            .is_ok()
    }

    /// Queue a durable record (counted, never refused for room); resolves once written.
    fn durable(&self, rec: AuditRecord) -> BoxFuture<'static, Result<(), Error>> {
        let (ack, done) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send((rec, Some(ack))).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Box::pin(async { Err(Error::Audit("writer stopped".into())) });
        }
        Box::pin(done.map(|r| r.map_err(|_| Error::Audit("writer stopped".into()))?))
    }

    /// Whether requests may be admitted, apart from room: not failed, no gap left
    /// unrecorded.
    fn open_for_requests(&self) -> bool {
        if self.failed() {
            return false;
        }
        let drained = self.queued.load(Ordering::Acquire) <= self.max_queued / 2;
        self.gap.open(drained, |rec| self.durable(rec))
    }
}

/// A [`JsonlSink`] reservation.
#[derive(Debug)]
struct JsonlPermit {
    tx: mpsc::UnboundedSender<Job>,
    queued: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    used: bool,
}

impl Reserved for JsonlPermit {
    fn submit(mut self: Box<Self>, rec: AuditRecord) -> Result<(), Error> {
        if self.tx.send((rec, None)).is_err() {
            self.healthy.store(false, Ordering::SeqCst);
            return Err(Error::Audit("audit writer stopped".into()));
        }
        // The writer gives the room back once the record is written.
        self.used = true;
        Ok(())
    }
}

impl Drop for JsonlPermit {
    fn drop(&mut self) {
        if !self.used {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl AuditSink for JsonlSink {
    fn reserve(&self) -> Result<AuditPermit, Error> {
        if !self.open_for_requests() {
            return Err(Error::Audit(format!(
                "{}: writer failed or records lost",
                self.path.display()
            )));
        }
        if !self.take(self.max_queued) {
            return Err(Error::Audit(format!("{}: queue full", self.path.display())));
        }
        Ok(AuditPermit::new(Box::new(JsonlPermit {
            tx: self.tx.clone(),
            queued: Arc::clone(&self.queued),
            healthy: Arc::clone(&self.healthy),
            used: false,
        })))
    }

    fn submit(&self, rec: AuditRecord) -> Result<(), Error> {
        if self.failed() {
            return Err(Error::Audit(format!(
                "{}: writer failed",
                self.path.display()
            )));
        }
        if !self.take(self.max_queued.saturating_add(headroom(self.max_queued))) {
            // Lost: counted, and reported by a gap record once the queue drains.
            self.gap.lost();
            return Err(Error::Audit(format!("{}: queue full", self.path.display())));
        }
        if self.tx.send((rec, None)).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.healthy.store(false, Ordering::SeqCst);
            return Err(Error::Audit("audit writer stopped".into()));
        }
        Ok(())
    }

    fn append_durable(&self, rec: AuditRecord) -> BoxFuture<'_, Result<(), Error>> {
        self.durable(rec)
    }

    fn healthy(&self) -> bool {
        self.open_for_requests()
    }
}

/// Records kept in memory (unit tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Everything submitted.
    pub records: Arc<Mutex<Vec<AuditRecord>>>,
    /// Set to make the sink fail.
    pub broken: Arc<AtomicBool>,
}

/// A [`MemorySink`] reservation.
#[derive(Debug)]
struct MemoryPermit {
    records: Arc<Mutex<Vec<AuditRecord>>>,
    broken: Arc<AtomicBool>,
}

impl Reserved for MemoryPermit {
    fn submit(self: Box<Self>, rec: AuditRecord) -> Result<(), Error> {
        memory_push(&self.records, &self.broken, rec)
    }
}

fn memory_push(
    records: &Mutex<Vec<AuditRecord>>,
    broken: &AtomicBool,
    rec: AuditRecord,
) -> Result<(), Error> {
    if broken.load(Ordering::SeqCst) {
        return Err(Error::Audit("broken".into()));
    }
    records
        .lock()
        .map_err(|_| Error::Audit("poisoned".into()))?
        .push(rec);
    Ok(())
}

impl AuditSink for MemorySink {
    fn reserve(&self) -> Result<AuditPermit, Error> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Audit("broken".into()));
        }
        Ok(AuditPermit::new(Box::new(MemoryPermit {
            records: Arc::clone(&self.records),
            broken: Arc::clone(&self.broken),
        })))
    }
    fn submit(&self, rec: AuditRecord) -> Result<(), Error> {
        memory_push(&self.records, &self.broken, rec)
    }
    fn append_durable(&self, rec: AuditRecord) -> BoxFuture<'_, Result<(), Error>> {
        let r = self.submit(rec);
        Box::pin(async move { r })
    }
    fn healthy(&self) -> bool {
        !self.broken.load(Ordering::SeqCst)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn rec(id: u64) -> AuditRecord {
        AuditRecord {
            kind: "request".into(),
            request_id: id,
            ..AuditRecord::default()
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Reserved room admits requests up to `max_queued`; records without a reservation
    /// use the headroom, and one beyond it is counted; a durable record waits instead of
    /// failing; once the writer has drained the queue a gap record says how many were
    /// lost and the sink reopens.
    #[test]
    fn a_full_jsonl_queue_refuses_requests_until_the_gap_is_recorded() {
        // One blocking thread, held until `release`: the writer (`spawn_blocking`)
        // cannot start, so records stay queued, as behind a stalled disk.
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.jsonl");
        let (release, wait) = std::sync::mpsc::channel::<()>();
        rt.block_on(async {
            let holder = tokio::task::spawn_blocking(move || {
                let _ = wait.recv();
            });
            let sink = JsonlSink::with_capacity(&path, 2).unwrap();
            let p1 = sink.reserve().unwrap();
            assert!(sink.healthy());
            let p2 = sink.reserve().unwrap();
            assert!(
                sink.reserve().is_err(),
                "a full queue still admits requests"
            );
            assert!(sink.healthy(), "busy (every permit held) is not unready");
            // Refusals still have the headroom, which reservations cannot take.
            for i in 0..headroom(2) {
                sink.submit(rec(100 + i as u64)).unwrap();
            }
            let e = sink.submit(rec(999)).unwrap_err();
            assert!(e.to_string().contains("queue full"), "{e}");
            assert_eq!(sink.lost(), 1);
            assert!(!sink.healthy(), "ready with records lost and unreported");
            let mut durable = sink.append_durable(AuditRecord {
                kind: "lockdown".into(),
                ..AuditRecord::default()
            });
            assert!((&mut durable).now_or_never().is_none(), "durable refused");
            p1.submit(rec(1)).unwrap();
            p2.submit(rec(2)).unwrap();
            release.send(()).unwrap();
            holder.await.unwrap();
            durable.await.unwrap();
            let t0 = Instant::now();
            while sink.reserve().is_err() {
                assert!(t0.elapsed() < Duration::from_secs(10), "never reopened");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(sink.lost(), 0);
            assert!(sink.healthy());
            let all = lines(&path);
            let gaps: Vec<&serde_json::Value> =
                all.iter().filter(|r| r["kind"] == "audit-gap").collect();
            assert_eq!(gaps.len(), 1, "{all:?}");
            assert_eq!(
                gaps[0]["reason"],
                "audit gap: 1 records lost (audit queue full)"
            );
            let ids: Vec<u64> = all
                .iter()
                .filter(|r| r["kind"] == "request")
                .map(|r| r["request_id"].as_u64().unwrap())
                .collect();
            assert_eq!(ids.len(), 2 + headroom(2));
            assert!(ids.contains(&1) && ids.contains(&2) && !ids.contains(&999));
        });
    }

    /// Lost records are reported before the sink reopens: not while the queue is still
    /// full, not while the gap record is on its way, and when that record fails they are
    /// still counted for the next one.
    #[test]
    fn a_gap_reopens_only_once_its_record_is_durable() {
        fn never(_: AuditRecord) -> GapWrite {
            unreachable!("no gap record expected here")
        }
        let gap = Gap::default();
        assert!(gap.open(false, never), "nothing lost");
        gap.lost();
        gap.lost();
        assert!(!gap.open(false, never), "reopened before the queue drained");
        let (tx, rx) = oneshot::channel::<Result<(), Error>>();
        let first = move |r: AuditRecord| -> GapWrite {
            assert_eq!(r.kind, "audit-gap");
            assert_eq!(r.reason, "audit gap: 2 records lost (audit queue full)");
            Box::pin(rx.map(|r| r.unwrap_or_else(|_| Err(Error::Audit("gone".into())))))
        };
        assert!(
            !gap.open(true, first),
            "reopened before the gap record was durable"
        );
        assert!(!gap.open(true, never));
        tx.send(Err(Error::Audit("disk".into()))).unwrap();
        assert!(
            !gap.open(true, never),
            "reopened after the gap record failed"
        );
        assert_eq!(
            gap.pending(),
            2,
            "the failed gap record's count was dropped"
        );
        let second = |r: AuditRecord| -> GapWrite {
            assert!(r.reason.contains("2 records lost"), "{}", r.reason);
            Box::pin(async { Ok(()) })
        };
        assert!(gap.open(true, second));
        assert!(gap.open(true, never));
    }
}
