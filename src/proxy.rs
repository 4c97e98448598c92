//! The proxy service: one request, start to finish (DESIGN.md §1).
//!
//! [`Proxy::handle`] takes the config snapshot once, then `dispatch` picks
//! one of three paths, each a named step:
//!
//! 1. **No rule** (or a safe method other than GET/HEAD): forward untouched.
//! 2. **Mutation** (an unsafe method): forward, and once the upstream answers
//!    2xx/3xx, bump the generations of every purge target of the matching
//!    `invalidate` rules and of the request's own URL (RFC 9111 §4.4), all
//!    before the client sees the response, so it reads its own writes.
//! 3. **Cacheable GET/HEAD**: key, lookup (entry and generations in one
//!    call), and either answer from the entry or fill: upstream, policy,
//!    bounded body collection, store, respond.
//!
//! The store never fails a request: lookup errors are misses, write errors
//! are logged and counted. Submodules are in flow order: `normalize`,
//! `route`, `key`, `policy`, `invalidate`, `upstream`, `respond`, `body`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

use crate::cache::{
    self, BypassReason, Cache, CacheKey, CacheStatus, Entry, Lookup, NoCacheReason, StoreError,
    Token,
};
use crate::config::{ConfigHandle, Route, RuntimeConfig, Scope};
use crate::error::ProxyError;
use crate::metrics::{Metrics, method_label, status_class};

pub mod body;
pub mod invalidate;
pub mod key;
pub mod normalize;
pub mod policy;
pub mod respond;
pub mod route;
pub mod upstream;

use body::{Body, Collected};
use normalize::Normalized;
use respond::{CacheOutcome, Fwd};
use route::Captures;
use upstream::{BoxError, Upstream, UpstreamBody, UpstreamError};

/// The caching proxy. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<ConfigHandle>,
    cache: Cache,
    upstream: Upstream,
    metrics: Arc<Metrics>,
}

/// [`Proxy`] as a tower service for one client connection.
#[derive(Clone)]
pub struct ProxyService {
    proxy: Proxy,
    client: SocketAddr,
}

/// What happened to one request, for metrics and the access log.
#[derive(Debug)]
struct Outcome {
    /// The route name; `None` when no rule matched.
    route: Option<Arc<str>>,
    cache: CacheOutcome,
    /// Time the upstream took to answer, if it was asked.
    upstream: Option<Duration>,
}

/// Decrements the in-flight gauge however `handle` ends.
struct Inflight(prometheus::IntGauge);

