//! The spans of a request, when `traces.enabled` (docs/observability.md):
//! a server span per request, its parent the client's W3C `traceparent`
//! (and `tracestate`), with children for the store lookup, a coalesced
//! wait and each upstream exchange, whose context goes to the app in
//! `traceparent`. Names and attributes follow OpenTelemetry's HTTP
//! semantic conventions; cachecar's own are `cachecar.*`.
//!
//! They are `tracing` spans of target `cachecar::otel`, which the process
//! exports (`telemetry`). With traces off none is made: every function
//! here answers `Span::none()` and recording into it does nothing.

use http::{HeaderMap, Method, StatusCode};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The server span of a request with `headers` from `client`, or none
/// when `on` is false.
pub(crate) fn request(
    on: bool,
    method: &Method,
    headers: &HeaderMap,
    client: std::net::IpAddr,
) -> Span {
    if !on {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: "cachecar::otel",
        "request",
        otel.name = method.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method.as_str(),
        client.address = %client,
        http.route = Empty,
        http.response.status_code = Empty,
        cachecar.route = Empty,
        cachecar.cache_status = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
    span
}

/// Records how `span`'s request ended: its route (`None`: no rule
/// matched), the cache's status word and the response status.
pub(crate) fn finish(
    span: &Span,
    method: &Method,
    route: Option<(&str, &str)>,
    cache_status: &str,
    status: StatusCode,
) {
    if span.is_none() {
        return;
    }
    if let Some((name, template)) = route {
        // The template without its method: `GET /docs/{id}` -> `/docs/{id}`.
        let path = template.split_once(' ').map_or(template, |(_, p)| p);
        // Started already (its context was read), so renamed through it.
        let span_name = format!("{method} {path}");
        span.context().span().update_name(span_name);
        span.record("http.route", path);
        span.record("cachecar.route", name);
    }
    span.record("cachecar.cache_status", cache_status);
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// A child of the current span called `name` (`cache lookup`, `coalesce
/// wait`).
pub(crate) fn child(name: &'static str) -> Span {
    tracing::info_span!(target: "cachecar::otel", "step", otel.name = name)
}

/// The client span of `request`'s exchange with `authority`, its context
/// written into the request's `traceparent` for the app; none when `on`
/// is false.
pub(crate) fn upstream<B>(on: bool, request: &mut http::Request<B>, authority: &str) -> Span {
    if !on {
        return Span::none();
    }
    let method = request.method().clone();
    let span = tracing::info_span!(
        target: "cachecar::otel",
        "upstream",
        otel.name = method.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method.as_str(),
        server.address = authority,
        http.response.status_code = Empty,
    );
    let headers = &mut HeaderInjector(request.headers_mut());
    TraceContextPropagator::new().inject_context(&span.context(), headers);
    span
}

/// Records the upstream's answer on the current span, the upstream one
/// when traces are `on`.
pub(crate) fn upstream_answered(on: bool, status: Option<StatusCode>) {
    if !on {
        return;
    }
    let span = Span::current();
    match status {
        Some(status) => {
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_server_error() {
                span.record("otel.status_code", "error");
            }
        }
        None => {
            span.record("otel.status_code", "error");
        }
    }
}
