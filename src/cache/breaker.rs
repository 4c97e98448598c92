//! A circuit breaker around the remote store (docs/architecture.md,
//! "Failure behaviour").
//!
//! Closed: every call goes through; `THRESHOLD` consecutive failures (time
//! outs or connection errors, not server replies such as OOM) open it.
//! Open: calls are refused at once, so no request waits on a store that is
//! down. Requests never probe: a background prober asks [`Breaker::probe_due`]
//! and pings; success closes the breaker, failure reopens it for twice as
//! long (up to `MAX_BACKOFF`), each wait jittered so a fleet of sidecars
//! does not probe in lockstep.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;

/// Consecutive failures that open the circuit: enough to ride out a single
/// dropped packet, few enough that a dead Redis costs a handful of timeouts.
const THRESHOLD: u32 = 3;
/// First open period.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// Longest open period: a recovered Redis is back in use within this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The open period while purges wait for Redis: a write's answer, and
/// every other replica's view of it, waits on the next probe.
const URGENT_BACKOFF: Duration = Duration::from_millis(100);

/// The breaker. Gauges mirror its state.
pub struct Breaker {
    state: Mutex<State>,
    open_gauge: IntGauge,
    up_gauge: IntGauge,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        backoff: Duration,
        since: Instant,
    },
    Probing {
        backoff: Duration,
    },
}

impl Breaker {
    /// A closed breaker reporting through `open_gauge` (1 when open) and
    /// `up_gauge` (1 when the last call or probe succeeded).
    pub fn new(open_gauge: IntGauge, up_gauge: IntGauge) -> Self {
        open_gauge.set(0);
        up_gauge.set(0);
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            open_gauge,
            up_gauge,
        }
    }

    /// Whether a call may go to the store now.
    pub fn allow(&self) -> bool {
        matches!(*self.lock(), State::Closed { .. })
    }

    /// Records a successful call or probe: closes the circuit.
    pub fn success(&self) {
        let mut state = self.lock();
        if !matches!(*state, State::Closed { failures: 0 }) {
            if !matches!(*state, State::Closed { .. }) {
                tracing::info!("cache store reachable again; circuit closed");
            }
            *state = State::Closed { failures: 0 };
        }
        self.open_gauge.set(0);
        self.up_gauge.set(1);
    }

    /// Records a failed call or probe. Returns whether the circuit opened
    /// just now (so the caller can drop its connections).
    pub fn failure(&self) -> bool {
        let mut state = self.lock();
        let was_closed = matches!(*state, State::Closed { .. });
        self.up_gauge.set(0);
        let next = match *state {
            State::Closed { failures } if failures + 1 < THRESHOLD => State::Closed {
                failures: failures + 1,
            },
            State::Closed { .. } => {
                tracing::warn!("cache store failing; circuit open, requests go upstream");
                open(BASE_BACKOFF)
            }
            State::Probing { backoff } | State::Open { backoff, .. } => {
                open((backoff * 2).min(MAX_BACKOFF))
            }
        };
        *state = next;
        let open = !matches!(next, State::Closed { .. });
        self.open_gauge.set(i64::from(open));
        was_closed && open
    }

    /// For the prober: whether the open period is over, in which case the
    /// caller must probe and report [`Breaker::success`] or
    /// [`Breaker::failure`]. `urgent` (purges are waiting) shortens the
    /// period to `URGENT_BACKOFF`: a recovered Redis is then back in use,
    /// and the purges recorded, within a tenth of a second.
    pub fn probe_due(&self, urgent: bool) -> bool {
        let mut state = self.lock();
        match *state {
            State::Open {
                until,
                backoff,
                since,
            } if Instant::now() >= until || (urgent && since.elapsed() >= URGENT_BACKOFF) => {
                *state = State::Probing { backoff };
                true
            }
            _ => false,
        }
    }

    /// `closed`, `open` or `probing`, for `/status`.
    pub fn state(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::Probing { .. } => "probing",
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Held for a copy or an assignment only; nothing can panic under it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Open for `backoff`, jittered by ±20%.
fn open(backoff: Duration) -> State {
    let jitter = 0.8 + fastrand::f64() * 0.4;
    let now = Instant::now();
    State::Open {
        until: now + backoff.mul_f64(jitter),
        backoff,
        since: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            IntGauge::new("open", "open").unwrap(),
            IntGauge::new("up", "up").unwrap(),
        )
    }

    #[test]
    fn opens_after_consecutive_failures_and_closes_on_success() {
        let b = breaker();
        for _ in 0..THRESHOLD - 1 {
            b.failure();
            assert!(b.allow());
        }
        b.success();
        for _ in 0..THRESHOLD - 1 {
            b.failure();
        }
        assert!(b.allow(), "a success resets the count");
        b.failure();
        assert!(!b.allow());
        assert_eq!(b.state(), "open");
        assert_eq!(b.open_gauge.get(), 1);
        b.success();
        assert!(b.allow());
        assert_eq!((b.open_gauge.get(), b.up_gauge.get()), (0, 1));
    }

    #[test]
    fn probes_only_after_the_open_period_and_backs_off() {
        let b = breaker();
        for _ in 0..THRESHOLD {
            b.failure();
        }
        assert!(!b.probe_due(false), "not before the backoff");
        std::thread::sleep(BASE_BACKOFF.mul_f64(1.25));
        assert!(b.probe_due(false));
        assert!(!b.probe_due(false), "one probe at a time");
        assert!(!b.allow(), "requests still skip the store while probing");
        b.failure();
        let State::Open { backoff, .. } = *b.lock() else {
            panic!("reopened")
        };
        assert_eq!(backoff, BASE_BACKOFF * 2);
    }

    #[test]
    fn waiting_purges_make_the_probes_come_every_tenth_of_a_second() {
        let b = breaker();
        for _ in 0..THRESHOLD + 4 {
            b.failure(); // open, and backed off well past a second
        }
        std::thread::sleep(URGENT_BACKOFF.mul_f64(1.2));
        assert!(!b.probe_due(false), "the backoff holds without purges");
        assert!(b.probe_due(true), "purges are waiting");
    }
}