impl Drop for Inflight {
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
            }),
        }
    }

    /// The service for requests from `client`.
    pub fn service(&self, client: SocketAddr) -> ProxyService {
        ProxyService {
            proxy: self.clone(),
            client,
        }
    }

    /// Handles one request. Never fails: errors become 4xx/5xx responses.
    pub async fn handle<B>(&self, request: Request<B>, client: SocketAddr) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let metrics = &self.inner.metrics;
        metrics.inflight_requests.inc();
        let _inflight = Inflight(metrics.inflight_requests.clone());
        let config = self.inner.config.load();
        let method = request.method().clone();
        let (mut response, outcome) = self.dispatch(&config, request, client).await;
        outcome.cache.decorate(&mut response);
        self.record(&method, &outcome, response.status(), started);
        response
    }

    async fn dispatch<B>(
        &self,
        config: &RuntimeConfig,
        request: Request<B>,
        client: SocketAddr,
    ) -> (Response<Body>, Outcome)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let target = match normalize::request(request.uri(), request.headers()) {
            Ok(target) => target,
            Err(e) => {
                let outcome = Outcome::new(None, CacheOutcome::bypass(BypassReason::Invalid));
                return (ProxyError::from(e).to_response("none"), outcome);
            }
        };
        let method = request.method();
        if *method == Method::GET || *method == Method::HEAD {
            return match config.routes.find(&target.path) {
                Some(m) => {
                    let route = m.value.clone();
                    self.cacheable(config, request, &target, route, &m.captures, client)
                        .await
                }
                None => {
                    let outcome = CacheOutcome::bypass(BypassReason::NoRoute);
                    self.pass(config, request, &target, client, None, outcome)
                        .await
                }
            };
        }
        if !method.is_safe() {
            return self.mutate(config, request, &target, client).await;
        }
        let route = config
            .routes
            .find(&target.path)
            .map(|m| m.value.name.clone());
        let outcome = CacheOutcome::bypass(BypassReason::Method);
        self.pass(config, request, &target, client, route, outcome)
            .await
    }

    /// Step 3: a GET or HEAD that a route caches.
    async fn cacheable<B>(
        &self,
        config: &RuntimeConfig,
        request: Request<B>,
        target: &Normalized,
        route: Arc<Route>,
        captures: &Captures<'_, '_>,
        client: SocketAddr,
    ) -> (Response<Body>, Outcome)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let label = Some(route.name.clone());
        let identity = match precheck(config, &route, request.headers(), has_body(&request)) {
            Ok(identity) => identity,
            Err(reason) => {
                let outcome = CacheOutcome::bypass(reason);
                return self
                    .pass(config, request, target, client, label, outcome)
                    .await;
            }
        };
        let credentials = route.scope == Scope::Public && has_credentials(request.headers());
        let key = key::for_request(&route, captures, target, request.headers(), identity);
        let lookup = self.inner.cache.lookup(&key).await.ok();
        let now = SystemTime::now();
        let fwd = match lookup
            .as_ref()
            .map(|l| usable(l, &key, request.headers(), credentials, now))
        {
            Some(Usable::Yes(entry)) => {
                let response = respond::from_entry(&entry, request.method(), now);
                return (
                    response,
                    Outcome::new(label, CacheOutcome::hit(entry.ttl_secs(now))),
                );
            }
            Some(Usable::VaryMiss) => Fwd::VaryMiss,
            Some(Usable::No(_)) | None => Fwd::Miss,
        };
        let fill = Fill {
            route,
            key,
            generations: lookup.map(|l| l.generations),
            credentials,
            fwd,
        };
        self.fill(config, request, target, client, fill).await
    }

    /// The miss half of step 3: fetch, decide, store, respond.
    async fn fill<B>(
        &self,
        config: &RuntimeConfig,
        request: Request<B>,
        target: &Normalized,
        client: SocketAddr,
        fill: Fill,
    ) -> (Response<Body>, Outcome)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let sent_at = SystemTime::now();
        let (result, took) = self
            .forward(config, &parts, body, target, client, &fill.route.name)
            .await;
        let mut outcome = Outcome::new(Some(fill.route.name.clone()), CacheOutcome::miss(fill.fwd));
        outcome.upstream = Some(took);
        let response = match result {
            Ok(response) => response,
            Err(e) => return (ProxyError::from(e).to_response(&fill.route.name), outcome),
        };
        let exchange = policy::Exchange {
            method: &parts.method,
            uri: &parts.uri,
            request: &parts.headers,
            credentials: fill.credentials,
            sent_at,
            received_at: SystemTime::now(),
        };
        match storable(config, &fill, &exchange, &response) {
            Ok(freshness) => {
                self.store(config, &fill, &exchange, freshness, response, outcome)
                    .await
            }
            Err(reason) => {
                outcome.cache = outcome.cache.not_stored(reason);
                (response.map(Body::Stream), outcome)
            }
        }
    }

    /// Reads a storable response's body (within `max_body_bytes`), stores
    /// it, and answers with the same bytes.
    async fn store(
        &self,
        config: &RuntimeConfig,
        fill: &Fill,
        exchange: &policy::Exchange<'_>,
        freshness: policy::Freshness,
        response: Response<Incoming>,
        mut outcome: Outcome,
    ) -> (Response<Body>, Outcome) {
        let (head, body) = response.into_parts();
        let bytes = match body::collect_limited(body, config.cache.max_body_bytes).await {
            Ok(Collected::Complete(bytes)) => bytes,
            Ok(Collected::TooLarge(body)) => {
                outcome.cache = outcome.cache.not_stored(NoCacheReason::TooLarge);
                return (Response::from_parts(head, body), outcome);
            }
            Err(e) => {
                outcome.cache = outcome.cache.not_stored(NoCacheReason::Incomplete);
                let response = ProxyError::UpstreamBody(e).to_response(&fill.route.name);
                return (response, outcome);
            }
        };
        let entry = new_entry(fill, exchange, freshness, &head, bytes.clone());
        outcome.cache = match self.inner.cache.insert(&fill.key, Arc::new(entry)).await {
            Ok(()) => outcome.cache.stored(),
            Err(_) => outcome.cache.not_stored(NoCacheReason::StorageError),
        };
        (Response::from_parts(head, Body::full(bytes)), outcome)
    }

    /// Step 2: an unsafe method. Invalidates only after a 2xx/3xx answer.
    async fn mutate<B>(
        &self,
        config: &RuntimeConfig,
        request: Request<B>,
        target: &Normalized,
        client: SocketAddr,
    ) -> (Response<Body>, Outcome)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let purge = config.invalidations.purge(request.method(), &target.path);
        let route = config
            .routes
            .find(&target.path)
            .map(|m| m.value.name.clone());
        let (parts, body) = request.into_parts();
        let label = route.as_deref().unwrap_or("none").to_string();
        let (result, took) = self
            .forward(config, &parts, body, target, client, &label)
            .await;
        let mut outcome = Outcome::new(route.clone(), CacheOutcome::bypass(BypassReason::Method));
        outcome.upstream = Some(took);
        let response = match result {
            Ok(response) => response,
            Err(e) => return (ProxyError::from(e).to_response(&label), outcome),
        };
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            let mut tokens = purge.tokens;
            let own_url = route.is_some();
            if own_url {
                tokens.push(Token::url(&target.path));
            }
            let mut rules = purge.rules;
            if own_url {
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

    /// Step 1: forward untouched and stream the answer back.
    async fn pass<B>(
        &self,
        config: &RuntimeConfig,
        request: Request<B>,
        target: &Normalized,
        client: SocketAddr,
        route: Option<Arc<str>>,
        cache: CacheOutcome,
    ) -> (Response<Body>, Outcome)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let label = route.as_deref().unwrap_or("none").to_string();
        let (result, took) = self
            .forward(config, &parts, body, target, client, &label)
            .await;
        let mut outcome = Outcome::new(route, cache);
        outcome.upstream = Some(took);
        match result {
            Ok(response) => (response.map(Body::Stream), outcome),
            Err(e) => (ProxyError::from(e).to_response(&label), outcome),
        }
    }

    /// Sends the request upstream (normalized target, cleaned headers,
    /// streamed body), timing and counting the exchange under `route`.
    async fn forward<B>(
        &self,
        config: &RuntimeConfig,
        parts: &http::request::Parts,
        body: B,
        target: &Normalized,
        client: SocketAddr,
        route: &str,
    ) -> (Result<Response<Incoming>, UpstreamError>, Duration)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let request = upstream::request(parts, target, &config.upstream, client, box_body(body));
        let start = Instant::now();
        let result = self
            .inner
            .upstream
            .send(request, config.upstream.timeout)
            .await;
        let took = start.elapsed();
        let metrics = &self.inner.metrics;
        metrics.upstream_timer(route).observe(took.as_secs_f64());
        let class = match &result {
            Ok(r) => status_class(r.status().as_u16()),
            Err(UpstreamError::Timeout(_)) => "timeout",
            Err(_) => "error",
        };
        metrics
            .upstream_requests_total
            .with_label_values(&[route, class])
            .inc();
        (result, took)
    }

    /// Metrics and the access log for one request.
    fn record(&self, method: &Method, outcome: &Outcome, status: StatusCode, started: Instant) {
        let m = &self.inner.metrics;
        let route = outcome.route.as_deref().unwrap_or("none");
        let cache_status = outcome.cache.status.as_str();
        let took = started.elapsed();
        m.requests_total
            .with_label_values(&[route, method_label(method), cache_status])
            .inc();
        m.request_duration_seconds
            .with_label_values(&[route, cache_status])
            .observe(took.as_secs_f64());
        match outcome.cache.status {
            CacheStatus::Hit => m.cache_hits_total.with_label_values(&[route]).inc(),
            CacheStatus::Miss => m.cache_misses_total.with_label_values(&[route]).inc(),
            _ => {}
        }
        if let Some(reason) = outcome.cache.not_stored_reason() {
            m.not_stored_total
                .with_label_values(&[route, reason.as_str()])
                .inc();
        }
        tracing::info!(
            target: "cachecar::access",
            route,
            method = %method,
            status = status.as_u16(),
            cache_status,
            detail = outcome.cache.detail.map(|d| d.as_str()),
            duration_us = took.as_micros() as u64,
            upstream_us = outcome.upstream.map(|d| d.as_micros() as u64),
        );
    }
}

