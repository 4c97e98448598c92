//! The upstream side: pooled HTTP/1.1 connections (`pool`) with connect and
//! response-header timeouts, and the hygiene of what crosses the proxy.
//!
//! Requests go up with the normalized path and query (the same ones the key
//! was built from), hop-by-hop headers removed, `X-Forwarded-For` appended,
//! `X-Forwarded-Proto`/`-Host` overwritten (the client does not get to choose
//! them), `Via` added, and bodies streamed. Responses come back with their
//! hop-by-hop headers removed. Never buffers a body itself.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;

use super::normalize::Normalized;
use super::policy::listed_names;
use crate::config::{RuntimeConfig, UpstreamConfig};

mod pool;

pub use pool::ResponseBody;

/// Boxed error of request bodies from any source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of an upstream request.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// The upstream client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstream {
    pool: Arc<pool::Pool>,
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, connect timeout).
    #[error("cannot connect to the upstream: {0}")]
    Connect(#[source] std::io::Error),
    /// No response headers within `upstream.timeout`.
    #[error("upstream sent no response headers within {0:?}")]
    Timeout(Duration),
    /// The exchange failed after connecting (reset, malformed response).
    #[error("upstream request failed: {0}")]
    Failed(#[source] hyper::Error),
}

impl UpstreamError {
    /// Whether sending the same request again may succeed: the connection
    /// failed after it was made (typically a pooled connection the app
    /// closed as we reused it). Only ever acted on for idempotent requests
    /// without a body (RFC 9110 §9.2.2).
    pub fn is_retryable(&self) -> bool {
        matches!(self, UpstreamError::Failed(_))
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the proxy-auth pair meant for
/// us and the obsolete `Proxy-Connection`; `Connection` first.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as names, made at compile time (removing by a string
/// parses it again: 150 instructions per request).
static HOP_BY_HOP_NAMES: [HeaderName; HOP_BY_HOP.len()] = [
    HeaderName::from_static(HOP_BY_HOP[0]),
    HeaderName::from_static(HOP_BY_HOP[1]),
    HeaderName::from_static(HOP_BY_HOP[2]),
    HeaderName::from_static(HOP_BY_HOP[3]),
    HeaderName::from_static(HOP_BY_HOP[4]),
    HeaderName::from_static(HOP_BY_HOP[5]),
    HeaderName::from_static(HOP_BY_HOP[6]),
    HeaderName::from_static(HOP_BY_HOP[7]),
    HeaderName::from_static(HOP_BY_HOP[8]),
];

/// `name`'s place in [`HOP_BY_HOP`] as a bit (`Connection` is bit 0), or 0
/// for an end-to-end header. Compared as strings: comparing `HeaderName`s
/// cost 70 instructions per header.
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    let name = name.as_str();
    HOP_BY_HOP
        .iter()
        .position(|h| *h == name)
        .map_or(0, |i| 1 << i)
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 cachecar");

impl Upstream {
    /// A client for `config`'s connect and idle timeouts. The target comes
    /// with each request, so an upstream URL change needs no new client.
    pub fn new(config: &UpstreamConfig) -> Self {
        Self {
            pool: pool::Pool::new(config.connect_timeout, config.idle_timeout),
        }
    }

    /// Sends `request` (built by [`request`]) to `authority`, waiting at
    /// most `timeout` for the response headers. The request is on its way
    /// before the future is made, which does not carry it (see
    /// `pool::Pool::send`; a combinator for the same reason).
    ///
    /// # Errors
    ///
    /// [`UpstreamError`], classified for the 502/504 decision.
    pub fn send<'a>(
        &'a self,
        authority: &'a Authority,
        request: Request<UpstreamBody>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Response<ResponseBody>, UpstreamError>> + Send + 'a {
        let exchange = tokio::time::timeout(timeout, self.pool.send(authority, request));
        exchange.map(move |result| match result {
            Err(_) => Err(UpstreamError::Timeout(timeout)),
            Ok(Err(pool::Failure::Connect(e))) => Err(UpstreamError::Connect(e)),
            Ok(Err(pool::Failure::Exchange(e))) => Err(UpstreamError::Failed(e)),
            Ok(Ok(mut response)) => {
                strip_hop_by_hop(response.headers_mut());
                Ok(response)
            }
        })
    }
}

/// The client end of a connection: its IP, rendered once per connection
/// for `X-Forwarded-For` (formatting an address per request costs more
/// than the rest of the header work).
#[derive(Clone, Debug)]
pub struct Peer {
    ip: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip }
    }
}

