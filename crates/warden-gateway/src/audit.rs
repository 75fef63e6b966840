//! Audit records: one per request (allowed or refused) and one per kill-switch or policy
//! change. They go through the [`AuditSink`] trait; the CLI wires the tamper-evident log.
//! Prompts and responses appear only as SHA-256 hashes; keys and tokens never appear.
//!
//! Request records are queued (bounded) to a writer so the hot path never waits on disk.
//! While a sink's queue is full it reports itself unhealthy, and once a record could not
//! be queued or written it stays so: the gateway fails closed and refuses new requests
//! with 503 (nothing forwarded, `/readyz` not ready) until it is restarted. State changes (block, lockdown) use
//! [`AuditSink::append_durable`] and are acknowledged only after the record is durable.

use crate::Error;
use futures_util::future::BoxFuture;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};

/// One audit record.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AuditRecord {
    /// Unix milliseconds.
    pub ts_ms: u64,
    /// Kind: `request`, `block`, `unblock`, `lockdown`, `lockdown-lift`, `policy-reload`,
    /// `key-created`, `key-revoked`, `admin-denied` (a refused mutating admin call),
    /// `malformed` (refused by the HTTP parser), `alert` (behaviour, drift, screening).
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

/// Where audit records go.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Queue a request record without waiting. An error means the record could not be
    /// queued (the gateway then fails closed).
    fn submit(&self, rec: AuditRecord) -> Result<(), Error>;
    /// Append a state-change record and resolve once it is durable.
    fn append_durable(&self, rec: AuditRecord) -> BoxFuture<'_, Result<(), Error>>;
    /// Whether the sink is accepting records.
    fn healthy(&self) -> bool;
}

type Job = (AuditRecord, Option<oneshot::Sender<Result<(), Error>>>);

/// JSON lines appended to a file, `fsync`ed per batch: the fallback when no
/// tamper-evident log is configured (and what tests read).
#[derive(Debug)]
pub struct JsonlSink {
    tx: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
    path: PathBuf,
}

/// Default queue capacity of a [`JsonlSink`].
pub const JSONL_QUEUE: usize = 65_536;

impl JsonlSink {
    /// Open (append) `path` and start the writer task. Must be called inside a runtime.
    pub fn open(path: &Path) -> Result<JsonlSink, Error> {
        JsonlSink::with_capacity(path, JSONL_QUEUE)
    }

    /// [`JsonlSink::open`] with at most `capacity` (at least 1) records waiting for the
    /// writer.
    pub fn with_capacity(path: &Path, capacity: usize) -> Result<JsonlSink, Error> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|cause| Error::Read {
                path: path.display().to_string(),
                cause,
            })?;
        let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let h = Arc::clone(&healthy);
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
            healthy,
            path: path.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for JsonlSink {
    fn submit(&self, rec: AuditRecord) -> Result<(), Error> {
        // Not `healthy()`: a full queue must be tried, so that a lost record is noticed.
        if !self.healthy.load(Ordering::SeqCst) || self.tx.is_closed() {
            return Err(Error::Audit(format!(
                "{}: writer failed",
                self.path.display()
            )));
        }
        // A record that cannot be queued is lost: fail closed, as for a failed write.
        self.tx.try_send((rec, None)).map_err(|_| {
            self.healthy.store(false, Ordering::SeqCst);
            Error::Audit(format!("{}: queue full", self.path.display()))
        })
    }

    fn append_durable(&self, rec: AuditRecord) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send((rec, Some(tx)))
                .await
                .map_err(|_| Error::Audit("writer stopped".into()))?;
            rx.await
                .map_err(|_| Error::Audit("writer stopped".into()))?
        })
    }

    fn healthy(&self) -> bool {
        // A full queue would lose the next record: admit nothing until it has room.
        self.healthy.load(Ordering::SeqCst) && !self.tx.is_closed() && self.tx.capacity() > 0
    }
}

/// Records kept in memory (unit tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Everything submitted.
    pub records: std::sync::Mutex<Vec<AuditRecord>>,
    /// Set to make the sink fail.
    pub broken: AtomicBool,
}

impl AuditSink for MemorySink {
    fn submit(&self, rec: AuditRecord) -> Result<(), Error> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Audit("broken".into()));
        }
        self.records
            .lock()
            .map_err(|_| Error::Audit("poisoned".into()))?
            .push(rec);
        Ok(())
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

    /// A full queue admits nothing, a record that cannot be queued makes the sink fail
    /// closed, and it stays so after the writer has drained the queue.
    #[test]
    fn a_full_jsonl_queue_fails_closed_for_good() {
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
            sink.submit(rec(1)).unwrap();
            assert!(sink.healthy());
            sink.submit(rec(2)).unwrap();
            assert!(!sink.healthy(), "a full queue still admits requests");
            let e = sink.submit(rec(3)).unwrap_err();
            assert!(e.to_string().contains("queue full"), "{e}");
            release.send(()).unwrap();
            holder.await.unwrap();
            let t0 = Instant::now();
            while std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count()
                < 2
            {
                assert!(t0.elapsed() < Duration::from_secs(10), "never written");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Record 3 was lost: the sink does not recover with the writer.
            assert!(!sink.healthy(), "healthy again after losing a record");
            assert!(sink.submit(rec(4)).is_err());
            let ids: Vec<u64> = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert_eq!(ids, [1, 2]);
        });
    }
}