/// Whether a fetched response may be stored, and for how long.
fn storable(
    config: &RuntimeConfig,
    fill: &Fill,
    exchange: &policy::Exchange<'_>,
    response: &Response<Incoming>,
) -> Result<policy::Freshness, NoCacheReason> {
    if fill.generations.is_none() {
        return Err(NoCacheReason::StorageError);
    }
    let freshness = policy::decide(&fill.route, exchange, response.status(), response.headers())?;
    if content_length(response.headers()).is_some_and(|n| n > config.cache.max_body_bytes) {
        return Err(NoCacheReason::TooLarge);
    }
    Ok(freshness)
}

/// The entry for a fetched response. Headers are copied so the entry owns
/// its bytes; `Age` is dropped (it is computed on every hit).
fn new_entry(
    fill: &Fill,
    exchange: &policy::Exchange<'_>,
    freshness: policy::Freshness,
    head: &http::response::Parts,
    body: Bytes,
) -> Entry {
    let mut headers = cache::detached_headers(&head.headers);
    headers.remove(header::AGE);
    let vary = policy::vary_values(&head.headers, exchange.request)
        .into_iter()
        .map(|(name, value)| (name, value.as_ref().map(cache::detached_value)))
        .collect();
    Entry {
        key: fill.key.hash,
        status: head.status,
        headers,
        body,
        stored_at: exchange.received_at,
        initial_age: freshness.initial_age,
        fresh_until: freshness.fresh_until,
        keep_until: freshness.keep_until,
        vary,
        generations: fill.generations.clone().unwrap_or_default(),
        shareable_with_auth: freshness.shareable_with_auth,
    }
}

