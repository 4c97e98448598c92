//! One request's cache story ([`CacheOutcome`]) and how it is written on
//! the response: `Cache-Status` (RFC 9211), appended after any the
//! upstream sent (the list runs from the origin towards the client), and
//! `X-Cache`. No keys, hosts or addresses ever go into these headers.

use bytes::Bytes;
use http::Response;
use http::header::{HeaderName, HeaderValue};

use super::{BypassReason, CacheStatus, NoCacheReason};

static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// What the cache did with one request: the data behind `Cache-Status`,
/// `X-Cache`, the metric labels and the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheOutcome {
    /// The coarse status (`X-Cache`, `cache_status` label).
    pub status: CacheStatus,
    /// RFC 9211 `fwd` value when the request went upstream.
    pub fwd: Option<Fwd>,
    /// Whether the response was stored.
    pub stored: bool,
    /// Remaining freshness, for hits (negative when stale).
    pub ttl: Option<i64>,
    /// The status the upstream answered with, where it differs from what the
    /// client gets (a 304 revalidation, an error answered stale).
    pub fwd_status: Option<u16>,
    /// The request waited for another one to the same key (coalesced).
    pub collapsed: bool,
    /// Why not stored / why bypassed / why stale.
    pub detail: Option<Detail>,
}

/// RFC 9211 `fwd` values cachecar uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwd {
    /// Not cached (or no longer valid).
    Miss,
    /// Cached, but for other values of the `Vary` headers.
    VaryMiss,
    /// Cached but stale: forwarded to revalidate it.
    Stale,
    /// Cached and fresh, but the request's directives did not allow its use.
    Request,
    /// The cache was not used for this request.
    Bypass,
}

/// The `detail` of a `Cache-Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Why a response was not stored.
    NotStored(NoCacheReason),
    /// Why the cache was bypassed.
    Bypass(BypassReason),
    /// Why a stale response was served.
    Stale(StaleReason),
}

/// Why a stale response was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// Within `stale-while-revalidate`; a refresh runs in the background.
    WhileRevalidate,
    /// The upstream failed and `stale-if-error` allows it.
    IfError,
    /// The client accepts stale responses (`max-stale`).
    Accepted,
}

// === impl CacheOutcome ===

impl CacheOutcome {
    fn new(status: CacheStatus, fwd: Option<Fwd>) -> Self {
        Self {
            status,
            fwd,
            stored: false,
            ttl: None,
            fwd_status: None,
            collapsed: false,
            detail: None,
        }
    }

    /// A hit with `ttl` seconds of freshness left.
    pub fn hit(ttl: i64) -> Self {
        Self {
            ttl: Some(ttl),
            ..Self::new(CacheStatus::Hit, None)
        }
    }

    /// A stale response served for `reason`, `ttl` seconds past freshness.
    pub fn stale(ttl: i64, reason: StaleReason) -> Self {
        let fwd = (reason == StaleReason::IfError).then_some(Fwd::Stale);
        Self {
            ttl: Some(ttl),
            detail: Some(Detail::Stale(reason)),
            ..Self::new(CacheStatus::Stale, fwd)
        }
    }

    /// A stored response revalidated by a 304; `fwd` says why it was
    /// forwarded (stale, or the request asked).
    pub fn revalidated(fwd: Fwd) -> Self {
        Self {
            fwd_status: Some(304),
            ..Self::new(CacheStatus::Revalidated, Some(fwd))
        }
    }

    /// A miss; `fwd` says which kind.
    pub fn miss(fwd: Fwd) -> Self {
        Self::new(CacheStatus::Miss, Some(fwd))
    }

    /// A bypass for `reason`.
    pub fn bypass(reason: BypassReason) -> Self {
        Self {
            detail: Some(Detail::Bypass(reason)),
            ..Self::new(CacheStatus::Bypass, Some(Fwd::Bypass))
        }
    }

