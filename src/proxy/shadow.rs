//! Phases 6 and 7 for a route in `mode: shadow` (docs/invalidation.md,
//! "Shadow mode"): the cache is looked up and filled exactly as it would
//! be, but every client gets the app's answer. When the cache would have
//! answered (a fresh stored response), the request goes to the app anyway
//! and the two answers are compared; a difference is an invalidation the
//! rules miss. Costs one comparison of the bodies (no digest: the stored
//! body is in hand) on a would-be hit, nothing more on a miss.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Response};

use super::body::{self, Body, Collected};
use super::conditional;
use super::fill::Fill;
use super::key::Keyed;
use super::lookup::Found;
use super::policy::{self, Verdict};
use super::respond::{Answer, Outcome};
use super::serve::{self, Asks, Why};
use super::upstream::{Peer, UpstreamRequest};
use super::{Core, ProxyError};
use crate::cache::Entry;
use crate::config::RuntimeConfig;
use crate::metrics::ShadowResult;
use crate::outcome::{BypassReason, CacheOutcome, Fwd};
use crate::rules::shadow::{self as rules, Difference};

/// Mismatches logged per route (and config generation); the metric counts
/// them all.
const LOGGED_PER_ROUTE: u32 = 10;
/// Writes remembered, for the mismatch log.
const WRITES_KEPT: usize = 128;
/// Writes named in one mismatch log line.
const WRITES_SHOWN: usize = 5;

/// What the cache would do with a request on a shadow route.
pub(super) enum WouldServe {
    /// Answer with this fresh stored response.
    Hit(Arc<Entry>),
    /// Go to the app.
    Fill(Why),
}

/// The latest successful writes through this instance: the candidates for
/// an invalidation a mismatch shows missing.
#[derive(Default)]
pub(super) struct RecentWrites(Mutex<VecDeque<(SystemTime, Method, String)>>);

impl RecentWrites {
    /// Remembers a write the app accepted.
    pub(super) fn record(&self, at: SystemTime, method: &Method, path: &str) {
        let mut writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if writes.len() == WRITES_KEPT {
            writes.pop_front();
        }
        writes.push_back((at, method.clone(), path.to_owned()));
    }

    /// The latest writes after `since`, newest first.
    fn since(&self, since: SystemTime) -> Vec<String> {
        let writes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        writes
            .iter()
            .rev()
            .take_while(|(at, _, _)| *at >= since)
            .take(WRITES_SHOWN)
            .map(|(_, method, path)| format!("{method} {path}"))
            .collect()
    }
}

/// Whether the cache would answer: only a fresh stored response counts; a
/// stale one would be revalidated (or served stale by choice), so it goes
/// to the app as in a fill.
pub(super) fn would_serve(
    found: Option<&Found>,
    keyed: &Keyed,
    asks: &Asks,
    now: SystemTime,
) -> WouldServe {
    let (usable, fwd) = serve::usable(found, keyed, now);
    let Some(entry) = usable else {
        return WouldServe::Fill(Why { stale: None, fwd });
    };
    match policy::judge(&entry, &asks.directives, now) {
        Verdict::Fresh => WouldServe::Hit(entry),
        _ => {
            let fwd = if entry.is_fresh(now) {
                Fwd::Request
            } else {
                Fwd::Stale
            };
            WouldServe::Fill(Why {
                stale: Some(entry),
                fwd,
            })
        }
    }
}

/// Phases 6 and 7 on a route in `mode: shadow`: the app answers; a
/// would-be hit is compared with it, a would-be miss fills as usual.
pub(super) async fn answer(
    core: &Arc<Core>,
    config: &Arc<RuntimeConfig>,
    keyed: Keyed,
    found: Option<Found>,
    asks: Asks,
    client: &Peer,
    now: SystemTime,
) -> Answer {
    match would_serve(found.as_ref(), &keyed, &asks, now) {
        WouldServe::Hit(entry) => compare(core, config, keyed, entry, client).await,
        WouldServe::Fill(why) => {
            let series = keyed.route.metrics.shadow(&core.metrics);
            series.count(ShadowResult::Miss);
            let fill = Fill::new(core, config, keyed, found, asks, client, why);
            Box::pin(fill.run()).await
        }
    }
}

