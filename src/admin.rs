//! The admin listener (DESIGN.md §5), separate from the data port and on
//! loopback by default:
//!
//! - `GET /metrics`: Prometheus text.
//! - `GET /healthz`: liveness; 200 while the process serves.
//! - `GET /readyz`: 200 once the config is loaded and the proxy listener is
//!   up, 503 while starting or draining. Never depends on the store.
//! - `GET /status`: JSON: version, config generation and hash, store.
//! - `POST /admin/purge` with `{"targets": ["GET /path", ...]}`: bumps the
//!   generations the targets name, across users, query strings and variants.
//! - `POST /admin/reload`: re-reads the config file (as a file change or
//!   `SIGHUP` would); 422 with every error when it is refused.
//! - `GET /admin/explain?method=GET&url=/path[&header=Name: value]...`: how a
//!   request would be cached, and whether it is.
//!
//! `/admin/*` needs `Authorization: Bearer <admin.token>` (compared in
//! constant time); without a configured token they answer 403.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Deserialize;
use serde_json::json;

use crate::cache::{Cache, Token};
use crate::clock::Clock;
use crate::config::{ConfigHandle, RedisNodes, RuntimeConfig};
use crate::proxy::Proxy;
use crate::proxy::body::Body;
use crate::reload::{Reloaded, Reloader, Trigger};
use crate::rules::purge::PurgeTarget;
use crate::shutdown::{Readiness, ReadyState};

mod explain;

/// Largest `/admin/purge` body accepted.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Most targets in one purge, so one request cannot bump without bound.
const MAX_PURGE_TARGETS: usize = 1_000;

/// Everything the admin endpoints read. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<ConfigHandle>,
    registry: Registry,
    cache: Cache,
    proxy: Proxy,
    reloader: Option<Reloader>,
    readiness: Arc<Readiness>,
    /// What explain judges freshness by: the proxy's.
    clock: Clock,
    started: Instant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    targets: Vec<String>,
}

