//! Prometheus metrics for the admin listener: request counts by endpoint and status,
//! requests in flight, and a histogram of the time the gateway itself adds before
//! forwarding; screening verdicts, alerts by kind and alert delivery failures.

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
    /// Open client connections on the public listener.
    pub connections: AtomicI64,
    /// Connections closed at accept because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Screening verdicts, alerts and alert delivery.
    pub screening: std::sync::Arc<ScreenCounters>,
}

/// Screening counters (shared with [`crate::screening::Screening`]).
#[derive(Debug, Default)]
pub struct ScreenCounters {
    input: [AtomicU64; 3],
    output_pass: AtomicU64,
    output_block: AtomicU64,
    alerts: Mutex<BTreeMap<&'static str, u64>>,
    sink_failures: Mutex<BTreeMap<&'static str, u64>>,
    dropped: AtomicU64,
    throttled: AtomicU64,
}

impl ScreenCounters {
    /// One input verdict.
    pub fn input(&self, a: warden_screen::Action) {
        let i = match a {
            warden_screen::Action::Pass => 0,
            warden_screen::Action::Flag => 1,
            warden_screen::Action::Block => 2,
        };
        if let Some(c) = self.input.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// One screened response.
    pub fn output(&self, blocked: bool) {
        if blocked {
            &self.output_block
        } else {
            &self.output_pass
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    /// One alert raised.
    pub fn alert(&self, kind: &'static str) {
        if let Ok(mut m) = self.alerts.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }
    /// One delivery failure.
    pub fn sink_failure(&self, sink: &'static str) {
        if let Ok(mut m) = self.sink_failures.lock() {
            *m.entry(sink).or_default() += 1;
        }
    }
    /// One alert dropped because the queue was full.
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
    /// One request refused by a throttle.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }
    /// Alerts raised of `kind` so far.
    pub fn alerts_of(&self, kind: &str) -> u64 {
        self.alerts
            .lock()
            .map(|m| m.get(kind).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn render(&self, s: &mut String) {
        s.push_str("# TYPE warden_screen_verdicts_total counter\n");
        for (i, a) in ["pass", "flag", "block"].iter().enumerate() {
            let n = self.input.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                s,
                "warden_screen_verdicts_total{{stage=\"input\",action=\"{a}\"}} {n}"
            );
        }
        for (a, c) in [("pass", &self.output_pass), ("block", &self.output_block)] {
            let _ = writeln!(
                s,
                "warden_screen_verdicts_total{{stage=\"output\",action=\"{a}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        s.push_str("# TYPE warden_screen_alerts_total counter\n");
        if let Ok(m) = self.alerts.lock() {
            for (k, n) in m.iter() {
                let _ = writeln!(s, "warden_screen_alerts_total{{kind=\"{k}\"}} {n}");
            }
        }
        s.push_str("# TYPE warden_screen_alert_sink_failures_total counter\n");
        if let Ok(m) = self.sink_failures.lock() {
            for (k, n) in m.iter() {
                let _ = writeln!(
                    s,
                    "warden_screen_alert_sink_failures_total{{sink=\"{k}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# TYPE warden_screen_alerts_dropped_total counter\nwarden_screen_alerts_dropped_total {}",
            self.dropped.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# TYPE warden_screen_throttled_total counter\nwarden_screen_throttled_total {}",
            self.throttled.load(Ordering::Relaxed)
        );
    }
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
        let _ = writeln!(
            s,
            "# TYPE warden_gateway_connections gauge\nwarden_gateway_connections {}",
            self.connections.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# TYPE warden_gateway_connections_refused_total counter\nwarden_gateway_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
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
        self.screening.render(&mut s);
        s
    }
}
