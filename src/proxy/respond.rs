//! Phase 8, respond: what every response gets on its way out, the cache
//! headers (`outcome::CacheOutcome::decorate`), the metrics and the access
//! log; and the responses written from a stored entry, with `Age`
//! computed (RFC 9111 §5.1).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::{Method, Response};

use super::Core;
use super::body::Body;
use super::conditional::{self, ClientConditions};
use super::log::{self, Seen};
use crate::cache::{Entry, SERVED_EXTRA};
use crate::config::RuntimeConfig;
use crate::outcome::CacheOutcome;
use crate::rules::Route;

/// A response and what happened on the way to it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub response: Response<Body>,
    pub outcome: Outcome,
}

/// What happened to one request, for the cache headers, metrics and the
/// access log.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The route; `None` when no rule matched.
    pub route: Option<Arc<Route>>,
    pub cache: CacheOutcome,
    /// Time the upstream took to answer, if it was asked.
    pub upstream: Option<Duration>,
    /// Time the cache lookup took, if there was one.
    pub store: Option<Duration>,
}

impl Answer {
    pub(crate) fn new(response: Response<Body>, outcome: Outcome) -> Self {
        Self { response, outcome }
    }
}

impl Outcome {
    pub(crate) fn new(route: Option<Arc<Route>>, cache: CacheOutcome) -> Self {
        Self {
            route,
            cache,
            upstream: None,
            store: None,
        }
    }
}

/// The response with its cache headers, counted and logged.
pub(super) fn finish(
    core: &Core,
    config: &RuntimeConfig,
    (method, seen): (&Method, &Seen),
    answer: Answer,
    started: Instant,
) -> Response<Body> {
    let log = &config.log;
    let Answer {
        mut response,
        outcome,
    } = answer;
    outcome.cache.decorate(&mut response);
    // cachecar's own targeted field is for it alone (RFC 9213 §2.1): taken
    // out of what the app sent; stored entries never keep it.
    if outcome.upstream.is_some()
        && let Some(own) = outcome.route.as_ref().and_then(|r| r.targeted.own.as_ref())
    {
        response.headers_mut().remove(own);
    }
    // The app's tags are for caches (`cache.tags.strip`).
    if outcome.upstream.is_some() {
        config.cache.tags.strip_from(response.headers_mut());
    }
    let took = started.elapsed();
    let series = core.series(outcome.route.as_deref());
    let route = outcome.route.as_deref();
    let template = route.map(|r| (&*r.name, r.template.as_str()));
    let status = outcome.cache.status.as_str();
    super::span::finish(&seen.span, method, template, status, response.status());
    let m = &core.metrics;
    series.request(m, method, outcome.cache.status, took.as_secs_f64());
    if let Some(reason) = outcome.cache.not_stored_reason() {
        series.not_stored(m, reason);
    }
    let line = log::Line {
        seen,
        security: &config.security,
        route: series.name(),
        method,
        cache: &outcome.cache,
        response: &response,
        took,
        upstream: outcome.upstream,
        store: outcome.store,
    };
    let slow = line.slow(log);
    if slow {
        series.slow(m);
    }
    line.write(log, slow);
    response
}

/// The answer from a stored entry: a 304 when the client's conditions
/// match it, the requested byte range of a GET, the full response otherwise.
pub(crate) fn entry_response(
    entry: &Entry,
    method: &Method,
    conditions: Option<&ClientConditions>,
    now: SystemTime,
) -> Response<Body> {
    let Some(c) = conditions else {
        return from_entry(entry, method, now);
    };
    if conditional::not_modified(entry, c) {
        return conditional::not_modified_response(entry, now);
    }
    if *method == Method::GET
        && let Some(range) = c.range
        && let Some(partial) = conditional::partial_response(entry, range, now)
    {
        return partial;
    }
    from_entry(entry, method, now)
}

/// A response from a stored entry, with `Age` for `now`. For HEAD the body
/// is left out (the stored `Content-Length` stays).
fn from_entry(entry: &Entry, method: &Method, now: SystemTime) -> Response<Body> {
    let body = if *method == Method::HEAD {
        Body::Empty
    } else {
        Body::full(entry.body.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = entry.status;
    // The stored map has room for what is added (`SERVED_EXTRA`); a clone
    // keeps its table but not the spare entries.
    let mut headers = entry.headers.clone();
    headers.reserve(SERVED_EXTRA);
    *response.headers_mut() = headers;
    let age = entry.age(now).as_secs();
    response
        .headers_mut()
        .insert(header::AGE, HeaderValue::from(age));
    response
}
