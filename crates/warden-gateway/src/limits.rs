//! Per-identity limits: requests per minute and tokens per minute as token buckets, and a
//! cap on requests in flight. The in-flight cap is taken right after authentication
//! ([`Limiter::enter`], before the body is read); requests and tokens are charged after
//! validation ([`Limiter::charge`]). Tokens are reserved before forwarding (prompt
//! estimate + `max_tokens`) and reconciled from the upstream's reported usage when the
//! response ends.
//!
//! Memory: an identity's entry is forgotten once it is indistinguishable from a fresh
//! one whatever limits its next request comes under (nothing in flight, both buckets
//! untouched for a minute and not overdrawn: every limit refills its cap per minute;
//! an overdrawn bucket is judged under the limits it was last used under), so the map
//! holds the identities active in about the last minute, not every subject an IdP
//! ever issued.
//! Forgetting is amortised: a sweep runs when the map has doubled since the last one
//! (and has at least 1024 entries), so a request costs O(1) on average.

use crate::config::LimitsConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The map is swept only once it holds at least this many entries.
const SWEEP_MIN: usize = 1024;

#[derive(Debug, Clone, Copy)]
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
        // Monotonic: a caller that read the clock before another took the lock must
        // not move `at` back (the interval between would be refilled twice).
        self.at = self.at.max(now);
    }
    /// Seconds until `n` is available.
    fn wait_for(&self, n: f64, per_min: f64) -> u64 {
        if per_min <= 0.0 {
            return 60;
        }
        let missing = (n - self.level).max(0.0);
        ((missing * 60.0 / per_min).ceil() as u64).clamp(1, 3600)
    }
    /// Whether the bucket is full at `now` under any limits: every limit refills its
    /// cap per minute, so a bucket at zero or more is full a minute later whatever the
    /// cap. One that went negative (an overrun charged on completion) is judged under
    /// `cap`, the limits it was last used under.
    fn idle_at(&self, cap: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        if self.level >= 0.0 {
            dt >= 60.0
        } else {
            let mut b = *self;
            b.refill(cap, cap, now);
            dt >= 60.0 && b.level >= cap
        }
    }
}

#[derive(Debug)]
struct Entry {
    requests: Bucket,
    tokens: Bucket,
    inflight: u32,
    /// The limits the identity was last admitted or charged under (they follow its roles).
    limits: LimitsConfig,
}

impl Entry {
    fn full(limits: LimitsConfig, now: Instant) -> Self {
        Entry {
            requests: Bucket::full(f64::from(limits.requests_per_minute), now),
            tokens: Bucket::full(limits.tokens_per_minute as f64, now),
            inflight: 0,
            limits,
        }
    }

    /// Whether the entry is indistinguishable from [`Entry::full`] at `now`, whatever
    /// limits the identity's next request comes under (they follow its credential and
    /// roles, and a reload): nothing in flight and both buckets full under any caps
    /// (see `Bucket::idle_at`). Every later decision is then the same with the entry
    /// as without it.
    fn idle(&self, now: Instant) -> bool {
        self.inflight == 0
            && self
                .requests
                .idle_at(f64::from(self.limits.requests_per_minute), now)
            && self
                .tokens
                .idle_at(self.limits.tokens_per_minute as f64, now)
    }
}

#[derive(Debug, Default)]
struct State {
    map: HashMap<String, Entry>,
    /// Sweep when the map reaches this size (at least [`SWEEP_MIN`]).
    sweep_at: usize,
}

impl State {
    /// Forget idle entries when the map has grown enough since the last sweep: a sweep
    /// of n entries happens after at least max(n/2, [`SWEEP_MIN`]/2) new identities.
    fn maybe_sweep(&mut self, now: Instant) {
        if self.map.len() < self.sweep_at.max(SWEEP_MIN) {
            return;
        }
        self.map.retain(|_, e| !e.idle(now));
        let len = self.map.len();
        self.sweep_at = len.saturating_mul(2);
        if self.map.capacity() > len.max(SWEEP_MIN).saturating_mul(4) {
            self.map.shrink_to(len.saturating_mul(2));
        }
    }
}

/// A refusal by the limiter: 429 with `Retry-After`, or (`retry_after` None) a request
/// that needs more tokens than its per-minute limit ever holds, which no wait admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Which limit.
    pub which: &'static str,
    /// Seconds to wait; None: waiting never helps.
    pub retry_after: Option<u64>,
}

