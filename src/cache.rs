//! Storage: what a cache entry is, how it is keyed and invalidated, and the
//! [`Store`] trait every backend implements (DESIGN.md §7).
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
//! This module holds the vocabulary only; `proxy/key.rs` builds keys and
//! `proxy/policy.rs` decides what is stored.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::metrics::Metrics;

pub mod breaker;
pub mod coalesce;
pub mod codec;
mod counters;
mod housekeeper;
pub mod memory;
pub mod redis;
pub mod tiered;

/// A 256-bit digest of everything that selects a response: route fingerprint,
/// host, path, keyed query, keyed headers and the identity hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

/// A name whose generation counter some entries depend on, e.g.
/// `r:conversation`, `b:conversation|id=42` or `u:/api/conversations/42`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(Box<str>);

/// How one request is cached.
///
/// A wrong key is cache poisoning: two requests that may get different
/// responses must never share a key. `proxy/key.rs` is the only place that
/// builds one.
#[derive(Clone, Debug)]
pub struct CacheKey {
    /// The route name: the metric label and the Redis key namespace.
    pub route: Arc<str>,
    /// The digest that selects the entry.
    pub hash: KeyHash,
    /// Tokens whose generations the entry depends on; never empty (the first
    /// is always the route token).
    pub tokens: Vec<Token>,
}

/// One stored response.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key this entry was stored under; a mismatch on read is a miss.
    pub key: KeyHash,
    /// Response status.
    pub status: StatusCode,
    /// End-to-end response headers as received (no hop-by-hop headers, no `Age`).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When the response was received.
    pub stored_at: SystemTime,
    /// `Age` the response already had when received (RFC 9111 §4.2.3).
    pub initial_age: Duration,
    /// Until when it is fresh.
    pub fresh_until: SystemTime,
    /// Until when it may be served stale while it is refreshed in the
    /// background (`stale-while-revalidate`).
    pub stale_while_revalidate_until: SystemTime,
    /// Until when it may be served stale if the upstream fails
    /// (`stale-if-error`).
    pub stale_if_error_until: SystemTime,
    /// Never served stale, and revalidated when stale (`must-revalidate`,
    /// `proxy-revalidate`, `no-cache`).
    pub must_revalidate: bool,
    /// Until when the store keeps it: freshness, stale windows, and a while
    /// longer when it has validators, for cheap revalidation.
    pub keep_until: SystemTime,
    /// The request's values of the headers named by the response's `Vary`.
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Generations of the key's tokens when the fill started, in token order.
    pub generations: Vec<u64>,
    /// The response may also be served to requests with credentials
    /// (RFC 9111 §3.5, or the route's `share_authenticated`).
    pub shareable_with_auth: bool,
}

/// What is stored under one key.
#[derive(Clone, Debug)]
pub enum Record {
    /// A response.
    Response(Arc<Entry>),
    /// The response at this key varies (`Vary`): the variants are stored
    /// under keys derived from this one and the request's values of `names`.
    Variants(Arc<Variants>),
}

/// The index of a URL's variants (DESIGN.md §7, RFC 9111 §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variants {
    /// The primary key this index is stored under.
    pub key: KeyHash,
    /// Lower-cased header names from the response's `Vary`, sorted.
    pub names: Vec<HeaderName>,
    /// Variant keys stored so far; bounded by `cache.max_variants`.
    pub known: Vec<KeyHash>,
    /// Until when the store keeps the index (the longest-kept variant).
    pub keep_until: SystemTime,
}

/// What [`Store::lookup`] found.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// The stored record, if any; not yet checked against `generations`.
    pub record: Option<Record>,
    /// Current generation of each token of the key, in token order.
    pub generations: Vec<u64>,
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

/// A cache backend. Implementations: [`memory::MemoryStore`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The metric label of the backend (`memory`, `redis`, ...).
    fn backend(&self) -> &'static str;

    /// Called on every cacheable request. Returns the entry stored under
    /// `key.hash` (if any) and the current generation of every token of the
    /// key. A token without a counter must get a fresh value that no entry
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

