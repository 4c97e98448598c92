//! Whether a stored response may answer a request (RFC 9111 §4.2, §4.2.4,
//! §5.2.1): fresh enough for what the request asks, stale where the client
//! or `stale-while-revalidate` accepts it, or to be revalidated first.
//! Pure: no I/O.

use std::time::SystemTime;

use http::{HeaderMap, header};

use crate::cache::Entry;
use crate::proxy::cache_control::Directives;

/// Request `Cache-Control` directives that limit reuse (RFC 9111 §5.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestDirectives {
    /// `no-cache`: revalidate before reuse.
    pub no_cache: bool,
    /// `no-store`: do not store the response.
    pub no_store: bool,
    /// `max-age`: the client accepts responses at most this old.
    pub max_age: Option<u64>,
    /// `min-fresh`: at least this much freshness must be left.
    pub min_fresh: Option<u64>,
    /// `max-stale`: stale accepted, by at most this much (`Some(None)`: any).
    pub max_stale: Option<Option<u64>>,
    /// `only-if-cached`: answer from the cache or with 504.
    pub only_if_cached: bool,
    /// `stale-if-error`: stale accepted on upstream failure, up to this much.
    pub stale_if_error: Option<u64>,
}

/// Whether a stored response may answer a request, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Fresh enough for this request: answer from it.
    Fresh,
    /// Stale, and the client accepts that (`max-stale`): answer from it.
    StaleAccepted,
    /// Stale within `stale-while-revalidate`: answer from it and refresh it
    /// in the background.
    StaleWhileRevalidate,
    /// Must be revalidated with the upstream first.
    Revalidate,
}

/// Whether `entry` may answer a request with `req` directives at `now`.
pub(crate) fn judge(entry: &Entry, req: &RequestDirectives, now: SystemTime) -> Verdict {
    let age = entry.age(now).as_secs();
    let ttl = entry.ttl_secs(now);
    if req.no_cache
        || req.max_age.is_some_and(|max| age > max)
        || req
            .min_fresh
            .is_some_and(|min| ttl < i64::try_from(min).unwrap_or(i64::MAX))
    {
        return Verdict::Revalidate;
    }
    if entry.is_fresh(now) {
        return Verdict::Fresh;
    }
    if entry.freshness.must_revalidate {
        return Verdict::Revalidate;
    }
    let stale_for = ttl.unsigned_abs();
    match req.max_stale {
        Some(None) => return Verdict::StaleAccepted,
        Some(Some(max)) if stale_for <= max => return Verdict::StaleAccepted,
        _ => {}
    }
    if now < entry.freshness.stale_while_revalidate_until {
        return Verdict::StaleWhileRevalidate;
    }
    Verdict::Revalidate
}

/// Whether `entry` may be served because the upstream failed.
pub(crate) fn stale_if_error(entry: &Entry, req: &RequestDirectives, now: SystemTime) -> bool {
    if entry.freshness.must_revalidate {
        return false;
    }
    let by_request = req
        .stale_if_error
        .is_some_and(|max| u64::try_from(-entry.ttl_secs(now)).unwrap_or(0) <= max);
    now < entry.freshness.stale_if_error_until || by_request
}

impl RequestDirectives {
    /// Parses the request's `Cache-Control` (and `Pragma: no-cache` when
    /// there is no `Cache-Control`, RFC 9111 §5.4).
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let cc = Directives::parse(headers);
        let pragma_no_cache = !headers.contains_key(header::CACHE_CONTROL)
            && headers
                .get_all(header::PRAGMA)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
        Self {
            no_cache: cc.has("no-cache") || pragma_no_cache,
            no_store: cc.has("no-store"),
            max_age: cc.seconds("max-age"),
            min_fresh: cc.seconds("min-fresh"),
            max_stale: cc.has("max-stale").then(|| cc.seconds("max-stale")),
            only_if_cached: cc.has("only-if-cached"),
            stale_if_error: cc.seconds("stale-if-error"),
        }
    }
}
