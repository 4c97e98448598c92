//! The Redis store: one cache shared by every replica (docs/architecture.md,
//! "Redis layout" and "Failure behaviour"; docs/redis.md for operators).
//!
//! Layout, under `key_prefix`:
//! - `e:{route}:{hash}`: a record in the `codec` format, with `PX` = the time
//!   it should be kept (freshness + stale windows);
//! - `g:{token}`: a generation counter;
//! - `lock:{hash}`: the cross-instance fill lock;
//! - channel `invalidate`: every bump is published, so L1s drop entries.
//!
//! Round trips: a lookup is one `MGET` (entry + counters; in a cluster,
//! redis-rs splits it per node and sends the parts at once), plus one for
//! counters that did not exist yet. A store is one `SET`, off the request
//! path. A purge is one `SET NX`+`INCR` per token, sent concurrently, plus
//! one `PUBLISH`. Nothing scans the keyspace.
//!
//! A missing counter (never created, evicted, or lost in a restart) must not
//! restart from a value an old entry may carry: it is created with a fresh
//! time-based value (`SET NX`), and a bump always `SET NX`es before it
//! `INCR`s, so an evicted counter never comes back as 1.
//!
//! Failing open: every call is bounded by `timeout` and goes through the
//! circuit breaker; a background prober re-admits Redis when it answers.
//! Connections come from a deadpool pool over redis-rs' clients (`client`:
//! one server, Cluster or Sentinel, TLS); commands use clones of its
//! multiplexed connections ("lanes"), because a pool checkout costs a PING.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::breaker::Breaker;
use super::{
    CacheKey, FillLock, KeyHash, Lookup, Record, Store, StoreError, StoreHealth, Token, codec,
};
use crate::metrics::Metrics;
use scripts::Scripts;

mod client;
mod conn;
mod counters;
mod pubsub;
mod replay;
mod scripts;
mod sentinel;
mod settings;

pub use client::{RedisAuth, RedisTls};
pub use counters::fresh_generation;
pub(crate) use pubsub::{InvalidationListener, subscribe};
pub use settings::{OnPurgeFailure, RedisNodes, RedisSettings};

/// At most this many clean-up deletes (of undecodable values) at once.
const MAX_PENDING_DELETES: usize = 16;
/// The value a fill lock takes when the filled response was not cacheable:
/// other instances then go upstream without waiting (hit-for-miss).
const UNCACHEABLE: &str = "uncacheable";

/// How often a write waiting for its purge checks whether it was replayed.
const RECORDED_POLL: Duration = Duration::from_millis(20);

/// What the fence bumps: every route's token, as the running config has
/// them (read when the fence is put up, so a reload is followed).
pub type Fence = Box<dyn Fn() -> Vec<Token> + Send + Sync>;

/// The Redis store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RedisSettings,
    pool: client::Pool,
    lanes: Vec<Mutex<Option<conn::Conn>>>,
    next_lane: AtomicUsize,
    breaker: Breaker,
    deletes: Arc<Semaphore>,
    scripts: scripts::Scripts,
    /// Purges that could not reach Redis, replayed when it answers again.
    pending: replay::Pending,
    /// The tokens the fence bumps (every route's), if it is set up.
    fence: std::sync::OnceLock<Fence>,
    /// `invalidations_total{rule="outage"}`.
    fenced: prometheus::IntCounter,
}

