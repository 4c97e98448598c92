//! Prometheus metrics (DESIGN.md §6), registered on a registry the `App`
//! owns, so every test proxy starts from zero.
//!
//! Label values come only from config route names, rule labels and small
//! enums (`CacheStatus::as_str`, `NoCacheReason::as_str`, [`method_label`]),
//! never from raw paths, hosts or users: cardinality is bounded by the config.

use http::Method;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Request latency buckets: from a memory hit (tens of µs) to a slow origin.
const REQUEST_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Store latency buckets: memory is sub-µs, Redis is sub-ms, a timeout is
/// tens of ms.
const STORE_BUCKETS: &[f64] = &[
    0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Every metric cachecar exports. Field names match the metric names without
/// the `cachecar_` prefix.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Requests by route, method and cache status.
    pub requests_total: IntCounterVec,
    /// End-to-end latency by route and cache status.
    pub request_duration_seconds: HistogramVec,
    /// Requests answered from the cache, by route.
    pub cache_hits_total: IntCounterVec,
    /// Cacheable requests that went upstream, by route.
    pub cache_misses_total: IntCounterVec,
    /// Upstream requests by route and status class (`2xx`, ..., `error`).
    pub upstream_requests_total: IntCounterVec,
    /// Upstream latency until response headers, by route.
    pub upstream_duration_seconds: HistogramVec,
    /// Responses not stored, by route and reason.
    pub not_stored_total: IntCounterVec,
    /// Requests answered by another request's fill (coalesced), by route.
    pub coalesced_requests_total: IntCounterVec,
    /// Invalidation rules applied, by rule label (`self` for RFC 9111 §4.4,
    /// `admin` for admin purges).
    pub invalidations_total: IntCounterVec,
    /// Store call latency by backend and operation.
    pub store_operation_duration_seconds: HistogramVec,
    /// Store call failures by backend and operation.
    pub store_errors_total: IntCounterVec,
    /// 1 while the remote store answers, by backend.
    pub store_up: IntGaugeVec,
    /// 1 while the circuit breaker skips the remote store, by backend.
    pub store_circuit_open: IntGaugeVec,
    /// Background writes dropped because too many were pending, by backend.
    pub store_writes_dropped_total: IntCounterVec,
    /// Bytes held by the memory store.
    pub memory_store_bytes: IntGauge,
    /// Entries held by the memory store.
    pub memory_store_entries: IntGauge,
    /// Memory store evictions by reason (`size`, `expired`).
    pub memory_store_evictions_total: IntCounterVec,
    /// Config loads by result (`ok`, `error`).
    pub config_reloads_total: IntCounterVec,
    /// Generation of the running config (1 at start, +1 per applied reload).
    pub config_generation: IntGauge,
    /// Warmup requests by result (`stored`, `fresh`, `not_stored`, `failed`).
    pub warmup_total: IntCounterVec,
    /// Requests slower than `log.slow_request`, by route.
    pub slow_requests_total: IntCounterVec,
    /// Requests being handled now.
    pub inflight_requests: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    ///
    /// When a metric is already registered on `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            requests_total: counter(
                "requests_total",
                "Requests by route, method and cache status",
                &["route", "method", "cache_status"],
            )?,
            request_duration_seconds: histogram(
                "request_duration_seconds",
                "Time from request received to response headers sent",
                &["route", "cache_status"],
                REQUEST_BUCKETS,
            )?,
            cache_hits_total: counter("cache_hits_total", "Cache hits", &["route"])?,
            cache_misses_total: counter("cache_misses_total", "Cache misses", &["route"])?,
            upstream_requests_total: counter(
                "upstream_requests_total",
                "Upstream requests by status class",
                &["route", "status_class"],
            )?,
            upstream_duration_seconds: histogram(
                "upstream_duration_seconds",
                "Upstream time until response headers",
                &["route"],
                REQUEST_BUCKETS,
            )?,
            not_stored_total: counter(
                "not_stored_total",
                "Responses to cacheable requests that were not stored, by reason",
                &["route", "reason"],
            )?,
            coalesced_requests_total: counter(
                "coalesced_requests_total",
                "Requests answered by a concurrent request's upstream fetch",
                &["route"],
            )?,
            invalidations_total: counter(
                "invalidations_total",
                "Invalidations applied, by rule",
                &["rule"],
            )?,
            store_operation_duration_seconds: histogram(
                "store_operation_duration_seconds",
                "Cache store operation latency",
                &["backend", "op"],
                STORE_BUCKETS,
            )?,
            store_errors_total: counter(
                "store_errors_total",
                "Cache store operation failures",
                &["backend", "op"],
            )?,
            store_up: gauge_vec("store_up", "1 while the remote store answers", &["backend"])?,
            store_circuit_open: gauge_vec(
                "store_circuit_open",
                "1 while the circuit breaker skips the remote store",
                &["backend"],
            )?,
            store_writes_dropped_total: counter(
                "store_writes_dropped_total",
                "Cache writes dropped because too many were pending",
                &["backend"],
            )?,
            memory_store_bytes: gauge("memory_store_bytes", "Bytes held by the memory store")?,
            memory_store_entries: gauge(
                "memory_store_entries",
                "Entries held by the memory store",
            )?,
            memory_store_evictions_total: counter(
                "memory_store_evictions_total",
                "Memory store evictions by reason",
                &["reason"],
            )?,
            config_reloads_total: counter(
                "config_reloads_total",
                "Config loads by result",
                &["result"],
            )?,
            config_generation: gauge("config_generation", "Generation of the running config")?,
            warmup_total: counter("warmup_total", "Warmup requests by result", &["result"])?,
            slow_requests_total: counter(
                "slow_requests_total",
                "Requests slower than log.slow_request",
                &["route"],
            )?,
            inflight_requests: gauge("inflight_requests", "Requests being handled")?,
        };
        m.register(registry)?;
        Ok(m)
    }

    /// Every collector, in registration order.
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.requests_total.clone()),
            Box::new(self.request_duration_seconds.clone()),
            Box::new(self.cache_hits_total.clone()),
            Box::new(self.cache_misses_total.clone()),
            Box::new(self.upstream_requests_total.clone()),
            Box::new(self.upstream_duration_seconds.clone()),
            Box::new(self.not_stored_total.clone()),
            Box::new(self.coalesced_requests_total.clone()),
            Box::new(self.invalidations_total.clone()),
            Box::new(self.store_operation_duration_seconds.clone()),
            Box::new(self.store_errors_total.clone()),
            Box::new(self.store_up.clone()),
            Box::new(self.store_circuit_open.clone()),
            Box::new(self.store_writes_dropped_total.clone()),
            Box::new(self.memory_store_bytes.clone()),
            Box::new(self.memory_store_entries.clone()),
            Box::new(self.memory_store_evictions_total.clone()),
            Box::new(self.config_reloads_total.clone()),
            Box::new(self.config_generation.clone()),
            Box::new(self.warmup_total.clone()),
            Box::new(self.slow_requests_total.clone()),
            Box::new(self.inflight_requests.clone()),
        ]
    }

    fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        for c in self.collectors() {
            r.register(c)?;
        }
        Ok(())
    }

    /// The name of every metric family this process exports (with the
    /// `cachecar_` prefix), whether or not it has samples yet: what
    /// dashboards and alerts may query.
    pub fn family_names(&self) -> Vec<String> {
        self.collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect()
    }

    /// The upstream latency histogram of one route.
    pub fn upstream_timer(&self, route: &str) -> Histogram {
        self.upstream_duration_seconds.with_label_values(&[route])
    }
}

