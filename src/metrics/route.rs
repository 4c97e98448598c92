//! One route's metric series ([`RouteMetrics`]) and the fixed label values
//! they are counted under.

use std::sync::{Arc, OnceLock};

use http::Method;
use prometheus::{Histogram, IntCounter};

use super::Metrics;
use super::shadow::{ShadowCounts, ShadowSeries};
use crate::outcome::{CacheStatus, NoCacheReason};

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
const CLASSES: [&str; 8] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "error",
    "client_aborted",
];

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

/// The upstream `status_class` label of an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamClass {
    /// An answer, by its status.
    Status(u16),
    /// No answer within `upstream.timeout`.
    Timeout,
    /// The exchange failed.
    Error,
    /// The client's request body failed the exchange (too large, too slow,
    /// malformed or cut off): not the app's doing.
    ClientAborted,
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
            UpstreamClass::ClientAborted => 7,
        }
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
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
    shadow: OnceLock<ShadowSeries>,
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
    pub(crate) fn new(name: Arc<str>) -> Self {
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
            shadow: OnceLock::new(),
        }
    }

    /// The route's shadow series (`mode: shadow`), created at zero on first use.
    pub(crate) fn shadow(&self, m: &Metrics) -> &ShadowSeries {
        self.shadow.get_or_init(|| ShadowSeries::new(m, &self.name))
    }

    /// The route's shadow counts, once it has been in shadow mode.
    pub(crate) fn shadow_counts(&self) -> Option<ShadowCounts> {
        self.shadow.get().map(ShadowSeries::counts)
    }

    /// Creates the route's main series at zero, so that `rate()` and alerts
    /// work from its first event rather than the scrape after it: GET
    /// requests, their latency, hits and misses by cache status, upstream
    /// exchanges by class, coalesced and slow requests. The rest (other
    /// methods, refusals to store by reason) appear when they occur.
    pub(crate) fn register(&self, m: &Metrics) {
        let get = method_index(&Method::GET);
        for (s, status) in CACHE_STATUSES.iter().enumerate() {
            let label = status.as_str();
            self.requests[get][s].get_or_init(|| {
                m.requests_total
                    .with_label_values(&[&self.name, METHODS[get], label])
            });
            self.duration[s].get_or_init(|| {
                m.request_duration_seconds
                    .with_label_values(&[&self.name, label])
            });
        }
        self.hits
            .get_or_init(|| m.cache_hits_total.with_label_values(&[&self.name]));
        self.misses
            .get_or_init(|| m.cache_misses_total.with_label_values(&[&self.name]));
        self.upstream_duration
            .get_or_init(|| m.upstream_duration_seconds.with_label_values(&[&self.name]));
        for (i, class) in CLASSES.iter().enumerate() {
            self.upstream_requests[i].get_or_init(|| {
                m.upstream_requests_total
                    .with_label_values(&[&*self.name, class])
            });
        }
        self.coalesced
            .get_or_init(|| m.coalesced_requests_total.with_label_values(&[&self.name]));
        self.slow
            .get_or_init(|| m.slow_requests_total.with_label_values(&[&self.name]));
    }

    /// The route label.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// One request answered: `requests_total`, `request_duration_seconds`
    /// and the hit or miss counter.
    pub(crate) fn request(&self, m: &Metrics, method: &Method, status: CacheStatus, seconds: f64) {
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
    pub(crate) fn not_stored(&self, m: &Metrics, reason: NoCacheReason) {
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
    pub(crate) fn coalesced(&self, m: &Metrics) {
        self.coalesced
            .get_or_init(|| m.coalesced_requests_total.with_label_values(&[&self.name]))
            .inc();
    }

    /// A request slower than `log.slow_request`.
    pub(crate) fn slow(&self, m: &Metrics) {
        self.slow
            .get_or_init(|| m.slow_requests_total.with_label_values(&[&self.name]))
            .inc();
    }

    /// One upstream exchange: `upstream_duration_seconds` and
    /// `upstream_requests_total`.
    pub(crate) fn upstream(&self, m: &Metrics, class: UpstreamClass, seconds: f64) {
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

#[cfg(test)]
mod tests;
