//! RFC 9111 decisions: whether a response may be stored and for how long
//! ([`decide`]), and whether a stored one may answer a request ([`judge`],
//! in `judge.rs`).
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
//! (`s-maxage`, `max-age`, `Expires`, less the response's age) wins; without
//! it the route's `ttl` (or its `status_ttl` for the status) applies to
//! statuses cacheable by default, and a route without `ttl` is a plain
//! shared cache (heuristic freshness from `Last-Modified` where RFC 9111
//! §4.2.2 allows, else none). `override`: the route's `ttl` wins. The age
//! counted against the origin's lifetime is RFC 9111 §4.2.3's corrected
//! initial age: the larger of `Age` plus the response delay and the
//! apparent age from `Date`. A targeted field (RFC 9213) the cache obeys
//! stands in for `Cache-Control` (`cache_control::canonical`).
//!
//! Status: 4xx other than 404 and 410, and 5xx, are stored only when the
//! route's `status_ttl` lists them (one bad request must not deny a URL to
//! everyone; a transient error must not be pinned).
//!
//! The numbers come from `http-cache-semantics`, fed the strictly parsed
//! view of `cache_control::canonical`; the common case of a plain
//! `max-age`/`s-maxage` is worked out here as the library would
//! (`library.rs`), without building its policy.
//!
//! Pure: no I/O.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};

use super::cache_control::{self, Canonical, Directives};
use crate::cache::{Freshness, normalized_field};
use crate::outcome::NoCacheReason;
use crate::rules::{OriginCacheControl, Route, Scope};

mod judge;
mod library;

pub(crate) use judge::{RequestDirectives, Verdict, judge, stale_if_error};
use library::{explicit_ttl, library_lifetime};

/// The request a response answers, as the policy needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exchange<'a> {
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

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1),
/// except 206, which is never stored.
const CACHEABLE_BY_DEFAULT: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Decides whether `response` to `ex` may be stored under `route`.
///
/// # Errors
///
/// The reason it may not; it becomes `not_stored_total{reason}` and the
/// `Cache-Status` detail.
pub(crate) fn decide(
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
    let listed = listed_status(route, status)?;
    let canonical = cache_control::canonical(response, &route.targeted.fields);
    let cc = &canonical.directives;
    refuse(route, ex, cc, response)?;
    let shareable_with_auth = sharing(route, ex, cc)?;
    let no_cache = cc.unqualified("no-cache");
    let ages = Ages::of(&canonical, ex);
    let lifetime = if no_cache {
        Lifetime::Route(Duration::ZERO)
    } else {
        lifetime(route, ex, (status, listed), &canonical.headers, cc)?
    };
    let must_revalidate = no_cache || must_revalidate(route, cc);
    let (swr, sie) = stale_windows(route, cc, must_revalidate);
    let validators =
        response.contains_key(header::ETAG) || response.contains_key(header::LAST_MODIFIED);
    if no_cache && !validators {
        // It would have to be fetched again every time anyway.
        return Err(NoCacheReason::NoCache);
    }
    let lifetime = lifetime.left(&ages);
    if lifetime.is_zero() && swr.is_zero() && sie.is_zero() && !validators {
        return Err(NoCacheReason::Expired);
    }
    let fresh_until = ex.received_at + lifetime;
    // Kept stale to be revalidated, or served to a request that accepts it;
    // an entry that may be neither is dropped once its windows pass.
    let usable_stale = validators || !must_revalidate;
    let keep = swr.max(sie).max(if usable_stale {
        route.keep_stale
    } else {
        Duration::ZERO
    });
    Ok(Freshness {
        initial_age: ages.initial,
        fresh_until,
        stale_while_revalidate_until: fresh_until + swr,
        stale_if_error_until: fresh_until + sie,
        must_revalidate,
        keep_until: fresh_until + keep,
        shareable_with_auth,
    })
}

/// Where a freshness lifetime came from: the route's (`ttl`, `status_ttl`),
/// counted from when the response arrived, or the origin's, less the `Age`
/// field already.
enum Lifetime {
    Route(Duration),
    Origin(Duration),
}

impl Lifetime {
    /// What is left of it once the response's age is counted.
    fn left(self, ages: &Ages) -> Duration {
        match self {
            Lifetime::Route(ttl) => ttl,
            Lifetime::Origin(ttl) => ttl.saturating_sub(ages.beyond_field),
        }
    }
}

/// Whether the response may never be served stale: `must-revalidate`,
/// `proxy-revalidate`, or, in a shared cache, `s-maxage`, which carries
/// `proxy-revalidate` (RFC 9111 §5.2.2.10).
fn must_revalidate(route: &Route, cc: &Directives) -> bool {
    cc.has("must-revalidate")
        || cc.has("proxy-revalidate")
        || (cc.has("s-maxage") && !private_cache(route))
}

/// A response's age on arrival (RFC 9111 §4.2.3).
struct Ages {
    /// `corrected_initial_age`.
    initial: Duration,
    /// How much of it the `Age` field does not account for (the apparent
    /// age from `Date` and the response delay), which the origin's lifetime,
    /// already less `Age`, must still lose.
    beyond_field: Duration,
}

