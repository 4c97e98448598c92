//! The Redis store: one cache shared by every replica (DESIGN.md §7, §8).
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
//! Connections come from deadpool-redis; commands use clones of its
//! multiplexed connections ("lanes"), because a pool checkout costs a PING.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::breaker::Breaker;
use super::{
    CacheKey, FillLock, KeyHash, Lookup, Record, Store, StoreError, StoreHealth, Token, codec,
};
use crate::metrics::Metrics;

/// How often the prober checks whether an open circuit may be probed, and
/// how often a healthy Redis is pinged to keep `store_up` current.
const PROBE_TICK: Duration = Duration::from_millis(100);
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Most failed purge tokens kept for replay; beyond this they are dropped
/// and logged (entries still expire by their own `PX`).
const MAX_PENDING_BUMPS: usize = 100_000;
/// Tokens replayed per probe.
const REPLAY_BATCH: usize = 512;
/// At most this many clean-up deletes (of undecodable values) at once.
const MAX_PENDING_DELETES: usize = 16;
/// The value a fill lock takes when the filled response was not cacheable:
/// other instances then go upstream without waiting (hit-for-miss).
const UNCACHEABLE: &str = "uncacheable";

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisNodes {
    /// One server (or a proxy in front of several).
    Single(String),
    /// Redis Cluster seed nodes.
    Cluster(Vec<String>),
}

/// `cache.redis`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// Server or cluster nodes.
    pub nodes: RedisNodes,
    /// Connections (lanes) to keep.
    pub pool_size: usize,
    /// Bound on every command, including getting a connection.
    pub timeout: Duration,
    /// Prefix of every key and of the channel.
    pub key_prefix: String,
}

/// The Redis store. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RedisSettings,
    pools: Pools,
    lanes: Vec<Mutex<Option<Conn>>>,
    next_lane: AtomicUsize,
    breaker: Breaker,
    deletes: Arc<Semaphore>,
    lock_script: Script,
    unlock_script: Script,
    /// `g:{token}` -> its value, created fresh if absent or not a number.
    ensure_script: Script,
    /// `g:{token}` += 1, starting from a fresh value if absent or not a
    /// number (so an evicted counter never comes back as 1).
    bump_script: Script,
    /// Purges that could not reach Redis, replayed when it answers again.
    pending_bumps: Mutex<PendingBumps>,
    /// `pending_bumps.tokens.len()`, read without the lock on every lookup.
    pending_count: AtomicUsize,
}

/// Tokens whose bump failed. A purge is never silently lost: it is applied
/// when Redis is back, before the circuit closes, so no lookup can read an
/// entry the purge should have ended.
#[derive(Default)]
struct PendingBumps {
    tokens: std::collections::BTreeSet<Token>,
    /// Bumps dropped because the set was full.
    dropped: u64,
}

