//! The admin listener (docs/operations.md), separate from the data port
//! and on loopback by default:
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
use hyper::body::Incoming;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::ConfigHandle;
use crate::proxy::Proxy;
use crate::proxy::body::Body;
use crate::reload::Reloader;
use crate::shutdown::{Readiness, ReadyState};

mod explain;
mod purge;
mod status;

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
