//! RFC 9111 decisions: whether a response may be stored and for how long
//! ([`decide`]), and whether a stored one may answer a request ([`judge`]).
//!
//! Never stored, whatever the mode: `no-store` (response or request),
//! `private` (unless a `scope: user` route sets `store_private`),
//! `Set-Cookie`, `Vary: *`, 206, statuses that are neither cacheable by
//! default nor given explicit freshness, responses to requests with
//! credentials on a public route unless the response allows sharing
//! (RFC 9111 §3.5) or the route sets `share_authenticated`, and responses
//! that are stale on arrival with nothing to revalidate or serve stale with.
//!
//! Freshness: with `origin_cache_control: respect`, explicit origin freshness
//! (`s-maxage`, `max-age`, `Expires`, minus `Age`) wins; without it the
//! route's `ttl` applies to statuses cacheable by default, and a route
//! without `ttl` is a plain shared cache (heuristic freshness from
//! `Last-Modified` where RFC 9111 §4.2.2 allows, else none). `override`: the
//! route's `ttl` wins. The numbers come from `http-cache-semantics`, fed the
//! strictly parsed view of `cache_control::canonical`; the common case of
//! a plain `max-age`/`s-maxage` is worked out here as the library would
//! (see `explicit_ttl`), without building its policy.
//!
//! Pure: no I/O.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use http_cache_semantics::{CacheOptions, CachePolicy, RequestLike, ResponseLike};

use super::cache_control::{self, Canonical, Directives};
use crate::cache::{Entry, NoCacheReason, normalized_field};
use crate::config::{OriginCacheControl, Route, Scope};

/// How long a stale response with validators is kept beyond its stale
/// windows, so it can be revalidated (a 304) instead of fetched again.
pub const REVALIDATION_KEEP: Duration = Duration::from_secs(300);

/// How long a stored response may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// `Age` the response had when received (RFC 9111 §4.2.3).
    pub initial_age: Duration,
    /// Until when it is fresh.
    pub fresh_until: SystemTime,
    /// Until when it may be served stale while refreshing in the background.
    pub stale_while_revalidate_until: SystemTime,
    /// Until when it may be served stale when the upstream fails.
    pub stale_if_error_until: SystemTime,
    /// Never served stale; revalidated once stale.
    pub must_revalidate: bool,
    /// Until when a store keeps it.
    pub keep_until: SystemTime,
    /// Whether requests with credentials may be served from it.
    pub shareable_with_auth: bool,
}

/// The request a response answers, as the policy needs it.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// Request method (of the fill: always GET).
    pub method: &'a Method,
    /// Request target.
    pub uri: &'a Uri,
    /// Request headers.
    pub request: &'a HeaderMap,
    /// Their `Cache-Control` directives, parsed once for the whole fill.
    pub directives: &'a RequestDirectives,
    /// Whether the request carried credentials (`Authorization`/`Cookie`).
    pub credentials: bool,
    /// When the request was sent upstream.
    pub sent_at: SystemTime,
    /// When the response headers arrived.
    pub received_at: SystemTime,
}

/// Request `Cache-Control` directives that limit reuse (RFC 9111 §5.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestDirectives {
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
pub enum Verdict {
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

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1),
/// except 206, which is never stored.
const CACHEABLE_BY_DEFAULT: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Decides whether `response` to `ex` may be stored under `route`.
///
/// # Errors
///
/// The reason it may not; it becomes `not_stored_total{reason}` and the
/// `Cache-Status` detail.
pub fn decide(
    route: &Route,
    ex: &Exchange<'_>,
    status: StatusCode,
    response: &HeaderMap,
) -> Result<Freshness, NoCacheReason> {
    if *ex.method != Method::GET {
        return Err(NoCacheReason::Method);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(NoCacheReason::Partial);
    }
    let canonical = cache_control::canonical(response);
    let cc = &canonical.directives;
    refuse(route, ex, cc, response)?;
    let public = route.scope == Scope::Public;
    let allows_sharing = cc.has("public") || cc.has("s-maxage") || cc.has("must-revalidate");
    if public && ex.credentials && !route.share_authenticated && !allows_sharing {
        return Err(NoCacheReason::Authorization);
    }
    let no_cache = cc.unqualified("no-cache");
    let lifetime = if no_cache {
        Duration::ZERO
    } else {
        lifetime(route, ex, status, &canonical.headers, cc)?
    };
    let must_revalidate = no_cache || cc.has("must-revalidate") || cc.has("proxy-revalidate");
    let windows = |directive: &str, configured: Duration| -> Duration {
        if must_revalidate {
            return Duration::ZERO;
        }
        match (route.origin_cache_control, cc.seconds(directive)) {
            (OriginCacheControl::Respect, Some(s)) => Duration::from_secs(s),
            _ => configured,
        }
    };
    let swr = windows("stale-while-revalidate", route.stale_while_revalidate);
    let sie = windows("stale-if-error", route.stale_if_error);
    let validators =
        response.contains_key(header::ETAG) || response.contains_key(header::LAST_MODIFIED);
    if no_cache && !validators {
        // It would have to be fetched again every time anyway.
        return Err(NoCacheReason::NoCache);
    }
    if lifetime.is_zero() && swr.is_zero() && sie.is_zero() && !validators {
        return Err(NoCacheReason::Expired);
    }
    let fresh_until = ex.received_at + lifetime;
    let keep = swr.max(sie).max(if validators {
        REVALIDATION_KEEP
    } else {
        Duration::ZERO
    });
    Ok(Freshness {
        initial_age: initial_age(&canonical, ex),
        fresh_until,
        stale_while_revalidate_until: fresh_until + swr,
        stale_if_error_until: fresh_until + sie,
        must_revalidate,
        keep_until: fresh_until + keep,
        shareable_with_auth: public && (route.share_authenticated || allows_sharing),
    })
}