/// The limiter shared by every request.
#[derive(Debug, Default)]
pub struct Limiter {
    state: Mutex<State>,
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
            && let Some(e) = s.map.get_mut(&self.identity)
        {
            e.inflight = e.inflight.saturating_sub(1);
            if let Some(actual) = self.actual {
                let cap = self.limits.tokens_per_minute as f64;
                // Refund what was reserved but not used; charge overruns, but at most
                // into one minute's debt: the usage is the upstream's word, and an
                // absurd number (`u64::MAX`) must not lock the identity out for ever
                // (nor keep its entry from ever being forgotten).
                e.tokens.level =
                    (e.tokens.level + self.reserved as f64 - actual as f64).clamp(-cap, cap);
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
        self.enter_at(identity, limits, Instant::now())
    }

    fn enter_at(
        self: &Arc<Self>,
        identity: &str,
        limits: LimitsConfig,
        now: Instant,
    ) -> Result<Admission, Limited> {
        let mut s = self.state.lock().map_err(|_| Limited {
            which: "limiter unavailable",
            retry_after: Some(1),
        })?;
        s.maybe_sweep(now);
        let e = s
            .map
            .entry(identity.to_owned())
            .or_insert_with(|| Entry::full(limits, now));
        e.limits = limits;
        if e.inflight >= limits.concurrency {
            return Err(Limited {
                which: "concurrent requests",
                retry_after: Some(1),
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
        self.charge_at(a, tokens, Instant::now())
    }

    fn charge_at(&self, a: &mut Admission, tokens: u64, now: Instant) -> Result<(), Limited> {
        let limits = a.limits;
        let rcap = f64::from(limits.requests_per_minute);
        let tcap = limits.tokens_per_minute as f64;
        let mut s = self.state.lock().map_err(|_| Limited {
            which: "limiter unavailable",
            retry_after: Some(1),
        })?;
        // Entries with requests in flight are never removed, so the one `enter` made
        // (which `a` holds a slot of) is still there.
        let e = s
            .map
            .entry(a.identity.clone())
            .or_insert_with(|| Entry::full(limits, now));
        e.limits = limits;
        e.requests.refill(rcap, rcap, now);
        e.tokens.refill(tcap, tcap, now);
        if e.requests.level < 1.0 {
            return Err(Limited {
                which: "requests per minute",
                retry_after: Some(e.requests.wait_for(1.0, rcap)),
            });
        }
        let t = tokens as f64;
        if e.tokens.level < t {
            return Err(Limited {
                which: "tokens per minute",
                // More than the bucket ever holds: "retry in 60 s" would be a lie that
                // clients follow for ever.
                retry_after: (t <= tcap).then(|| e.tokens.wait_for(t, tcap)),
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
        self.admit_at(identity, limits, tokens, Instant::now())
    }

    fn admit_at(
        self: &Arc<Self>,
        identity: &str,
        limits: LimitsConfig,
        tokens: u64,
        now: Instant,
    ) -> Result<Admission, Limited> {
        let mut a = self.enter_at(identity, limits, now)?;
        self.charge_at(&mut a, tokens, now)?;
        Ok(a)
    }

    /// Identities remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        assert!(
            e.retry_after.is_some_and(|s| (1..=30).contains(&s)),
            "{e:?}"
        );
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

    /// Every distinct subject adds an entry; once their buckets have refilled, they are
    /// forgotten, so the map stays bounded however many identities come and go.
    #[test]
    fn identities_whose_buckets_refilled_are_forgotten() {
        let l = Arc::new(Limiter::default());
        let t0 = Instant::now();
        for round in 0..10u64 {
            // A minute and a bit later: every earlier round's buckets are full again.
            let now = t0 + Duration::from_secs(61 * round);
            for i in 0..1000 {
                let a = l
                    .admit_at(&format!("sub-{round}-{i}"), lim(60, 1000, 2), 10, now)
                    .unwrap();
                drop(a);
                assert!(l.len() <= 2 * SWEEP_MIN, "{} identities kept", l.len());
            }
        }
        assert!(l.len() <= 2 * SWEEP_MIN, "{} identities kept", l.len());
    }

    /// A sweep keeps what still matters: a partly drained bucket and requests in flight
    /// go on limiting their identity.
    #[test]
    fn a_sweep_keeps_drained_buckets_and_requests_in_flight() {
        let l = Arc::new(Limiter::default());
        let t0 = Instant::now();
        // Many identities that only took (and gave back) a slot: idle a minute later.
        for i in 0..3 * SWEEP_MIN {
            drop(
                l.enter_at(&format!("idle-{i}"), lim(2, 1000, 10), t0)
                    .unwrap(),
            );
        }
        let t1 = t0 + Duration::from_secs(61);
        // Two requests per minute, both used.
        drop(l.admit_at("drained", lim(2, 1000, 10), 1, t1).unwrap());
        drop(l.admit_at("drained", lim(2, 1000, 10), 1, t1).unwrap());
        // Tokens nearly used up, the request bucket full again a minute later.
        let mut t = l.admit_at("tokens", lim(100, 100, 10), 90, t1).unwrap();
        t.set_actual(95);
        drop(t);
        // One request in flight with a concurrency of one, its buckets full again later.
        let held = l.enter_at("held", lim(100, 1000, 1), t1).unwrap();
        // New identities until the next sweep.
        let later = t1 + Duration::from_secs(5);
        for i in 0..SWEEP_MIN + 100 {
            drop(
                l.enter_at(&format!("new-{i}"), lim(2, 1000, 10), later)
                    .unwrap(),
            );
        }
        assert!(l.len() < 2 * SWEEP_MIN, "nothing swept: {}", l.len());
        assert_eq!(
            l.admit_at("drained", lim(2, 1000, 10), 1, later)
                .unwrap_err()
                .which,
            "requests per minute"
        );
        assert_eq!(
            l.admit_at("tokens", lim(100, 100, 10), 50, later)
                .unwrap_err()
                .which,
            "tokens per minute"
        );
        assert_eq!(
            l.enter_at("held", lim(100, 1000, 1), later)
                .unwrap_err()
                .which,
            "concurrent requests"
        );
        drop(held);
        assert!(l.enter_at("held", lim(100, 1000, 1), later).is_ok());
    }

    /// Idleness does not depend on the limits of the last request: a bucket drained
    /// under big limits is not forgotten after one request under small ones (which
    /// would hand the next big-limit request a fresh bucket).
    #[test]
    fn a_bucket_drained_under_big_limits_is_kept_after_small_ones() {
        let l = Arc::new(Limiter::default());
        let t0 = Instant::now();
        let big = lim(100, 10_000, 10);
        let small = lim(100, 1000, 10);
        drop(l.admit_at("x", big, 9000, t0).unwrap());
        drop(l.admit_at("x", small, 1, t0).unwrap());
        let later = t0 + Duration::from_secs(2);
        for i in 0..2 * SWEEP_MIN {
            drop(l.enter_at(&format!("other-{i}"), small, later).unwrap());
        }
        assert_eq!(
            l.admit_at("x", big, 5000, later + Duration::from_secs(1))
                .unwrap_err()
                .which,
            "tokens per minute"
        );
    }

    /// A request needing more tokens than the per-minute limit holds is refused without
    /// a retry time (no wait admits it); one that fits later gets its wait.
    #[test]
    fn a_request_over_the_per_minute_token_cap_gets_no_retry_time() {
        let l = Arc::new(Limiter::default());
        let e = l.admit("a", lim(100, 1000, 10), 1001).unwrap_err();
        assert_eq!((e.which, e.retry_after), ("tokens per minute", None));
        let _a = l.admit("a", lim(100, 1000, 10), 600).unwrap();
        let e = l.admit("a", lim(100, 1000, 10), 600).unwrap_err();
        assert!(
            e.retry_after.is_some_and(|s| (1..=60).contains(&s)),
            "{e:?}"
        );
    }

    /// An upstream reporting absurd usage (`u64::MAX` tokens) overdraws the identity by
    /// at most one minute's worth: two minutes later it is served again.
    #[test]
    fn hostile_usage_overdraws_at_most_one_minute() {
        let l = Arc::new(Limiter::default());
        let t0 = Instant::now();
        let mut a = l.admit_at("a", lim(100, 1000, 10), 100, t0).unwrap();
        a.set_actual(u64::MAX);
        drop(a);
        let later = t0 + Duration::from_secs(121);
        assert!(
            l.admit_at("a", lim(100, 1000, 10), 500, later).is_ok(),
            "locked out by the upstream's usage figure"
        );
    }

    /// A request timed before another one that got the lock first does not move the
    /// buckets' clock back (which would refill the same interval twice).
    #[test]
    fn refill_never_moves_the_clock_back() {
        let mut b = Bucket::full(60.0, Instant::now());
        let t0 = b.at + Duration::from_secs(10);
        b.level = 0.0;
        b.refill(60.0, 60.0, t0);
        assert!((b.level - 10.0).abs() < 1e-9);
        b.level = 0.0;
        b.refill(60.0, 60.0, t0 - Duration::from_secs(5));
        b.refill(60.0, 60.0, t0);
        assert!(b.level.abs() < 1e-9, "refilled twice: {}", b.level);
    }
}
