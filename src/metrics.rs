//! Prometheus metrics (docs/metrics.md), registered on a registry the
//! `App` owns, so every test proxy starts from zero.
//!
//! Label values come only from config route names, rule labels and small
//! enums (`outcome::CacheStatus::as_str`, `NoCacheReason::as_str`, the
//! method and status-class tables in `route.rs`), never from raw paths,
//! hosts or users: cardinality is bounded by the config.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

mod route;
mod shadow;

pub(crate) use route::RouteMetrics;
pub(crate) use route::UpstreamClass;
pub use shadow::ShadowCounts;
pub(crate) use shadow::ShadowResult;

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

/// Declares [`Metrics`]: each field is a metric named after it (with the
/// `cachecar_` prefix), made by `kind(name, help, ...)`, registered in
/// declaration order.
macro_rules! metrics {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty = $kind:ident($($arg:expr),*), )*) => {
        /// Every metric cachecar exports. Field names are the metric names
        /// without the `cachecar_` prefix.
        #[derive(Clone, Debug)]
        pub struct Metrics {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        impl Metrics {
            /// Creates and registers every metric.
            ///
            /// # Errors
            ///
            /// When a metric is already registered on `registry`.
            pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
                let m = Self {
                    $( $field: $kind(stringify!($field), $($arg),*)?, )*
                };
                $( registry.register(Box::new(m.$field.clone()))?; )*
                Ok(m)
            }

            /// The name of every metric family this process exports (with
            /// the `cachecar_` prefix), whether or not it has samples yet:
            /// what dashboards and alerts may query.
            pub fn family_names(&self) -> Vec<String> {
                vec![$( format!("cachecar_{}", stringify!($field)) ),*]
            }
        }
    };
}

metrics! {
    /// Requests by route, method and cache status.
    requests_total: IntCounterVec = counter(
        "Requests by route, method and cache status",
        &["route", "method", "cache_status"]
    ),
    /// End-to-end latency by route and cache status.
    request_duration_seconds: HistogramVec = histogram(
        "Time from request received to response headers sent",
        &["route", "cache_status"],
        REQUEST_BUCKETS
    ),
    /// Requests answered from the cache, by route.
    cache_hits_total: IntCounterVec = counter("Cache hits", &["route"]),
    /// Cacheable requests that went upstream, by route.
    cache_misses_total: IntCounterVec = counter("Cache misses", &["route"]),
    /// Upstream requests by route and status class (`2xx`, ..., `error`).
    upstream_requests_total: IntCounterVec = counter(
        "Upstream requests by status class",
        &["route", "status_class"]
    ),
    /// Upstream latency until response headers, by route.
    upstream_duration_seconds: HistogramVec = histogram(
        "Upstream time until response headers",
        &["route"],
        REQUEST_BUCKETS
    ),
    /// Responses not stored, by route and reason.
    not_stored_total: IntCounterVec = counter(
        "Responses to cacheable requests that were not stored, by reason",
        &["route", "reason"]
    ),
    /// Requests answered by another request's fill (coalesced), by route.
    coalesced_requests_total: IntCounterVec = counter(
        "Requests answered by a concurrent request's upstream fetch",
        &["route"]
    ),
    /// Invalidation rules applied, by rule label (`self` for RFC 9111 §4.4,
    /// `admin` for admin purges).
    invalidations_total: IntCounterVec = counter("Invalidations applied, by rule", &["rule"]),
    /// Requests on routes in `mode: shadow`, by what the cache would have
    /// done: `match`, `mismatch` (a hit that differs from the app),
    /// `miss`, `uncompared` (a hit whose app body was too large to compare).
    shadow_requests_total: IntCounterVec = counter(
        "Requests on shadow routes, by what the cache would have done: match, mismatch, miss, uncompared",
        &["route", "result"]
    ),
    /// Would-be hits that differ from the app's answer.
    shadow_mismatches_total: IntCounterVec = counter(
        "Shadow routes: would-be hits that differ from what the app answered",
        &["route"]
    ),
    /// Tags purged, by rule (`admin` for the admin API).
    tag_purges_total: IntCounterVec = counter("Tags purged, by rule (admin: the admin API)", &["rule"]),
    /// Tags of the app's tag headers not kept, by why: over
    /// `cache.tags.max_per_entry` (`count`) or `max_length` (`length`).
    tags_dropped_total: IntCounterVec = counter(
        "Tags from the app's tag headers not kept: beyond max_per_entry (count) or longer than max_length (length)",
        &["reason"]
    ),
    /// Writes whose purge did not reach the store at first, by what
    /// became of them (`cache.redis.on_purge_failure`).
    purge_failures_total: IntCounterVec = counter(
        "Writes whose purge did not reach the store at first: waited (recorded within purge_wait), unrecorded (answered before it was), refused",
        &["outcome"]
    ),
    /// Store call latency by backend and operation.
    store_operation_duration_seconds: HistogramVec = histogram(
        "Cache store operation latency",
        &["backend", "op"],
        STORE_BUCKETS
    ),
    /// Store call failures by backend and operation.
    store_errors_total: IntCounterVec = counter(
        "Cache store operation failures",
        &["backend", "op"]
    ),
    /// 1 while the remote store answers, by backend.
    store_up: IntGaugeVec = gauge_vec("1 while the remote store answers", &["backend"]),
    /// 1 while the circuit breaker skips the remote store, by backend.
    store_circuit_open: IntGaugeVec = gauge_vec(
        "1 while the circuit breaker skips the remote store",
        &["backend"]
    ),
    /// Background writes dropped because too many were pending, by backend.
    store_writes_dropped_total: IntCounterVec = counter(
        "Cache writes dropped because too many were pending",
        &["backend"]
    ),
    /// Bytes held by the memory store.
    memory_store_bytes: IntGauge = gauge("Bytes held by the memory store"),
    /// Entries held by the memory store.
    memory_store_entries: IntGauge = gauge("Entries held by the memory store"),
    /// The memory store's bound (`cache.memory.max_bytes`, or the tiered
    /// store's `cache.l1.max_bytes`); 0 without one.
    memory_store_max_bytes: IntGauge = gauge("Bound of the memory store in bytes"),
    /// Memory store evictions by reason (`size`, `expired`).
    memory_store_evictions_total: IntCounterVec = counter(
        "Memory store evictions by reason",
        &["reason"]
    ),
    /// Config reloads by result (`applied`, `refused`).
    config_reloads_total: IntCounterVec = counter("Config loads by result", &["result"]),
    /// Generation of the running config (1 at start, +1 per applied reload).
    config_generation: IntGauge = gauge("Generation of the running config"),
    /// Warmup requests by result (`stored`, `fresh`, `not_stored`, `failed`).
    warmup_total: IntCounterVec = counter("Warmup requests by result", &["result"]),
    /// Requests slower than `log.slow_request`, by route.
    slow_requests_total: IntCounterVec = counter(
        "Requests slower than log.slow_request",
        &["route"]
    ),
    /// Requests being handled now.
    inflight_requests: IntGauge = gauge("Requests being handled"),
    /// `Upgrade` handshakes by route and result (`tunnelled`, `refused`
    /// when the app answered other than 101, `failed`, `over_limit`).
    upgrades_total: IntCounterVec = counter(
        "Upgrade (WebSocket) handshakes by result",
        &["route", "result"]
    ),
    /// Tunnels open now.
    upgrade_tunnels_open: IntGauge = gauge("Upgrade (WebSocket) tunnels open"),
    /// Spans not exported because the export queue was full
    /// (`traces.max_queue`).
    trace_spans_dropped_total: IntCounter = process_wide(spans_dropped),
    /// Span export requests to the collector, by result (`ok`, `failed`).
    trace_exports_total: IntCounterVec = process_wide(exports),
    /// Log lines dropped: the log writer's queue was full (stderr read too
    /// slowly). Read from the writer when `/metrics` is rendered.
    log_lines_dropped_total: IntCounter = log_drops(),
    /// Tunnels closed, by why (`closed`, `error`, `idle`, `lifetime`,
    /// `shutdown`).
    upgrade_tunnels_closed_total: IntCounterVec = counter(
        "Upgrade (WebSocket) tunnels closed, by reason",
        &["reason"]
    ),
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help).namespace("cachecar"), labels)
}

