//! The access log (`cachecar::access`, one event per sampled request) and
//! the slow-request warning (`cachecar::slow`, naming where the time went).
//! Errors (5xx) and slow requests are always logged, whatever
//! `log.access_sample` says.
//!
//! A line joins with the ingress's and the app's: it carries the request
//! id (the client's `X-Request-Id`, or one made here and forwarded to the
//! app), the W3C trace id from `traceparent`, the host, the normalized
//! path, the client's address and user agent ([`Seen`]).

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, Request, Response, Uri, header};

use tracing_appender::non_blocking::NonBlocking;

use super::body::Body;
use super::upstream::{RequestId, X_FORWARDED_FOR};
use crate::config::{LogConfig, SecurityConfig};
use crate::outcome::CacheOutcome;

mod json;

pub use json::write_access_log_to;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// What the log needs of a request, taken when it arrives (before the
/// proxy consumes it): cheap clones of shared bytes.
#[derive(Debug)]
pub(crate) struct Seen {
    uri: Uri,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    request_id: RequestId,
    traceparent: Option<HeaderValue>,
    /// The peer, and the `X-Forwarded-For` a trusted one sent.
    peer: IpAddr,
    forwarded_for: Option<HeaderValue>,
    /// The request's span (none without traces).
    pub(crate) span: tracing::Span,
}

impl Seen {
    /// Takes what the log needs from `request`, with its `request_id`,
    /// from `peer` (its forwarded headers believed if `trusted`).
    pub(crate) fn take<B>(
        request: &Request<B>,
        request_id: RequestId,
        peer: IpAddr,
        trusted: bool,
    ) -> Self {
        let headers = request.headers();
        Self {
            uri: request.uri().clone(),
            host: headers.get(header::HOST).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            request_id,
            traceparent: headers.get(&TRACEPARENT).cloned(),
            peer,
            forwarded_for: trusted
                .then(|| headers.get(&X_FORWARDED_FOR).cloned())
                .flatten(),
            span: tracing::Span::none(),
        }
    }

    /// The client's address: the peer, or, behind trusted proxies, the
    /// last `X-Forwarded-For` entry that is not one of them.
    fn client(&self, security: &SecurityConfig) -> IpAddr {
        let Some(chain) = self.forwarded_for.as_ref().and_then(|v| v.to_str().ok()) else {
            return self.peer;
        };
        chain
            .rsplit(',')
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .find(|ip| !security.trusts(*ip))
            .unwrap_or(self.peer)
    }

    /// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
    fn trace_id(&self) -> Option<&str> {
        let value = self.traceparent.as_ref()?.to_str().ok()?;
        let mut parts = value.split('-');
        let (_version, trace) = (parts.next()?, parts.next()?);
        let valid = trace.len() == 32
            && trace.bytes().all(|b| b.is_ascii_hexdigit())
            && trace.bytes().any(|b| b != b'0');
        valid.then_some(trace)
    }

    /// The path, normalized as the proxy matched it, and the query
    /// (`?` alone unless `log.query`).
    fn path(&self, log: &LogConfig) -> String {
        let path = crate::rules::normalize::normalize_path(self.uri.path())
            .unwrap_or_else(|_| self.uri.path().to_string());
        match self.uri.query() {
            Some(q) if log.query => format!("{path}?{q}"),
            Some(_) => format!("{path}?"),
            None => path,
        }
    }
}

/// A header's text for the log; `None` when absent or not text.
fn text(value: Option<&HeaderValue>) -> Option<&str> {
    value.and_then(|v| v.to_str().ok())
}

/// One finished request, as the log sees it.
pub(super) struct Line<'a> {
    pub seen: &'a Seen,
    pub security: &'a SecurityConfig,
    pub route: &'a str,
    pub method: &'a Method,
    pub cache: &'a CacheOutcome,
    pub response: &'a Response<Body>,
    pub took: Duration,
    /// Time the upstream took to answer, if it was asked.
    pub upstream: Option<Duration>,
    /// Time the cache lookup took, if there was one.
    pub store: Option<Duration>,
}

impl Line<'_> {
    /// Whether it was slower than `log.slow_request`.
    pub(super) fn slow(&self, log: &LogConfig) -> bool {
        log.slow_request.is_some_and(|limit| self.took > limit)
    }

    /// Writes the access-log event if the request is sampled, and the slow
    /// warning if it was `slow`.
    pub(super) fn write(&self, log: &LogConfig, slow: bool) {
        let sampled = self.response.status().is_server_error()
            || slow
            || log.access_sample >= 1.0
            || fastrand::f64() < log.access_sample;
        if !sampled {
            return;
        }
        self.access(log);
        if slow {
            self.slow_warning();
        }
    }

    fn access(&self, log: &LogConfig) {
        if let Some(writer) = json::writer() {
            return self.access_json(writer, log);
        }
        let cache = self.cache;
        let seen = self.seen;
        tracing::info!(
            target: "cachecar::access",
            request_id = %seen.request_id,
            trace_id = seen.trace_id(),
            client = %seen.client(self.security),
            host = text(seen.host.as_ref()),
            path = seen.path(log),
            user_agent = text(seen.user_agent.as_ref()),
            route = self.route,
            method = %self.method,
            status = self.response.status().as_u16(),
            cache_status = cache.status.as_str(),
            detail = cache.detail.map(|d| d.as_str()),
            duration_us = self.took.as_micros() as u64,
            upstream_us = self.upstream.map(|d| d.as_micros() as u64),
            store_us = self.store.map(|d| d.as_micros() as u64),
            bytes = body_length(self.response),
        );
    }

    /// The access line as the subscriber would write it, formatted here.
    fn access_json(&self, writer: &NonBlocking, log: &LogConfig) {
        let (cache, seen) = (self.cache, self.seen);
        json::write_line(writer, |line| {
            seen.request_id.with_text(|id| line.str("request_id", id));
            line.opt_str("trace_id", seen.trace_id());
            line.ip("client", seen.client(self.security));
            line.opt_str("host", text(seen.host.as_ref()));
            line.str("path", &seen.path(log));
            line.opt_str("user_agent", text(seen.user_agent.as_ref()));
            line.str("route", self.route);
            line.str("method", self.method.as_str());
            line.num("status", u64::from(self.response.status().as_u16()));
            line.str("cache_status", cache.status.as_str());
            line.opt_str("detail", cache.detail.map(|d| d.as_str()));
            line.num("duration_us", self.took.as_micros() as u64);
            line.opt_num("upstream_us", self.upstream.map(|d| d.as_micros() as u64));
            line.opt_num("store_us", self.store.map(|d| d.as_micros() as u64));
            line.opt_num("bytes", body_length(self.response));
        });
    }

    fn slow_warning(&self) {
        let upstream = self.upstream.unwrap_or_default();
        let store = self.store.unwrap_or_default();
        let own = self.took.saturating_sub(upstream + store);
        let (spent_in, _) = [("upstream", upstream), ("store", store), ("cachecar", own)]
            .into_iter()
            .max_by_key(|(_, d)| *d)
            .unwrap_or(("cachecar", own));
        tracing::warn!(
            target: "cachecar::slow",
            request_id = %self.seen.request_id,
            route = self.route,
            method = %self.method,
            status = self.response.status().as_u16(),
            cache_status = self.cache.status.as_str(),
            duration_ms = self.took.as_millis() as u64,
            upstream_ms = upstream.as_millis() as u64,
            store_ms = store.as_millis() as u64,
            cachecar_ms = own.as_millis() as u64,
            spent_in,
            "slow request"
        );
    }
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