/// Builds the upstream request from the client's method and headers, for
/// [`Upstream::send`] to `runtime.upstream.authority`: an origin-form
/// target (the base path, then the normalized path and query; the
/// client's `uri` itself when that is the same) and a `Host`.
/// `client_headers` have been through [`drop_untrusted`] already: the proxy
/// does that once, at the door, before anything reads them.
pub fn request(
    method: &http::Method,
    uri: &Uri,
    client_headers: &HeaderMap,
    target: &Normalized,
    runtime: &RuntimeConfig,
    client: &Peer,
    body: UpstreamBody,
) -> Request<UpstreamBody> {
    let config = &runtime.upstream;
    let trust = runtime.security.trust_forwarded;
    let mut headers = forwardable_copy(client_headers);
    strip_hop_by_hop(&mut headers);
    // `Host` is the normalized host (HTTP/2 carries it as a pseudo-header,
    // HTTP/1.1 needs the field): the client's own value when it already is
    // (the usual case; shared, not copied), else replaced.
    let host = target
        .host
        .as_deref()
        .and_then(|h| match headers.get(header::HOST) {
            Some(sent) if sent.as_bytes() == h.as_bytes() => Some(sent.clone()),
            _ => HeaderValue::from_str(h).ok().inspect(|v| {
                headers.insert(header::HOST, v.clone());
            }),
        });
    // Only an HTTP/1.0 request comes without one: the upstream's.
    if host.is_none()
        && let Ok(value) = HeaderValue::from_str(config.authority.as_str())
    {
        headers.insert(header::HOST, value);
    }
    forwarded_headers(&mut headers, host.as_ref(), client, trust);
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = upstream_uri(uri, target, config);
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    request
}

/// Headers [`forwarded_headers`] and `Host` may add to the client's.
const FORWARDED_ADDED: usize = 5;

/// Client maps up to this size are copied name by name rather than cloned.
const SMALL_MAP: usize = 4;

/// A copy of the client's headers with room for what forwarding adds.
///
/// A clone keeps the map's hash table, so no name is hashed again, but its
/// entry list has no room (a `Vec` clone is exact, and `reserve` only
/// grows the table, which a map parsed by hyper already has): the headers
/// added then grow the list once or twice, 500 instructions. A small map is
/// cheaper to rebuild at the right size, hashing its few names again.
fn forwardable_copy(client: &HeaderMap) -> HeaderMap {
    if client.len() > SMALL_MAP {
        let mut headers = client.clone();
        headers.reserve(FORWARDED_ADDED);
        return headers;
    }
    let mut headers = HeaderMap::with_capacity(SMALL_MAP + FORWARDED_ADDED);
    for (name, value) in client {
        headers.append(name, value.clone());
    }
    headers
}

/// The origin-form target (HTTP/1.1 to an origin server, RFC 9112 §3.2.1).
fn upstream_uri(client: &Uri, target: &Normalized, config: &UpstreamConfig) -> Uri {
    // The usual case: no base path, and a path and query that normalizing
    // (and keying) left as they came. The client's own, shared, is then
    // the same bytes without an allocation, a copy and a parse.
    if config.base_path.is_empty()
        && let Some(pq) = client.path_and_query()
        && pq.path() == target.path
        && pq.query() == target.query.as_deref()
    {
        return Uri::from(pq.clone());
    }
    let mut pq = String::with_capacity(
        config.base_path.len()
            + target.path.len()
            + target.query.as_ref().map_or(0, |q| q.len() + 1),
    );
    pq.push_str(&config.base_path);
    pq.push_str(&target.path);
    if let Some(q) = &target.query {
        pq.push('?');
        pq.push_str(q);
    }
    // The base path was validated at config load and the path and query
    // come from a URI that parsed, so this cannot fail.
    PathAndQuery::try_from(pq).map_or_else(|_| Uri::from_static("/"), Uri::from)
}