/// The store as the proxy uses it: every call timed and every error
/// counted, and writes to a remote store done in the background.
#[derive(Clone)]
pub struct Cache {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// `store_operation_duration_seconds` by [`Op`], looked up once.
    timers: Arc<[std::sync::OnceLock<prometheus::Histogram>; Op::ALL.len()]>,
    writes: Arc<tokio::sync::Semaphore>,
}

/// A timed store operation: the `op` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lookup,
    Insert,
    Bump,
    Lock,
    Unlock,
}

impl Op {
    const ALL: [Op; 5] = [Op::Lookup, Op::Insert, Op::Bump, Op::Lock, Op::Unlock];

    fn as_str(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Insert => "insert",
            Op::Bump => "bump",
            Op::Lock => "lock",
            Op::Unlock => "unlock",
        }
    }
}

/// Most background writes in flight at once. A store that cannot keep up
/// (or is down and timing out) must not turn into unbounded memory; writes
/// beyond this are dropped and counted in `store_writes_dropped_total`.
pub const MAX_PENDING_WRITES: usize = 1024;

/// Something to run after a background write (releasing a fill lock).
pub type AfterWrite = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The `X-Cache` value and the `cache_status` metric label of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache without contacting the upstream.
    Hit,
    /// Fetched from the upstream for a cacheable request.
    Miss,
    /// Served stale (stale-while-revalidate or stale-if-error).
    Stale,
    /// A stored response was revalidated with the upstream (304).
    Revalidated,
    /// The cache was not used for this request.
    Bypass,
}

/// Why a response was not stored (or a request not served from the cache).
/// The same string is the `Cache-Status` detail, the log field and the
/// `not_stored_total{reason}` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoCacheReason {
    /// HEAD misses are forwarded as HEAD and have no body to store.
    Method,
    /// The status code is not cacheable.
    Status,
    /// `206 Partial Content` is never stored.
    Partial,
    /// `Cache-Control: no-store` on the response.
    NoStore,
    /// `Cache-Control: no-store` on the request.
    RequestNoStore,
    /// `Cache-Control: private` (and the route does not allow it).
    Private,
    /// `Cache-Control: no-cache` on the response.
    NoCache,
    /// The response sets a cookie.
    SetCookie,
    /// `Vary: *`.
    VaryStar,
    /// The request carried credentials and the response does not allow
    /// sharing it (RFC 9111 §3.5).
    Authorization,
    /// The response was already stale when received.
    Expired,
    /// The response is not storable for another RFC 9111 reason.
    NotStorable,
    /// The body exceeds `cache.max_body_bytes`.
    TooLarge,
    /// The URL already has `cache.max_variants` variants stored.
    Variants,
    /// A coalesced request waited past `coalesce.wait_timeout` and went
    /// upstream itself.
    WaitTimeout,
    /// The upstream body failed or ended early while being read.
    Incomplete,
    /// The store failed.
    StorageError,
}

/// Why a request bypassed the cache altogether.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BypassReason {
    /// No route matches the request.
    NoRoute,
    /// `cache.enabled: false`.
    Disabled,
    /// A method that is never served from the cache.
    Method,
    /// A `scope: user` route and the request has no identity.
    NoIdentity,
    /// A GET or HEAD with a body.
    RequestBody,
    /// A request target that cannot be normalized (answered 400).
    Invalid,
    /// `If-Match`, `If-Unmodified-Since` or `If-Range`: preconditions the
    /// origin evaluates.
    Conditional,
}

// === impl Token ===

impl Token {
    /// The token every entry of `route` depends on.
    pub fn route(route: &str) -> Self {
        Token(format!("r:{route}").into())
    }