    /// This request was answered by another one's fill.
    pub fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }

    /// The upstream answered with `status`.
    pub fn with_fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    /// This miss was stored.
    pub fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    /// This miss was not stored, for `reason`.
    pub fn not_stored(mut self, reason: NoCacheReason) -> Self {
        self.stored = false;
        self.detail = Some(Detail::NotStored(reason));
        self
    }

    /// The reason a response was not stored, if that is what happened.
    pub fn not_stored_reason(&self) -> Option<NoCacheReason> {
        match self.detail {
            Some(Detail::NotStored(r)) => Some(r),
            _ => None,
        }
    }

    /// The `Cache-Status` member of a plain bypass (every pass-through),
    /// without rendering it.
    fn spelled_out(&self) -> Option<HeaderValue> {
        match (self.fwd, self.detail) {
            (Some(Fwd::Bypass), Some(Detail::Bypass(reason)))
                if self.fwd_status.is_none()
                    && self.ttl.is_none()
                    && !self.stored
                    && !self.collapsed =>
            {
                Some(bypass_value(reason))
            }
            _ => None,
        }
    }

    /// The `Cache-Status` member, e.g. `cachecar; fwd=miss; stored`.
    pub fn cache_status(&self) -> String {
        // Sized for the longest usual member; numbers by itoa, not `write!`,
        // whose formatting machinery costs more than the rest of this on
        // every hit.
        let mut s = String::with_capacity(64);
        let mut digits = itoa::Buffer::new();
        s.push_str("cachecar");
        match self.fwd {
            None => s.push_str("; hit"),
            Some(fwd) => {
                s.push_str("; fwd=");
                s.push_str(fwd.as_str());
            }
        }
        if let Some(status) = self.fwd_status {
            s.push_str("; fwd-status=");
            s.push_str(digits.format(status));
        }
        if let Some(ttl) = self.ttl {
            s.push_str("; ttl=");
            s.push_str(digits.format(ttl));
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            s.push_str("; detail=");
            s.push_str(detail.as_str());
        }
        s
    }

    /// Adds `Cache-Status` and `X-Cache` to a response.
    pub fn decorate<B>(&self, response: &mut Response<B>) {
        let headers = response.headers_mut();
        let value = match self.spelled_out() {
            Some(value) => Some(value),
            // The rendered bytes become the value as they are: no copy.
            None => HeaderValue::from_maybe_shared(Bytes::from(self.cache_status())).ok(),
        };
        if let Some(v) = value {
            headers.append(CACHE_STATUS.clone(), v);
        }
        headers.insert(X_CACHE.clone(), x_cache_value(self.status));
    }
}

/// A `HeaderValue` of a constant string. `HeaderValue::from_static` checks
/// every byte when it runs; in a constant, that happens at compile time.
macro_rules! const_value {
    ($s:expr) => {{
        const VALUE: HeaderValue = HeaderValue::from_static($s);
        VALUE
    }};
}

/// The `X-Cache` value of `status`.
fn x_cache_value(status: CacheStatus) -> HeaderValue {
    use CacheStatus as S;
    match status {
        S::Hit => const_value!(S::Hit.x_cache()),
        S::Miss => const_value!(S::Miss.x_cache()),
        S::Stale => const_value!(S::Stale.x_cache()),
        S::Revalidated => const_value!(S::Revalidated.x_cache()),
        S::Bypass => const_value!(S::Bypass.x_cache()),
    }
}

/// The whole `Cache-Status` member of a plain bypass for `reason`.
fn bypass_value(reason: BypassReason) -> HeaderValue {
    use BypassReason as R;
    match reason {
        R::NoRoute => const_value!(R::NoRoute.cache_status()),
        R::Disabled => const_value!(R::Disabled.cache_status()),
        R::Method => const_value!(R::Method.cache_status()),
        R::NoIdentity => const_value!(R::NoIdentity.cache_status()),
        R::RequestBody => const_value!(R::RequestBody.cache_status()),
        R::Invalid => const_value!(R::Invalid.cache_status()),
        R::Conditional => const_value!(R::Conditional.cache_status()),
        R::Upgrade => const_value!(R::Upgrade.cache_status()),
        R::Shadow => const_value!(R::Shadow.cache_status()),
    }
}

impl Fwd {
    /// The RFC 9211 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Miss => "miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Stale => "stale",
            Fwd::Request => "request",
            Fwd::Bypass => "bypass",
        }
    }
}

impl Detail {
    /// The detail token.
    pub fn as_str(self) -> &'static str {
        match self {
            Detail::NotStored(r) => r.as_str(),
            Detail::Bypass(r) => r.as_str(),
            Detail::Stale(StaleReason::WhileRevalidate) => "stale-while-revalidate",
            Detail::Stale(StaleReason::IfError) => "stale-if-error",
            Detail::Stale(StaleReason::Accepted) => "max-stale",
        }
    }
}

#[cfg(test)]
mod tests;
