//! Storage: the [`Store`] contract every backend keeps, the entries it
//! holds and the keys it holds them under (docs/architecture.md,
//! "Storage and invalidation").
//!
//! Invalidation is by generation counters, never by key scans. Every entry
//! depends on a few [`Token`]s (its route, route + captures that some purge
//! target binds, its URL). A lookup returns the entry *and* the current
//! generation of each of its tokens; the entry is valid only if the
//! generations it was filled under are the current ones. A purge bumps
//! counters. Because a fill is stamped with the generations read *before* the
//! upstream request was sent, a fill that raced a purge can never be served
//! after it.
//!
//! Below the proxy and the rules, above the metrics: the backends are
//! [`memory`], [`redis`] and [`tiered`]; `Cache` wraps whichever is
//! configured with timing, error counting and background writes.

use std::time::Duration;

use async_trait::async_trait;

mod breaker;
pub mod codec;
mod counters;
mod entry;
mod headers;
mod housekeeper;
mod instrumented;
mod key;
pub mod memory;
pub mod redis;
pub mod tiered;

pub use entry::{Entry, Freshness, Record, Tags, Variants};
pub(crate) use headers::{SERVED_EXTRA, detached_headers, detached_value, normalized_field};
pub(crate) use instrumented::AfterWrite;
pub(crate) use instrumented::Cache;
pub use key::{CacheKey, KeyHash, Token};

/// The hasher of the in-process tables keyed by digests (entries, learned
/// generations, counter slots, flights). Keys are already digests (blake3
/// of the request, a hash of the token), so SipHash over them again was
/// pure cost: it was most of a table rehash in profiles of the miss path.
/// foldhash is fast and seeded per process, so a client grinding URLs for
/// digests that collide in a few bits still cannot aim at one bucket.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// What [`Store::lookup`] found.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// The stored record, if any; not yet checked against `generations`.
    pub record: Option<Record>,
    /// Current generation of each token of the key, in token order.
    pub generations: Vec<u64>,
    /// Current generation of each of the found response's tags, in its
    /// tags' order.
    pub tag_generations: Vec<u64>,
    /// The current tag epoch ([`Token::tag_epoch`]), to stamp a fill with.
    pub tag_epoch: u64,
}

/// A storage backend failed. Never fails a request: a failed read is a miss,
/// a failed write or purge is logged and counted.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend did not answer within its timeout.
    #[error("store timed out after {0:?}")]
    Timeout(Duration),
    /// The backend answered with an error or is unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Not attempted: the circuit breaker is open after repeated failures.
    #[error("store skipped: circuit open")]
    CircuitOpen,
}

/// A cache backend: [`memory::MemoryStore`], [`redis::RedisStore`] or
/// [`tiered::TieredStore`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The metric label of the backend (`memory`, `redis`, ...).
    fn backend(&self) -> &'static str;

    /// Called on every cacheable request. Returns the entry stored under
    /// `key.hash` (if any), the current generation of every token of the
    /// key and of the tags of the response found, and the tag epoch. A token without a counter must get a fresh value that no entry
    /// can carry (never restart from an old value), so entries filled before
    /// a counter was lost never match again.
    ///
    /// # Errors
    ///
    /// The caller treats any error as a miss and does not store.
    async fn lookup(&self, key: &CacheKey) -> Result<Lookup, StoreError>;

    /// Called after a fill decided to store a record under `key.hash`.
    /// Replaces what was there; keeps it until the record's `keep_until`.
    ///
    /// # Errors
    ///
    /// The caller logs and counts the error; the response is unaffected.
    async fn insert(&self, key: &CacheKey, record: Record) -> Result<(), StoreError>;

    /// The current generations of `tokens`, creating absent counters as
    /// `lookup` does: for stamping a fill's tags.
    /// Read from where purges land (a tiered store asks Redis), in order.
    ///
    /// # Errors
    ///
    /// As `lookup`'s: the caller treats it as a miss, or does not store.
    async fn current(&self, tokens: &[Token]) -> Result<Vec<u64>, StoreError>;

    /// Called after a successful mutation or an admin purge: gives each token
    /// a new generation, so every entry depending on any of them stops
    /// matching. Must be O(tokens), never a scan.
    ///
    /// # Errors
    ///
    /// The caller logs and counts the error.
    async fn bump(&self, tokens: &[Token]) -> Result<(), StoreError>;

    /// Bytes and entries held in process memory, for the memory gauges.
    fn usage(&self) -> Option<Usage> {
        None
    }

    /// Whether `insert` completes at once (in process), so a fill can store
    /// inline; otherwise fills store in the background.
    fn writes_inline(&self) -> bool {
        false
    }

    /// Called by a fill leader when fills coalesce across instances: takes
    /// the fill lock of `key` for `ttl`. The default (a store of one
    /// instance) is [`FillLock::Unsupported`].
    ///
    /// # Errors
    ///
    /// The caller fills without the lock (fail open).
    async fn try_lock(&self, _key: &CacheKey, _ttl: Duration) -> Result<FillLock, StoreError> {
        Ok(FillLock::Unsupported)
    }

    /// Releases a lock taken with `token`; with `uncacheable_for`, leaves a
    /// mark for that long so other instances skip waiting (hit-for-miss).
    ///
    /// # Errors
    ///
    /// Logged; the lock expires on its own.
    async fn unlock(
        &self,
        _key: &CacheKey,
        _token: u64,
        _uncacheable_for: Option<Duration>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Health for `/status`.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }

    /// Whether a purge would be recorded now, as far as the store knows: a
    /// remote store whose circuit is open says no.
    fn records_purges(&self) -> bool {
        true
    }

    /// Waits until none of `tokens` awaits replay after a failed `bump`, at
    /// most `within`; whether they were all recorded. A store that never
    /// defers a purge has nothing to wait for.
    async fn recorded(&self, _tokens: &[Token], _within: Duration) -> bool {
        true
    }
}

/// The cross-instance fill lock of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillLock {
    /// Taken; release it with this token.
    Acquired(u64),
    /// Another instance is filling the key.
    Held,
    /// Another instance found the key uncacheable recently.
    Uncacheable,
    /// The store has no cross-instance lock.
    Unsupported,
}

/// A store's health, for `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreHealth {
    /// The store answers.
    pub up: bool,
    /// Circuit breaker state, or `none`.
    pub circuit: &'static str,
    /// For stores with an L1: whether invalidations are being received.
    pub subscribed: Option<bool>,
    /// Purge tokens that failed to reach the store, waiting for replay.
    pub pending_purges: usize,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self {
            up: true,
            circuit: "none",
            subscribed: None,
            pending_purges: 0,
        }
    }
}

/// Memory held by a store.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Approximate bytes of stored entries.
    pub bytes: u64,
    /// Number of stored entries.
    pub entries: u64,
}