    /// The token of the entries of `route` whose captures have these values.
    pub fn binding<'a>(route: &str, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut s = format!("b:{route}|");
        for (i, (name, value)) in pairs.into_iter().enumerate() {
            if i > 0 {
                s.push('&');
            }
            s.push_str(name);
            s.push('=');
            push_escaped(&mut s, value);
        }
        Token(s.into())
    }

    /// The token of every entry stored for this normalized path, across
    /// query strings, users and variants.
    pub fn url(path: &str) -> Self {
        let mut s = String::with_capacity(path.len() + 2);
        s.push_str("u:");
        push_escaped(&mut s, path);
        Token(s.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Escapes the separators a token uses, so that two different bindings never
/// spell the same token. (Escaping may merge `&` with `%26`: that only ever
/// invalidates more, never less.)
fn push_escaped(out: &mut String, value: &str) {
    if !value.contains(['&', '=', '|']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '&' => out.push_str("%26"),
            '=' => out.push_str("%3D"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl KeyHash ===

impl KeyHash {
    /// Lower-case hex, for Redis keys and `/admin/explain`.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", &self.to_hex()[..16])
    }
}

// === impl Entry ===

impl Entry {
    /// The plainest entry: a `200` with `body` and no headers, stored at
    /// `now`, fresh and kept for `keep`, filled under `generations`. For
    /// tests, benches and tools; the proxy builds entries from responses.
    pub fn fresh(
        key: KeyHash,
        body: Bytes,
        now: SystemTime,
        keep: Duration,
        generations: Vec<u64>,
    ) -> Self {
        Self {
            key,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body,
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + keep,
            stale_while_revalidate_until: now + keep,
            stale_if_error_until: now + keep,
            must_revalidate: false,
            keep_until: now + keep,
            vary: Vec::new(),
            generations,
            shareable_with_auth: false,
        }
    }

    /// `Age` at `now` (RFC 9111 §4.2.3): age when received plus resident time.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.stored_at).unwrap_or_default()
    }

    /// Whether the entry is fresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.fresh_until
    }

    /// Seconds of freshness left at `now`; negative once stale.
    pub fn ttl_secs(&self, now: SystemTime) -> i64 {
        match self.fresh_until.duration_since(now) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => {
                let past = past.duration();
                -(past.as_secs() as i64) - i64::from(past.subsec_nanos() > 0)
            }
        }
    }

    /// How much longer a store should keep the entry.
    pub fn keep_for(&self, now: SystemTime) -> Duration {
        self.keep_until.duration_since(now).unwrap_or_default()
    }

    /// Approximate memory footprint, for the byte-bounded memory store:
    /// the body, each header's bytes plus its map slot and value buffer,
    /// and the entry itself with its store bookkeeping.
    pub fn weight(&self) -> u64 {
        // What an entry costs beyond its bytes, measured (docs/benchmarks.md):
        // the Entry, its HeaderMap and moka's node, queues and timer.
        const PER_ENTRY: usize = 1024;
        const PER_HEADER: usize = 160;
        let headers: usize = self
            .headers
            .iter()
            .chain(self.vary.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))))
            .map(|(k, v)| k.as_str().len() + v.len() + PER_HEADER)
            .sum();
        (PER_ENTRY + self.body.len() + headers + self.generations.len() * 8) as u64
    }

    /// Whether the request presents the same values (normalized) for the
    /// headers named by the response's `Vary` as the request that filled it.
    pub fn vary_matches(&self, request: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, value)| {
            normalized_field(request, name).as_deref() == value.as_ref().map(|v| v.as_bytes())
        })
    }

    /// The stored `ETag`.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(http::header::ETAG)
    }

    /// The stored `Last-Modified`.
    pub fn last_modified(&self) -> Option<&HeaderValue> {
        self.headers.get(http::header::LAST_MODIFIED)
    }

    /// Whether it can be revalidated with a conditional request.
    pub fn has_validators(&self) -> bool {
        self.etag().is_some() || self.last_modified().is_some()
    }
}

/// A request header field as `Vary` compares it: all lines combined, list
/// members trimmed and joined with `,` (so `1,2`, ` 1, 2 ` and two lines
/// `1` and `2` are the same). `None` when absent.
pub fn normalized_field(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut out = Vec::new();
    for value in values {
        for member in value.as_bytes().split(|b| *b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
        }
    }
    Some(out)
}

// === impl Record ===

impl Record {
    /// Approximate memory footprint.
    pub fn weight(&self) -> u64 {
        match self {
            Record::Response(e) => e.weight(),
            Record::Variants(v) => 256 + 32 * v.known.len() as u64 + 32 * v.names.len() as u64,
        }
    }

    /// Until when a store should keep it.
    pub fn keep_until(&self) -> SystemTime {
        match self {
            Record::Response(e) => e.keep_until,
            Record::Variants(v) => v.keep_until,
        }
    }

