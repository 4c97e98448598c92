//! Phase 4, key: whether the cache may answer a request at all
//! (`cacheable`), and the cache key it answers under, with the identity
//! hash for `scope: user`.
//!
//! **A wrong key is cache poisoning**: two requests that may receive
//! different responses must never share a key. The key covers the route's
//! fingerprint (so a changed route shape never reads old entries), the
//! normalized host and path (the same ones sent upstream), the keyed query
//! parameters, the keyed request headers, and for `scope: user` a keyed
//! BLAKE3 hash of the identity. The raw identity is never stored or logged.
//! Fields are length-prefixed, so no two different requests can spell the
//! same byte stream.
//!
//! Pure: no I/O.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Request, header};

use crate::cache::{CacheKey, KeyHash, Token, normalized_field};
use crate::config::{IdentityConfig, IdentitySource, RuntimeConfig};
use crate::outcome::BypassReason;
use crate::rules::normalize::{self, Normalized};
use crate::rules::table::Captures;
use crate::rules::{QueryKey, Route, Scope};

/// A cacheable request, keyed: what phases 5 to 7 work on.
pub(crate) struct Keyed {
    /// The request, `Accept-Encoding` reduced (`normalize::accept_encoding`).
    pub parts: http::request::Parts,
    /// The target, its query reduced to the keyed parameters.
    pub target: Normalized,
    pub route: Arc<Route>,
    pub key: CacheKey,
    /// A public route's request carries credentials.
    pub credentials: bool,
}

/// Whether the cache may answer `request` (else it is forwarded untouched,
/// for the reason given), its key, and whether it carries credentials on a
/// public route. Reduces `Accept-Encoding` first, as the key and the
/// upstream see it.
///
/// # Errors
///
/// The reason to bypass the cache.
pub(super) fn cacheable<B: http_body::Body>(
    config: &RuntimeConfig,
    request: &mut Request<B>,
    target: &Normalized,
    route: &Route,
    captures: &Captures<'_, '_>,
) -> Result<(CacheKey, bool), BypassReason> {
    let identity = precheck(config, route, request.headers(), has_body(request))?;
    normalize::accept_encoding(request.headers_mut());
    let credentials = route.scope == Scope::Public && has_credentials(request.headers());
    let key = for_request(route, captures, target, request.headers(), identity);
    Ok((key, credentials))
}

/// The checks before a lookup: the cache is on, the request has no body,
/// no precondition the origin must evaluate, and a `scope: user` route has
/// an identity to key by (returned).
///
/// # Errors
///
/// The reason to bypass the cache.
pub(crate) fn precheck(
    config: &RuntimeConfig,
    route: &Route,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<Option<IdentityHash>, BypassReason> {
    if !config.cache.enabled {
        return Err(BypassReason::Disabled);
    }
    if has_body {
        return Err(BypassReason::RequestBody);
    }
    if [
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
    ]
    .iter()
    .any(|h| headers.contains_key(h))
    {
        return Err(BypassReason::Conditional);
    }
    let identity = identity(&config.identity, headers);
    if route.scope == Scope::User && identity.is_none() {
        return Err(BypassReason::NoIdentity);
    }
    Ok(identity)
}

/// Whether a request has a body (or may have one).
fn has_body<B: http_body::Body>(request: &Request<B>) -> bool {
    !request.body().is_end_stream() && request.body().size_hint().exact() != Some(0)
}

/// Whether a request carries credentials.
pub(crate) fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE)
}

impl Keyed {
    /// A keyed request, ready for the lookup. The app is asked exactly what
    /// the key covers: with a query allow-list (or `query: none`) the other
    /// parameters are not forwarded, so an unkeyed parameter
    /// (`utm=x;id=evil`, `ID=evil` to a case-insensitive framework) can
    /// never shape a stored answer.
    pub(super) fn new<B>(
        request: Request<B>,
        mut target: Normalized,
        route: Arc<Route>,
        key: CacheKey,
        credentials: bool,
    ) -> Self {
        let (parts, _body) = request.into_parts();
        if route.key.query != QueryKey::All {
            let keyed = keyed_query(&route.key.query, target.query.as_deref());
            target.query = (!keyed.is_empty()).then_some(keyed);
        }
        Self {
            parts,
            target,
            route,
            key,
            credentials,
        }
    }
}

/// A keyed hash of a user's identity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityHash([u8; 32]);

/// What went into a key, for `/admin/explain`.
#[derive(Debug)]
pub(crate) struct KeyParts<'a> {
    /// Normalized host, or empty.
    pub host: &'a str,
    /// Normalized path.
    pub path: &'a str,
    /// The keyed query string, canonical (sorted by name).
    pub query: String,
    /// The keyed headers and their values.
    pub headers: Vec<(&'a HeaderName, Option<&'a HeaderValue>)>,
    /// Whether an identity was part of the key.
    pub identity: bool,
}

impl std::fmt::Debug for IdentityHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityHash(..)")
    }
}

/// The identity of the request's user, hashed, if the request carries one.
pub fn identity(config: &IdentityConfig, headers: &HeaderMap) -> Option<IdentityHash> {
    let raw: &[u8] = match &config.source {
        IdentitySource::Header(name) => headers.get(name)?.as_bytes(),
        IdentitySource::Cookie(name) => cookie(headers, name)?,
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(IdentityHash(
        *blake3::keyed_hash(&config.hash_key, raw).as_bytes(),
    ))
}

/// The value of cookie `name` (first occurrence) from the `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
        .filter(|v| !v.is_empty())
}

