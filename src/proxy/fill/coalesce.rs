//! Request coalescing (single flight): concurrent misses for one key make one
//! upstream request (docs/architecture.md, "Failure behaviour").
//!
//! The first request for a key becomes the leader of a [`Flight`]; later ones
//! [`Follower::wait`] for its outcome, at most `coalesce.wait_timeout`, then
//! go upstream themselves (and do not store). The leader's fetch runs in its
//! own task, so a leader whose client disconnects does not cancel the fill
//! for its followers. A flight dropped without an outcome (a panic, a bug)
//! closes the channel and followers go upstream at once.
//!
//! When the outcome is "not cacheable", followers are released at once and
//! the key is remembered as uncacheable for a short while, so later requests
//! skip waiting (Varnish's hit-for-miss). Remembering never stops a later
//! fill from storing a cacheable answer; a store clears the mark.
//!
//! Every outcome is a loggable enum. Local to one process; across instances
//! (`coalesce.across_instances`) the leader also takes a Redis fill lock,
//! see `proxy/fill/across.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::watch;

use crate::cache::{Entry, Hasher, KeyHash};

/// How long a key stays marked uncacheable after a fill found it so.
pub(crate) const HIT_FOR_MISS_TTL: Duration = Duration::from_secs(30);

/// Most keys remembered as uncacheable; older marks are evicted first.
const HIT_FOR_MISS_CAPACITY: u64 = 100_000;

/// The registry of flights in progress. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Coalescer {
    inner: Arc<Inner>,
}

struct Inner {
    flights: Mutex<HashMap<KeyHash, watch::Receiver<Option<Shared>>, Hasher>>,
    uncacheable: moka::sync::Cache<KeyHash, (), Hasher>,
}

/// What a flight's followers get.
#[derive(Clone, Debug)]
pub(crate) enum Shared {
    /// A response they may use, if its `Vary` matches their request.
    Entry(Arc<Entry>),
    /// Not shareable: each follower goes upstream itself.
    Uncacheable,
    /// The upstream failed with this status; followers answer the same,
    /// rather than sending a herd to a failing upstream.
    Failed(StatusCode),
}

/// The outcome of joining.
pub(crate) enum Join {
    /// No flight was in progress: this request leads one.
    Leader(Flight),
    /// A flight is in progress: wait for it.
    Follower(Follower),
}

/// A flight in progress; complete it with the outcome.
pub(crate) struct Flight {
    key: KeyHash,
    tx: watch::Sender<Option<Shared>>,
    coalescer: Coalescer,
    /// Removed from the registry already (completed).
    removed: bool,
}

/// A request waiting for a flight.
pub(crate) struct Follower {
    rx: watch::Receiver<Option<Shared>>,
}

/// How a wait ended.
#[derive(Debug)]
pub(crate) enum Waited {
    /// The flight finished with this outcome.
    Done(Shared),
    /// `wait_timeout` passed first.
    TimedOut,
    /// The flight ended without an outcome.
    Abandoned,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                flights: Mutex::new(HashMap::default()),
                uncacheable: moka::sync::Cache::builder()
                    .max_capacity(HIT_FOR_MISS_CAPACITY)
                    .time_to_live(HIT_FOR_MISS_TTL)
                    .build_with_hasher(Hasher::default()),
            }),
        }
    }
}