    /// How much longer a store should keep it.
    pub fn keep_for(&self, now: SystemTime) -> Duration {
        self.keep_until().duration_since(now).unwrap_or_default()
    }
}

/// Headers added to an entry's own when it is served (`Age`,
/// `Cache-Status`, `X-Cache`). Stored maps have room for them in their hash
/// table (see [`compact`]), so that a hit's copy of the map does not rehash
/// it as they go in.
pub const SERVED_EXTRA: usize = 3;

/// `headers`, built with room for [`SERVED_EXTRA`] more, as it is stored: a
/// clone keeps the hash table's size (4 bytes a slot) but gives the entries
/// exactly their length, where the original holds spare ones (100 bytes
/// each, 7 for a typical response: 70 MB over 100k entries).
pub fn compact(headers: &HeaderMap) -> HeaderMap {
    headers.clone()
}

/// A copy of `headers` that owns its bytes. Header values parsed by hyper
/// are slices of the connection's read buffer; storing them as they are
/// would keep that whole buffer alive as long as the entry.
///
/// The values are copied into one buffer and each is a slice of it: two
/// allocations for the lot rather than two for each value (its bytes, and
/// the shared count made when the map is compacted or a hit clones it).
pub fn detached_headers(headers: &HeaderMap) -> HeaderMap {
    let mut bytes = Vec::with_capacity(headers.iter().map(|(_, v)| v.len()).sum());
    for (_, value) in headers {
        bytes.extend_from_slice(value.as_bytes());
    }
    let bytes = Bytes::from(bytes);
    let mut out = HeaderMap::with_capacity(headers.len() + SERVED_EXTRA);
    let mut at = 0;
    for (name, value) in headers {
        let end = at + value.len();
        let copy = HeaderValue::from_maybe_shared(bytes.slice(at..end))
            .map(|mut copy| {
                copy.set_sensitive(value.is_sensitive());
                copy
            })
            // The bytes came from a valid HeaderValue, so they are valid again.
            .unwrap_or_else(|_| value.clone());
        out.append(name.clone(), copy);
        at = end;
    }
    compact(&out)
}

/// A copy of one header value that owns its bytes.
pub fn detached_value(value: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
        // The bytes came from a valid HeaderValue, so they are valid again.
        .unwrap_or_else(|_| value.clone());
    copy.set_sensitive(value.is_sensitive());
    copy
}

// === impl Cache ===