/// What a fill needs to know from the lookup.
struct Fill {
    route: Arc<Route>,
    key: CacheKey,
    /// Generations read before the upstream request; `None` if the store
    /// failed, in which case nothing is stored.
    generations: Option<Vec<u64>>,
    credentials: bool,
    fwd: Fwd,
}

/// Whether a looked-up entry can answer a request.
pub(crate) enum Usable {
    /// Yes: a hit.
    Yes(Arc<Entry>),
    /// Stored for other values of the `Vary` headers.
    VaryMiss,
    /// No, and why.
    No(NotUsable),
}

/// Why a looked-up entry cannot answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotUsable {
    /// Nothing is stored under the key.
    Absent,
    /// The stored value belongs to another key.
    KeyMismatch,
    /// A purge or mutation bumped a generation since it was stored.
    Invalidated,
    /// Its freshness has run out.
    Expired,
    /// The request has credentials and the entry may not be shared with it.
    Credentials,
}

impl NotUsable {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NotUsable::Absent => "absent",
            NotUsable::KeyMismatch => "key-mismatch",
            NotUsable::Invalidated => "invalidated",
            NotUsable::Expired => "expired",
            NotUsable::Credentials => "credentials",
        }
    }
}

/// The checks before a lookup: the cache is on, the request has no body, and
/// a `scope: user` route has an identity to key by (returned).
pub(crate) fn precheck(
    config: &RuntimeConfig,
    route: &Route,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<Option<key::IdentityHash>, BypassReason> {
    if !config.cache.enabled {
        return Err(BypassReason::Disabled);
    }
    if has_body {
        return Err(BypassReason::RequestBody);
    }
    let identity = key::identity(&config.identity, headers);
    if route.scope == Scope::User && identity.is_none() {
        return Err(BypassReason::NoIdentity);
    }
    Ok(identity)
}

/// Whether the looked-up entry may answer this request.
pub(crate) fn usable(
    lookup: &Lookup,
    key: &CacheKey,
    headers: &HeaderMap,
    credentials: bool,
    now: SystemTime,
) -> Usable {
    let Some(entry) = &lookup.entry else {
        return Usable::No(NotUsable::Absent);
    };
    let not = if entry.key != key.hash {
        Some(NotUsable::KeyMismatch)
    } else if entry.generations != lookup.generations {
        Some(NotUsable::Invalidated)
    } else if !entry.is_fresh(now) {
        Some(NotUsable::Expired)
    } else if credentials && !entry.shareable_with_auth {
        Some(NotUsable::Credentials)
    } else {
        None
    };
    if let Some(why) = not {
        return Usable::No(why);
    }
    if !entry.vary_matches(headers) {
        return Usable::VaryMiss;
    }
    Usable::Yes(entry.clone())
}

impl Outcome {
    fn new(route: Option<Arc<str>>, cache: CacheOutcome) -> Self {
        Self {
            route,
            cache,
            upstream: None,
        }
    }
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

fn box_body<B>(body: B) -> UpstreamBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    UnsyncBoxBody::new(body.map_err(Into::into))
}

impl<B> tower::Service<Request<B>> for ProxyService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let proxy = self.proxy.clone();
        let client = self.client;
        Box::pin(async move { Ok(proxy.handle(request, client).await) })
    }
}