/// The parts of the key of a request to `route`.
pub(crate) fn parts<'a>(
    route: &'a Route,
    target: &'a Normalized,
    headers: &'a HeaderMap,
    identity: Option<IdentityHash>,
) -> KeyParts<'a> {
    KeyParts {
        host: target.host.as_deref().unwrap_or(""),
        path: &target.path,
        query: keyed_query(&route.key.query, target.query.as_deref()),
        headers: route
            .key
            .headers
            .iter()
            .map(|name| (name, headers.get(name)))
            .collect(),
        identity: route.scope == Scope::User && identity.is_some(),
    }
}

/// The key of a request to `route` with `captures`.
///
/// `identity` must be `Some` for `scope: user` routes (the proxy bypasses
/// the cache otherwise); it is ignored for public routes.
pub fn for_request(
    route: &Route,
    captures: &Captures<'_, '_>,
    target: &Normalized,
    headers: &HeaderMap,
    identity: Option<IdentityHash>,
) -> CacheKey {
    let parts = parts(route, target, headers, identity);
    // The key material is gathered, then hashed in one call: the same bytes
    // as feeding the hasher field by field (so the same keys), at a fraction
    // of the per-call cost.
    let hash = digest(|m| {
        m.extend_from_slice(&route.fingerprint);
        // The scheme and host the app is told about. Present only when
        // `security.trust_forwarded` let a trusted proxy set them; the app may
        // answer differently per scheme (redirects), so they select entries.
        for name in [&X_FORWARDED_PROTO, &X_FORWARDED_HOST] {
            let value = headers.get(name).map_or(&b""[..], |v| v.as_bytes());
            field(m, value);
        }
        field(m, parts.host.as_bytes());
        field(m, parts.path.as_bytes());
        field(m, parts.query.as_bytes());
        for (_, value) in &parts.headers {
            match value {
                Some(v) => {
                    m.push(1);
                    field(m, v.as_bytes());
                }
                None => m.push(0),
            }
        }
        if route.scope == Scope::User {
            match identity {
                Some(IdentityHash(id)) => {
                    m.push(1);
                    m.extend_from_slice(&id);
                }
                None => m.push(0),
            };
        }
    });
    CacheKey {
        route: route.name.clone(),
        hash: KeyHash(hash),
        tokens: tokens(route, captures, target),
    }
}

/// The key of one variant of a response that varies on `names` (sorted):
/// the primary key plus the request's normalized values of those fields.
pub(crate) fn variant(primary: &KeyHash, names: &[HeaderName], headers: &HeaderMap) -> KeyHash {
    KeyHash(digest(|m| {
        m.extend_from_slice(b"variant");
        m.extend_from_slice(&primary.0);
        for name in names {
            field(m, name.as_str().as_bytes());
            match normalized_field(headers, name) {
                Some(v) => {
                    m.push(1);
                    field(m, &v);
                }
                None => m.push(0),
            }
        }
    }))
}

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Key material, gathered for one blake3 call.
type Material = Vec<u8>;

/// The largest material buffer kept between requests; a request with more
/// (huge keyed headers) gets its own.
const MATERIAL_KEPT: usize = 4096;

thread_local! {
    /// Each thread's material buffer, reused: appending to a `Vec` with
    /// room costs a bounds check and a copy, where a `SmallVec` on the stack
    /// cost several times that per field, and it saves an allocation per key.
    static MATERIAL: std::cell::RefCell<Material> = std::cell::RefCell::new(Vec::with_capacity(512));
}

/// The blake3 digest of the material `gather` writes.
fn digest(gather: impl FnOnce(&mut Material)) -> [u8; 32] {
    MATERIAL.with(|cell| match cell.try_borrow_mut() {
        Ok(mut m) => {
            m.clear();
            gather(&mut m);
            let hash = *blake3::hash(&m).as_bytes();
            if m.capacity() > MATERIAL_KEPT {
                *m = Vec::with_capacity(512);
            }
            hash
        }
        // Not reentrant today; should that change, a fresh buffer is right.
        Err(_) => {
            let mut m = Vec::with_capacity(512);
            gather(&mut m);
            *blake3::hash(&m).as_bytes()
        }
    })
}

/// A length-prefixed field of key material.
fn field(m: &mut Material, bytes: &[u8]) {
    m.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    m.extend_from_slice(bytes);
}

/// The route token, one binding token per binding set, the URL token, one
/// tag token per route tag.
fn tokens(route: &Route, captures: &Captures<'_, '_>, target: &Normalized) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(2 + route.binding_sets.len() + route.tags.len());
    tokens.push(route.token.clone());
    for set in &route.binding_sets {
        tokens.push(Token::binding(
            &route.name,
            set.iter()
                .map(|name| (&**name, captures.get(name).unwrap_or(""))),
        ));
    }
    tokens.push(Token::url(&target.path));
    for tag in &route.tags {
        tokens.push(Token::tag(&tag.render(captures)));
    }
    tokens
}

/// The query parameters the key covers, sorted by name (stably, so repeated
/// parameters keep their relative order, which apps may rely on).
pub(crate) fn keyed_query(spec: &QueryKey, query: Option<&str>) -> String {
    let Some(query) = query else {
        return String::new();
    };
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| (p.split('=').next().unwrap_or(p), p))
        .filter(|(name, _)| match spec {
            QueryKey::All => true,
            QueryKey::None => false,
            QueryKey::Only(names) => names.iter().any(|n| n == name),
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(query.len());
    for (i, (_, pair)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(pair);
    }
    out
}

#[cfg(test)]
mod tests;