impl Cache {
    /// Wraps a store with timing and error metrics.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            timers: Arc::default(),
            writes: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_WRITES)),
        }
    }

    /// Stores `records` in order, then runs `then`. In-process stores write
    /// at once; remote ones in the background, so the response is never
    /// delayed by a write. Returns whether the write was accepted (false
    /// when it failed inline or too many writes were pending).
    pub async fn store(&self, records: Vec<(CacheKey, Record)>, then: Option<AfterWrite>) -> bool {
        if self.store.writes_inline() {
            let mut ok = true;
            for (key, record) in records {
                ok = ok && self.insert(&key, record).await.is_ok();
            }
            if let Some(then) = then {
                then.await;
            }
            return ok;
        }
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            self.metrics
                .store_writes_dropped_total
                .with_label_values(&[self.backend()])
                .inc();
            if let Some(then) = then {
                tokio::spawn(then);
            }
            return false;
        };
        let cache = self.clone();
        tokio::spawn(async move {
            for (key, record) in records {
                if cache.insert(&key, record).await.is_err() {
                    break;
                }
            }
            if let Some(then) = then {
                then.await;
            }
            drop(permit);
        });
        true
    }

    /// Waits at most `within` for background writes to finish (at
    /// shutdown). Returns how many were still pending.
    pub async fn drain(&self, within: Duration) -> usize {
        let all = MAX_PENDING_WRITES as u32;
        match tokio::time::timeout(within, self.writes.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => MAX_PENDING_WRITES - self.writes.available_permits(),
        }
    }

    /// [`Store::try_lock`], timed.
    ///
    /// # Errors
    ///
    /// As the store's, after counting it.
    pub async fn try_lock(&self, key: &CacheKey, ttl: Duration) -> Result<FillLock, StoreError> {
        let start = Instant::now();
        let result = self.store.try_lock(key, ttl).await;
        self.observe(Op::Lock, start, result.as_ref().err());
        result
    }

    /// [`Store::unlock`], timed; failures are counted and logged only.
    pub async fn unlock(&self, key: &CacheKey, token: u64, uncacheable_for: Option<Duration>) {
        let start = Instant::now();
        let result = self.store.unlock(key, token, uncacheable_for).await;
        self.observe(Op::Unlock, start, result.as_ref().err());
    }

    /// The store's health.
    pub fn health(&self) -> StoreHealth {
        self.store.health()
    }

    /// Background writes in flight.
    pub fn pending_writes(&self) -> usize {
        MAX_PENDING_WRITES - self.writes.available_permits()
    }

    /// The backend label.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// [`Store::lookup`], timed.
    ///
    /// # Errors
    ///
    /// As the store's, after counting it.
    pub async fn lookup(&self, key: &CacheKey) -> Result<Lookup, StoreError> {
        let start = Instant::now();
        let result = self.store.lookup(key).await;
        self.observe(Op::Lookup, start, result.as_ref().err());
        result
    }

    /// [`Store::insert`], timed.
    ///
    /// # Errors
    ///
    /// As the store's, after counting it.
    pub async fn insert(&self, key: &CacheKey, record: Record) -> Result<(), StoreError> {
        let start = Instant::now();
        let result = self.store.insert(key, record).await;
        self.observe(Op::Insert, start, result.as_ref().err());
        result
    }

    /// [`Store::bump`], timed.
    ///
    /// # Errors
    ///
    /// As the store's, after counting it.
    pub async fn bump(&self, tokens: &[Token]) -> Result<(), StoreError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let result = self.store.bump(tokens).await;
        self.observe(Op::Bump, start, result.as_ref().err());
        result
    }

    /// Refreshes the memory gauges; called before `/metrics` is rendered.
    pub fn refresh_gauges(&self) {
        if let Some(usage) = self.store.usage() {
            self.metrics
                .memory_store_bytes
                .set(i64::try_from(usage.bytes).unwrap_or(i64::MAX));
            self.metrics
                .memory_store_entries
                .set(i64::try_from(usage.entries).unwrap_or(i64::MAX));
        }
    }

    fn observe(&self, op: Op, start: Instant, error: Option<&StoreError>) {
        let backend = self.store.backend();
        self.timers[op as usize]
            .get_or_init(|| {
                self.metrics
                    .store_operation_duration_seconds
                    .with_label_values(&[backend, op.as_str()])
            })
            .observe(start.elapsed().as_secs_f64());
        if let Some(error) = error {
            let op = op.as_str();
            self.metrics
                .store_errors_total
                .with_label_values(&[backend, op])
                .inc();
            if matches!(error, StoreError::CircuitOpen) {
                // The opening was logged once by the breaker; not per request.
                tracing::debug!(backend, op, "cache store skipped: circuit open");
            } else {
                tracing::warn!(backend, op, cause = %error, "cache store operation failed");
            }
        }
    }
}

// === impl CacheStatus ===

impl CacheStatus {
    /// The `X-Cache` header value.
    pub const fn x_cache(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Bypass => "bypass",
        }
    }
}

// === impl NoCacheReason ===

impl NoCacheReason {
    /// Every reason, in declaration order (`ALL[r as usize] == r`).
    pub const ALL: [NoCacheReason; 17] = [
        NoCacheReason::Method,
        NoCacheReason::Status,
        NoCacheReason::Partial,
        NoCacheReason::NoStore,
        NoCacheReason::RequestNoStore,
        NoCacheReason::Private,
        NoCacheReason::NoCache,
        NoCacheReason::SetCookie,
        NoCacheReason::VaryStar,
        NoCacheReason::Authorization,
        NoCacheReason::Expired,
        NoCacheReason::NotStorable,
        NoCacheReason::TooLarge,
        NoCacheReason::Variants,
        NoCacheReason::WaitTimeout,
        NoCacheReason::Incomplete,
        NoCacheReason::StorageError,
    ];