impl Coalescer {
    /// Leads a new flight for `key`, or follows the one in progress.
    pub fn join(&self, key: KeyHash) -> Join {
        let mut flights = self.lock();
        if let Some(rx) = flights.get(&key) {
            return Join::Follower(Follower { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key, rx);
        Join::Leader(Flight {
            key,
            tx,
            coalescer: self.clone(),
            removed: false,
        })
    }

    /// Whether a flight for `key` is in progress.
    #[cfg(test)]
    pub fn in_flight(&self, key: &KeyHash) -> bool {
        self.lock().contains_key(key)
    }

    /// Whether a recent fill found `key` uncacheable (hit-for-miss).
    pub fn is_uncacheable(&self, key: &KeyHash) -> bool {
        self.inner.uncacheable.contains_key(key)
    }

    /// Forgets that `key` was uncacheable (after a store).
    pub fn clear_uncacheable(&self, key: &KeyHash) {
        self.inner.uncacheable.invalidate(key);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<KeyHash, watch::Receiver<Option<Shared>>, Hasher>> {
        // The lock is held for a map operation only and nothing panics under
        // it, so poisoning cannot leave the map inconsistent.
        self.inner.flights.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Flight {
    /// Publishes the outcome to followers and ends the flight.
    pub fn complete(mut self, outcome: Shared) {
        match &outcome {
            Shared::Uncacheable => self.coalescer.inner.uncacheable.insert(self.key, ()),
            Shared::Entry(_) => self.coalescer.clear_uncacheable(&self.key),
            Shared::Failed(_) => {}
        }
        // Remove first: a request arriving after this finds the stored entry
        // (or starts a new flight), never a finished one.
        self.remove();
        self.removed = true;
        let _ = self.tx.send(Some(outcome));
    }

    fn remove(&self) {
        let mut flights = self.coalescer.lock();
        if flights
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            flights.remove(&self.key);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // Completed flights are already gone; an abandoned one is removed
        // here, and dropping the sender wakes its followers.
        if !self.removed {
            self.remove();
        }
    }
}

impl Follower {
    /// Waits for the flight's outcome, at most `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Waited {
        let waited = tokio::time::timeout(timeout, self.rx.wait_for(Option::is_some)).await;
        match waited {
            Err(_) => Waited::TimedOut,
            Ok(Err(_)) => Waited::Abandoned,
            Ok(Ok(value)) => value.clone().map_or(Waited::Abandoned, Waited::Done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> KeyHash {
        KeyHash([n; 32])
    }

    #[tokio::test]
    async fn followers_get_the_leaders_outcome() {
        let c = Coalescer::default();
        let Join::Leader(flight) = c.join(key(1)) else {
            panic!("first joiner leads");
        };
        let followers: Vec<_> = (0..10)
            .map(|_| match c.join(key(1)) {
                Join::Follower(f) => tokio::spawn(f.wait(Duration::from_secs(5))),
                Join::Leader(_) => panic!("second joiner follows"),
            })
            .collect();
        assert!(c.in_flight(&key(1)));
        flight.complete(Shared::Failed(StatusCode::BAD_GATEWAY));
        assert!(!c.in_flight(&key(1)));
        for f in followers {
            assert!(matches!(f.await.unwrap(), Waited::Done(Shared::Failed(s)) if s == 502));
        }
    }

    #[tokio::test]
    async fn uncacheable_outcomes_are_remembered_until_a_store() {
        let c = Coalescer::default();
        let Join::Leader(flight) = c.join(key(2)) else {
            panic!()
        };
        flight.complete(Shared::Uncacheable);
        assert!(c.is_uncacheable(&key(2)));
        assert!(!c.is_uncacheable(&key(3)));
        c.clear_uncacheable(&key(2));
        assert!(!c.is_uncacheable(&key(2)));
    }

    #[tokio::test]
    async fn an_abandoned_flight_releases_its_followers() {
        let c = Coalescer::default();
        let Join::Leader(flight) = c.join(key(4)) else {
            panic!()
        };
        let Join::Follower(f) = c.join(key(4)) else {
            panic!()
        };
        drop(flight);
        assert!(matches!(
            f.wait(Duration::from_secs(5)).await,
            Waited::Abandoned
        ));
        assert!(
            matches!(c.join(key(4)), Join::Leader(_)),
            "a new flight can start"
        );
    }

    #[tokio::test]
    async fn followers_give_up_after_the_wait_timeout() {
        let c = Coalescer::default();
        let _flight = c.join(key(5));
        let Join::Follower(f) = c.join(key(5)) else {
            panic!()
        };
        let started = std::time::Instant::now();
        assert!(matches!(
            f.wait(Duration::from_millis(50)).await,
            Waited::TimedOut
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
