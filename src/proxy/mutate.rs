//! Unsafe methods (POST, PUT, PATCH, DELETE, ...): forwarded, and once the
//! upstream answers 2xx or 3xx, the generations of every purge target of
//! the matching `invalidate` rules are bumped, with those of the request's
//! own URL and of a same-origin `Location`/`Content-Location` (RFC 9111
//! §4.4), all before the client sees the answer, so it reads its own
//! writes.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;

use super::body::Body;
use super::forward::guarded_body;
use super::guard;
use super::respond::{Answer, Outcome};
use super::upstream::{BoxError, Peer, UpstreamRequest};
use super::{Core, ProxyError};
use crate::cache::redis::OnPurgeFailure;
use crate::cache::{StoreError, Token};
use crate::config::RuntimeConfig;
use crate::outcome::{BypassReason, CacheOutcome};
use crate::rules::normalize::{self, Normalized};
use crate::rules::purge::Purge;
use crate::rules::{Mode, Route, RouteTable};

/// Forwards a mutation, then invalidates what it changed.
pub(super) async fn forward<B>(
    core: &Core,
    config: &RuntimeConfig,
    request: Request<B>,
    target: &Normalized,
    client: &Peer,
) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let purge = config.invalidations.purge(request.method(), &target.path);
    let route = config.routes.find(&target.path).map(|m| m.value.clone());
    let cache = CacheOutcome::bypass(BypassReason::Method);
    if (route.is_some() || !purge.rules.is_empty())
        && let Err(refusal) = guard::path(target)
    {
        let name = route.as_ref().map_or("none", |r| &*r.name);
        let response = ProxyError::Refused(refusal).into_response(name);
        let cache = CacheOutcome::bypass(BypassReason::Invalid);
        return Answer::new(response, Outcome::new(route, cache));
    }
    if (route.is_some() || !purge.rules.is_empty()) && refuses_writes(core, config) {
        return refused(core, route, cache);
    }
    let series = core.series(route.as_deref());
    let (parts, body) = request.into_parts();
    let request = UpstreamRequest {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        target,
        client,
    };
    let body = guarded_body(body, &config.limits);
    let (result, took) = core.forwarder.forward(config, request, body, series).await;
    let mut outcome = Outcome::new(route.clone(), cache);
    outcome.upstream = Some(took);
    let response = match result {
        Ok(response) => response,
        Err(e) => return Answer::new(ProxyError::from(e).into_response(series.name()), outcome),
    };
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        // Named by shadow mode's mismatch log; nothing to keep without it.
        if config
            .routes
            .values()
            .iter()
            .any(|r| r.mode == Mode::Shadow)
        {
            core.writes
                .record(core.clock.now(), &parts.method, &target.path);
        }
        purge_after(core, config, purge, target, response.headers()).await;
    }
    Answer::new(response.map(Body::Stream), outcome)
}

/// After a write the app accepted: bumps what the rules name and its own
/// URLs (RFC 9111 §4.4), before the client hears of it.
async fn purge_after(
    core: &Core,
    config: &RuntimeConfig,
    purge: Purge,
    target: &Normalized,
    headers: &http::HeaderMap,
) {
    let (mut tokens, mut rules) = (purge.tokens, purge.rules);
    let own = own_urls(&config.routes, target, headers);
    if !own.is_empty() {
        tokens.extend(own);
        rules.push(Arc::from("self"));
    }
    if invalidate(core, &mut tokens, &rules, &purge.tag_rules)
        .await
        .is_err()
    {
        after_failed_purge(core, config, &tokens).await;
    }
}

/// Whether `cache.redis.on_purge_failure: refuse` turns writes away now:
/// the store is known to be unreachable, so their purges could not be
/// recorded, and the app has not seen them yet.
fn refuses_writes(core: &Core, config: &RuntimeConfig) -> bool {
    config
        .cache
        .redis
        .as_ref()
        .is_some_and(|r| r.on_purge_failure == OnPurgeFailure::Refuse)
        && !core.cache.records_purges()
}

/// The 503 of a write turned away by [`refuses_writes`], counted.
fn refused(core: &Core, route: Option<Arc<Route>>, cache: CacheOutcome) -> Answer {
    let name = route.as_ref().map_or("none", |r| &*r.name);
    core.metrics
        .purge_failures_total
        .with_label_values(&["refused"])
        .inc();
    let response = ProxyError::PurgeUnrecordable.into_response(name);
    Answer::new(response, Outcome::new(route, cache))
}