/// The checks that refuse storing regardless of freshness.
fn refuse(
    route: &Route,
    ex: &Exchange<'_>,
    cc: &Directives,
    response: &HeaderMap,
) -> Result<(), NoCacheReason> {
    if cc.has("no-store") {
        return Err(NoCacheReason::NoStore);
    }
    if ex.directives.no_store {
        return Err(NoCacheReason::RequestNoStore);
    }
    if cc.unqualified("private") && !private_cache(route) {
        return Err(NoCacheReason::Private);
    }
    if response.contains_key(header::SET_COOKIE) {
        return Err(NoCacheReason::SetCookie);
    }
    if listed_names(response, header::VARY).any(|n| n == "*") {
        return Err(NoCacheReason::VaryStar);
    }
    Ok(())
}

/// The freshness lifetime left at `received_at`.
fn lifetime(
    route: &Route,
    ex: &Exchange<'_>,
    status: StatusCode,
    canonical: &HeaderMap,
    cc: &Directives,
) -> Result<Duration, NoCacheReason> {
    let explicit =
        cc.has("s-maxage") || cc.has("max-age") || canonical.contains_key(header::EXPIRES);
    let configured = match route.origin_cache_control {
        OriginCacheControl::Override => route.ttl,
        OriginCacheControl::Respect if !explicit => route.ttl,
        OriginCacheControl::Respect => None,
    };
    if let Some(ttl) = configured {
        return if CACHEABLE_BY_DEFAULT.contains(&status.as_u16()) {
            Ok(ttl)
        } else {
            Err(NoCacheReason::Status)
        };
    }
    // http-cache-semantics stores only the statuses it knows; RFC 9111 §3
    // allows any final status with explicit freshness. cachecar stores
    // those too, except server errors, which it never pins in the cache.
    let judged_as = if explicit
        && status.as_u16() >= 200
        && !status.is_server_error()
        && status != StatusCode::NOT_MODIFIED
    {
        StatusCode::OK
    } else {
        status
    };
    if judged_as == StatusCode::OK
        && let Some(ttl) = explicit_ttl(route, ex, canonical, cc)
    {
        return Ok(ttl);
    }
    library_lifetime(route, ex, judged_as, canonical, explicit)
}

/// Whether `route` stores as a private cache (RFC 9111 §3.5): a `scope:
/// user` route with `store_private`. Every other route is a shared cache.
fn private_cache(route: &Route) -> bool {
    route.scope == Scope::User && route.store_private
}

/// Directives that leave an explicit `max-age` or `s-maxage` the whole say
/// over a shared cache's freshness in http-cache-semantics: it reads none of
/// them when one of those two is present (`public`, `must-revalidate` and
/// the stale windows are cachecar's, decided in [`decide`]).
const PLAIN_DIRECTIVES: [&str; 8] = [
    "max-age",
    "s-maxage",
    "public",
    "must-revalidate",
    "stale-while-revalidate",
    "stale-if-error",
    "immutable",
    "no-transform",
];

/// The freshness lifetime of a `200`-judged response in the common case,
/// worked out as http-cache-semantics would without building its policy
/// (which clones both header maps, parses `Cache-Control` into hash maps
/// twice and costs a tenth of a miss): a shared cache, a request without
/// `Cache-Control`, and only [`PLAIN_DIRECTIVES`], with `s-maxage` or
/// `max-age`. Then the library's time to live is that directive (s-maxage
/// first) minus the `Age` field, read as it reads it. `None` in every other
/// case, which the library decides. The test
/// `explicit_lifetimes_agree_with_the_library` holds the two together.
fn explicit_ttl(
    route: &Route,
    ex: &Exchange<'_>,
    canonical: &HeaderMap,
    cc: &Directives,
) -> Option<Duration> {
    if private_cache(route)
        || ex.request.contains_key(header::CACHE_CONTROL)
        || !cc.all_in(&PLAIN_DIRECTIVES)
    {
        return None;
    }
    let max_age = cc.seconds("s-maxage").or_else(|| cc.seconds("max-age"))?;
    let age = canonical
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Some(Duration::from_secs(max_age).saturating_sub(Duration::from_secs(age)))
}