/// The trace exporter's counters. Trace export is the process's, set up
/// before any `App` (whose registries each export these same counters).
#[derive(Clone, Debug)]
pub struct TraceCounters {
    /// `trace_spans_dropped_total`.
    pub dropped: IntCounter,
    /// `trace_exports_total{result}`.
    pub exports: IntCounterVec,
}

/// The process's [`TraceCounters`].
pub fn trace_counters() -> &'static TraceCounters {
    static COUNTERS: std::sync::OnceLock<TraceCounters> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| TraceCounters {
        dropped: IntCounter::with_opts(
            Opts::new(
                "trace_spans_dropped_total",
                "Spans dropped: the trace export queue was full",
            )
            .namespace("cachecar"),
        )
        .expect("a valid counter"),
        exports: counter(
            "trace_exports_total",
            "Span export requests to the trace collector, by result",
            &["result"],
        )
        .expect("a valid counter"),
    })
}

/// One of the process-wide counters, by a [`TraceCounters`] field.
fn process_wide<T>(_name: &str, field: fn(&TraceCounters) -> &T) -> Result<T, prometheus::Error>
where
    T: Clone,
{
    Ok(field(trace_counters()).clone())
}

/// Where the count of dropped log lines is read: the binary's log writer.
type DropSource = Box<dyn Fn() -> u64 + Send + Sync>;
static LOG_DROP_SOURCE: std::sync::OnceLock<DropSource> = std::sync::OnceLock::new();

/// Sets, once, where `log_lines_dropped_total` reads how many log lines
/// the process's log writer has dropped.
pub fn count_log_drops(source: impl Fn() -> u64 + Send + Sync + 'static) {
    let _ = LOG_DROP_SOURCE.set(Box::new(source));
}

/// The process's `log_lines_dropped_total`, shared by every registry.
fn log_drops(_name: &str) -> Result<IntCounter, prometheus::Error> {
    static COUNTER: std::sync::OnceLock<IntCounter> = std::sync::OnceLock::new();
    Ok(COUNTER
        .get_or_init(|| {
            let help = "Log lines dropped: the log writer's queue was full";
            IntCounter::with_opts(Opts::new("log_lines_dropped_total", help).namespace("cachecar"))
                .expect("a valid counter")
        })
        .clone())
}

impl Metrics {
    /// Brings the counters read from elsewhere up to date, before `/metrics`
    /// is rendered.
    pub fn sync_process_counters(&self) {
        if let Some(source) = LOG_DROP_SOURCE.get() {
            let (now, seen) = (source(), self.log_lines_dropped_total.get());
            self.log_lines_dropped_total
                .inc_by(now.saturating_sub(seen));
        }
    }
}

fn spans_dropped(c: &TraceCounters) -> &IntCounter {
    &c.dropped
}

fn exports(c: &TraceCounters) -> &IntCounterVec {
    &c.exports
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
mod tests;