/// A would-be hit: the app's answer for the client, compared with `entry`.
async fn compare(
    core: &Core,
    config: &RuntimeConfig,
    mut keyed: Keyed,
    entry: Arc<Entry>,
    client: &Peer,
) -> Answer {
    // The app answers in full, as the stored response would have.
    conditional::strip_client_conditions(&mut keyed.parts.headers);
    let route = keyed.route.clone();
    let series = route.metrics.shadow(&core.metrics);
    let bypass = CacheOutcome::bypass(BypassReason::Shadow);
    let mut outcome = Outcome::new(Some(route.clone()), bypass);
    let (head, bytes) = match live(core, config, &keyed, client, &mut outcome).await {
        Ok(live) => live,
        Err(response) => {
            series.count(ShadowResult::Uncompared);
            return Answer::new(response, outcome);
        }
    };
    let has_body = keyed.parts.method == Method::GET;
    let stored = rules::Answer {
        status: entry.status,
        headers: &entry.headers,
        body: has_body.then_some(&entry.body),
    };
    let live = rules::Answer {
        status: head.status,
        headers: &head.headers,
        body: has_body.then_some(&bytes),
    };
    match route.shadow.compare(&stored, &live) {
        None => series.count(ShadowResult::Match),
        Some(difference) => {
            series.count(ShadowResult::Mismatch);
            if series.log_one_more(LOGGED_PER_ROUTE) {
                log_mismatch(core, &keyed, &entry, &difference);
            }
        }
    }
    Answer::new(Response::from_parts(head, Body::full(bytes)), outcome)
}

/// The app's whole answer to `keyed`, or, when it cannot be compared (the
/// app failed, or its body is over `cache.max_body_bytes`), the response to
/// give as it is.
async fn live(
    core: &Core,
    config: &RuntimeConfig,
    keyed: &Keyed,
    client: &Peer,
    outcome: &mut Outcome,
) -> Result<(http::response::Parts, Bytes), Response<Body>> {
    let route = &keyed.route;
    let request = UpstreamRequest {
        method: &keyed.parts.method,
        uri: &keyed.parts.uri,
        headers: &keyed.parts.headers,
        target: &keyed.target,
        client,
    };
    let forwarded = core
        .forwarder
        .forward(config, request, None, &route.metrics);
    let (result, took) = forwarded.await;
    outcome.upstream = Some(took);
    let (head, body) = match result {
        Ok(response) => response.into_parts(),
        Err(e) => return Err(ProxyError::from(e).into_response(&route.name)),
    };
    match body::collect_limited(body, config.cache.max_body_bytes).await {
        Ok(Collected::Complete(bytes)) => Ok((head, bytes)),
        Ok(Collected::TooLarge(body)) => Err(Response::from_parts(head, body)),
        Err(e) => Err(ProxyError::UpstreamBody(e).into_response(&route.name)),
    }
}

/// The mismatch log line: what differed, and the writes since the entry
/// was filled, one of which needs an invalidation rule.
fn log_mismatch(core: &Core, keyed: &Keyed, entry: &Entry, difference: &Difference) {
    let differs = match difference {
        Difference::Status { stored, live } => {
            format!("status {stored} stored, {live} from the app")
        }
        Difference::Header(name) => format!("header {name}"),
        Difference::Body => "body".to_owned(),
    };
    let now = core.clock.now();
    let age = now
        .duration_since(entry.stored_at)
        .unwrap_or(Duration::ZERO);
    let writes = core.writes.since(entry.stored_at).join(", ");
    tracing::warn!(
        route = %keyed.route.name,
        path = %keyed.target.path,
        differs,
        entry_age_s = age.as_secs(),
        writes_since_fill = %writes,
        "shadow: the cache would have served a response the app no longer gives; \
         an invalidation rule is missing (one of the writes since the fill needs one)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_writes_are_bounded_and_listed_newest_first() {
        let writes = RecentWrites::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for n in 0..(WRITES_KEPT as u64 + 10) {
            writes.record(
                t0 + Duration::from_secs(n),
                &Method::PUT,
                &format!("/a/{n}"),
            );
        }
        assert_eq!(writes.0.lock().unwrap().len(), WRITES_KEPT);
        let last = WRITES_KEPT as u64 + 9;
        let since = writes.since(t0 + Duration::from_secs(last - 1));
        assert_eq!(
            since,
            [format!("PUT /a/{last}"), format!("PUT /a/{}", last - 1)]
        );
        assert_eq!(writes.since(t0).len(), WRITES_SHOWN);
    }
}