    /// The detail token, log field and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCacheReason::Method => "method",
            NoCacheReason::Status => "status",
            NoCacheReason::Partial => "partial",
            NoCacheReason::NoStore => "no-store",
            NoCacheReason::RequestNoStore => "request-no-store",
            NoCacheReason::Private => "private",
            NoCacheReason::NoCache => "no-cache",
            NoCacheReason::SetCookie => "set-cookie",
            NoCacheReason::VaryStar => "vary-star",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::Expired => "expired",
            NoCacheReason::NotStorable => "not-storable",
            NoCacheReason::TooLarge => "too-large",
            NoCacheReason::Variants => "variants",
            NoCacheReason::WaitTimeout => "wait-timeout",
            NoCacheReason::Incomplete => "incomplete",
            NoCacheReason::StorageError => "storage-error",
        }
    }
}

// === impl BypassReason ===

impl BypassReason {
    /// Every reason, in declaration order.
    pub const ALL: [BypassReason; 7] = [
        BypassReason::NoRoute,
        BypassReason::Disabled,
        BypassReason::Method,
        BypassReason::NoIdentity,
        BypassReason::RequestBody,
        BypassReason::Invalid,
        BypassReason::Conditional,
    ];

    /// The `Cache-Status` detail and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::NoRoute => "no-route",
            BypassReason::Disabled => "disabled",
            BypassReason::Method => "method",
            BypassReason::NoIdentity => "no-identity",
            BypassReason::RequestBody => "request-body",
            BypassReason::Invalid => "invalid-request",
            BypassReason::Conditional => "conditional",
        }
    }

    /// The whole `Cache-Status` member of a bypass for this reason, spelled
    /// out once instead of rendered per request.
    pub const fn cache_status(self) -> &'static str {
        match self {
            BypassReason::NoRoute => "cachecar; fwd=bypass; detail=no-route",
            BypassReason::Disabled => "cachecar; fwd=bypass; detail=disabled",
            BypassReason::Method => "cachecar; fwd=bypass; detail=method",
            BypassReason::NoIdentity => "cachecar; fwd=bypass; detail=no-identity",
            BypassReason::RequestBody => "cachecar; fwd=bypass; detail=request-body",
            BypassReason::Invalid => "cachecar; fwd=bypass; detail=invalid-request",
            BypassReason::Conditional => "cachecar; fwd=bypass; detail=conditional",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_headers_own_their_bytes_in_order_with_room_to_serve() {
        // As hyper parses them: slices of the connection's read buffer.
        let wire = Bytes::from(b"text/plainmax-age=60onetwosecret".to_vec());
        let slice =
            |r: std::ops::Range<usize>| HeaderValue::from_maybe_shared(wire.slice(r)).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(http::header::CONTENT_TYPE, slice(0..10));
        headers.append(http::header::CACHE_CONTROL, slice(10..20));
        headers.append("x-multi", slice(20..23));
        headers.append("x-multi", slice(23..26));
        headers.append("x-empty", HeaderValue::from_static(""));
        let mut secret = slice(26..32);
        secret.set_sensitive(true);
        headers.append(http::header::AUTHORIZATION, secret);

        let out = detached_headers(&headers);
        let pairs = |h: &HeaderMap| -> Vec<(String, Vec<u8>, bool)> {
            h.iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec(), v.is_sensitive()))
                .collect()
        };
        assert_eq!(pairs(&out), pairs(&headers));
        let wire_range = wire.as_ptr_range();
        for (name, value) in &out {
            assert!(
                !wire_range.contains(&value.as_bytes().as_ptr()),
                "{name} still points into the read buffer"
            );
        }
        assert!(out.capacity() >= headers.len() + SERVED_EXTRA);
    }

    #[test]
    fn tokens_escape_their_separators() {
        assert_eq!(Token::route("docs").as_str(), "r:docs");
        assert_eq!(
            Token::binding("c", [("id", "4&x=2"), ("m", "a|b")]).as_str(),
            "b:c|id=4%26x%3D2&m=a%7Cb"
        );
        assert_ne!(
            Token::binding("c", [("id", "1&m=2")]),
            Token::binding("c", [("id", "1"), ("m", "2")])
        );
        assert_eq!(Token::url("/a/b").as_str(), "u:/a/b");
    }

    #[test]
    fn vary_fields_are_normalized_before_comparing() {
        let name = HeaderName::from_static("foo");
        let mut a = HeaderMap::new();
        a.insert(&name, HeaderValue::from_static("1,2"));
        let mut b = HeaderMap::new();
        b.insert(&name, HeaderValue::from_static(" 1, 2 "));
        let mut c = HeaderMap::new();
        c.append(&name, HeaderValue::from_static("1"));
        c.append(&name, HeaderValue::from_static("2"));
        let n = normalized_field(&a, &name);
        assert_eq!(n.as_deref(), Some(&b"1,2"[..]));
        assert_eq!(n, normalized_field(&b, &name));
        assert_eq!(n, normalized_field(&c, &name));
        assert_eq!(normalized_field(&HeaderMap::new(), &name), None);
    }

    #[test]
    fn entry_ttl_counts_down_and_goes_negative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let entry = Entry {
            key: KeyHash([0; 32]),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            stored_at: now,
            initial_age: Duration::from_secs(5),
            fresh_until: now + Duration::from_secs(60),
            stale_while_revalidate_until: now + Duration::from_secs(60),
            stale_if_error_until: now + Duration::from_secs(60),
            must_revalidate: false,
            keep_until: now + Duration::from_secs(60),
            vary: Vec::new(),
            generations: vec![1],
            shareable_with_auth: false,
        };
        assert_eq!(entry.ttl_secs(now), 60);
        assert_eq!(
            entry.age(now + Duration::from_secs(10)),
            Duration::from_secs(15)
        );
        assert!(entry.is_fresh(now + Duration::from_secs(59)));
        assert!(!entry.is_fresh(now + Duration::from_secs(60)));
        assert_eq!(entry.ttl_secs(now + Duration::from_secs(61)), -1);
        assert_eq!(entry.ttl_secs(now + Duration::from_millis(60_500)), -1);
    }

    /// A remote store whose inserts block until released.
    struct Stalled {
        release: Arc<tokio::sync::Semaphore>,
        inserted: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl Store for Stalled {
        fn backend(&self) -> &'static str {
            "stalled"
        }
        async fn lookup(&self, _: &CacheKey) -> Result<Lookup, StoreError> {
            Ok(Lookup::default())
        }
        async fn insert(&self, _: &CacheKey, _: Record) -> Result<(), StoreError> {
            let _permit = self.release.acquire().await;
            self.inserted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        async fn bump(&self, _: &[Token]) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn variants_record() -> Record {
        Record::Variants(Arc::new(Variants {
            key: KeyHash([1; 32]),
            names: Vec::new(),
            known: Vec::new(),
            keep_until: SystemTime::now() + Duration::from_secs(60),
        }))
    }

    #[tokio::test]
    async fn background_writes_never_wait_and_are_bounded() {
        let store = Arc::new(Stalled {
            release: Arc::new(tokio::sync::Semaphore::new(0)),
            inserted: Default::default(),
        });
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(Metrics::new(&registry).unwrap());
        let cache = Cache::new(store.clone(), metrics.clone());
        let key = CacheKey {
            route: "r".into(),
            hash: KeyHash([1; 32]),
            tokens: vec![Token::route("r")],
        };
        // The store never completes a write, yet every call returns at once.
        let started = Instant::now();
        let mut accepted = 0;
        for _ in 0..MAX_PENDING_WRITES + 10 {
            accepted += usize::from(
                cache
                    .store(vec![(key.clone(), variants_record())], None)
                    .await,
            );
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(accepted, MAX_PENDING_WRITES);
        assert_eq!(cache.pending_writes(), MAX_PENDING_WRITES);
        let dropped = metrics
            .store_writes_dropped_total
            .with_label_values(&["stalled"])
            .get();
        assert_eq!(dropped, 10);
        // Released, they all land, and drain sees none pending.
        store.release.add_permits(MAX_PENDING_WRITES);
        assert_eq!(cache.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(
            store.inserted.load(std::sync::atomic::Ordering::Relaxed),
            MAX_PENDING_WRITES
        );
    }
}
