//! The proxy service: one request, start to finish (DESIGN.md §1).
//!
//! [`Proxy::handle`] takes the config snapshot once, then `step` picks one
//! of three paths, each a named step, doing all it can before anything
//! waits; the path's future is then boxed once:
//!
//! 1. **No rule** (or a safe method other than GET/HEAD): forward untouched.
//! 2. **Mutation** (an unsafe method): forward, and once the upstream answers
//!    2xx/3xx, bump the generations of every purge target of the matching
//!    `invalidate` rules, of the request's own URL and of same-origin
//!    `Location`/`Content-Location` (RFC 9111 §4.4), all before the client
//!    sees the response, so it reads its own writes.
//! 3. **Cacheable GET/HEAD**: key, lookup (`lookup.rs`), judge the stored
//!    response (`policy::judge`): answer fresh; answer stale and refresh in
//!    the background (`stale-while-revalidate`); or fill (`fetch.rs`):
//!    coalesced, revalidating, storing.
//!
//! The store never fails a request: lookup errors are misses, write errors
//! are logged and counted. Submodules are in flow order: `normalize`,
//! `route`, `key`, `lookup`, `policy`, `cache_control`, `conditional`,
//! `fetch`, `invalidate`, `upstream`, `respond`, `body`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::cache::coalesce::Coalescer;
use crate::cache::{BypassReason, Cache, CacheKey, StoreError, Token};
use crate::config::{
    ConfigHandle, Limits, LogConfig, QueryKey, Route, RuntimeConfig, Scope, UpstreamConfig,
};
use crate::error::ProxyError;
use crate::metrics::{Metrics, RouteMetrics, UpstreamClass};

pub mod body;
pub mod cache_control;
pub mod conditional;
mod fetch;
pub mod guard;
pub mod invalidate;
pub mod key;
pub mod lookup;
pub mod normalize;
pub mod policy;
pub mod respond;
pub mod route;
pub mod upstream;

use body::{Body, BodyLimit, Guarded};
use conditional::ClientConditions;
use fetch::FetchRequest;
use lookup::Usable;
use normalize::Normalized;
use policy::{RequestDirectives, Verdict};
use respond::{CacheOutcome, Fwd, StaleReason};
use route::Captures;
use upstream::{BoxError, Peer, ResponseBody, Upstream, UpstreamBody, UpstreamError};

/// The caching proxy. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

/// An upstream exchange's result and how long it took.
type Exchanged = (Result<Response<ResponseBody>, UpstreamError>, Duration);

struct Inner {
    config: Arc<ConfigHandle>,
    cache: Cache,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// The series of requests no rule matched (`route="none"`).
    unrouted: RouteMetrics,
    coalescer: Coalescer,
}

/// [`Proxy`] as a hyper service for one client connection.
#[derive(Clone)]
pub struct ProxyService {
    proxy: Proxy,
    client: Peer,
}

/// What happened to one request, for metrics and the access log.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The route; `None` when no rule matched.
    route: Option<Arc<Route>>,
    cache: CacheOutcome,
    /// Time the upstream took to answer, if it was asked.
    upstream: Option<Duration>,
    /// Time the cache lookup took, if there was one.
    store: Option<Duration>,
}

/// One request's future (the service's), boxed once.
pub type Handling = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Where a request goes, decided before anything waits.
enum Step<B> {
    /// Answered already: refused, or not a valid request.
    Answer(Response<Body>, Outcome),
    /// Step 1: forward untouched.
    Pass(Pass),
    /// Step 2: an unsafe method.
    Mutate {
        request: Request<B>,
        target: Normalized,
    },
    /// Step 3: a cacheable GET or HEAD, keyed.
    Lookup(Keyed),
}

impl<B> From<(Response<Body>, Outcome)> for Step<B> {
    fn from((response, outcome): (Response<Body>, Outcome)) -> Self {
        Step::Answer(response, outcome)
    }
}