/// The freshness lifetime as http-cache-semantics decides it.
fn library_lifetime(
    route: &Route,
    ex: &Exchange<'_>,
    judged_as: StatusCode,
    canonical: &HeaderMap,
    explicit: bool,
) -> Result<Duration, NoCacheReason> {
    let policy = library_policy(route, ex, judged_as, canonical);
    if !policy.is_storable() {
        return Err(if explicit {
            NoCacheReason::NotStorable
        } else {
            NoCacheReason::Status
        });
    }
    Ok(policy.time_to_live(ex.received_at))
}

/// http-cache-semantics' view of the exchange: credentials were dealt with
/// (per user, or shared by rule or by the response), so the request is
/// shown without them; a `store_private` route is judged as a private cache.
fn library_policy(
    route: &Route,
    ex: &Exchange<'_>,
    status: StatusCode,
    canonical: &HeaderMap,
) -> CachePolicy {
    // Copied only when there is something to take out.
    let headers = if ex.request.contains_key(header::AUTHORIZATION)
        || ex.request.contains_key(header::COOKIE)
    {
        let mut headers = ex.request.clone();
        headers.remove(header::AUTHORIZATION);
        headers.remove(header::COOKIE);
        std::borrow::Cow::Owned(headers)
    } else {
        std::borrow::Cow::Borrowed(ex.request)
    };
    let request = PolicyRequest {
        method: ex.method,
        uri: ex.uri,
        headers,
    };
    let options = CacheOptions {
        shared: !private_cache(route),
        ..CacheOptions::default()
    };
    let head = PolicyResponse {
        status,
        headers: canonical,
    };
    CachePolicy::new_options(&request, &head, ex.received_at, options)
}

/// RFC 9111 §4.2.3 `corrected_initial_age`.
fn initial_age(canonical: &Canonical<'_>, ex: &Exchange<'_>) -> Duration {
    let age_value = canonical
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cache_control::delta_seconds(v.trim()))
        .map_or(Duration::ZERO, Duration::from_secs);
    let response_delay = ex
        .received_at
        .duration_since(ex.sent_at)
        .unwrap_or_default();
    let apparent_age = canonical
        .date
        .and_then(|date| ex.received_at.duration_since(date).ok())
        .unwrap_or_default();
    apparent_age.max(age_value + response_delay)
}

/// Whether `entry` may answer a request with `req` directives at `now`.
pub fn judge(entry: &Entry, req: &RequestDirectives, now: SystemTime) -> Verdict {
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
    if entry.must_revalidate {
        return Verdict::Revalidate;
    }
    let stale_for = ttl.unsigned_abs();
    match req.max_stale {
        Some(None) => return Verdict::StaleAccepted,
        Some(Some(max)) if stale_for <= max => return Verdict::StaleAccepted,
        _ => {}
    }
    if now < entry.stale_while_revalidate_until {
        return Verdict::StaleWhileRevalidate;
    }
    Verdict::Revalidate
}

/// Whether `entry` may be served because the upstream failed.
pub fn stale_if_error(entry: &Entry, req: &RequestDirectives, now: SystemTime) -> bool {
    if entry.must_revalidate {
        return false;
    }
    let by_request = req
        .stale_if_error
        .is_some_and(|max| u64::try_from(-entry.ttl_secs(now)).unwrap_or(0) <= max);
    now < entry.stale_if_error_until || by_request
}

impl RequestDirectives {
    /// Parses the request's `Cache-Control` (and `Pragma: no-cache` when
    /// there is no `Cache-Control`, RFC 9111 §5.4).
    pub fn parse(headers: &HeaderMap) -> Self {
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

/// Lower-cased field names listed in the header `field` (`Vary`,
/// `Connection`).
pub fn listed_names(headers: &HeaderMap, field: HeaderName) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(field)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

/// The header names of `Vary`, sorted and deduplicated (never `*`: such
/// responses are not stored).
pub fn vary_fields(response: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = listed_names(response, header::VARY)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// The request's normalized values of `names`, as entries store them.
pub fn vary_values(
    names: &[HeaderName],
    request: &HeaderMap,
) -> Vec<(HeaderName, Option<HeaderValue>)> {
    names
        .iter()
        .map(|name| {
            let value = normalized_field(request, name)
                .and_then(|v| HeaderValue::from_maybe_shared(bytes::Bytes::from(v)).ok());
            (name.clone(), value)
        })
        .collect()
}

struct PolicyRequest<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: std::borrow::Cow<'a, HeaderMap>,
}

/// A response as http-cache-semantics reads it, without copying headers
/// (it copies them itself).
struct PolicyResponse<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
}

impl ResponseLike for PolicyResponse<'_> {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

impl RequestLike for PolicyRequest<'_> {
    fn uri(&self) -> Uri {
        self.uri.clone()
    }
    fn is_same_uri(&self, other: &Uri) -> bool {
        self.uri == other
    }
    fn method(&self) -> &Method {
        self.method
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

#[cfg(test)]
mod tests;