/// A write succeeded and its purge did not reach the store (the store
/// keeps it for replay): with `wait` or `refuse`, the answer waits for the
/// replay, at most `purge_wait`; with `answer`, or past the wait, it goes
/// now, and other replicas may serve what the write changed until the
/// purge is replayed (docs/redis.md, "Consistency"). This replica never
/// does: its lookups of a pending token are misses.
async fn after_failed_purge(core: &Core, config: &RuntimeConfig, tokens: &[Token]) {
    let Some(redis) = &config.cache.redis else {
        return;
    };
    let recorded = redis.on_purge_failure != OnPurgeFailure::Answer
        && core.cache.recorded(tokens, redis.purge_wait).await;
    let outcome = if recorded { "waited" } else { "unrecorded" };
    core.metrics
        .purge_failures_total
        .with_label_values(&[outcome])
        .inc();
    if !recorded {
        tracing::warn!(
            tokens = tokens.len(),
            policy = redis.on_purge_failure.as_str(),
            "a write answered before its purge reached redis: other replicas may serve \
             what it changed until the purge is replayed"
        );
    }
}

/// Bumps `tokens` (sorted and deduplicated in place) and counts the rules
/// that asked for it, and those of them that purge tags.
///
/// # Errors
///
/// When the store failed (already logged and counted).
pub(super) async fn invalidate(
    core: &Core,
    tokens: &mut Vec<Token>,
    rules: &[Arc<str>],
    tag_rules: &[Arc<str>],
) -> Result<(), StoreError> {
    tokens.sort();
    tokens.dedup();
    if tokens.is_empty() {
        return Ok(());
    }
    core.cache.bump(tokens).await?;
    for rule in rules {
        core.metrics
            .invalidations_total
            .with_label_values(&[rule])
            .inc();
    }
    for rule in tag_rules {
        core.metrics
            .tag_purges_total
            .with_label_values(&[rule])
            .inc();
    }
    Ok(())
}

/// The URL tokens a successful unsafe request bumps (RFC 9111 §4.4): its
/// own URL, and the `Location` and `Content-Location` of the response when
/// they are on the same host. Only paths some route caches are returned.
fn own_urls(
    routes: &RouteTable<Arc<Route>>,
    target: &Normalized,
    response: &http::HeaderMap,
) -> Vec<Token> {
    let mut paths = vec![target.path.clone()];
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        for value in response.get_all(&name) {
            if let Some(path) = same_origin_path(value.to_str().unwrap_or(""), target) {
                paths.push(path);
            }
        }
    }
    paths
        .into_iter()
        .filter(|p| routes.find(p).is_some())
        .map(|p| Token::url(&p))
        .collect()
}

/// The normalized path of a `Location`-style reference when it points at
/// the request's own host; `None` for another host or an unusable value.
fn same_origin_path(reference: &str, base: &Normalized) -> Option<String> {
    let reference = reference.trim();
    let path = if let Some(rest) = reference.strip_prefix("//") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        same_host(authority, base)?;
        format!("/{path}")
    } else if let Some((scheme, rest)) = reference.split_once("://") {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        same_host(authority, base)?;
        format!("/{path}")
    } else if reference.starts_with('/') {
        reference.to_string()
    } else if reference.is_empty() || reference.contains(':') {
        return None;
    } else {
        let dir = base.path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{reference}")
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    normalize::normalize_path(path).ok()
}

fn same_host(authority: &str, base: &Normalized) -> Option<()> {
    let host = base.host.as_deref()?;
    authority.eq_ignore_ascii_case(host).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_headers_count_only_on_the_same_host() {
        let base = Normalized {
            path: "/api/items/7".into(),
            query: None,
            host: Some("api.test".into()),
        };
        let same = |r: &str| same_origin_path(r, &base);
        assert_eq!(same("/api/items/8").as_deref(), Some("/api/items/8"));
        assert_eq!(
            same("http://API.test/api/items/9?x=1").as_deref(),
            Some("/api/items/9")
        );
        assert_eq!(same("//api.test/a/./b").as_deref(), Some("/a/b"));
        assert_eq!(same("other").as_deref(), Some("/api/items/other"));
        assert_eq!(same("https://evil.test/api/items/8"), None);
        assert_eq!(same("//evil.test/api/items/8"), None);
        assert_eq!(same("mailto:x@y"), None);
    }
}