impl<B> Step<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Forward `request` untouched, a bypass for `reason`.
    fn pass(
        request: Request<B>,
        target: Normalized,
        route: Option<Arc<Route>>,
        reason: BypassReason,
        limits: &Limits,
    ) -> Self {
        let (parts, body) = request.into_parts();
        Step::Pass(Pass {
            parts,
            body: guarded_body(body, limits),
            target,
            route,
            cache: CacheOutcome::bypass(reason),
        })
    }
}

/// A request to forward untouched, its body already held to the limits.
struct Pass {
    parts: http::request::Parts,
    /// Taken when forwarded.
    body: Option<UpstreamBody>,
    target: Normalized,
    route: Option<Arc<Route>>,
    cache: CacheOutcome,
}

/// A cacheable request and its key, ready to look up.
struct Keyed {
    /// The request, `Accept-Encoding` reduced (`normalize::accept_encoding`).
    parts: http::request::Parts,
    /// The target, its query reduced to the keyed parameters.
    target: Normalized,
    route: Arc<Route>,
    key: CacheKey,
    /// A public route's request carries credentials.
    credentials: bool,
}

/// Counts a request in flight for as long as it is held.
struct Inflight<'a>(&'a prometheus::IntGauge);

impl<'a> Inflight<'a> {
    fn enter(metrics: &'a Metrics) -> Self {
        metrics.inflight_requests.inc();
        Self(&metrics.inflight_requests)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Proxy {
    /// A proxy over `cache` and `upstream`, reading rules from `config`.
    pub fn new(
        config: Arc<ConfigHandle>,
        cache: Cache,
        upstream: Upstream,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                cache,
                upstream,
                metrics,
                unrouted: RouteMetrics::new(Arc::from("none")),
                coalescer: Coalescer::default(),
            }),
        }
    }

    /// The service for requests from `client`.
    pub fn service(&self, client: SocketAddr) -> ProxyService {
        ProxyService {
            proxy: self.clone(),
            client: Peer::new(client),
        }
    }

    /// Handles one request. Never fails: errors become 4xx/5xx responses
    /// (the `Result` is the service's).
    ///
    /// Everything before the first wait (screening, normalization, routing,
    /// keying) is done here, and the future is made for the path the request
    /// takes, boxed once: a future holds what lives across its waits and is
    /// copied whole when boxed, so the work that does not wait stays out of
    /// it, and a pass-through does not carry the cache path's state.
    pub fn handle<B>(self, request: Request<B>, client: Peer) -> Handling
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let config = self.inner.config.load();
        let method = request.method().clone();
        match self.step(&config, request) {
            Step::Answer(response, outcome) => {
                let response = self.finish(&config, &method, response, &outcome, started);
                Box::pin(std::future::ready(Ok(response)))
            }
            Step::Pass(mut pass) => Box::pin(async move {
                let _inflight = Inflight::enter(&self.inner.metrics);
                let (response, outcome) = self.pass(&config, &mut pass, &client).await;
                Ok(self.finish(&config, &method, response, &outcome, started))
            }),
            Step::Mutate { request, target } => Box::pin(async move {
                let _inflight = Inflight::enter(&self.inner.metrics);
                let (response, outcome) = self.mutate(&config, request, &target, &client).await;
                Ok(self.finish(&config, &method, response, &outcome, started))
            }),
            Step::Lookup(keyed) => Box::pin(async move {
                let _inflight = Inflight::enter(&self.inner.metrics);
                let (response, outcome) = self.cacheable(&config, keyed, &client).await;
                Ok(self.finish(&config, &method, response, &outcome, started))
            }),
        }
    }

    /// The response's cache headers, then metrics and the access log.
    fn finish(
        &self,
        config: &RuntimeConfig,
        method: &Method,
        mut response: Response<Body>,
        outcome: &Outcome,
        started: Instant,
    ) -> Response<Body> {
        outcome.cache.decorate(&mut response);
        self.record(&config.log, method, outcome, &response, started);
        response
    }

    /// Which path `request` takes, and what it needs, without waiting.
    fn step<B>(&self, config: &RuntimeConfig, mut request: Request<B>) -> Step<B>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Err(refusal) = guard::screen(&request, config) {
            return refuse(refusal, None).into();
        }
        upstream::drop_untrusted(request.headers_mut(), config.security.trust_forwarded);
        let mut target = match normalize::request(request.uri(), request.headers()) {
            Ok(target) => target,
            Err(e) => {
                let outcome = Outcome::new(None, CacheOutcome::bypass(BypassReason::Invalid));
                return Step::Answer(ProxyError::from(e).to_response("none"), outcome);
            }
        };
        if config.security.merge_slashes {
            normalize::merge_slashes(&mut target.path);
        }
        if let Err(refusal) = guard::host_allowed(config, target.host.as_deref()) {
            return refuse(refusal, None).into();
        }
        let method = request.method();
        if *method == Method::GET || *method == Method::HEAD {
            return match config.routes.find(&target.path) {
                Some(m) => {
                    let route = m.value.clone();
                    if let Err(refusal) = guard::path(&target) {
                        return refuse(refusal, Some(route)).into();
                    }
                    // The captures borrow the path: the key is made
                    // before the target moves on, so it need not be copied.
                    match cache_key(config, &mut request, &target, &route, &m.captures) {
                        Ok((key, credentials)) => {
                            key_request(request, target, route, key, credentials)
                        }
                        Err(reason) => {
                            Step::pass(request, target, Some(route), reason, &config.limits)
                        }
                    }
                }
                None => Step::pass(request, target, None, BypassReason::NoRoute, &config.limits),
            };
        }
        if !method.is_safe() {
            return Step::Mutate { request, target };
        }
        let route = config.routes.find(&target.path).map(|m| m.value.clone());
        Step::pass(request, target, route, BypassReason::Method, &config.limits)
    }

    /// Step 3: a GET or HEAD that a route caches, keyed by [`cache_key`].
    /// Answered from the stored response if the request may have it
    /// (refreshed in the background within `stale-while-revalidate`), else
    /// filled.
    async fn cacheable(
        &self,
        config: &Arc<RuntimeConfig>,
        keyed: Keyed,
        client: &Peer,
    ) -> (Response<Body>, Outcome) {
        let Keyed {
            parts,
            target,
            route,
            key,
            credentials,
        } = keyed;
        let looked = Instant::now();
        let found = lookup::find(&self.inner.cache, &key, &parts.headers).await;
        let lookup_took = looked.elapsed();
        let varies = found.as_ref().is_some_and(|f| f.index.is_some());
        let (usable, mut fwd) = match found
            .as_ref()
            .map(|f| lookup::usable(f, &parts.headers, credentials))
        {
            Some(Usable::Yes(entry)) => (Some(entry), Fwd::Miss),
            Some(Usable::VaryMiss) => (None, Fwd::VaryMiss),
            Some(Usable::No(_)) if varies => (None, Fwd::VaryMiss),
            Some(Usable::No(_)) | None => (None, Fwd::Miss),
        };
        let conditions = ClientConditions::from_request(&parts.headers);
        let directives = RequestDirectives::parse(&parts.headers);
        let now = SystemTime::now();
        let (response, mut outcome) = 'served: {
            // Answer from the stored response if the request may have it,
            // before anything a fill needs is put together: a hit builds
            // none of it.
            let mut served_stale = None;
            if let Some(entry) = &usable {
                let ttl = entry.ttl_secs(now);
                let verdict = policy::judge(entry, &directives, now);
                let cache = match verdict {
                    Verdict::Fresh => Some(CacheOutcome::hit(ttl)),
                    Verdict::StaleAccepted => Some(CacheOutcome::stale(ttl, StaleReason::Accepted)),
                    Verdict::StaleWhileRevalidate => {
                        Some(CacheOutcome::stale(ttl, StaleReason::WhileRevalidate))
                    }
                    Verdict::Revalidate => None,
                };
                match cache {
                    Some(cache) => {
                        let response =
                            respond::entry_response(entry, &parts.method, conditions.as_ref(), now);
                        let answer = (response, Outcome::new(Some(route.clone()), cache));
                        if verdict != Verdict::StaleWhileRevalidate {
                            break 'served answer;
                        }
                        // Served stale while it is refreshed in the background.
                        fwd = Fwd::Stale;
                        served_stale = Some(answer);
                    }
                    None if entry.is_fresh(now) => fwd = Fwd::Request,
                    None => fwd = Fwd::Stale,
                }
            }
            if served_stale.is_none() && directives.only_if_cached {
                let response =
                    crate::error::status_response(StatusCode::GATEWAY_TIMEOUT, "not cached\n");
                break 'served (response, Outcome::new(Some(route), CacheOutcome::miss(fwd)));
            }
            let mut headers = parts.headers;
            conditional::strip_client_conditions(&mut headers);
            let (generations, index) = match found {
                Some(f) => (Some(f.generations), f.index),
                None => (None, None),
            };
            let fetch = Box::new(FetchRequest {
                config: config.clone(),
                directives,
                route,
                key,
                generations,
                index,
                target,
                uri: parts.uri,
                headers,
                client: client.clone(),
                credentials,
                stale: usable,
                fwd,
                store: true,
                lock: None,
            });
            if let Some(answer) = served_stale {
                self.refresh(fetch);
                break 'served answer;
            }
            // Boxed: the fill's future is most of this one's size, and a
            // hit, which never fills, would otherwise carry and copy it.
            Box::pin(self.fill(fetch, &parts.method, conditions.as_ref())).await
        };
        outcome.store = Some(lookup_took);
        (response, outcome)
    }

    /// Step 2: an unsafe method. Invalidates only after a 2xx/3xx answer.
    async fn mutate<B>(
        &self,
        config: &RuntimeConfig,
        request: Request<B>,
        target: &Normalized,
        client: &Peer,
    ) -> (Response<Body>, Outcome)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let purge = config.invalidations.purge(request.method(), &target.path);
        let route = config.routes.find(&target.path).map(|m| m.value.clone());
        if (route.is_some() || !purge.rules.is_empty())
            && let Err(refusal) = guard::path(target)
        {
            return refuse(refusal, route);
        }
        let series = self.series(route.as_deref());
        let (result, took) = self
            .forward_client(config, request, target, client, series)
            .await;
        let failure = |e| upstream_failure(e, series.name());
        let result = result.map_err(failure);
        let mut outcome = Outcome::new(route, CacheOutcome::bypass(BypassReason::Method));
        outcome.upstream = Some(took);
        let response = match result {
            Ok(response) => response,
            Err(failed) => return (failed, outcome),
        };
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            let mut tokens = purge.tokens;
            let mut rules = purge.rules;
            let own = invalidate::own_urls(config, target, response.headers());
            if !own.is_empty() {
                tokens.extend(own);
                rules.push(Arc::from("self"));
            }
            // A failure is logged and counted by the store wrapper; the
            // mutation itself succeeded, so the client still gets its answer.
            let _ = self.invalidate(tokens, &rules).await;
        }
        (response.map(Body::Stream), outcome)
    }

    /// Bumps `tokens` and counts the rules that asked for it.
    ///
    /// # Errors
    ///
    /// When the store failed (already logged and counted).
    pub(crate) async fn invalidate(
        &self,
        mut tokens: Vec<Token>,
        rules: &[Arc<str>],
    ) -> Result<(), StoreError> {
        tokens.sort();
        tokens.dedup();
        if tokens.is_empty() {
            return Ok(());
        }
        self.inner.cache.bump(&tokens).await?;
        for rule in rules {
            self.inner
                .metrics
                .invalidations_total
                .with_label_values(&[rule])
                .inc();
        }
        Ok(())
    }

    /// Step 1: forward untouched and stream the answer back. Borrows the
    /// request: this future holds no copy of it.
    async fn pass(
        &self,
        config: &RuntimeConfig,
        pass: &mut Pass,
        client: &Peer,
    ) -> (Response<Body>, Outcome) {
        let series = self.series(pass.route.as_deref());
        let (result, took) = self
            .forward(
                config,
                &pass.parts.method,
                &pass.parts.uri,
                &pass.parts.headers,
                pass.body.take(),
                &pass.target,
                client,
                series,
            )
            .await;
        let response = match result {
            Ok(response) => response.map(Body::Stream),
            Err(e) => upstream_failure(e, series.name()),
        };
        let mut outcome = Outcome::new(pass.route.take(), pass.cache);
        outcome.upstream = Some(took);
        (response, outcome)
    }

    /// The metric series of `route`, or of unrouted requests.
    pub(crate) fn series<'a>(&'a self, route: Option<&'a Route>) -> &'a RouteMetrics {
        route.map_or(&self.inner.unrouted, |r| &r.metrics)
    }

    /// Forwards a client's request as it came (body streamed, held to the
    /// body limits) under `route`.
    async fn forward_client<B>(
        &self,
        config: &RuntimeConfig,
        request: Request<B>,
        target: &Normalized,
        client: &Peer,
        route: &RouteMetrics,
    ) -> Exchanged
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let body = guarded_body(body, &config.limits);
        self.forward(
            config,
            &parts.method,
            &parts.uri,
            &parts.headers,
            body,
            target,
            client,
            route,
        )
        .await
    }

    /// Sends the request upstream (normalized target, cleaned headers,
    /// streamed body), timing and counting the exchange under `route`.
    /// `body` is `None` for a request without one: such a request, if
    /// idempotent, is sent once more when a reused connection fails.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        config: &RuntimeConfig,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<UpstreamBody>,
        target: &Normalized,
        client: &Peer,
        route: &RouteMetrics,
    ) -> Exchanged {
        let build = |body: UpstreamBody| {
            upstream::request(method, uri, headers, target, config, client, body)
        };
        let replayable = body.is_none() && method.is_idempotent();
        let upstream = &config.upstream;
        let (result, took) = self
            .exchange(build(body.unwrap_or_else(empty_body)), upstream, route)
            .await;
        match result {
            Err(e) if replayable && e.is_retryable() => {
                tracing::debug!(route = route.name(), cause = %e, "retrying an idempotent request once");
                let (result, again) = self.exchange(build(empty_body()), upstream, route).await;
                (result, took + again)
            }
            result => (result, took),
        }
    }

    /// One upstream exchange, counted and timed under `route`. Boxed: every
    /// async layer is a future moved into its caller's, and the exchange's
    /// is the largest part of each ("Future sizes" in docs/benchmarks.md).
    fn exchange<'a>(
        &'a self,
        request: Request<UpstreamBody>,
        upstream: &'a UpstreamConfig,
        route: &'a RouteMetrics,
    ) -> Pin<Box<impl Future<Output = Exchanged> + 'a>> {
        // Made here, and mapped rather than awaited in an `async` block,
        // which would hold the request, and the exchange twice (as its
        // capture and as what it polls).
        let start = Instant::now();
        let send = self
            .inner
            .upstream
            .send(&upstream.authority, request, upstream.timeout);
        Box::pin(send.map(move |result| {
            let took = start.elapsed();
            let class = match &result {
                Ok(r) => UpstreamClass::Status(r.status().as_u16()),
                Err(UpstreamError::Timeout(_)) => UpstreamClass::Timeout,
                Err(_) => UpstreamClass::Error,
            };
            route.upstream(&self.inner.metrics, class, took.as_secs_f64());
            (result, took)
        }))
    }

    /// Metrics and the access log for one request.
    fn record(
        &self,
        log: &LogConfig,
        method: &Method,
        outcome: &Outcome,
        response: &Response<Body>,
        started: Instant,
    ) {
        let status = response.status();
        let m = &self.inner.metrics;
        let series = self.series(outcome.route.as_deref());
        let route = series.name();
        let cache_status = outcome.cache.status.as_str();
        let took = started.elapsed();
        series.request(m, method, outcome.cache.status, took.as_secs_f64());
        if let Some(reason) = outcome.cache.not_stored_reason() {
            series.not_stored(m, reason);
        }
        let slow = log.slow_request.is_some_and(|limit| took > limit);
        let sampled = status.is_server_error()
            || slow
            || log.access_sample >= 1.0
            || fastrand::f64() < log.access_sample;
        if !sampled {
            return;
        }
        let bytes = body_length(response);
        tracing::info!(
            target: "cachecar::access",
            route,
            method = %method,
            status = status.as_u16(),
            cache_status,
            detail = outcome.cache.detail.map(|d| d.as_str()),
            duration_us = took.as_micros() as u64,
            upstream_us = outcome.upstream.map(|d| d.as_micros() as u64),
            store_us = outcome.store.map(|d| d.as_micros() as u64),
            bytes,
        );
        if slow {
            series.slow(m);
            let upstream = outcome.upstream.unwrap_or_default();
            let store = outcome.store.unwrap_or_default();
            let own = took.saturating_sub(upstream + store);
            let (spent_in, _) = [("upstream", upstream), ("store", store), ("cachecar", own)]
                .into_iter()
                .max_by_key(|(_, d)| *d)
                .unwrap_or(("cachecar", own));
            tracing::warn!(
                target: "cachecar::slow",
                route,
                method = %method,
                status = status.as_u16(),
                cache_status,
                duration_ms = took.as_millis() as u64,
                upstream_ms = upstream.as_millis() as u64,
                store_ms = store.as_millis() as u64,
                cachecar_ms = own.as_millis() as u64,
                spent_in,
                "slow request"
            );
        }
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

/// Step 3's start: whether the cache may answer `request` at all (else it
/// is forwarded untouched, for the reason given), its key, and whether it
/// carries credentials on a public route.
fn cache_key<B: http_body::Body>(
    config: &RuntimeConfig,
    request: &mut Request<B>,
    target: &Normalized,
    route: &Route,
    captures: &Captures<'_, '_>,
) -> Result<(CacheKey, bool), BypassReason> {
    let identity = lookup::precheck(config, route, request.headers(), has_body(request))?;
    normalize::accept_encoding(request.headers_mut());
    let credentials = route.scope == Scope::Public && has_credentials(request.headers());
    let key = key::for_request(route, captures, target, request.headers(), identity);
    Ok((key, credentials))
}

/// A keyed request, ready for the lookup.
fn key_request<B>(
    request: Request<B>,
    mut target: Normalized,
    route: Arc<Route>,
    key: CacheKey,
    credentials: bool,
) -> Step<B> {
    let (parts, _body) = request.into_parts();
    // The app is asked exactly what the key covers: with a query
    // allow-list (or `query: none`) the other parameters are not
    // forwarded, so an unkeyed parameter (`utm=x;id=evil`, `ID=evil`
    // to a case-insensitive framework) can never shape a stored answer.
    if route.key.query != QueryKey::All {
        let keyed = key::keyed_query(&route.key.query, target.query.as_deref());
        target.query = (!keyed.is_empty()).then_some(keyed);
    }
    Step::Lookup(Keyed {
        parts,
        target,
        route,
        key,
        credentials,
    })
}

/// The answer when forwarding failed: 413/408 (closing) when it was the
/// client's body that broke a limit, else 502/504.
fn upstream_failure(e: UpstreamError, route: &str) -> Response<Body> {
    match BodyLimit::find(&e) {
        Some(limit) => {
            let (status, reason) = match limit {
                BodyLimit::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
                BodyLimit::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request body too slow"),
            };
            refuse(
                guard::Refusal {
                    status,
                    reason,
                    close: true,
                },
                None,
            )
            .0
        }
        None => ProxyError::from(e).to_response(route),
    }
}

/// The answer to a refused request, counted as a bypass of `route`.
fn refuse(refusal: guard::Refusal, route: Option<Arc<Route>>) -> (Response<Body>, Outcome) {
    let mut response = crate::error::status_response(refusal.status, refusal.reason);
    if refusal.close {
        response
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    let outcome = Outcome::new(route, CacheOutcome::bypass(BypassReason::Invalid));
    (response, outcome)
}

/// The response body's length when known (a stored entry, or an upstream
/// `Content-Length`); streamed bodies of unknown length are `None`.
fn body_length(response: &Response<Body>) -> Option<u64> {
    use http_body::Body as _;
    response.body().size_hint().exact().or_else(|| {
        response
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    })
}

/// Whether a request has a body (or may have one).
pub(crate) fn has_body<B: http_body::Body>(request: &Request<B>) -> bool {
    !request.body().is_end_stream() && request.body().size_hint().exact() != Some(0)
}

/// Whether a request carries credentials.
pub(crate) fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The request body to forward, held to the body limits: `None` when there
/// is none, so the request can be replayed.
fn guarded_body<B>(body: B, limits: &Limits) -> Option<UpstreamBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return None;
    }
    Some(UnsyncBoxBody::new(Guarded::new(
        body.map_err(Into::into),
        limits.max_request_body_bytes,
        limits.request_body_timeout,
    )))
}

