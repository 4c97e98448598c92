//! Whether a response may be stored, and for how long (DESIGN.md §2).
//!
//! Never stored, whatever the mode: `no-store` (response or request),
//! `private` (unless a `scope: user` route sets `store_private`),
//! `no-cache`, `Set-Cookie`, `Vary: *`, 206, status codes that are not
//! cacheable, and responses to requests with credentials on a public route
//! unless the response allows sharing (RFC 9111 §3.5) or the route sets
//! `share_authenticated`.
//!
//! Freshness: with `origin_cache_control: respect`, explicit origin freshness
//! (`s-maxage`, `max-age`, `Expires`, with `Age`) wins and is computed by
//! `http-cache-semantics`; the rule's `ttl` applies when the origin gives
//! none, to statuses cacheable by default (RFC 9110 §15.1). With `override`
//! the rule's `ttl` always wins.
//!
//! Pure: no I/O; called once per fill, never on a hit.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use http_cache_semantics::{CacheOptions, CachePolicy, RequestLike};

use crate::cache::NoCacheReason;
use crate::config::{OriginCacheControl, Route, Scope};

/// How long a stored response stays fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// `Age` the response had when received (RFC 9111 §4.2.3).
    pub initial_age: Duration,
    /// Until when it is fresh.
    pub fresh_until: SystemTime,
    /// Until when a store keeps it.
    pub keep_until: SystemTime,
    /// Whether requests with credentials may be served from it.
    pub shareable_with_auth: bool,
}

/// The request a response answers, as the policy needs it.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request target.
    pub uri: &'a Uri,
    /// Request headers.
    pub request: &'a HeaderMap,
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
    let cc = directives(response);
    let has = |name: &str| cc.iter().any(|(n, _)| n == name);
    if has("no-store") {
        return Err(NoCacheReason::NoStore);
    }
    if directives(ex.request).iter().any(|(n, _)| n == "no-store") {
        return Err(NoCacheReason::RequestNoStore);
    }
    let private_ok = route.scope == Scope::User && route.store_private;
    if has("private") && !private_ok {
        return Err(NoCacheReason::Private);
    }
    if has("no-cache") {
        return Err(NoCacheReason::NoCache);
    }
    if response.contains_key(header::SET_COOKIE) {
        return Err(NoCacheReason::SetCookie);
    }
    if vary_names(response).any(|n| n == "*") {
        return Err(NoCacheReason::VaryStar);
    }
    let public = route.scope == Scope::Public;
    let allows_sharing = has("public") || has("s-maxage") || has("must-revalidate");
    if public && ex.credentials && !route.share_authenticated && !allows_sharing {
        return Err(NoCacheReason::Authorization);
    }
    let initial_age = initial_age(response, ex);
    let explicit = has("s-maxage") || has("max-age") || response.contains_key(header::EXPIRES);
    let fresh_for = match route.origin_cache_control {
        OriginCacheControl::Respect if explicit => origin_freshness(route, ex, status, response)?,
        _ if !CACHEABLE_BY_DEFAULT.contains(&status.as_u16()) => {
            return Err(NoCacheReason::Status);
        }
        _ => route.ttl,
    };
    if fresh_for.is_zero() {
        return Err(NoCacheReason::Expired);
    }
    let fresh_until = ex.received_at + fresh_for;
    Ok(Freshness {
        initial_age,
        fresh_until,
        keep_until: fresh_until,
        shareable_with_auth: public && (route.share_authenticated || allows_sharing),
    })
}

/// Remaining freshness from the origin's headers, by http-cache-semantics.
fn origin_freshness(
    route: &Route,
    ex: &Exchange<'_>,
    status: StatusCode,
    response: &HeaderMap,
) -> Result<Duration, NoCacheReason> {
    // Credentials were dealt with above (per user, or shared by rule), so the
    // policy sees the request without them; a store_private route is judged
    // as a private cache would.
    let request = PolicyRequest {
        method: ex.method,
        uri: ex.uri,
        headers: without_credentials(ex.request, ex.credentials || route.scope == Scope::User),
    };
    let options = CacheOptions {
        shared: !(route.scope == Scope::User && route.store_private),
        ..CacheOptions::default()
    };
    let mut head = http::Response::new(());
    *head.status_mut() = status;
    *head.headers_mut() = response.clone();
    let policy = CachePolicy::new_options(&request, &head, ex.received_at, options);
    if !policy.is_storable() {
        return Err(NoCacheReason::NotStorable);
    }
    Ok(policy.time_to_live(ex.received_at))
}

/// RFC 9111 §4.2.3 `corrected_initial_age`.
fn initial_age(response: &HeaderMap, ex: &Exchange<'_>) -> Duration {
    let age_value = response
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    let response_delay = ex
        .received_at
        .duration_since(ex.sent_at)
        .unwrap_or_default();
    let apparent_age = response
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|date| ex.received_at.duration_since(date).ok())
        .unwrap_or_default();
    apparent_age.max(age_value + response_delay)
}

/// Lower-cased `Cache-Control` directive names with their values.
pub fn directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            Some(match d.split_once('=') {
                Some((n, v)) => (
                    n.trim().to_ascii_lowercase(),
                    Some(v.trim().trim_matches('"').to_string()),
                ),
                None => (d.to_ascii_lowercase(), None),
            })
        })
        .collect()
}

/// Lower-cased header names listed in `Vary`.
pub fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
}

/// The request's values of the headers named by `Vary` (all but `*`, which
/// is never stored).
pub fn vary_values(
    response: &HeaderMap,
    request: &HeaderMap,
) -> Vec<(HeaderName, Option<http::HeaderValue>)> {
    vary_names(response)
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .map(|name| {
            let value = request.get(&name).cloned();
            (name, value)
        })
        .collect()
}

fn without_credentials(headers: &HeaderMap, strip: bool) -> HeaderMap {
    let mut out = headers.clone();
    if strip {
        out.remove(header::AUTHORIZATION);
        out.remove(header::COOKIE);
    }
    out
}

struct PolicyRequest<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: HeaderMap,
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
