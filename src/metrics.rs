//! Prometheus metrics (DESIGN.md §6), registered on a registry the `App`
//! owns, so every test proxy starts from zero.
//!
//! Label values come only from config route names, rule labels and small
//! enums (`CacheStatus::as_str`, `NoCacheReason::as_str`, [`method_label`]),
//! never from raw paths, hosts or users: cardinality is bounded by the config.

use std::sync::{Arc, OnceLock};

use http::Method;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::outcome::{CacheStatus, NoCacheReason};

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
}

/// Values of the `method` label, by [`method_index`].
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// Values of `cache_status`, by `CacheStatus as usize`.
const CACHE_STATUSES: [CacheStatus; 5] = [
    CacheStatus::Hit,
    CacheStatus::Miss,
    CacheStatus::Stale,
    CacheStatus::Revalidated,
    CacheStatus::Bypass,
];

/// Values of the upstream `status_class` label, by [`UpstreamClass`].
const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "error"];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The `method` label: standard methods by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    METHODS[method_index(method)]
}

/// The upstream `status_class` label of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamClass {
    /// An answer, by its status.
    Status(u16),
    /// No answer within `upstream.timeout`.
    Timeout,
    /// The exchange failed.
    Error,
}

impl UpstreamClass {
    fn index(self) -> usize {
        match self {
            UpstreamClass::Status(100..=199) => 0,
            UpstreamClass::Status(200..=299) => 1,
            UpstreamClass::Status(300..=399) => 2,
            UpstreamClass::Status(400..=499) => 3,
            UpstreamClass::Status(_) => 4,
            UpstreamClass::Timeout => 5,
            UpstreamClass::Error => 6,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        CLASSES[self.index()]
    }
}

/// One route's metric series, each looked up in its family once and then
/// kept: a request updates its counters without hashing label strings or
/// taking the family's lock. Filled lazily, so only series that occur are
/// exported, as before.
///
/// A `RouteMetrics` belongs to the [`Metrics`] it is first used with (one
/// per process; every test app builds its own routes).
pub struct RouteMetrics {
    name: Arc<str>,
    requests: [[OnceLock<IntCounter>; CACHE_STATUSES.len()]; METHODS.len()],
    duration: [OnceLock<Histogram>; CACHE_STATUSES.len()],
    hits: OnceLock<IntCounter>,
    misses: OnceLock<IntCounter>,
    upstream_duration: OnceLock<Histogram>,
    upstream_requests: [OnceLock<IntCounter>; CLASSES.len()],
    not_stored: [OnceLock<IntCounter>; NOT_STORED_REASONS],
    coalesced: OnceLock<IntCounter>,
    slow: OnceLock<IntCounter>,
}

/// Slots for `not_stored_total{reason}`, by `NoCacheReason as usize` (a
/// reason added without a slot is still counted, only looked up each time).
const NOT_STORED_REASONS: usize = NoCacheReason::ALL.len();

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// The series of the route labelled `name` (`none`: no rule matched).
    pub fn new(name: Arc<str>) -> Self {
        Self {
            name,
            requests: Default::default(),
            duration: Default::default(),
            hits: OnceLock::new(),
            misses: OnceLock::new(),
            upstream_duration: OnceLock::new(),
            upstream_requests: Default::default(),
            not_stored: Default::default(),
            coalesced: OnceLock::new(),
            slow: OnceLock::new(),
        }
    }

    /// The route label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One request answered: `requests_total`, `request_duration_seconds`
    /// and the hit or miss counter.
    pub fn request(&self, m: &Metrics, method: &Method, status: CacheStatus, seconds: f64) {
        let s = status as usize;
        let label = status.as_str();
        let method = method_index(method);
        self.requests[method][s]
            .get_or_init(|| {
                m.requests_total
                    .with_label_values(&[&self.name, METHODS[method], label])
            })
            .inc();
        self.duration[s]
            .get_or_init(|| {
                m.request_duration_seconds
                    .with_label_values(&[&self.name, label])
            })
            .observe(seconds);
        match status {
            CacheStatus::Hit | CacheStatus::Stale => self
                .hits
                .get_or_init(|| m.cache_hits_total.with_label_values(&[&self.name]))
                .inc(),
            CacheStatus::Miss | CacheStatus::Revalidated => self
                .misses
                .get_or_init(|| m.cache_misses_total.with_label_values(&[&self.name]))
                .inc(),
            CacheStatus::Bypass => {}
        }
    }

    /// A response to a cacheable request that was not stored, for `reason`.
    pub fn not_stored(&self, m: &Metrics, reason: NoCacheReason) {
        let series = || {
            m.not_stored_total
                .with_label_values(&[&self.name, reason.as_str()])
        };
        match self.not_stored.get(reason as usize) {
            Some(slot) => slot.get_or_init(series).inc(),
            None => series().inc(),
        }
    }

