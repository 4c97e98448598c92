//! The tiered store: an in-process L1 (moka, `cache.l1`) over Redis, so a
//! hit on a hot key costs no round trip, while every replica still shares
//! one cache and one set of generation counters.
//!
//! Coherence: an L1 entry is only served when every one of its tokens has a
//! *known* current generation and the entry was filled under exactly those.
//! Known generations are learned from Redis lookups and forgotten
//!
//! - for the tokens a bump names, at once on this instance, and on every
//!   other instance when the bump's message arrives on `{prefix}invalidate`;
//! - all of them whenever the subscription is lost or re-established: while
//!   it is down L1 is not used at all (every lookup goes to Redis), and once
//!   it is back nothing learned before is trusted;
//! - after `l1.ttl` in any case, which bounds staleness if a message is
//!   ever lost without the subscription noticing.
//!
//! A lookup that raced an invalidation (an epoch changed while it was in
//! Redis) does not teach L1 anything.
//!
//! L1 is filled by reads, not by writes: a new entry goes to Redis only,
//! and the first lookup that finds it there copies it into L1 (a write that
//! replaces an entry L1 holds replaces it there too). A URL asked
//! for once (the long tail of a miss-heavy load) then costs L1 nothing, no
//! insertion and no eviction of a hot entry, and a miss costs what it costs
//! the redis store; a hot entry is in L1 from its second read on.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use moka::sync::Cache as MokaCache;
use tokio_util::sync::CancellationToken;

use super::housekeeper::Housekeeper;
use super::memory::{RecordCache, record_cache, split_budget};
use super::redis::{InvalidationListener, RedisStore, subscribe};
use super::{
    CacheKey, FillLock, Hasher, Lookup, Record, Store, StoreError, StoreHealth, Token, Usage,
};

/// A tag epoch L1 does not know. Redis values are time-based and far below.
const UNKNOWN: u64 = u64::MAX;

/// The tiered store. Cheap to clone.
#[derive(Clone)]
pub struct TieredStore {
    redis: RedisStore,
    l1: Arc<L1>,
}

/// The local tier and what it knows.
struct L1 {
    entries: RecordCache,
    /// token id -> the last generation learned from Redis.
    known: MokaCache<u64, u64, Hasher>,
    subscribed: AtomicBool,
    /// Moves on every invalidation, resync or loss.
    epoch: AtomicU64,
    /// The tag epoch learned from Redis ([`UNKNOWN`] when not known): read
    /// by every lookup, so kept out of `known`.
    tag_epoch: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
    /// Expires entries and learned generations off the request path.
    _housekeeper: Option<Housekeeper>,
}

impl TieredStore {
    /// L1 of `max_bytes`, entries and generations trusted for at most `ttl`,
    /// over `redis`; subscribes to invalidations until `shutdown`.
    pub fn new(
        redis: RedisStore,
        max_bytes: u64,
        ttl: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        // Entries and learned generations share `max_bytes` as in the
        // memory store, so a flood of unique URLs cannot grow `known` past it.
        let (entry_bytes, known_capacity) = split_budget(max_bytes);
        let entries = record_cache(entry_bytes, Some(ttl), None);
        let known: MokaCache<u64, u64, Hasher> = MokaCache::builder()
            .max_capacity(known_capacity)
            .time_to_live(ttl)
            .build_with_hasher(Hasher::default());
        let (e, k) = (entries.clone(), known.clone());
        let l1 = Arc::new(L1 {
            entries,
            known,
            subscribed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            tag_epoch: AtomicU64::new(UNKNOWN),
            hasher: Default::default(),
            _housekeeper: Housekeeper::start(move || {
                e.run_pending_tasks();
                k.run_pending_tasks();
            }),
        });
        let settings = redis.settings();
        let ping_timeout = settings.timeout.max(Duration::from_millis(250));
        subscribe(redis.clone(), ping_timeout, l1.clone(), shutdown);
        Self { redis, l1 }
    }

    /// Whether L1 is in use (the subscription is up).
    pub fn subscribed(&self) -> bool {
        self.l1.subscribed.load(Ordering::Acquire)
    }
}

