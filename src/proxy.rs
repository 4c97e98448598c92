//! The proxy: one request, start to finish. `Proxy::handle` is the spine
//! and reads as the phases in order (docs/architecture.md, "The request
//! spine"); each phase is a function in a module of its own:
//!
//! 1. **guard** (`guard`): framing, target size, `Host`, declared body
//!    size. A refusal is answered at once.
//! 2. **normalize** (`target`, over `rules::normalize`):
//!    untrusted client headers dropped, one normalized target that matching,
//!    keying and forwarding all use.
//! 3. **route** (`rules::table`): the first rule whose template matches.
//!    No rule, or a method the cache never answers: forwarded untouched
//!    (`pass`). An unsafe method: forwarded, then it invalidates
//!    (`mutate`).
//! 4. **key** (`key`): whether the cache may answer at all, and under
//!    which key.
//! 5. **lookup** (`lookup`): the entry, following `Vary`, with the current
//!    generations of its tokens, in one store round trip.
//! 6. **serve** (`serve`): answer from the stored response when RFC 9111
//!    allows it (refreshing it in the background within
//!    `stale-while-revalidate`), else
//! 7. **fill** (`fill`): coalesced with concurrent fills, fetched (or
//!    revalidated), stored. A route in `mode: shadow` (`shadow`) answers
//!    from the app in 6 and 7, comparing it with what would have served.
//! 8. **respond** (`respond`): `Cache-Status` and `X-Cache`, metrics, the
//!    access log.
//!
//! Phases 1 to 4 wait for nothing, so they run before the request's future
//! is made, and the future is made for the path the request takes and
//! boxed once: a future holds what lives across its waits and is copied
//! whole when boxed, so a pass-through does not carry the cache path's
//! state. Every error becomes a response in one place
//! (`error::ProxyError::into_response`). The store never fails a request:
//! lookup errors are misses, write errors are logged and counted.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response};

use crate::cache::{Cache, StoreError, Token};
use crate::clock::Clock;
use crate::config::{ConfigHandle, RuntimeConfig};
use crate::metrics::{Metrics, RouteMetrics};
use crate::outcome::{BypassReason, CacheOutcome};
use crate::rules::normalize::Normalized;
use crate::rules::{Mode, Route};
use interim::Interim;
pub use log::write_access_log_to;

pub(crate) mod body;
mod cache_control;
mod conditional;
mod error;
mod fill;
mod forward;
mod guard;
pub(crate) mod interim;
pub mod key;
mod log;
pub(crate) mod lookup;
mod mutate;
mod pass;
pub(crate) mod policy;
mod respond;
mod serve;
mod shadow;
mod span;
mod target;
mod tunnel;
pub(crate) mod upstream;

use body::Body;
pub(crate) use error::ProxyError;
use fill::Fill;
use forward::Forwarder;
use key::Keyed;
use pass::Pass;
use respond::{Answer, Outcome};
use serve::Serve;
use tunnel::Tunnel;
pub(crate) use tunnel::Tunnels;
use upstream::{BoxError, Peer, Upstream};

/// The caching proxy. Cheap to clone; one per process.
#[derive(Clone)]
pub(crate) struct Proxy {
    core: Arc<Core>,
}

/// What every phase of every request works with.
struct Core {
    config: Arc<ConfigHandle>,
    cache: Cache,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
    /// The series of requests no rule matched (`route="none"`).
    unrouted: RouteMetrics,
    coalescer: fill::Coalescer,
    /// What freshness is judged by.
    clock: Clock,
    /// Open `Upgrade` tunnels.
    tunnels: Tunnels,
    /// Recent writes, named when shadow mode finds a mismatch.
    writes: shadow::RecentWrites,
    /// `traces.enabled`: requests get spans.
    traces: bool,
}

/// [`Proxy`] as a hyper service for one client connection.
#[derive(Clone)]
pub(crate) struct ProxyService {
    proxy: Proxy,
    client: Peer,
}

/// One request's future (the service's), boxed once.
pub(crate) type Handling = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Where a request goes, decided by phases 1 to 4 before anything waits.
enum Path<B> {
    /// Answered already: refused, or not a valid request.
    Answered(Answer),
    /// Forwarded untouched.
    Pass(Pass),
    /// An unsafe method: forwarded, then it invalidates.
    Mutate(Request<B>, Normalized),
    /// An `Upgrade` handshake: forwarded, and tunnelled after a `101`.
    Upgrade(Tunnel),
    /// A cacheable GET or HEAD, keyed.
    Cache(Keyed),
}