/// Client headers that an app (or a framework in it) may act on but the
/// cache key does not cover: they could make the app answer for another
/// URL, method or client than the one cachecar keyed. Never forwarded.
const REWRITING: [&str; 9] = [
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// Who-is-the-client headers: overwritten from the connection unless
/// `security.trust_forwarded` says a trusted proxy set them.
const CLIENT_CLAIMS: [&str; 14] = [
    "forwarded",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-url-scheme",
    "front-end-https",
    "x-host",
    "x-original-host",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
];

/// Removes the client headers cachecar does not pass on: `REWRITING`
/// always; `CLIENT_CLAIMS` and `X-Forwarded-Proto`/`-Host` unless
/// `trust_forwarded` (then the key covers the latter two, see `key`).
/// Done before routing and keying, so nothing downstream sees them.
pub fn drop_untrusted(headers: &mut HeaderMap, trust_forwarded: bool) {
    // One pass over the (few) names present instead of a lookup per listed
    // name: this runs for every request.
    let untrusted = |name: &HeaderName| {
        let name = name.as_str();
        REWRITING.contains(&name)
            || (!trust_forwarded
                && (CLIENT_CLAIMS.contains(&name)
                    || name == X_FORWARDED_PROTO.as_str()
                    || name == X_FORWARDED_HOST.as_str()))
    };
    if !headers.keys().any(untrusted) {
        return;
    }
    let drop: Vec<HeaderName> = headers.keys().filter(|n| untrusted(n)).cloned().collect();
    for name in drop {
        headers.remove(name);
    }
}

/// `host` is the request's normalized `Host`, as a header value.
fn forwarded_headers(
    headers: &mut HeaderMap,
    host: Option<&HeaderValue>,
    client: &Peer,
    trust: bool,
) {
    // Untrusted, the client's `X-Forwarded-Proto`/`-Host` are gone
    // (`drop_untrusted`) and its `X-Forwarded-For` is replaced, so nothing
    // is looked up first: a lookup hashes the name byte by byte, 100
    // instructions.
    let prior = trust
        .then(|| headers.get(&X_FORWARDED_FOR))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .filter(|prior| !prior.trim().is_empty());
    let xff = match prior {
        Some(prior) => {
            let ip = client.ip.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{prior}, {ip}")).ok()
        }
        None => Some(client.ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    if !trust || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !trust || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    headers.append(header::VIA, VIA_VALUE.clone());
}

/// Removes hop-by-hop headers, including those named in `Connection`.
///
/// One pass over the names present (a handful) notes which hop-by-hop ones
/// are there; only those are then removed. This runs twice for every
/// forwarded request, and nearly every response has one: the usual case, a
/// `Connection: keep-alive` or `close` that names no other field, is
/// handled without splitting the value or allocating.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers
        .keys()
        .fold(0, |bits, name| bits | hop_by_hop_bit(name));
    if present == 0 {
        return;
    }
    if present & 1 != 0 && connection_names_fields(headers) {
        let listed: Vec<String> = listed_names(headers, header::CONNECTION).collect();
        let drop: Vec<HeaderName> = headers
            .keys()
            .filter(|name| hop_by_hop_bit(name) != 0 || listed.iter().any(|t| t == name.as_str()))
            .cloned()
            .collect();
        for name in drop {
            headers.remove(name);
        }
        return;
    }
    for (bit, name) in HOP_BY_HOP_NAMES.iter().enumerate() {
        if present & (1 << bit) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether `Connection` lists a field name, not only the two options that
/// name none (`close`) or one removed anyway (`keep-alive`).
fn connection_names_fields(headers: &HeaderMap) -> bool {
    let option = |t: &[u8]| {
        t.is_empty() || t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive")
    };
    headers.get_all(header::CONNECTION).iter().any(|value| {
        let value = value.as_bytes();
        !option(value) && value.split(|&b| b == b',').any(|t| !option(t.trim_ascii()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(trust_forwarded: bool) -> RuntimeConfig {
        crate::config::load_str(
            &format!(
                "upstream: {{ url: \"http://app:8000/base\" }}\nsecurity: {{ trust_forwarded: {trust_forwarded} }}\n"
            ),
            &|_| None,
        )
        .unwrap()
    }

    fn build(headers: &[(&str, &str)]) -> Request<UpstreamBody> {
        build_with(headers, false)
    }

    fn build_with(headers: &[(&str, &str)], trust: bool) -> Request<UpstreamBody> {
        let mut req = Request::builder().method("GET").uri("/x?a=1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        // As the proxy does at the door.
        drop_untrusted(&mut parts.headers, trust);
        let target = Normalized {
            path: "/x".into(),
            query: Some("a=1".into()),
            host: Some("api.example".into()),
        };
        let body = UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|e| match e {}));
        request(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &target,
            &config(trust),
            &Peer::new("10.0.0.9:5555".parse().unwrap()),
            body,
        )
    }

    use http_body_util::BodyExt;

    #[test]
    fn target_is_the_normalized_path_under_the_base_in_origin_form() {
        let req = build(&[]);
        assert_eq!(req.uri(), "/base/x?a=1");
        assert_eq!(req.uri().authority(), None);
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "api.example");
    }

    #[test]
    fn target_is_the_clients_own_only_when_it_is_the_normalized_one() {
        let config =
            crate::config::load_str("upstream: { url: \"http://app:8000\" }\n", &|_| None).unwrap();
        let peer = Peer::new("10.0.0.9:5555".parse().unwrap());
        let sent = |uri: &str, path: &str, query: Option<&str>| {
            let (parts, ()) = Request::get(uri).body(()).unwrap().into_parts();
            let target = Normalized {
                path: path.into(),
                query: query.map(Into::into),
                host: Some("api.example".into()),
            };
            let body = UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|e| match e {}));
            let req = request(
                &parts.method,
                &parts.uri,
                &parts.headers,
                &target,
                &config,
                &peer,
                body,
            );
            // The client's own bytes, shared, or a target built anew.
            let own = req.uri().path_and_query().unwrap().as_str().as_ptr()
                == parts.uri.path_and_query().unwrap().as_str().as_ptr();
            (req.uri().to_string(), own)
        };
        assert_eq!(sent("/x?a=1", "/x", Some("a=1")), ("/x?a=1".into(), true));
        assert_eq!(sent("/x", "/x", None), ("/x".into(), true));
        // Normalized, merged, or keyed: the target that was keyed goes up.
        let built = |s: &str| (String::from(s), false);
        assert_eq!(sent("/a/../x?b=%7e", "/x", Some("b=~")), built("/x?b=~"));
        assert_eq!(sent("//x?a=1", "/x", Some("a=1")), built("/x?a=1"));
        assert_eq!(sent("/x?a=1&utm=2", "/x", Some("a=1")), built("/x?a=1"));
        assert_eq!(sent("/x?utm=2", "/x", None), built("/x"));
    }

    #[test]
    fn host_is_the_normalized_one_or_the_upstreams() {
        // The client's, when it is already normalized: kept, not doubled.
        let req = build(&[("host", "api.example")]);
        let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
        assert_eq!(hosts, ["api.example"]);
        assert_eq!(req.headers()["x-forwarded-host"], "api.example");
        // Another spelling is replaced by the normalized one.
        let req = build(&[("host", "API.Example")]);
        let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
        assert_eq!(hosts, ["api.example"]);
        assert_eq!(req.headers()["x-forwarded-host"], "api.example");
        // None at all (HTTP/1.0): the upstream's authority, which HTTP/1.1
        // requires, and no X-Forwarded-Host.
        let (parts, ()) = Request::builder().uri("/x").body(()).unwrap().into_parts();
        let target = Normalized {
            path: "/x".into(),
            query: None,
            host: None,
        };
        let body = UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|e| match e {}));
        let peer = Peer::new("10.0.0.9:5555".parse().unwrap());
        let req = request(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &target,
            &config(false),
            &peer,
            body,
        );
        assert_eq!(req.uri(), "/base/x");
        assert_eq!(req.headers()["host"], "app:8000");
        assert!(!req.headers().contains_key("x-forwarded-host"));
    }

    #[test]
    fn each_hop_by_hop_header_is_stripped_alone_and_with_the_others() {
        for name in HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.append(name, HeaderValue::from_static("close"));
            h.append("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
            assert_eq!(left, ["x-keep"], "{name} was not stripped");
        }
        let mut h = HeaderMap::new();
        for name in HOP_BY_HOP {
            h.append(name, HeaderValue::from_static("close"));
        }
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "left: {:?}", h.keys().collect::<Vec<_>>());
    }

    #[test]
    fn connection_options_alone_are_stripped_with_the_rest_kept() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "Keep-Alive"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
            ("content-type", "text/plain"),
            ("x-keep", "1"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-keep"]);
        // Named fields go too, matched without regard to case.
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close, X-Trace"));
        h.append("x-trace", HeaderValue::from_static("1"));
        h.append("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-keep"]);
    }

    #[test]
    fn hop_by_hop_headers_are_removed_and_forwarded_headers_set() {
        let req = build(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("accept", "application/json"),
        ]);
        let h = req.headers();
        for gone in ["connection", "x-secret", "te", "upgrade"] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(
            h["x-forwarded-for"], "10.0.0.9",
            "client claims are overwritten"
        );
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        assert_eq!(h["via"], "1.1 cachecar");
        assert_eq!(h["accept"], "application/json");
    }

    #[test]
    fn rewriting_and_client_claim_headers_are_dropped_unless_trusted() {
        let hostile = [
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-method-override", "DELETE"),
            ("forwarded", "for=1.1.1.1;host=evil"),
            ("x-real-ip", "1.1.1.1"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ];
        let req = build(&hostile);
        let h = req.headers();
        for gone in [
            "x-original-url",
            "x-rewrite-url",
            "x-http-method-override",
            "x-method-override",
            "forwarded",
            "x-real-ip",
        ] {
            assert!(!h.contains_key(gone), "{gone} must not reach the app");
        }
        let req = build_with(&hostile, true);
        let h = req.headers();
        assert!(
            !h.contains_key("x-original-url"),
            "rewrites are never trusted"
        );
        assert_eq!(h["forwarded"], "for=1.1.1.1;host=evil");
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "evil.example");
    }
}