impl L1 {
    fn token_id(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    fn forget(&self, tokens: impl IntoIterator<Item = impl AsRef<str>>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for t in tokens {
            if t.as_ref() == Token::tag_epoch().as_str() {
                self.tag_epoch.store(UNKNOWN, Ordering::Release);
            }
            self.known.invalidate(&self.token_id(t.as_ref()));
        }
    }

    fn reset(&self, subscribed: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.tag_epoch.store(UNKNOWN, Ordering::Release);
        self.subscribed.store(subscribed, Ordering::Release);
        self.known.invalidate_all();
    }

    /// The known generations of every token, if all are known.
    fn known_generations(&self, tokens: &[Token]) -> Option<Vec<u64>> {
        tokens
            .iter()
            .map(|t| self.known.get(&self.token_id(t.as_str())))
            .collect()
    }

    /// A lookup answered entirely from L1, if possible: every token the
    /// entry depends on (the key's, its tags', the tag epoch) has a known
    /// generation, and the entry was filled under those.
    fn lookup(&self, key: &CacheKey) -> Option<Lookup> {
        if !self.subscribed.load(Ordering::Acquire) {
            return None;
        }
        let record = self.entries.get(&key.hash)?;
        let generations = self.known_generations(&key.tokens)?;
        let tag_epoch = Some(self.tag_epoch.load(Ordering::Acquire)).filter(|e| *e != UNKNOWN)?;
        let mut tag_generations = Vec::new();
        if let Record::Response(e) = &record {
            if e.generations != generations {
                return None;
            }
            if !e.tags.is_empty() {
                tag_generations = self.known_generations(&e.tags.tokens)?;
                if tag_generations != e.tags.generations {
                    return None;
                }
            }
        }
        Some(Lookup {
            record: Some(record),
            generations,
            tag_generations,
            tag_epoch,
        })
    }

    /// Learns from a Redis lookup that started at `epoch`.
    fn learn(&self, key: &CacheKey, lookup: &Lookup, epoch: u64) {
        if !self.subscribed.load(Ordering::Acquire) || self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        // Generations are only worth knowing with an entry to serve under
        // them: a miss teaches nothing, and its fill does not go to L1.
        let (record, tags): (&Record, &[Token]) = match &lookup.record {
            Some(r @ Record::Response(e)) => {
                if e.generations != lookup.generations
                    || e.tags.generations != lookup.tag_generations
                {
                    return;
                }
                (r, &e.tags.tokens)
            }
            Some(r @ Record::Variants(_)) => (r, &[]),
            None => return,
        };
        self.tag_epoch.store(lookup.tag_epoch, Ordering::Release);
        let learned = (key.tokens.iter().zip(&lookup.generations))
            .chain(tags.iter().zip(&lookup.tag_generations));
        let mut inserted = Vec::new();
        for (t, g) in learned {
            let id = self.token_id(t.as_str());
            // Most tokens (a route's) are shared by many keys and already
            // known: a read is far cheaper than moka's write path.
            if self.known.get(&id) != Some(*g) {
                self.known.insert(id, *g);
                inserted.push(id);
            }
        }
        self.entries.insert(key.hash, record.clone());
        // An invalidation that began after the check above may have
        // forgotten a token before it was inserted here: take back what
        // this lookup taught (the invalidation moves the epoch first).
        if self.epoch.load(Ordering::Acquire) != epoch {
            self.tag_epoch.store(UNKNOWN, Ordering::Release);
            for id in inserted {
                self.known.invalidate(&id);
            }
        }
    }
}

impl InvalidationListener for L1 {
    fn invalidated(&self, tokens: &[&str]) {
        self.forget(tokens.iter());
    }

    fn resynced(&self) {
        self.reset(true);
        tracing::info!("tiered store: invalidations subscribed; L1 in use");
    }

    fn lost(&self) {
        if self.subscribed.load(Ordering::Acquire) {
            tracing::warn!(
                "tiered store: invalidation subscription lost; L1 bypassed until it is back"
            );
        }
        self.reset(false);
    }
}

#[async_trait]
impl Store for TieredStore {
    fn backend(&self) -> &'static str {
        "tiered"
    }

    async fn lookup(&self, key: &CacheKey) -> Result<Lookup, StoreError> {
        if let Some(hit) = self.l1.lookup(key) {
            return Ok(hit);
        }
        let epoch = self.l1.epoch.load(Ordering::Acquire);
        let lookup = self.redis.lookup(key).await?;
        self.l1.learn(key, &lookup, epoch);
        Ok(lookup)
    }

    async fn current(&self, tokens: &[Token]) -> Result<Vec<u64>, StoreError> {
        // From Redis, never from what L1 learned: stamping a fill must see
        // every purge that has landed (docs/architecture.md, "Tags").
        self.redis.current(tokens).await
    }

    async fn insert(&self, key: &CacheKey, record: Record) -> Result<(), StoreError> {
        // A new entry does not go into L1: the first lookup that finds it
        // in Redis puts it there (module docs). One that replaces what L1
        // holds (a refresh, a revalidation) does, or L1 would go on
        // serving the old one.
        if self.subscribed() && self.l1.entries.contains_key(&key.hash) {
            self.l1.entries.insert(key.hash, record.clone());
        }
        self.redis.insert(key, record).await
    }

    async fn bump(&self, tokens: &[Token]) -> Result<(), StoreError> {
        // Forget locally first: this instance must never serve from L1 what
        // it has just invalidated, whatever happens in Redis.
        self.l1.forget(tokens.iter().map(Token::as_str));
        self.redis.bump(tokens).await
    }

    async fn try_lock(&self, key: &CacheKey, ttl: Duration) -> Result<FillLock, StoreError> {
        self.redis.try_lock(key, ttl).await
    }

    async fn unlock(
        &self,
        key: &CacheKey,
        token: u64,
        uncacheable_for: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.redis.unlock(key, token, uncacheable_for).await
    }

    fn usage(&self) -> Option<Usage> {
        self.l1.entries.run_pending_tasks();
        Some(Usage {
            bytes: self.l1.entries.weighted_size(),
            entries: self.l1.entries.entry_count(),
        })
    }

    fn records_purges(&self) -> bool {
        self.redis.records_purges()
    }

    async fn recorded(&self, tokens: &[Token], within: Duration) -> bool {
        self.redis.recorded(tokens, within).await
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            subscribed: Some(self.subscribed()),
            ..self.redis.health()
        }
    }
}
