//! Prometheus metrics for the admin listener: request counts by endpoint and status,
//! requests in flight, and a histogram of the time the gateway itself adds before
//! forwarding.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const BUCKETS_US: [u64; 10] = [25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 50_000];

/// Counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Requests in flight.
    pub inflight: AtomicI64,
    buckets: [AtomicU64; BUCKETS_US.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
    /// Streams cut by the kill switch.
    pub streams_cut: AtomicU64,
}

impl Metrics {
    /// Count one finished request.
    pub fn request(&self, endpoint: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint.to_owned(), status)).or_default() += 1;
        }
    }

    /// Observe the gateway's own processing time before forwarding.
    pub fn gateway_time(&self, us: u64) {
        for (i, b) in BUCKETS_US.iter().enumerate() {
            if us <= *b
                && let Some(c) = self.buckets.get(i)
            {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# TYPE warden_gateway_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((ep, st), n) in m.iter() {
                let _ = writeln!(
                    s,
                    "warden_gateway_requests_total{{endpoint=\"{ep}\",status=\"{st}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# TYPE warden_gateway_inflight gauge\nwarden_gateway_inflight {}",
            self.inflight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# TYPE warden_gateway_streams_cut_total counter\nwarden_gateway_streams_cut_total {}",
            self.streams_cut.load(Ordering::Relaxed)
        );
        s.push_str("# TYPE warden_gateway_added_seconds histogram\n");
        for (i, b) in BUCKETS_US.iter().enumerate() {
            let n = self.buckets.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                s,
                "warden_gateway_added_seconds_bucket{{le=\"{}\"}} {n}",
                *b as f64 / 1e6
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "warden_gateway_added_seconds_bucket{{le=\"+Inf\"}} {count}\nwarden_gateway_added_seconds_sum {}\nwarden_gateway_added_seconds_count {count}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        s
    }
}
