//! The store as the proxy uses it ([`Cache`]): every call timed and every
//! error counted under `store_operation_duration_seconds` and
//! `store_errors_total`, and writes to a remote store done in the
//! background, bounded, so the response never waits for one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{CacheKey, FillLock, Lookup, Record, Store, StoreError, StoreHealth, Token};
use crate::metrics::Metrics;

/// The store as the proxy uses it: every call timed and every error
/// counted, and writes to a remote store done in the background.
#[derive(Clone)]
pub struct Cache {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// `store_operation_duration_seconds` by [`Op`], looked up once.
    timers: Arc<[std::sync::OnceLock<prometheus::Histogram>; Op::ALL.len()]>,
    writes: Arc<tokio::sync::Semaphore>,
    /// Purges this process has begun, for coalescing (`purges`).
    purges: Arc<AtomicU64>,
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

// === impl Cache ===

impl Cache {
    /// Wraps a store with timing and error metrics.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        // At zero from the start, so an alert on their rate sees the first
        // error.
        for op in Op::ALL {
            metrics
                .store_errors_total
                .with_label_values(&[store.backend(), op.as_str()]);
        }
        Self {
            store,
            metrics,
            timers: Arc::default(),
            writes: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_WRITES)),
            purges: Arc::default(),
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
        let result = match self.stamped(key, record).await {
            Ok(Some(record)) => self.store.insert(key, record).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
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
        // Counted before the store sees it: a request that starts once the
        // purge is answered reads a count no earlier flight carries.
        self.purges.fetch_add(1, Ordering::AcqRel);
        let start = Instant::now();
        if tokens.iter().any(Token::is_tag) {
            // The epoch strictly before the tags (see `stamped`). If its
            // bump fails it waits for replay, and until then no tagged fill
            // is stamped, so the tags may go on.
            let epoch = std::slice::from_ref(Token::tag_epoch());
            let _ = self.store.bump(epoch).await;
        }
        let result = self.store.bump(tokens).await;
        self.observe(Op::Bump, start, result.as_ref().err());
        result
    }

    /// Waits, at most `within`, for purges waiting on the store to be
    /// replayed; how many are still waiting.
    pub async fn drain_purges(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let pending = self.store.health().pending_purges;
            if pending == 0 || Instant::now() >= deadline {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Store::records_purges`].
    pub fn records_purges(&self) -> bool {
        self.store.records_purges()
    }

    /// [`Store::recorded`].
    pub async fn recorded(&self, tokens: &[Token], within: Duration) -> bool {
        self.store.recorded(tokens, within).await
    }

    /// How many purges this process has begun. A fill that joined before
    /// the latest one may have fetched what it ended.
    pub fn purges(&self) -> u64 {
        self.purges.load(Ordering::Acquire)
    }

    /// Refreshes the memory gauges and the counters read from elsewhere;
    /// called before `/metrics` is rendered.
    pub fn refresh_gauges(&self) {
        self.metrics.sync_process_counters();
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

mod stamp;

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use async_trait::async_trait;

    use super::*;
    use crate::cache::{KeyHash, Variants};

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
        async fn current(&self, tokens: &[Token]) -> Result<Vec<u64>, StoreError> {
            Ok(vec![0; tokens.len()])
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
