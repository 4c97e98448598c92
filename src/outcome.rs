//! What the cache did with one request, in the words every reporter uses:
//! the `Cache-Status` and `X-Cache` headers, the access log and the metric
//! labels all take their strings from here, so they cannot disagree.
//!
//! A leaf: it imports nothing from the crate. [`CacheStatus`] is the coarse
//! status, [`NoCacheReason`] and [`BypassReason`] say why a response was
//! not stored or the cache not used (as pingora-cache's `NoCacheReason`),
//! and [`CacheOutcome`] gathers one request's story for `Cache-Status`
//! (RFC 9211).

mod cache_outcome;

pub use cache_outcome::{CacheOutcome, Detail, Fwd, StaleReason};

/// The `X-Cache` value and the `cache_status` metric label of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache without contacting the upstream.
    Hit,
    /// Fetched from the upstream for a cacheable request.
    Miss,
    /// Served stale (stale-while-revalidate or stale-if-error).
    Stale,
    /// A stored response was revalidated with the upstream (304).
    Revalidated,
    /// The cache was not used for this request.
    Bypass,
}

/// Why a response was not stored (or a request not served from the cache).
/// The same string is the `Cache-Status` detail, the log field and the
/// `not_stored_total{reason}` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoCacheReason {
    /// HEAD misses are forwarded as HEAD and have no body to store.
    Method,
    /// The status code is not cacheable.
    Status,
    /// `206 Partial Content` is never stored.
    Partial,
    /// `Cache-Control: no-store` on the response.
    NoStore,
    /// `Cache-Control: no-store` on the request.
    RequestNoStore,
    /// `Cache-Control: private` (and the route does not allow it).
    Private,
    /// `Cache-Control: no-cache` on the response.
    NoCache,
    /// The response sets a cookie.
    SetCookie,
    /// `Vary: *`.
    VaryStar,
    /// The request carried credentials and the response does not allow
    /// sharing it (RFC 9111 §3.5).
    Authorization,
    /// The response was already stale when received.
    Expired,
    /// The response is not storable for another RFC 9111 reason.
    NotStorable,
    /// The body exceeds `cache.max_body_bytes`.
    TooLarge,
    /// The URL already has `cache.max_variants` variants stored.
    Variants,
    /// A coalesced request waited past `coalesce.wait_timeout` and went
    /// upstream itself.
    WaitTimeout,
    /// The upstream body failed or ended early while being read.
    Incomplete,
    /// The store failed.
    StorageError,
}

/// Why a request bypassed the cache altogether.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BypassReason {
    /// No route matches the request.
    NoRoute,
    /// `cache.enabled: false`.
    Disabled,
    /// A method that is never served from the cache.
    Method,
    /// A `scope: user` route and the request has no identity.
    NoIdentity,
    /// A GET or HEAD with a body.
    RequestBody,
    /// A request target that cannot be normalized (answered 400).
    Invalid,
    /// `If-Match`, `If-Unmodified-Since` or `If-Range`: preconditions the
    /// origin evaluates.
    Conditional,
    /// An `Upgrade` handshake (WebSocket), tunnelled to the app.
    Upgrade,
    /// A route in `mode: shadow` with a fresh stored response: the app
    /// answers, and the two are compared.
    Shadow,
}

// === impl CacheStatus ===

impl CacheStatus {
    /// The `X-Cache` header value.
    pub const fn x_cache(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Stale => "STALE",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Bypass => "bypass",
        }
    }
}

// === impl NoCacheReason ===

impl NoCacheReason {
    /// Every reason, in declaration order (`ALL[r as usize] == r`).
    pub const ALL: [NoCacheReason; 17] = [
        NoCacheReason::Method,
        NoCacheReason::Status,
        NoCacheReason::Partial,
        NoCacheReason::NoStore,
        NoCacheReason::RequestNoStore,
        NoCacheReason::Private,
        NoCacheReason::NoCache,
        NoCacheReason::SetCookie,
        NoCacheReason::VaryStar,
        NoCacheReason::Authorization,
        NoCacheReason::Expired,
        NoCacheReason::NotStorable,
        NoCacheReason::TooLarge,
        NoCacheReason::Variants,
        NoCacheReason::WaitTimeout,
        NoCacheReason::Incomplete,
        NoCacheReason::StorageError,
    ];

    /// The detail token, log field and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCacheReason::Method => "method",
            NoCacheReason::Status => "status",
            NoCacheReason::Partial => "partial",
            NoCacheReason::NoStore => "no-store",
            NoCacheReason::RequestNoStore => "request-no-store",
            NoCacheReason::Private => "private",
            NoCacheReason::NoCache => "no-cache",
            NoCacheReason::SetCookie => "set-cookie",
            NoCacheReason::VaryStar => "vary-star",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::Expired => "expired",
            NoCacheReason::NotStorable => "not-storable",
            NoCacheReason::TooLarge => "too-large",
            NoCacheReason::Variants => "variants",
            NoCacheReason::WaitTimeout => "wait-timeout",
            NoCacheReason::Incomplete => "incomplete",
            NoCacheReason::StorageError => "storage-error",
        }
    }
}

// === impl BypassReason ===

impl BypassReason {
    /// Every reason, in declaration order.
    pub const ALL: [BypassReason; 9] = [
        BypassReason::NoRoute,
        BypassReason::Disabled,
        BypassReason::Method,
        BypassReason::NoIdentity,
        BypassReason::RequestBody,
        BypassReason::Invalid,
        BypassReason::Conditional,
        BypassReason::Upgrade,
        BypassReason::Shadow,
    ];

    /// The `Cache-Status` detail and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            BypassReason::NoRoute => "no-route",
            BypassReason::Disabled => "disabled",
            BypassReason::Method => "method",
            BypassReason::NoIdentity => "no-identity",
            BypassReason::RequestBody => "request-body",
            BypassReason::Invalid => "invalid-request",
            BypassReason::Conditional => "conditional",
            BypassReason::Upgrade => "upgrade",
            BypassReason::Shadow => "shadow",
        }
    }

    /// The whole `Cache-Status` member of a bypass for this reason, spelled
    /// out once instead of rendered per request.
    pub const fn cache_status(self) -> &'static str {
        match self {
            BypassReason::NoRoute => "cachecar; fwd=bypass; detail=no-route",
            BypassReason::Disabled => "cachecar; fwd=bypass; detail=disabled",
            BypassReason::Method => "cachecar; fwd=bypass; detail=method",
            BypassReason::NoIdentity => "cachecar; fwd=bypass; detail=no-identity",
            BypassReason::RequestBody => "cachecar; fwd=bypass; detail=request-body",
            BypassReason::Invalid => "cachecar; fwd=bypass; detail=invalid-request",
            BypassReason::Conditional => "cachecar; fwd=bypass; detail=conditional",
            BypassReason::Upgrade => "cachecar; fwd=bypass; detail=upgrade",
            BypassReason::Shadow => "cachecar; fwd=bypass; detail=shadow",
        }
    }
}
