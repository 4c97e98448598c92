//! Purges that could not reach Redis, and the background prober that
//! replays them and re-admits Redis.
//!
//! A purge is never silently lost: its tokens are kept ([`Pending`]) and
//! bumped when Redis answers again, in the same guarded call as the probe
//! that closes the circuit, so no lookup can read an entry the purge should
//! have ended. Meanwhile lookups of keys with a pending token are misses.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RedisStore;
use super::conn::run_scripts;
use crate::cache::{StoreError, Token};

/// How often the prober checks whether an open circuit may be probed.
const PROBE_TICK: Duration = Duration::from_millis(100);
/// How often a healthy Redis is pinged to keep `store_up` current.
const HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Most failed purge tokens kept for replay; beyond this they are dropped
/// and logged (entries still expire by their own `PX`).
const MAX_PENDING_BUMPS: usize = 100_000;
/// Tokens replayed per probe.
const REPLAY_BATCH: usize = 512;

/// Tokens whose bump failed, waiting for Redis.
#[derive(Default)]
pub(super) struct Pending {
    set: Mutex<PendingSet>,
    /// `set.tokens.len()`, read without the lock on every lookup.
    count: AtomicUsize,
}

#[derive(Default)]
struct PendingSet {
    tokens: BTreeSet<Token>,
    /// Bumps dropped because the set was full.
    dropped: u64,
}

impl Pending {
    fn set(&self) -> std::sync::MutexGuard<'_, PendingSet> {
        // Held for set operations only.
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many tokens wait.
    pub(super) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether one of `tokens` waits.
    pub(super) fn any(&self, tokens: &[Token]) -> bool {
        self.len() > 0 && {
            let set = self.set();
            tokens.iter().any(|t| set.tokens.contains(t))
        }
    }

    /// Keeps `tokens` for replay after a failed bump.
    pub(super) fn defer(&self, tokens: &[Token]) {
        let mut set = self.set();
        let mut dropped = 0;
        for token in tokens {
            if set.tokens.len() < MAX_PENDING_BUMPS {
                set.tokens.insert(token.clone());
            } else if !set.tokens.contains(token) {
                dropped += 1;
            }
        }
        self.count.store(set.tokens.len(), Ordering::Release);
        if dropped > 0 {
            set.dropped += dropped;
            tracing::error!(
                dropped,
                total_dropped = set.dropped,
                "too many purges pending while redis is unreachable; some are lost"
            );
        }
    }

    /// The next tokens to replay.
    fn batch(&self) -> Vec<Token> {
        self.set()
            .tokens
            .iter()
            .take(REPLAY_BATCH)
            .cloned()
            .collect()
    }

    /// Forgets `replayed`, which Redis now holds.
    fn replayed(&self, replayed: &[Token]) {
        let mut set = self.set();
        for token in replayed {
            set.tokens.remove(token);
        }
        self.count.store(set.tokens.len(), Ordering::Release);
        tracing::info!(
            tokens = replayed.len(),
            left = set.tokens.len(),
            "replayed purges made while redis was unreachable"
        );
    }
}

/// Why the prober calls on Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Probe {
    /// At start, so `store_up` is right from the start.
    FirstContact,
    /// The circuit is open and its wait is over: is Redis usable again?
    Recovery,
    /// The circuit is closed: replay what is pending, or check health.
    Routine,
}

impl RedisStore {
    /// Pings Redis and replays pending purges, as one guarded call: the
    /// breaker closes only when both worked, so lookups resume only once
    /// every purge made during the outage holds. Recovering from an outage
    /// it also puts up the fence (`fence_after_outage`): every route's
    /// token is bumped, so nothing stored before the outage is served,
    /// since another instance's purges may have been lost meanwhile
    /// (docs/redis.md, "Consistency").
    pub(super) async fn probe(&self, why: Probe) -> Result<(), StoreError> {
        let replay = self.inner.pending.batch();
        let fence = match (why, self.inner.fence.get()) {
            (Probe::Recovery, Some(tokens)) if self.inner.settings.fence_after_outage => tokens(),
            _ => Vec::new(),
        };
        let mut bumped: Vec<&Token> = replay.iter().chain(&fence).collect();
        bumped.sort_unstable();
        bumped.dedup();
        let scripts = &self.inner.scripts;
        let calls = self.per_token(scripts.bump(), &bumped);
        let channel = self.channel();
        let payload = publish_payload(bumped.iter().copied());
        let result = self
            .guarded(why != Probe::Routine, |mut c| async move {
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
            self.inner.pending.replayed(&replay);
        }
        if result.is_ok() && !fence.is_empty() {
            self.inner.fenced.inc();
            tracing::warn!(
                routes = fence.len(),
                "redis usable again after an outage: entries stored before it are no longer served"
            );
        }
        if let Err(StoreError::Unavailable(e)) = &result {
            scripts.refused_flags(e); // the next probe sends the plain ones
        }
        result
    }

    /// Probes while the circuit is open, replays pending purges once it
    /// closes, and pings a healthy Redis now and then, until `shutdown`.
    pub(super) fn spawn_prober(&self, shutdown: CancellationToken) {
        let store = self.clone();
        tokio::spawn(async move {
            let _ = store.probe(Probe::FirstContact).await;
            let mut since_health = Duration::ZERO;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(PROBE_TICK) => {}
                }
                since_health += PROBE_TICK;
                let breaker = &store.inner.breaker;
                let probing = breaker.probe_due(store.inner.pending.len() > 0);
                let replay = breaker.allow() && store.inner.pending.len() > 0;
                if probing {
                    since_health = Duration::ZERO;
                    let _ = store.probe(Probe::Recovery).await;
                } else if replay || (breaker.allow() && since_health >= HEALTH_EVERY) {
                    since_health = Duration::ZERO;
                    let _ = store.probe(Probe::Routine).await;
                }
            }
        });
    }

    /// Publishes that `tokens` changed, for every instance's L1.
    pub(super) async fn publish(&self, tokens: &[Token]) -> Result<(), StoreError> {
        let payload = publish_payload(tokens);
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.channel()).arg(payload);
        self.query::<i64>(cmd).await.map(|_| ())
    }
}

/// The invalidation message: the tokens, one per line.
fn publish_payload<'t>(tokens: impl IntoIterator<Item = &'t Token>) -> String {
    tokens
        .into_iter()
        .map(Token::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}
