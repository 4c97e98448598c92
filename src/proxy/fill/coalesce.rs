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
//! A request joins only a flight with its own [`Stamp`]: the generations
//! its lookup read and this process's purge count. A flight that started
//! before a purge of any of the request's tokens fetched what the purge may
//! have ended, so a request that began after the purge leads a new flight
//! instead (docs/architecture.md, "Generations instead of scans").
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
    flights: Mutex<HashMap<KeyHash, Slot, Hasher>>,
    uncacheable: moka::sync::Cache<KeyHash, (), Hasher>,
}

/// The flight a key's requests may join now.
struct Slot {
    stamp: Stamp,
    rx: watch::Receiver<Option<Shared>>,
}

/// What a fill's data is current against: the generations of the key's
/// tokens its lookup read (`None` when the store could not say), the tag
/// epoch, and how many purges this process had made when it joined. Equal
/// stamps mean no purge of the key's tokens or of any tag came between the
/// two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub generations: Option<Vec<u64>>,
    pub tag_epoch: u64,
    pub purges: u64,
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
    /// Follows the flight in progress for `key` if it has the same
    /// `stamp`, or leads a new one. A new flight replaces an older one in
    /// the registry; the older one runs on for the followers it has.
    pub fn join(&self, key: KeyHash, stamp: Stamp) -> Join {
        let mut flights = self.lock();
        if let Some(slot) = flights.get(&key)
            && slot.stamp == stamp
        {
            return Join::Follower(Follower {
                rx: slot.rx.clone(),
            });
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key, Slot { stamp, rx });
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyHash, Slot, Hasher>> {
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
            .is_some_and(|slot| slot.rx.same_channel(&self.tx.subscribe()))
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
mod tests;
