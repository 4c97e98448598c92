//! The in-process store: moka, bounded by bytes. The default when there is
//! no Redis, and the L1 of `tiered` (its record cache is built here). A
//! production store, not a test double: eviction is counted and sizes are
//! reported.
//!
//! Records hold `Arc<Entry>`, so a hit clones a pointer, never a body.
//! Generation counters live in a fixed table of slots
//! (`Counters`, in `cache/counters.rs`) in a fifth of `max_bytes`: never
//! evicted, so never lost, and free for tokens nobody bumped. Two tokens
//! sharing a slot can only invalidate more, never less
//! (docs/architecture.md, "Storage and invalidation").

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use moka::notification::RemovalCause;
use moka::sync::Cache as MokaCache;
use prometheus::IntCounterVec;

use super::counters::Counters;
use super::housekeeper::Housekeeper;
use super::{CacheKey, Hasher, KeyHash, Lookup, Record, Store, StoreError, Token, Usage};

/// The share of `max_bytes` given to generation counters: the memory
/// store's counter table, and the generations the tiered store's L1 has
/// learned (one per token a lookup names, so a flood of unique URLs must not
/// grow them past the bound; forgetting one is safe, it is learned again).
const TOKEN_SHARE: u64 = 5; // one fifth
/// What one learned generation costs in moka (key, value, its node and queues).
const TOKEN_COST: u64 = 160;

/// Lower bound on the counter capacity, for tiny caches.
const MIN_TOKEN_CAPACITY: u64 = 10_000;

/// A record cache as [`record_cache`] builds it.
pub(super) type RecordCache = MokaCache<KeyHash, Record, Hasher>;

/// moka weighs entries in `u32`; bigger ones are weighed as the maximum.
const MAX_WEIGHT: u64 = u32::MAX as u64;

/// The memory store. Cheap to clone.
#[derive(Clone)]
pub struct MemoryStore {
    entries: RecordCache,
    /// Expires and evicts entries off the request path; shared by clones.
    _housekeeper: Option<Arc<Housekeeper>>,
    generations: Arc<Counters>,
}

/// Expires a record when its stored keep time ends, or after the cap if
/// that comes first (the tiered store's `l1.ttl`).
struct KeepFor(Option<Duration>);

impl KeepFor {
    fn of(&self, record: &Record) -> Option<Duration> {
        let keep = record.keep_for(SystemTime::now());
        Some(self.0.map_or(keep, |cap| keep.min(cap)))
    }
}

impl moka::Expiry<KeyHash, Record> for KeepFor {
    fn expire_after_create(&self, _: &KeyHash, record: &Record, _: Instant) -> Option<Duration> {
        self.of(record)
    }

    fn expire_after_update(
        &self,
        _: &KeyHash,
        record: &Record,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.of(record)
    }
}

/// How a byte bound splits between records and generations: the record
/// cache's weighed capacity, and the bytes for generations.
fn split_bytes(max_bytes: u64) -> (u64, u64) {
    let generations = max_bytes / TOKEN_SHARE;
    (max_bytes - generations, generations)
}

/// How the tiered store's L1 splits its byte bound: the record cache's
/// weighed capacity, and the most learned generations to keep.
pub(super) fn split_budget(max_bytes: u64) -> (u64, u64) {
    let (entries, generations) = split_bytes(max_bytes);
    (entries, (generations / TOKEN_COST).max(MIN_TOKEN_CAPACITY))
}

/// A record cache weighed in bytes ([`Record::weight`](super::Record::weight)),
/// bounded by `capacity`, each record expiring per [`KeepFor`] with `cap`.
/// Shared by the memory store and the tiered store's L1.
pub(super) fn record_cache(
    capacity: u64,
    cap: Option<Duration>,
    listener: Option<IntCounterVec>,
) -> RecordCache {
    let mut builder = MokaCache::builder()
        .max_capacity(capacity)
        .weigher(|_: &KeyHash, r: &Record| r.weight().min(MAX_WEIGHT) as u32)
        .expire_after(KeepFor(cap));
    if let Some(evictions) = listener {
        // Each series looked up once, on its first eviction: a full cache
        // evicts on every miss.
        let (size, expired) = (OnceLock::new(), OnceLock::new());
        builder = builder.eviction_listener(move |_, _, cause| {
            let (series, reason) = match cause {
                RemovalCause::Size => (&size, "size"),
                RemovalCause::Expired => (&expired, "expired"),
                RemovalCause::Explicit | RemovalCause::Replaced => return,
            };
            series
                .get_or_init(|| evictions.with_label_values(&[reason]))
                .inc();
        });
    }
    builder.build_with_hasher(Hasher::default())
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of entries (by [`Record::weight`](super::Record::weight))
    /// and their generation counters together: a fifth of it is for counters.
    /// Evictions are counted in `evictions{reason}` when given.
    pub fn new(max_bytes: u64, evictions: Option<IntCounterVec>) -> Self {
        let (entry_bytes, counter_bytes) = split_bytes(max_bytes);
        let entries = record_cache(entry_bytes, None, evictions);
        let maintained = entries.clone();
        Self {
            _housekeeper: Housekeeper::start(move || maintained.run_pending_tasks()).map(Arc::new),
            entries,
            generations: Arc::new(Counters::with_budget(counter_bytes)),
        }
    }

    /// Current generations of `tokens`.
    pub fn generations(&self, tokens: &[Token]) -> Vec<u64> {
        tokens.iter().map(|t| self.generations.get(t)).collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn lookup(&self, key: &CacheKey) -> Result<Lookup, StoreError> {
        // Entry first, generations second: a purge landing in between makes
        // the generations newer than the entry's, which reads as a miss.
        let record = self.entries.get(&key.hash);
        let tag_generations = match &record {
            Some(Record::Response(e)) if !e.tags.is_empty() => self.generations(&e.tags.tokens),
            _ => Vec::new(),
        };
        Ok(Lookup {
            record,
            generations: self.generations(&key.tokens),
            tag_generations,
            tag_epoch: self.generations.get(Token::tag_epoch()),
        })
    }

    async fn current(&self, tokens: &[Token]) -> Result<Vec<u64>, StoreError> {
        Ok(self.generations(tokens))
    }

    async fn insert(&self, key: &CacheKey, record: Record) -> Result<(), StoreError> {
        if record.keep_for(SystemTime::now()).is_zero() {
            return Ok(());
        }
        self.entries.insert(key.hash, record);
        Ok(())
    }

    async fn bump(&self, tokens: &[Token]) -> Result<(), StoreError> {
        for token in tokens {
            self.generations.bump(token);
        }
        Ok(())
    }

    fn writes_inline(&self) -> bool {
        true
    }

    fn usage(&self) -> Option<Usage> {
        self.entries.run_pending_tasks();
        Some(Usage {
            bytes: self.entries.weighted_size(),
            entries: self.entries.entry_count(),
        })
    }
}

#[cfg(test)]
mod tests;