impl RedisStore {
    /// A store for `settings`. Connects lazily: Redis need not be up.
    /// `backend` labels its health gauges (`redis`, or `tiered` when it is
    /// the shared tier of one), matching the operation metrics.
    ///
    /// # Errors
    ///
    /// When a URL cannot be parsed into a connection target.
    pub fn new(
        settings: RedisSettings,
        metrics: &Metrics,
        backend: &'static str,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let store = Self {
            inner: Arc::new(Inner {
                lanes: (0..settings.pool_size.max(1))
                    .map(|_| Mutex::new(None))
                    .collect(),
                pool: conn::pool(&settings)?,
                settings,
                next_lane: AtomicUsize::new(0),
                breaker: Breaker::new(
                    metrics.store_circuit_open.with_label_values(&[backend]),
                    metrics.store_up.with_label_values(&[backend]),
                ),
                deletes: Arc::new(Semaphore::new(MAX_PENDING_DELETES)),
                scripts: scripts::Scripts::new(),
                pending: replay::Pending::default(),
                fence: std::sync::OnceLock::new(),
                fenced: metrics.invalidations_total.with_label_values(&["outage"]),
            }),
        };
        sentinel::watch(&store, shutdown.clone());
        store.spawn_prober(shutdown);
        Ok(store)
    }

    /// The settings this store runs with.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    fn prefix(&self) -> &str {
        &self.inner.settings.key_prefix
    }

    // Keys are built with `push_str`, not `format!`: a lookup builds one
    // per token, and the formatting machinery showed in its profile.
    fn entry_key(&self, key: &CacheKey) -> String {
        let prefix = self.prefix();
        let mut s = String::with_capacity(prefix.len() + key.route.len() + 67);
        s.push_str(prefix);
        s.push_str("e:");
        s.push_str(&key.route);
        s.push(':');
        key.hash.push_hex(&mut s);
        s
    }

    fn gen_key(&self, token: &Token) -> String {
        let (prefix, token) = (self.prefix(), token.as_str());
        let mut s = String::with_capacity(prefix.len() + token.len() + 2);
        s.push_str(prefix);
        s.push_str("g:");
        s.push_str(token);
        s
    }

    fn lock_key(&self, hash: &KeyHash) -> String {
        format!("{}lock:{}", self.prefix(), hash.to_hex())
    }

    /// The pub/sub channel that carries invalidations.
    pub fn channel(&self) -> String {
        format!("{}invalidate", self.prefix())
    }

    /// Sets what the fence bumps when Redis is back after an outage
    /// (`fence_after_outage`); once, before traffic.
    pub fn fence_with(&self, tokens: Fence) {
        let _ = self.inner.fence.set(tokens);
    }

    /// Purges waiting for Redis.
    pub fn pending_purges(&self) -> usize {
        self.inner.pending.len()
    }

    /// The record in `raw`, if it is one of `key`'s. Anything else (corrupt,
    /// of another format version, or another key's) is a miss, and removed
    /// so it does not cost every lookup.
    fn record(&self, key: &CacheKey, entry_key: String, raw: Option<Vec<u8>>) -> Option<Record> {
        let record = codec::decode(Bytes::from(raw?)).filter(|r| r.key() == &key.hash);
        if record.is_none() {
            self.spawn_delete(entry_key);
        }
        record
    }

    fn spawn_delete(&self, key: String) {
        let Ok(permit) = self.inner.deletes.clone().try_acquire_owned() else {
            return; // the next lookup will try again
        };
        let store = self.clone();
        tokio::spawn(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(&key);
            let _ = store.query::<i64>(cmd).await;
            drop(permit);
        });
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn lookup(&self, key: &CacheKey) -> Result<Lookup, StoreError> {
        if self.inner.pending.any(&key.tokens) {
            // What Redis holds for this key may be what the purge ended.
            return Err(StoreError::Unavailable(
                "a purge of this key is waiting for redis".into(),
            ));
        }
        let entry_key = self.entry_key(key);
        let mut mget = redis::cmd("MGET");
        mget.arg(&entry_key);
        // The key's counters, then the tag epoch.
        let tokens: Vec<&Token> = key.tokens.iter().chain([Token::tag_epoch()]).collect();
        for token in &tokens {
            mget.arg(self.gen_key(token));
        }
        let mut values: Vec<Option<Vec<u8>>> = self.query(mget).await?;
        if values.len() != tokens.len() + 1 {
            return Err(StoreError::Unavailable("unexpected MGET reply".into()));
        }
        let mut generations = self.generations(&tokens, &values[1..]).await?;
        let tag_epoch = generations.pop().unwrap_or_default();
        let record = self.record(key, entry_key, values[0].take());
        // A response's tags are only known once the entry is: a second call.
        let tag_generations = match &record {
            Some(Record::Response(e)) => self.current_generations(&e.tags.tokens).await?,
            _ => Vec::new(),
        };
        Ok(Lookup {
            record,
            generations,
            tag_generations,
            tag_epoch,
        })
    }

    async fn current(&self, tokens: &[Token]) -> Result<Vec<u64>, StoreError> {
        self.current_generations(tokens).await
    }

    async fn insert(&self, key: &CacheKey, record: Record) -> Result<(), StoreError> {
        let keep = record.keep_for(SystemTime::now());
        if keep.is_zero() {
            return Ok(());
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.entry_key(key))
            .arg(codec::encode(&record))
            .arg("PX")
            .arg(keep.as_millis().max(1) as u64);
        self.query::<()>(cmd).await
    }

    async fn bump(&self, tokens: &[Token]) -> Result<(), StoreError> {
        // Both steps must happen: the INCRs for lookups that go to Redis,
        // the message for other instances' L1s. Either failing defers the
        // whole purge for replay (an extra INCR is harmless).
        let all: Vec<&Token> = tokens.iter().collect();
        let result = match self.counters::<i64>(Scripts::bump, &all).await {
            Ok(_) => self.publish(tokens).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.inner.pending.defer(tokens);
        }
        result
    }

    async fn try_lock(&self, key: &CacheKey, ttl: Duration) -> Result<FillLock, StoreError> {
        let token = fastrand::u64(1..);
        let lock_key = self.lock_key(&key.hash);
        let script = self.inner.scripts.lock.clone();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let held: Option<String> = self
            .guarded(false, |mut c| async move {
                script
                    .key(lock_key)
                    .arg(token.to_string())
                    .arg(ttl_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(match held.as_deref() {
            None => FillLock::Acquired(token),
            Some(UNCACHEABLE) => FillLock::Uncacheable,
            Some(_) => FillLock::Held,
        })
    }

    async fn unlock(
        &self,
        key: &CacheKey,
        token: u64,
        uncacheable_for: Option<Duration>,
    ) -> Result<(), StoreError> {
        let lock_key = self.lock_key(&key.hash);
        let script = self.inner.scripts.unlock.clone();
        let (mark, ttl) = match uncacheable_for {
            Some(t) => (UNCACHEABLE, t.as_millis().max(1) as u64),
            None => ("", 0),
        };
        self.guarded(false, |mut c| async move {
            script
                .key(lock_key)
                .arg(token.to_string())
                .arg(mark)
                .arg(ttl)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    fn records_purges(&self) -> bool {
        self.inner.breaker.allow()
    }

    async fn recorded(&self, tokens: &[Token], within: Duration) -> bool {
        // The prober replays pending purges every tick while Redis answers.
        let deadline = tokio::time::Instant::now() + within;
        while self.inner.pending.any(tokens) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(RECORDED_POLL).await;
        }
        true
    }

    fn health(&self) -> StoreHealth {
        let circuit = self.inner.breaker.state();
        StoreHealth {
            up: circuit == "closed",
            circuit,
            subscribed: None,
            pending_purges: self.pending_purges(),
        }
    }
}