fn empty_body() -> UpstreamBody {
    UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|e| match e {}))
}

/// A hyper service, not a tower one: hyper-util's adapter for tower
/// services clones the service and drives a readiness state machine on
/// every request (600 instructions), and cachecar's is always ready.
impl<B> hyper::service::Service<Request<B>> for ProxyService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Handling;

    fn call(&self, request: Request<B>) -> Self::Future {
        self.proxy.clone().handle(request, self.client.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request's future is copied whole when it is boxed, and each
    /// path has its own, so that a pass-through does not carry the cache
    /// path's state (the service future was 8.6 KiB before the paths were
    /// boxed apart). Bounds, not timings: they fail only when a change makes
    /// a path's future large again.
    #[test]
    fn request_futures_stay_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let metrics = Arc::new(Metrics::new(&prometheus::Registry::new()).unwrap());
        let config = crate::config::load_str(
            "upstream: { url: \"http://127.0.0.1:1\" }\nroutes: [{ name: cached, match: \"GET /cached/{id}\", ttl: 1m }]\n",
            &|_| None,
        )
        .unwrap();
        let store = crate::cache::memory::MemoryStore::new(1 << 20, None);
        let cache = Cache::new(Arc::new(store), metrics.clone());
        let upstream = Upstream::new(&config.upstream);
        let proxy = Proxy::new(
            Arc::new(ConfigHandle::new(config)),
            cache,
            upstream,
            metrics,
        );
        let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let size = |request: Request<http_body_util::Empty<Bytes>>| {
            let future = proxy.clone().handle(request, peer.clone());
            std::mem::size_of_val(&*future)
        };
        let get = |path: &str| {
            let request = Request::get(path).header(header::HOST, "app.test");
            request.body(Default::default()).unwrap()
        };
        // Each request takes the path its size is bounded for.
        let snapshot = proxy.inner.config.load();
        assert!(matches!(proxy.step(&snapshot, get("/pass")), Step::Pass(_)));
        assert!(matches!(
            proxy.step(&snapshot, get("/cached/1")),
            Step::Lookup(_)
        ));
        let answered = proxy.step(&snapshot, get("/cached/a%2Fb"));
        assert!(matches!(answered, Step::Answer(..)));
        let pass = size(get("/pass"));
        assert!(pass <= 1024, "a pass-through's future is {pass} bytes");
        let cached = size(get("/cached/1"));
        assert!(
            cached <= 3072,
            "a cacheable request's future is {cached} bytes"
        );
        let refused = size(get("/cached/a%2Fb"));
        assert!(
            refused <= 512,
            "an answered request's future is {refused} bytes"
        );
    }
}