    /// A request answered by another request's fill.
    pub fn coalesced(&self, m: &Metrics) {
        self.coalesced
            .get_or_init(|| m.coalesced_requests_total.with_label_values(&[&self.name]))
            .inc();
    }

    /// A request slower than `log.slow_request`.
    pub fn slow(&self, m: &Metrics) {
        self.slow
            .get_or_init(|| m.slow_requests_total.with_label_values(&[&self.name]))
            .inc();
    }

    /// One upstream exchange: `upstream_duration_seconds` and
    /// `upstream_requests_total`.
    pub fn upstream(&self, m: &Metrics, class: UpstreamClass, seconds: f64) {
        self.upstream_duration
            .get_or_init(|| m.upstream_duration_seconds.with_label_values(&[&self.name]))
            .observe(seconds);
        self.upstream_requests[class.index()]
            .get_or_init(|| {
                m.upstream_requests_total
                    .with_label_values(&[&self.name, class.as_str()])
            })
            .inc();
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

    /// The kept series are the ones the labels name: every method and
    /// cache status lands in its own `requests_total` series, hits and
    /// misses in theirs, each upstream class in its own.
    #[test]
    fn route_series_land_under_their_labels() {
        let m = Metrics::new(&Registry::new()).unwrap();
        let series = RouteMetrics::new(Arc::from("users"));
        for (i, status) in CACHE_STATUSES.into_iter().enumerate() {
            assert_eq!(status as usize, i, "CACHE_STATUSES is in enum order");
            for method in [
                Method::GET,
                Method::DELETE,
                Method::from_bytes(b"PURGE").unwrap(),
            ] {
                for _ in 0..=i {
                    series.request(&m, &method, status, 0.001);
                }
            }
        }
        for (i, status) in CACHE_STATUSES.into_iter().enumerate() {
            for method in ["GET", "DELETE", "other"] {
                let n = m
                    .requests_total
                    .with_label_values(&["users", method, status.as_str()])
                    .get();
                assert_eq!(n, i as u64 + 1, "{method} {status:?}");
            }
            let observed = m
                .request_duration_seconds
                .with_label_values(&["users", status.as_str()])
                .get_sample_count();
            assert_eq!(observed, 3 * (i as u64 + 1));
        }
        // hit 1 + stale 3, miss 2 + revalidated 4, per method.
        assert_eq!(m.cache_hits_total.with_label_values(&["users"]).get(), 12);
        assert_eq!(m.cache_misses_total.with_label_values(&["users"]).get(), 18);
        let classes = [
            (UpstreamClass::Status(101), "1xx"),
            (UpstreamClass::Status(204), "2xx"),
            (UpstreamClass::Status(304), "3xx"),
            (UpstreamClass::Status(404), "4xx"),
            (UpstreamClass::Status(503), "5xx"),
            (UpstreamClass::Timeout, "timeout"),
            (UpstreamClass::Error, "error"),
        ];
        for (n, (class, label)) in classes.into_iter().enumerate() {
            for _ in 0..=n {
                series.upstream(&m, class, 0.01);
            }
            assert_eq!(class.as_str(), label);
            let got = m
                .upstream_requests_total
                .with_label_values(&["users", label])
                .get();
            assert_eq!(got, n as u64 + 1, "{label}");
        }
        let upstream = m.upstream_duration_seconds.with_label_values(&["users"]);
        assert_eq!(upstream.get_sample_count(), 28);
    }

    /// Every not-stored reason has its own kept series, and coalesced and
    /// slow requests land under the route.
    #[test]
    fn not_stored_coalesced_and_slow_land_under_their_labels() {
        let m = Metrics::new(&Registry::new()).unwrap();
        let series = RouteMetrics::new(Arc::from("users"));
        let reasons = NoCacheReason::ALL;
        for (n, reason) in reasons.into_iter().enumerate() {
            // Also: every reason has a kept slot.
            assert_eq!(
                reason as usize, n,
                "{reason:?}: ALL is in declaration order"
            );
            for _ in 0..=n {
                series.not_stored(&m, reason);
            }
        }
        for (n, reason) in reasons.into_iter().enumerate() {
            let got = m
                .not_stored_total
                .with_label_values(&["users", reason.as_str()])
                .get();
            assert_eq!(got, n as u64 + 1, "{reason:?}");
        }
        series.coalesced(&m);
        series.coalesced(&m);
        series.slow(&m);
        let coalesced = m.coalesced_requests_total.with_label_values(&["users"]);
        assert_eq!(coalesced.get(), 2);
        assert_eq!(m.slow_requests_total.with_label_values(&["users"]).get(), 1);
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