impl Admin {
    /// The admin endpoints over the app's parts.
    pub fn new(
        config: Arc<ConfigHandle>,
        registry: Registry,
        cache: Cache,
        proxy: Proxy,
        reloader: Option<Reloader>,
        readiness: Arc<Readiness>,
        clock: Clock,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                registry,
                cache,
                proxy,
                reloader,
                readiness,
                clock,
                started: Instant::now(),
            }),
        }
    }

    /// A hyper service answering admin requests.
    pub fn service(
        &self,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let admin = self.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let admin = admin.clone();
            async move { Ok::<_, Infallible>(admin.handle(request).await) }
        })
    }

    /// Answers one admin request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<crate::proxy::upstream::BoxError>,
    {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/metrics") => self.metrics(),
            (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (Method::GET, "/readyz") => self.readyz(),
            (Method::GET, "/status") => self.status(),
            (_, p) if p.starts_with("/admin/") => self.authorized(request).await,
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn authorized<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<crate::proxy::upstream::BoxError>,
    {
        let config = self.inner.config.load();
        let Some(token) = &config.admin.token else {
            return text(
                StatusCode::FORBIDDEN,
                "admin endpoints are disabled: set admin.token\n",
            );
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|t| token.matches(t)) {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required\n",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let path = request.uri().path().to_string();
        match (request.method().clone(), path.as_str()) {
            (Method::POST, "/admin/purge") => self.purge(request).await,
            (Method::POST, "/admin/reload") => self.reload().await,
            (Method::GET, "/admin/explain") => {
                let config = self.inner.config.load();
                explain::explain(&config, &self.inner.cache, &self.inner.clock, request.uri()).await
            }
            (_, "/admin/purge" | "/admin/explain" | "/admin/reload") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn metrics(&self) -> Response<Body> {
        self.inner.cache.refresh_gauges();
        let families = self.inner.registry.gather();
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(cause = %e, "cannot encode metrics");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n");
        }
        let mut response = Response::new(Body::full(out));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }

    fn readyz(&self) -> Response<Body> {
        match self.inner.readiness.state() {
            ReadyState::Ready => text(StatusCode::OK, "ready\n"),
            state => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{}\n", state.as_str()),
            ),
        }
    }

    fn status(&self) -> Response<Body> {
        let config = self.inner.config.load();
        json_response(
            StatusCode::OK,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "state": self.inner.readiness.state().as_str(),
                "uptime_seconds": self.inner.started.elapsed().as_secs(),
                "config": {
                    "generation": config.source.generation,
                    "hash": config.source.hash,
                    "path": config.source.path.as_ref().map(|p| p.display().to_string()),
                    "routes": config.routes.len(),
                    "invalidation_rules": config.invalidations.rules().count(),
                    "warnings": config.warnings,
                    "reload": {
                        "from_file": self.inner.reloader.is_some(),
                        "watch": config.reload.watch,
                        "poll_interval_ms": config.reload.poll_interval.map(|d| d.as_millis() as u64),
                    },
                    "last_reload": self.inner.reloader.as_ref().and_then(Reloader::last),
                },
                "cache": {
                    "enabled": config.cache.enabled,
                    "store": store_status(&self.inner.cache, &config),
                },
            }),
        )
    }

    /// `POST /admin/reload`: 200 with the new generation (or "unchanged"),
    /// 422 with every error when the file is refused.
    async fn reload(&self) -> Response<Body> {
        let Some(reloader) = &self.inner.reloader else {
            return text(
                StatusCode::CONFLICT,
                "this config did not come from a file; nothing to reload\n",
            );
        };
        match reloader.reload(Trigger::Admin).await {
            Reloaded::Applied {
                generation,
                hash,
                restart_required,
            } => json_response(
                StatusCode::OK,
                &json!({
                    "result": "applied",
                    "generation": generation,
                    "hash": hash,
                    "restart_required": restart_required,
                }),
            ),
            Reloaded::Unchanged { generation } => json_response(
                StatusCode::OK,
                &json!({ "result": "unchanged", "generation": generation }),
            ),
            Reloaded::Refused { errors } => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "result": "refused",
                    "generation": self.inner.config.load().source.generation,
                    "errors": errors,
                }),
            ),
        }
    }

    async fn purge<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<crate::proxy::upstream::BoxError>,
    {
        let body = match Limited::new(request.into_body(), MAX_ADMIN_BODY)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {e}\n"),
                );
            }
        };
        let parsed: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("expected {{\"targets\": [\"GET /path\", ...]}}: {e}\n"),
                );
            }
        };
        if parsed.targets.is_empty() || parsed.targets.len() > MAX_PURGE_TARGETS {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("give between 1 and {MAX_PURGE_TARGETS} targets\n"),
            );
        }
        let config = self.inner.config.load();
        let routes = || {
            config
                .routes
                .values()
                .iter()
                .map(|r| (&r.template, &r.name))
        };
        let mut tokens = Vec::new();
        let mut errors = Vec::new();
        let mut report = Vec::new();
        for text in &parsed.targets {
            let target = match PurgeTarget::parse(text, None) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(json!({ "target": text, "error": e.0 }));
                    continue;
                }
            };
            let plans = target.plans(routes());
            if plans.is_empty() {
                errors.push(json!({ "target": text, "error": "matches no route" }));
                continue;
            }
            let routes_hit: Vec<&str> = plans.iter().map(|p| &*p.route_name).collect();
            report.push(json!({ "target": text, "routes": routes_hit }));
            match target.concrete_path() {
                Some(path) => tokens.push(Token::url(&path)),
                None => tokens.extend(plans.iter().filter_map(|p| p.token(&Default::default()))),
            }
        }
        if !errors.is_empty() {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "errors": errors }),
            );
        }
        if self
            .inner
            .proxy
            .invalidate(tokens, &[Arc::from("admin")])
            .await
            .is_err()
        {
            let queued = self.inner.cache.health().pending_purges > 0;
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                if queued {
                    "the cache store is unreachable; the purge is queued and is applied before the store is used again\n"
                } else {
                    "the cache store failed; nothing was purged\n"
                },
            );
        }
        tracing::info!(targets = parsed.targets.len(), "admin purge");
        json_response(StatusCode::OK, &json!({ "purged": report }))
    }
}

/// The store part of `/status`. No addresses: `/status` needs no token.
fn store_status(cache: &Cache, config: &RuntimeConfig) -> serde_json::Value {
    let health = cache.health();
    let mut status = json!({
        "backend": cache.backend(),
        "up": health.up,
        "circuit": health.circuit,
        "pending_writes": cache.pending_writes(),
        "pending_purges": health.pending_purges,
    });
    if let Some(subscribed) = health.subscribed {
        status["l1_in_use"] = json!(subscribed);
    }
    if let Some(redis) = &config.cache.redis {
        let (cluster, nodes) = match &redis.nodes {
            RedisNodes::Single(_) => (false, 1),
            RedisNodes::Cluster(urls) => (true, urls.len()),
        };
        status["redis"] = json!({
            "cluster": cluster,
            "seed_nodes": nodes,
            "key_prefix": redis.key_prefix,
            "timeout_ms": redis.timeout.as_millis() as u64,
        });
    }
    status
}

/// A short plain-text response.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Body::full(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
