//! Coalescing across instances (`coalesce.across_instances`): the leader
//! of this instance's flight also takes the store's fill lock for the key,
//! so one instance of the fleet fills it and the others find its entry.
//! A holder that died is replaced when its lock expires (the lock lives
//! `upstream.timeout` plus a margin).

use std::sync::Arc;
use std::time::Duration;

use super::coalesce::HIT_FOR_MISS_TTL;
use super::{Fetched, Fill};
use crate::cache::{Entry, FillLock};
use crate::outcome::CacheOutcome;
use crate::proxy::lookup::{self, Usable};
use crate::proxy::policy::{self, Verdict};

/// A fill lock outlives the upstream timeout by this much, so a live holder
/// never loses it, and a dead one's is taken over soon after.
const LOCK_MARGIN: Duration = Duration::from_secs(1);
/// Waiting on another instance's fill: the first poll (each poll is one
/// lookup).
const FIRST_POLL: Duration = Duration::from_millis(10);
/// The longest between polls.
const MAX_POLL: Duration = Duration::from_millis(100);

impl Fill {
    /// Takes the store's fill lock and fills; or, while another instance
    /// holds it, polls the store for its result, and past `wait_timeout`
    /// goes upstream without storing.
    pub(super) async fn fetch_across(mut self: Box<Self>) -> Fetched {
        let ttl = self.config.upstream.timeout + LOCK_MARGIN;
        let deadline = tokio::time::Instant::now() + self.config.cache.coalesce.wait_timeout;
        let mut poll = FIRST_POLL;
        loop {
            match self.core.cache.try_lock(&self.key, ttl).await {
                Ok(FillLock::Acquired(token)) => return self.fetch_locked(token).await,
                Ok(FillLock::Held) => {}
                Ok(FillLock::Uncacheable | FillLock::Unsupported) | Err(_) => {
                    return Box::pin(self.fetch()).await;
                }
            }
            if tokio::time::Instant::now() + poll > deadline {
                self.store = false;
                return Box::pin(self.fetch()).await;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(MAX_POLL);
            if let Some(entry) = self.filled_elsewhere().await {
                self.route.metrics.coalesced(&self.core.metrics);
                let collapsed = CacheOutcome::miss(self.why.fwd).collapsed();
                return Fetched::from_elsewhere(entry, collapsed);
            }
        }
    }

    /// A fill holding the lock: released after the write when the response
    /// is stored, at once otherwise (marked uncacheable when it is).
    async fn fetch_locked(mut self: Box<Self>, token: u64) -> Fetched {
        self.lock = Some(token);
        let fetched = Box::pin(self.fetch()).await;
        let handed_over = matches!(&fetched, Fetched::Entry { outcome, .. } if outcome.stored);
        if !handed_over {
            let uncacheable = matches!(fetched, Fetched::Response { .. });
            let mark = uncacheable.then_some(HIT_FOR_MISS_TTL);
            self.core.cache.unlock(&self.key, token, mark).await;
        }
        fetched
    }

    /// A fresh entry another instance stored for this request, if any.
    async fn filled_elsewhere(&self) -> Option<Arc<Entry>> {
        let found = lookup::find(&self.core.cache, &self.key, &self.headers).await?;
        let now = self.core.clock.now();
        match lookup::usable(&found, &self.headers, self.credentials, now) {
            Usable::Yes(entry)
                if policy::judge(&entry, &self.directives, now) == Verdict::Fresh =>
            {
                Some(entry)
            }
            _ => None,
        }
    }
}