enum Pools {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// A multiplexed connection of either kind; clones share the socket.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
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
        let t = Some(settings.timeout);
        let timeouts = deadpool_redis::Timeouts {
            wait: t,
            create: t,
            recycle: t,
        };
        let pool_config = deadpool_redis::PoolConfig {
            max_size: settings.pool_size,
            timeouts,
            ..Default::default()
        };
        let runtime = Some(deadpool_redis::Runtime::Tokio1);
        let invalid = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("invalid redis settings: {e}"))
        };
        let pools = match &settings.nodes {
            RedisNodes::Single(url) => {
                let mut config = deadpool_redis::Config::from_url(url.clone());
                config.pool = Some(pool_config);
                Pools::Single(config.create_pool(runtime).map_err(|e| invalid(&e))?)
            }
            RedisNodes::Cluster(urls) => {
                let mut config = deadpool_redis::cluster::Config::from_urls(urls.clone());
                config.pool = Some(pool_config);
                Pools::Cluster(config.create_pool(runtime).map_err(|e| invalid(&e))?)
            }
        };
        let store = Self {
            inner: Arc::new(Inner {
                lanes: (0..settings.pool_size.max(1))
                    .map(|_| Mutex::new(None))
                    .collect(),
                settings,
                pools,
                next_lane: AtomicUsize::new(0),
                breaker: Breaker::new(
                    metrics.store_circuit_open.with_label_values(&[backend]),
                    metrics.store_up.with_label_values(&[backend]),
                ),
                deletes: Arc::new(Semaphore::new(MAX_PENDING_DELETES)),
                lock_script: Script::new(
                    "local v = redis.call('GET', KEYS[1]) \
                     if v then return v end \
                     redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
                     return false",
                ),
                unlock_script: Script::new(
                    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
                     if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end \
                     redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) \
                     return 1",
                ),
                ensure_script: Script::new(&format!(
                    "{VALID_COUNTER} \
                     local v = redis.call('GET', KEYS[1]) \
                     if valid(v) then return v end \
                     redis.call('SET', KEYS[1], ARGV[1]) \
                     return ARGV[1]"
                )),
                bump_script: Script::new(&format!(
                    "{VALID_COUNTER} \
                     if not valid(redis.call('GET', KEYS[1])) then \
                       redis.call('SET', KEYS[1], ARGV[1]) \
                     end \
                     redis.call('INCR', KEYS[1]) \
                     return 1"
                )),
                pending_bumps: Mutex::default(),
                pending_count: AtomicUsize::new(0),
            }),
        };
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

    fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}e:{}:{}", self.prefix(), key.route, key.hash.to_hex())
    }

    fn gen_key(&self, token: &Token) -> String {
        format!("{}g:{}", self.prefix(), token.as_str())
    }

    fn lock_key(&self, hash: &KeyHash) -> String {
        format!("{}lock:{}", self.prefix(), hash.to_hex())
    }

    /// The pub/sub channel that carries invalidations.
    pub fn channel(&self) -> String {
        format!("{}invalidate", self.prefix())
    }

    /// A connection: a lane's clone, or a new one from the pool.
    async fn conn(&self) -> Result<(usize, Conn), RedisError> {
        let lane = self.inner.next_lane.fetch_add(1, Ordering::Relaxed) % self.inner.lanes.len();
        if let Some(conn) = self.lane(lane).clone() {
            return Ok((lane, conn));
        }
        let fresh = match &self.inner.pools {
            Pools::Single(p) => Conn::Single(deadpool_redis::Connection::take(
                p.get().await.map_err(pool_error)?,
            )),
            Pools::Cluster(p) => Conn::Cluster(deadpool_redis::cluster::Connection::take(
                p.get().await.map_err(pool_error)?,
            )),
        };
        *self.lane(lane) = Some(fresh.clone());
        Ok((lane, fresh))
    }

    fn lane(&self, lane: usize) -> std::sync::MutexGuard<'_, Option<Conn>> {
        // Held for a clone or an assignment only.
        self.inner.lanes[lane]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` on a connection, bounded by the timeout and the breaker.
    async fn guarded<T, F, Fut>(&self, probe: bool, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        if !probe && !self.inner.breaker.allow() {
            return Err(StoreError::CircuitOpen);
        }
        let timeout = self.inner.settings.timeout;
        let mut used_lane = None;
        let outcome = tokio::time::timeout(timeout, async {
            let (lane, conn) = self.conn().await?;
            used_lane = Some(lane);
            op(conn).await
        })
        .await;
        match outcome {
            Ok(Ok(value)) => {
                self.inner.breaker.success();
                Ok(value)
            }
            Ok(Err(e)) if is_server_reply(&e) => Err(StoreError::Unavailable(e.to_string())),
            Ok(Err(e)) => {
                self.fail(used_lane);
                Err(StoreError::Unavailable(e.to_string()))
            }
            Err(_) => {
                self.fail(used_lane);
                Err(StoreError::Timeout(timeout))
            }
        }
    }

    fn fail(&self, lane: Option<usize>) {
        if self.inner.breaker.failure() {
            // Redis went away or froze: every lane's socket is suspect.
            // The probe and the first calls after it connect afresh.
            for lane in 0..self.inner.lanes.len() {
                *self.lane(lane) = None;
            }
        } else if let Some(lane) = lane {
            *self.lane(lane) = None;
        }
    }

    async fn query<T: FromRedisValue + Send>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.guarded(false, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs one-key script calls concurrently (a cluster refuses commands
    /// that span slots; on one server they share the socket anyway).
    async fn scripts<T: FromRedisValue + Send>(
        &self,
        calls: Vec<redis::ScriptInvocation<'_>>,
    ) -> Result<Vec<T>, StoreError> {
        self.guarded(false, |c| async move { run_scripts(&c, &calls).await })
            .await
    }

    /// Generations for tokens whose counter is absent or not a number:
    /// created with a fresh value, unless another instance just did.
    async fn create_generations(&self, tokens: &[&Token]) -> Result<Vec<u64>, StoreError> {
        let calls = self.per_token(&self.inner.ensure_script, tokens);
        let values: Vec<String> = self.scripts(calls).await?;
        Ok(values
            .iter()
            .map(|v| v.parse().unwrap_or_else(|_| fresh_generation()))
            .collect())
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

    /// Pings Redis and replays pending purges, as one guarded call: the
    /// breaker closes only when both worked, so lookups resume only once
    /// every purge made during the outage holds.
    async fn probe(&self, probing: bool) -> Result<(), StoreError> {
        let replay = self.pending_batch();
        let calls = self.per_token(&self.inner.bump_script, &replay.iter().collect::<Vec<_>>());
        let channel = self.channel();
        let payload = publish_payload(&replay);
        let result = self
            .guarded(probing, |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await?;
                if calls.is_empty() {
                    return Ok(());
                }
                run_scripts::<i64>(&c, &calls).await?;
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async::<i64>(&mut c)
                    .await?;
                Ok(())
            })
            .await;
        if result.is_ok() && !replay.is_empty() {
            let mut pending = self.pending();
            for token in &replay {
                pending.tokens.remove(token);
            }
            self.inner
                .pending_count
                .store(pending.tokens.len(), Ordering::Release);
            tracing::info!(
                tokens = replay.len(),
                left = pending.tokens.len(),
                "replayed purges made while redis was unreachable"
            );
        }
        result
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingBumps> {
        // Held for set operations only.
        self.inner
            .pending_bumps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn pending_batch(&self) -> Vec<Token> {
        self.pending()
            .tokens
            .iter()
            .take(REPLAY_BATCH)
            .cloned()
            .collect()
    }

    /// Keeps `tokens` for replay after a failed bump.
    fn defer(&self, tokens: &[Token]) {
        let mut pending = self.pending();
        let mut dropped = 0;
        for token in tokens {
            if pending.tokens.len() < MAX_PENDING_BUMPS {
                pending.tokens.insert(token.clone());
            } else if !pending.tokens.contains(token) {
                dropped += 1;
            }
        }
        self.inner
            .pending_count
            .store(pending.tokens.len(), Ordering::Release);
        if dropped > 0 {
            pending.dropped += dropped;
            tracing::error!(
                dropped,
                total_dropped = pending.dropped,
                "too many purges pending while redis is unreachable; some are lost"
            );
        }
    }

    /// Purges waiting for Redis.
    pub fn pending_purges(&self) -> usize {
        self.inner.pending_count.load(Ordering::Acquire)
    }

    /// Whether a purge of one of `tokens` is still waiting for Redis.
    fn purge_pending(&self, tokens: &[Token]) -> bool {
        self.pending_purges() > 0 && {
            let pending = self.pending();
            tokens.iter().any(|t| pending.tokens.contains(t))
        }
    }

    /// One script call per token (one key, so one slot each), all sent at
    /// once: `script(g:{token}, fresh generation)`.
    fn per_token<'s>(
        &self,
        script: &'s Script,
        tokens: &[&Token],
    ) -> Vec<redis::ScriptInvocation<'s>> {
        tokens
            .iter()
            .map(|t| {
                let mut call = script.key(self.gen_key(t));
                call.arg(fresh_generation());
                call
            })
            .collect()
    }

    fn spawn_prober(&self, shutdown: CancellationToken) {
        let store = self.clone();
        tokio::spawn(async move {
            // First contact at start, so `store_up` is right from the start.
            let _ = store.probe(true).await;
            let mut since_health = Duration::ZERO;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(PROBE_TICK) => {}
                }
                since_health += PROBE_TICK;
                let breaker = &store.inner.breaker;
                let probing = breaker.probe_due();
                let replay = breaker.allow() && store.pending_purges() > 0;
                if probing || replay || (breaker.allow() && since_health >= HEALTH_EVERY) {
                    since_health = Duration::ZERO;
                    let _ = store.probe(probing).await;
                }
            }
        });
    }

    /// Publishes that `tokens` changed, for every instance's L1.
    async fn publish(&self, tokens: &[Token]) -> Result<(), StoreError> {
        let payload = publish_payload(tokens);
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.channel()).arg(payload);
        self.query::<i64>(cmd).await.map(|_| ())
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn lookup(&self, key: &CacheKey) -> Result<Lookup, StoreError> {
        if self.purge_pending(&key.tokens) {
            // What Redis holds for this key may be what the purge ended.
            return Err(StoreError::Unavailable(
                "a purge of this key is waiting for redis".into(),
            ));
        }
        let entry_key = self.entry_key(key);
        let mut mget = redis::cmd("MGET");
        mget.arg(&entry_key);
        for token in &key.tokens {
            mget.arg(self.gen_key(token));
        }
        let mut values: Vec<Option<Vec<u8>>> = self.query(mget).await?;
        if values.len() != key.tokens.len() + 1 {
            return Err(StoreError::Unavailable("unexpected MGET reply".into()));
        }
        let gens: Vec<Option<u64>> = values[1..]
            .iter()
            .map(|v| {
                v.as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            })
            .collect();
        let missing: Vec<&Token> = key
            .tokens
            .iter()
            .zip(&gens)
            .filter(|(_, g)| g.is_none())
            .map(|(t, _)| t)
            .collect();
        let mut created = if missing.is_empty() {
            Vec::new()
        } else {
            self.create_generations(&missing).await?
        }
        .into_iter();
        let generations = gens
            .into_iter()
            .map(|g| {
                g.or_else(|| created.next())
                    .unwrap_or_else(fresh_generation)
            })
            .collect();
        let record = match values[0].take() {
            None => None,
            Some(raw) => {
                let record = codec::decode(Bytes::from(raw)).filter(|r| record_key(r) == &key.hash);
                if record.is_none() {
                    // Corrupt, of another format version, or another key's:
                    // a miss, and removed so it does not cost every lookup.
                    self.spawn_delete(entry_key);
                }
                record
            }
        };
        Ok(Lookup {
            record,
            generations,
        })
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
        let calls = self.per_token(&self.inner.bump_script, &tokens.iter().collect::<Vec<_>>());
        let result = match self.scripts::<i64>(calls).await {
            Ok(_) => self.publish(tokens).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.defer(tokens);
        }
        result
    }

    async fn try_lock(&self, key: &CacheKey, ttl: Duration) -> Result<FillLock, StoreError> {
        let token = fastrand::u64(1..);
        let lock_key = self.lock_key(&key.hash);
        let script = self.inner.lock_script.clone();
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
        let script = self.inner.unlock_script.clone();
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

/// Runs script calls concurrently on clones of `c`.
async fn run_scripts<T: FromRedisValue + Send>(
    c: &Conn,
    calls: &[redis::ScriptInvocation<'_>],
) -> Result<Vec<T>, RedisError> {
    join_all(calls.iter().map(|call| {
        let mut c = c.clone();
        async move { call.invoke_async::<T>(&mut c).await }
    }))
    .await
    .into_iter()
    .collect()
}

/// Lua: whether `v` is a counter value `INCR` can take (digits, below
/// 2^63 with room to spare).
const VALID_COUNTER: &str = "local function valid(v) \
     return v and string.find(v, '^%d+$') ~= nil \
       and (#v < 19 or (#v == 19 and v <= '9000000000000000000')) \
     end ";

/// The invalidation message: the tokens, one per line.
fn publish_payload(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(Token::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

fn record_key(record: &Record) -> &KeyHash {
    match record {
        Record::Response(e) => &e.key,
        Record::Variants(v) => &v.key,
    }
}

/// A generation value no counter has had: microseconds since the epoch with
/// random low bits, so two instances creating one counter at once differ
/// and a re-created counter never equals an old one (old values are older
/// times plus a few increments).
pub fn fresh_generation() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    (micros << 10) | fastrand::u64(..1024)
}

/// Whether Redis answered with an error reply (OOM, wrong type, ...): the
/// connection is fine, so it does not count against the breaker.
fn is_server_reply(e: &RedisError) -> bool {
    !(e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout())
        && e.kind() != redis::ErrorKind::Client
}

fn pool_error(e: deadpool_redis::PoolError) -> RedisError {
    match e {
        deadpool_redis::PoolError::Backend(e) => e,
        other => RedisError::from(std::io::Error::other(other.to_string())),
    }
}

/// What [`subscribe`] tells the listening store.
pub trait InvalidationListener: Send + Sync + 'static {
    /// These tokens changed (bumped by some instance).
    fn invalidated(&self, tokens: &[&str]);
    /// The subscription is (again) confirmed: everything missed while it was
    /// down must be assumed changed.
    fn resynced(&self);
    /// The subscription is down: nothing local may be trusted until
    /// [`InvalidationListener::resynced`].
    fn lost(&self);
}

/// Keeps a subscription to `channel` on one of `urls` (trying each in
/// turn), pinging it every second so a frozen Redis counts as down, and
/// reports to `listener` until `shutdown`.
pub fn subscribe(
    urls: Vec<String>,
    channel: String,
    ping_timeout: Duration,
    listener: Arc<dyn InvalidationListener>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        for attempt in 0usize.. {
            if shutdown.is_cancelled() {
                return;
            }
            let url = &urls[attempt % urls.len()];
            match listen(url, &channel, ping_timeout, &*listener, &shutdown).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::debug!(cause = %e, "invalidation subscription failed"),
            }
            listener.lost();
            let wait = backoff.mul_f64(0.8 + fastrand::f64() * 0.4);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

async fn listen(
    url: &str,
    channel: &str,
    ping_timeout: Duration,
    listener: &dyn InvalidationListener,
    shutdown: &CancellationToken,
) -> Result<(), RedisError> {
    use futures_util::StreamExt;
    let timeout = |e: tokio::time::error::Elapsed| {
        RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, e))
    };
    let client = redis::Client::open(url)?;
    let mut pubsub = tokio::time::timeout(ping_timeout, client.get_async_pubsub())
        .await
        .map_err(timeout)??;
    tokio::time::timeout(ping_timeout, pubsub.subscribe(channel))
        .await
        .map_err(timeout)??;
    listener.resynced();
    let (mut sink, mut stream) = pubsub.split();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = stream.next() => {
                let Some(message) = message else { return Ok(()) };
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                let text = String::from_utf8_lossy(&payload);
                let tokens: Vec<&str> = text.split('\n').filter(|t| !t.is_empty()).collect();
                listener.invalidated(&tokens);
            }
            _ = ticker.tick() => {
                tokio::time::timeout(ping_timeout, sink.ping::<Value>()).await.map_err(timeout)??;
            }
        }
    }
}
