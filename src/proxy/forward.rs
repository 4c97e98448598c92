//! Forwarding to the app: one request sent upstream with its body held to
//! the client limits, timed and counted under its route, and sent once
//! more when a reused connection failed and the request can be replayed
//! (idempotent, no body: RFC 9110 §9.2.2).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use super::body::{BodyLimit, Guarded, Pace};
use super::span;
use super::upstream::{
    self, BoxError, ResponseBody, Upstream, UpstreamBody, UpstreamError, UpstreamRequest,
};
use crate::config::{Limits, RuntimeConfig, UpstreamConfig};
use crate::metrics::{Metrics, RouteMetrics, UpstreamClass};

/// An upstream exchange's result and how long it took.
pub(crate) type Exchanged = (Result<Response<ResponseBody>, UpstreamError>, Duration);

/// The upstream client with the request path's accounting around it.
pub(super) struct Forwarder {
    upstream: Upstream,
    metrics: Arc<Metrics>,
    /// `traces.enabled`: each exchange gets a span, passed to the app.
    traces: bool,
}

impl Forwarder {
    pub(super) fn new(upstream: Upstream, metrics: Arc<Metrics>, traces: bool) -> Self {
        Self {
            upstream,
            metrics,
            traces,
        }
    }

    /// Sends `request` upstream (normalized target, cleaned headers,
    /// streamed body), timing and counting the exchange under `route`.
    /// `body` is `None` for a request without one: such a request, if
    /// idempotent, is sent once more when a reused connection fails.
    pub(super) async fn forward(
        &self,
        config: &RuntimeConfig,
        request: UpstreamRequest<'_>,
        body: Option<UpstreamBody>,
        route: &RouteMetrics,
    ) -> Exchanged {
        let replayable = body.is_none() && request.method.is_idempotent();
        let build = |body| upstream::request(&request, config, body);
        let target = &config.upstream;
        let first = build(body.unwrap_or_else(empty_body));
        let (result, took) = self.exchange(first, target, route).await;
        match result {
            Err(e) if replayable && e.is_retryable() => {
                tracing::debug!(route = route.name(), cause = %e, "retrying an idempotent request once");
                let again = build(empty_body());
                let (result, again) = self.exchange(again, target, route).await;
                (result, took + again)
            }
            result => (result, took),
        }
    }

    /// Sends an `Upgrade` handshake on a connection of its own (never
    /// retried: the app may have acted on it), counted and timed under
    /// `route` like any exchange.
    pub(super) async fn upgrade(
        &self,
        config: &RuntimeConfig,
        request: Request<UpstreamBody>,
        route: &RouteMetrics,
    ) -> Exchanged {
        let start = Instant::now();
        let upstream = &config.upstream;
        let mut request = request;
        let authority = upstream.authority.as_str();
        let span = span::upstream(self.traces, &mut request, authority);
        let send = self
            .upstream
            .send_upgrade(upstream, request, upstream.timeout);
        let result = tracing::Instrument::instrument(send, span.clone()).await;
        let _entered = span.enter();
        span::upstream_answered(self.traces, result.as_ref().ok().map(|r| r.status()));
        let took = start.elapsed();
        let class = match &result {
            Ok(r) => UpstreamClass::Status(r.status().as_u16()),
            Err(UpstreamError::Timeout(_)) => UpstreamClass::Timeout,
            Err(_) => UpstreamClass::Error,
        };
        route.upstream(&self.metrics, class, took.as_secs_f64());
        (result, took)
    }

    /// One upstream exchange, counted and timed under `route`. Boxed: every
    /// async layer is a future moved into its caller's, and the exchange's
    /// is the largest part of each (docs/benchmarks.md, "What bounds each
    /// path").
    fn exchange<'a>(
        &'a self,
        mut request: Request<UpstreamBody>,
        upstream: &'a UpstreamConfig,
        route: &'a RouteMetrics,
    ) -> Pin<Box<impl Future<Output = Exchanged> + 'a>> {
        // Made here, and mapped rather than awaited in an `async` block,
        // which would hold the request, and the exchange twice (as its
        // capture and as what it polls).
        let start = Instant::now();
        let authority = upstream.authority.as_str();
        let span = span::upstream(self.traces, &mut request, authority);
        let send = self.upstream.send(upstream, request, upstream.timeout);
        let traced = self.traces;
        let send = send.map(move |result| {
            span::upstream_answered(traced, result.as_ref().ok().map(|r| r.status()));
            result
        });
        Box::pin(
            tracing::Instrument::instrument(send, span).map(move |result| {
                let took = start.elapsed();
                let class = match &result {
                    Ok(r) => UpstreamClass::Status(r.status().as_u16()),
                    Err(UpstreamError::Timeout(_)) => UpstreamClass::Timeout,
                    Err(e) if BodyLimit::find(e).is_some() => UpstreamClass::ClientAborted,
                    Err(_) => UpstreamClass::Error,
                };
                route.upstream(&self.metrics, class, took.as_secs_f64());
                (result, took)
            }),
        )
    }
}

/// The request body to forward, held to the body limits: `None` when there
/// is none, so the request can be replayed.
pub(super) fn guarded_body<B>(body: B, limits: &Limits) -> Option<UpstreamBody>
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
        Pace::new(
            limits.request_body_min_rate,
            limits.request_body_rate_window,
        ),
    )))
}

pub(super) fn empty_body() -> UpstreamBody {
    UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|e| match e {}))
}