/// The `method` label: standard methods by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The `status_class` label of an upstream status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help).namespace("cachecar"), labels)
}

fn histogram(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(
        HistogramOpts::new(name, help)
            .namespace("cachecar")
            .buckets(buckets.to_vec()),
        labels,
    )
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, prometheus::Error> {
    IntGaugeVec::new(Opts::new(name, help).namespace("cachecar"), labels)
}

fn gauge(name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    IntGauge::with_opts(Opts::new(name, help).namespace("cachecar"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_with_the_contract_names() {
        let registry = Registry::new();
        let m = Metrics::new(&registry).unwrap();
        m.requests_total
            .with_label_values(&["r", "GET", "hit"])
            .inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(
            names.contains(&"cachecar_requests_total".to_string()),
            "{names:?}"
        );
        assert!(
            Metrics::new(&registry).is_err(),
            "double registration is refused"
        );
    }
}

#[cfg(test)]
mod dashboard_tests {
    use super::*;

    /// Every `cachecar_*` metric the shipped Grafana dashboard queries is
    /// one this process exports (histograms by their `_bucket`, `_sum` or
    /// `_count` series).
    #[test]
    fn the_dashboard_queries_only_exported_metrics() {
        let dashboard = include_str!("../config/grafana/dashboards/cachecar.json");
        let exported = Metrics::new(&Registry::new()).unwrap().family_names();
        let mut queried = Vec::new();
        let mut rest = dashboard;
        while let Some(at) = rest.find("cachecar_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            queried.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        assert!(
            queried.len() > 10,
            "the dashboard queries metrics: {queried:?}"
        );
        for name in &queried {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|base| exported.iter().any(|e| e == base))
                .unwrap_or(name);
            assert!(
                exported.iter().any(|e| e == family),
                "the dashboard asks for {name}, which cachecar does not export"
            );
        }
    }
}
