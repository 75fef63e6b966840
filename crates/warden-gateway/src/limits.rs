//! Per-identity limits: requests per minute and tokens per minute as token buckets, and a
//! cap on requests in flight. Tokens are reserved before forwarding (prompt estimate +
//! `max_tokens`) and reconciled from the upstream's reported usage when the response ends.

use crate::config::LimitsConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(cap: f64, now: Instant) -> Self {
        Bucket {
            level: cap,
            at: now,
        }
    }
    fn refill(&mut self, cap: f64, per_min: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * per_min / 60.0).min(cap);
        self.at = now;
    }
    /// Seconds until `n` is available.
    fn wait_for(&self, n: f64, per_min: f64) -> u64 {
        if per_min <= 0.0 {
            return 60;
        }
        let missing = (n - self.level).max(0.0);
        ((missing * 60.0 / per_min).ceil() as u64).clamp(1, 3600)
    }
}

#[derive(Debug)]
struct Entry {
    requests: Bucket,
    tokens: Bucket,
    inflight: u32,
}

/// A refusal by the limiter: 429 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Which limit.
    pub which: &'static str,
    /// Seconds to wait.
    pub retry_after: u64,
}

/// The limiter shared by every request.
#[derive(Debug, Default)]
pub struct Limiter {
    state: Mutex<HashMap<String, Entry>>,
}

/// An admitted request: holds its concurrency slot and token reservation until dropped.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<Limiter>,
    identity: String,
    limits: LimitsConfig,
    reserved: u64,
    actual: Option<u64>,
}

impl Admission {
    /// Record the upstream's reported usage (reconciled on drop).
    pub fn set_actual(&mut self, tokens: u64) {
        self.actual = Some(tokens);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut s) = self.limiter.state.lock()
            && let Some(e) = s.get_mut(&self.identity)
        {
            e.inflight = e.inflight.saturating_sub(1);
            if let Some(actual) = self.actual {
                let cap = self.limits.tokens_per_minute as f64;
                // Refund what was reserved but not used; charge overruns.
                e.tokens.level = (e.tokens.level + self.reserved as f64 - actual as f64).min(cap);
            }
        }
    }
}

impl Limiter {
    /// Admit one request of `identity` reserving `tokens`, or say how long to wait.
    pub fn admit(
        self: &Arc<Self>,
        identity: &str,
        limits: LimitsConfig,
        tokens: u64,
    ) -> Result<Admission, Limited> {
        let now = Instant::now();
        let rcap = f64::from(limits.requests_per_minute);
        let tcap = limits.tokens_per_minute as f64;
        let mut s = self.state.lock().map_err(|_| Limited {
            which: "limiter unavailable",
            retry_after: 1,
        })?;
        let e = s.entry(identity.to_owned()).or_insert_with(|| Entry {
            requests: Bucket::full(rcap, now),
            tokens: Bucket::full(tcap, now),
            inflight: 0,
        });
        e.requests.refill(rcap, rcap, now);
        e.tokens.refill(tcap, tcap, now);
        if e.inflight >= limits.concurrency {
            return Err(Limited {
                which: "concurrent requests",
                retry_after: 1,
            });
        }
        if e.requests.level < 1.0 {
            return Err(Limited {
                which: "requests per minute",
                retry_after: e.requests.wait_for(1.0, rcap),
            });
        }
        let t = tokens as f64;
        if e.tokens.level < t {
            return Err(Limited {
                which: "tokens per minute",
                retry_after: if t > tcap {
                    60
                } else {
                    e.tokens.wait_for(t, tcap)
                },
            });
        }
        e.requests.level -= 1.0;
        e.tokens.level -= t;
        e.inflight += 1;
        Ok(Admission {
            limiter: Arc::clone(self),
            identity: identity.to_owned(),
            limits,
            reserved: tokens,
            actual: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(rpm: u32, tpm: u64, c: u32) -> LimitsConfig {
        LimitsConfig {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            concurrency: c,
        }
    }

    #[test]
    fn requests_per_minute() {
        let l = Arc::new(Limiter::default());
        let a = l.admit("a", lim(2, 1000, 10), 1).unwrap();
        let b = l.admit("a", lim(2, 1000, 10), 1).unwrap();
        let e = l.admit("a", lim(2, 1000, 10), 1).unwrap_err();
        assert_eq!(e.which, "requests per minute");
        assert!(e.retry_after >= 1 && e.retry_after <= 30, "{e:?}");
        assert!(
            l.admit("b", lim(2, 1000, 10), 1).is_ok(),
            "other identities are independent"
        );
        drop((a, b));
    }

    #[test]
    fn concurrency_and_token_reconciliation() {
        let l = Arc::new(Limiter::default());
        let a = l.admit("a", lim(100, 100, 1), 60).unwrap();
        assert_eq!(
            l.admit("a", lim(100, 100, 1), 1).unwrap_err().which,
            "concurrent requests"
        );
        let mut a = a;
        a.set_actual(10);
        drop(a);
        // 60 reserved, 10 used: 90 left (≈, the bucket also refills slowly).
        let b = l.admit("a", lim(100, 100, 1), 85).unwrap();
        drop(b);
        let e = l.admit("a", lim(100, 100, 1), 50).unwrap_err();
        assert_eq!(e.which, "tokens per minute");
    }
}