impl Ages {
    fn of(canonical: &Canonical<'_>, ex: &Exchange<'_>) -> Self {
        let age_value = Duration::from_secs(canonical.age.unwrap_or(0));
        let response_delay = ex
            .received_at
            .duration_since(ex.sent_at)
            .unwrap_or_default();
        // Whole seconds: `Date` has no finer resolution, and a response
        // dated within the second it arrived has no apparent age.
        let apparent_age = canonical
            .date
            .and_then(|date| ex.received_at.duration_since(date).ok())
            .map_or(Duration::ZERO, |d| Duration::from_secs(d.as_secs()));
        let initial = apparent_age.max(age_value + response_delay);
        Self {
            initial,
            beyond_field: initial.saturating_sub(age_value),
        }
    }
}

/// Whether a request with credentials may be served the response
/// (RFC 9111 §3.5): on a public route, if the response allows sharing or
/// the route sets `share_authenticated`.
///
/// # Errors
///
/// [`NoCacheReason::Authorization`] when this request carried credentials
/// and the response may not be shared with it.
fn sharing(route: &Route, ex: &Exchange<'_>, cc: &Directives) -> Result<bool, NoCacheReason> {
    let public = route.scope == Scope::Public;
    let allows_sharing = cc.has("public") || cc.has("s-maxage") || cc.has("must-revalidate");
    if public && ex.credentials && !route.share_authenticated && !allows_sharing {
        return Err(NoCacheReason::Authorization);
    }
    Ok(public && (route.share_authenticated || allows_sharing))
}

/// The `stale-while-revalidate` and `stale-if-error` windows: the
/// response's under `respect`, else the route's; none when the response
/// must be revalidated.
fn stale_windows(route: &Route, cc: &Directives, must_revalidate: bool) -> (Duration, Duration) {
    let window = |directive: &str, configured: Duration| -> Duration {
        if must_revalidate {
            return Duration::ZERO;
        }
        match (route.origin_cache_control, cc.seconds(directive)) {
            (OriginCacheControl::Respect, Some(s)) => Duration::from_secs(s),
            _ => configured,
        }
    };
    (
        window("stale-while-revalidate", route.stale_while_revalidate),
        window("stale-if-error", route.stale_if_error),
    )
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

/// The freshness lifetime left at `received_at`, for a status and its
/// `status_ttl` entry.
fn lifetime(
    route: &Route,
    ex: &Exchange<'_>,
    (status, listed): (StatusCode, Option<Option<Duration>>),
    canonical: &HeaderMap,
    cc: &Directives,
) -> Result<Lifetime, NoCacheReason> {
    let code = status.as_u16();
    let ttl = listed.unwrap_or(route.ttl);
    let explicit =
        cc.has("s-maxage") || cc.has("max-age") || canonical.contains_key(header::EXPIRES);
    let configured = match route.origin_cache_control {
        OriginCacheControl::Override => ttl,
        OriginCacheControl::Respect if !explicit => ttl,
        OriginCacheControl::Respect => None,
    };
    if let Some(ttl) = configured {
        return if listed.is_some() || CACHEABLE_BY_DEFAULT.contains(&code) {
            Ok(Lifetime::Route(ttl))
        } else {
            Err(NoCacheReason::Status)
        };
    }
    // http-cache-semantics stores only the statuses it knows; RFC 9111 §3
    // allows any final status with explicit freshness, and so does
    // cachecar, within what `stored_unlisted` and `status_ttl` allow.
    let judged_as = if explicit && code >= 200 && status != StatusCode::NOT_MODIFIED {
        StatusCode::OK
    } else {
        status
    };
    if judged_as == StatusCode::OK
        && let Some(ttl) = explicit_ttl(route, ex, canonical, cc)
    {
        return Ok(Lifetime::Origin(ttl));
    }
    library_lifetime(route, ex, judged_as, canonical, explicit).map(Lifetime::Origin)
}

/// The `status_ttl` entry for `status`, if listed.
///
/// # Errors
///
/// [`NoCacheReason::Status`] for a status that is stored only when listed.
fn listed_status(
    route: &Route,
    status: StatusCode,
) -> Result<Option<Option<Duration>>, NoCacheReason> {
    let listed = route.status_ttl(status.as_u16());
    if listed.is_none() && !stored_unlisted(status.as_u16()) {
        return Err(NoCacheReason::Status);
    }
    Ok(listed)
}

/// Whether a status may be stored without being listed in `status_ttl`:
/// not a 4xx other than 404 and 410, and not a 5xx.
fn stored_unlisted(code: u16) -> bool {
    !(400..600).contains(&code) || code == 404 || code == 410
}

/// Whether `route` stores as a private cache (RFC 9111 §3.5): a `scope:
/// user` route with `store_private`. Every other route is a shared cache.
pub(super) fn private_cache(route: &Route) -> bool {
    route.scope == Scope::User && route.store_private
}

/// Lower-cased field names listed in the header `field` (`Vary`,
/// `Connection`).
pub(crate) fn listed_names(
    headers: &HeaderMap,
    field: HeaderName,
) -> impl Iterator<Item = String> + '_ {
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
pub(crate) fn vary_fields(response: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = listed_names(response, header::VARY)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// The request's normalized values of `names`, as entries store them.
pub(crate) fn vary_values(
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

#[cfg(test)]
mod tests;
