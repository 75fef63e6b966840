//! Per-identity limits: requests per minute and tokens per minute as token buckets, and a
//! cap on requests in flight. The in-flight cap is taken right after authentication
//! ([`Limiter::enter`], before the body is read); requests and tokens are charged after
//! validation ([`Limiter::charge`]). Tokens are reserved before forwarding (prompt
//! estimate + `max_tokens`) and reconciled from the upstream's reported usage when the
//! response ends.

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

impl Entry {
    fn full(limits: LimitsConfig, now: Instant) -> Self {
        Entry {
            requests: Bucket::full(f64::from(limits.requests_per_minute), now),
            tokens: Bucket::full(limits.tokens_per_minute as f64, now),
            inflight: 0,
        }
    }
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
    /// Take one of `identity`'s concurrency slots, or say how long to wait. The
    /// admission holds the slot until dropped; [`Limiter::charge`] then reserves the
    /// request's share of the per-minute limits. Taken right after authentication,
    /// before the body is read, so a client trickling bodies holds at most its
    /// concurrency cap of requests (and of the audit room they reserved).
    pub fn enter(
        self: &Arc<Self>,
        identity: &str,
        limits: LimitsConfig,
    ) -> Result<Admission, Limited> {
        let now = Instant::now();
        let mut s = self.state.lock().map_err(|_| Limited {
            which: "limiter unavailable",
            retry_after: 1,
        })?;
        let e = s
            .entry(identity.to_owned())
            .or_insert_with(|| Entry::full(limits, now));
        if e.inflight >= limits.concurrency {
            return Err(Limited {
                which: "concurrent requests",
                retry_after: 1,
            });
        }
        e.inflight += 1;
        Ok(Admission {
            limiter: Arc::clone(self),
            identity: identity.to_owned(),
            limits,
            reserved: 0,
            actual: None,
        })
    }

    /// Charge one request and `tokens` to an admission from [`Limiter::enter`] (its
    /// limits), or say how long to wait (the caller drops the admission, which frees
    /// its slot).
    pub fn charge(&self, a: &mut Admission, tokens: u64) -> Result<(), Limited> {
        let now = Instant::now();
        let limits = a.limits;
        let rcap = f64::from(limits.requests_per_minute);
        let tcap = limits.tokens_per_minute as f64;
        let mut s = self.state.lock().map_err(|_| Limited {
            which: "limiter unavailable",
            retry_after: 1,
        })?;
        // Entries are never removed, so the one `enter` made is still there.
        let e = s
            .entry(a.identity.clone())
            .or_insert_with(|| Entry::full(limits, now));
        e.requests.refill(rcap, rcap, now);
        e.tokens.refill(tcap, tcap, now);
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
        a.reserved = a.reserved.saturating_add(tokens);
        Ok(())
    }

    /// Admit one request of `identity` reserving `tokens` ([`Limiter::enter`], then
    /// [`Limiter::charge`]), or say how long to wait.
    pub fn admit(
        self: &Arc<Self>,
        identity: &str,
        limits: LimitsConfig,
        tokens: u64,
    ) -> Result<Admission, Limited> {
        let mut a = self.enter(identity, limits)?;
        self.charge(&mut a, tokens)?;
        Ok(a)
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

    /// The slot is taken first (before the body); a refused charge frees it.
    #[test]
    fn a_slot_is_held_before_charging_and_freed_by_a_refused_charge() {
        let l = Arc::new(Limiter::default());
        let mut a = l.enter("a", lim(1, 100, 1)).unwrap();
        assert_eq!(
            l.enter("a", lim(1, 100, 1)).unwrap_err().which,
            "concurrent requests"
        );
        assert!(l.enter("b", lim(1, 100, 1)).is_ok(), "per identity");
        l.charge(&mut a, 10).unwrap();
        drop(a);
        let mut b = l.enter("a", lim(1, 100, 1)).unwrap();
        assert_eq!(
            l.charge(&mut b, 1).unwrap_err().which,
            "requests per minute"
        );
        drop(b);
        assert!(l.enter("a", lim(1, 100, 1)).is_ok(), "slot not freed");
    }
}
