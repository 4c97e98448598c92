//! The access log (`cachecar::access`, one event per sampled request) and
//! the slow-request warning (`cachecar::slow`, naming where the time went).
//! Errors (5xx) and slow requests are always logged, whatever
//! `log.access_sample` says.

use std::time::Duration;

use http::{Method, Response, header};

use super::body::Body;
use crate::config::LogConfig;
use crate::outcome::CacheOutcome;

/// One finished request, as the log sees it.
pub(super) struct Line<'a> {
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
        self.access();
        if slow {
            self.slow_warning();
        }
    }

    fn access(&self) {
        let cache = self.cache;
        tracing::info!(
            target: "cachecar::access",
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