/// Counts a request in flight for as long as it is held.
struct Inflight<'a>(&'a prometheus::IntGauge);

impl Proxy {
    /// A proxy over `cache` and `upstream`, reading rules from `config` and
    /// judging freshness by `clock`.
    pub(crate) fn new(
        config: Arc<ConfigHandle>,
        cache: Cache,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        let traces = config.load().traces.enabled;
        Self {
            core: Arc::new(Core {
                config,
                cache,
                forwarder: Forwarder::new(upstream, metrics.clone(), traces),
                metrics: metrics.clone(),
                unrouted: RouteMetrics::new(Arc::from("none")),
                coalescer: fill::Coalescer::default(),
                clock,
                tunnels: Tunnels::new(metrics.clone()),
                writes: shadow::RecentWrites::default(),
                traces,
            }),
        }
    }

    /// The service for requests from `client`.
    pub(crate) fn service(&self, client: SocketAddr, interim: Option<Interim>) -> ProxyService {
        ProxyService {
            proxy: self.clone(),
            client: Peer::new(client).with_interim(interim),
        }
    }

    /// Handles one request: the spine. Never fails: errors become 4xx/5xx
    /// responses (the `Result` is the service's).
    pub(crate) fn handle<B>(self, request: Request<B>, client: Peer) -> Handling
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let config = self.core.config.load();
        let method = request.method().clone();
        let request_id = upstream::RequestId::of(request.headers());
        let client = client.judged(&config.security).asking(request_id.clone());
        // Boxed: it lives across the whole request, and every path's future
        // would otherwise carry (and copy when boxed) its few hundred bytes.
        let mut seen = Box::new(log::Seen::take(
            &request,
            request_id,
            client.addr(),
            client.trusted(),
        ));
        let traced = self.core.traces;
        seen.span = span::request(traced, &method, request.headers(), client.addr());
        let span = traced.then(|| seen.span.clone());
        let respond = move |proxy: &Proxy, config: &RuntimeConfig, answer| {
            // 8. respond: cache headers, metrics, the access log.
            respond::finish(&proxy.core, config, (&method, &seen), answer, started)
        };
        let handling: Handling = match self.admit(&config, client.trusted(), request) {
            Path::Answered(answer) => {
                let response = respond(&self, &config, answer);
                Box::pin(std::future::ready(Ok(response)))
            }
            Path::Pass(mut pass) => Box::pin(async move {
                let _inflight = Inflight::enter(&self.core.metrics);
                let answer = pass::forward(&self.core, &config, &mut pass, &client).await;
                Ok(respond(&self, &config, answer))
            }),
            Path::Mutate(request, target) => Box::pin(async move {
                let _inflight = Inflight::enter(&self.core.metrics);
                let answer = mutate::forward(&self.core, &config, request, &target, &client).await;
                Ok(respond(&self, &config, answer))
            }),
            Path::Upgrade(tunnel) => Box::pin(async move {
                let _inflight = Inflight::enter(&self.core.metrics);
                let answer = tunnel::forward(&self.core, &config, tunnel, &client).await;
                Ok(respond(&self, &config, answer))
            }),
            Path::Cache(keyed) => Box::pin(async move {
                let _inflight = Inflight::enter(&self.core.metrics);
                let answer = self.cacheable(&config, keyed, &client).await;
                Ok(respond(&self, &config, answer))
            }),
        };
        in_span(handling, span)
    }

    /// Phases 1 to 4: where `request` goes, and what it needs there.
    fn admit<B>(&self, config: &RuntimeConfig, trusted: bool, mut request: Request<B>) -> Path<B>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // 1. guard
        if let Err(refusal) = guard::screen(&request, config) {
            return Path::refused(ProxyError::Refused(refusal), None);
        }
        // 2. normalize
        let target = match target::normalized(&mut request, config, trusted) {
            Ok(target) => target,
            Err(e) => return Path::refused(e, None),
        };
        // 3. route
        let found = config.routes.find(&target.path);
        if let Some(protocol) = tunnel::requested(&request, &config.upgrade) {
            let route = found.map(|m| m.value.clone());
            return Path::Upgrade(Tunnel::new(request, target, route, protocol));
        }
        let method = request.method();
        if !method.is_safe() {
            return Path::Mutate(request, target);
        }
        let limits = &config.limits;
        let cacheable = *method == Method::GET || *method == Method::HEAD;
        let m = match (cacheable, found) {
            (true, Some(m)) => m,
            (_, found) => {
                let reason = match cacheable {
                    true => BypassReason::NoRoute,
                    false => BypassReason::Method,
                };
                let route = found.map(|m| m.value.clone());
                return Path::Pass(Pass::new(request, target, route, reason, limits));
            }
        };
        let route = m.value.clone();
        if let Err(refusal) = guard::path(&target) {
            return Path::refused(ProxyError::Refused(refusal), Some(route));
        }
        // 4. key: made before the target moves on, as the captures borrow
        // its path.
        match key::cacheable(config, &mut request, &target, &route, &m.captures) {
            Ok((key, credentials)) => {
                Path::Cache(Keyed::new(request, target, route, key, credentials))
            }
            Err(reason) => Path::Pass(Pass::new(request, target, Some(route), reason, limits)),
        }
    }

    /// Phases 5 to 7: a GET or HEAD that a route caches.
    async fn cacheable(&self, config: &Arc<RuntimeConfig>, keyed: Keyed, client: &Peer) -> Answer {
        let core = &self.core;
        // 5. lookup
        let looked = Instant::now();
        let lookup = lookup::find(&core.cache, &keyed.key, &keyed.parts.headers);
        let found = if core.traces {
            tracing::Instrument::instrument(lookup, span::child("cache lookup")).await
        } else {
            lookup.await
        };
        let store_took = looked.elapsed();
        // 6. serve
        let asks = serve::Asks::of(&keyed.parts.headers);
        let now = core.clock.now();
        if keyed.route.mode == Mode::Shadow {
            let shadowed = shadow::answer(core, config, keyed, found, asks, client, now);
            let mut answer = Box::pin(shadowed).await;
            answer.outcome.store = Some(store_took);
            return answer;
        }
        let mut answer = match serve::decide(found.as_ref(), &keyed, &asks, now) {
            Serve::Answered(answer) => answer,
            Serve::Refresh(answer, stale) => {
                let why = serve::Why::stale(stale);
                Fill::new(core, config, keyed, found, asks, client, why).refresh();
                answer
            }
            // 7. fill. Boxed: the fill's future is most of this one's size,
            // and a hit, which never fills, would otherwise carry and copy it.
            Serve::Fill(why) => {
                let fill = Fill::new(core, config, keyed, found, asks, client, why);
                Box::pin(fill.run()).await
            }
        };
        answer.outcome.store = Some(store_took);
        answer
    }

    /// The open `Upgrade` tunnels, to wind down at shutdown.
    pub(crate) fn tunnels(&self) -> &Tunnels {
        &self.core.tunnels
    }

    /// Bumps `tokens` and counts the rules that asked for it (an admin
    /// purge, or a mutation), and those that purge tags.
    ///
    /// # Errors
    ///
    /// When the store failed (already logged and counted).
    pub(crate) async fn invalidate(
        &self,
        mut tokens: Vec<Token>,
        rules: &[Arc<str>],
        tag_rules: &[Arc<str>],
    ) -> Result<(), StoreError> {
        mutate::invalidate(&self.core, &mut tokens, rules, tag_rules).await
    }
}

/// `handling` in the request's `span`, when it has one.
fn in_span(handling: Handling, span: Option<tracing::Span>) -> Handling {
    match span {
        Some(span) => Box::pin(tracing::Instrument::instrument(handling, span)),
        None => handling,
    }
}

impl Core {
    /// The metric series of `route`, or of unrouted requests.
    fn series<'a>(&'a self, route: Option<&'a Route>) -> &'a RouteMetrics {
        route.map_or(&self.unrouted, |r| &r.metrics)
    }
}

impl<B> Path<B> {
    /// Answered with `error`, counted as an invalid request of `route`.
    fn refused(error: ProxyError, route: Option<Arc<Route>>) -> Self {
        let response = error.into_response(route.as_ref().map_or("none", |r| &*r.name));
        let cache = CacheOutcome::bypass(BypassReason::Invalid);
        Path::Answered(Answer::new(response, Outcome::new(route, cache)))
    }
}

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

/// A hyper service, not a tower one: hyper-util's adapter for tower
/// services clones the service and drives a readiness state machine on
/// every request, and cachecar's is always ready.
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
mod tests;
