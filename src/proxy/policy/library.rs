//! http-cache-semantics, the library that decides freshness lifetimes
//! (RFC 9111 §4.2.1, heuristics §4.2.2), and the fast path that answers for
//! it in the common case without building its policy ([`explicit_ttl`]).
//! Pure: no I/O.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, Uri, header};
use http_cache_semantics::{CacheOptions, CachePolicy, RequestLike, ResponseLike};

use super::{Exchange, private_cache};
use crate::outcome::NoCacheReason;
use crate::proxy::cache_control::Directives;
use crate::rules::Route;

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
pub(super) fn explicit_ttl(
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
pub(super) fn library_lifetime(
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
