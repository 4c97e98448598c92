//! The upstream client: pooled HTTP/1.1 connections (`pool`) with connect
//! and response-header timeouts, and the request as the app receives it,
//! with the hygiene of what crosses the proxy (`headers`).
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
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;

use super::interim::Interim;
use crate::config::{RuntimeConfig, UpstreamConfig};
use crate::rules::normalize::Normalized;

mod headers;
mod pool;

pub(crate) use headers::X_FORWARDED_FOR;
pub(crate) use headers::drop_untrusted;
use headers::forwarded_headers;
use headers::strip_hop_by_hop;
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

impl Upstream {
    /// A client for `config`'s connect and idle timeouts. The target comes
    /// with each request, so an upstream URL change needs no new client.
    pub fn new(config: &UpstreamConfig) -> Self {
        Self {
            pool: pool::Pool::new(config.connect_timeout, config.idle_timeout),
        }
    }

    /// Sends `request` (built by `request`) to `authority`, waiting at
    /// most `timeout` for the response headers. The request is on its way
    /// before the future is made, which does not carry it (see
    /// `pool::Pool::send`; a combinator for the same reason).
    ///
    /// # Errors
    ///
    /// [`UpstreamError`], classified for the 502/504 decision.
    pub fn send<'a>(
        &'a self,
        target: &'a UpstreamConfig,
        request: Request<UpstreamBody>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Response<ResponseBody>, UpstreamError>> + Send + 'a {
        let exchange = tokio::time::timeout(timeout, self.pool.send(target, request));
        exchange.map(move |result| match result {
            Err(_) => Err(UpstreamError::Timeout(timeout)),
            Ok(Err(failure)) => Err(failure.into()),
            Ok(Ok(mut response)) => {
                strip_hop_by_hop(response.headers_mut());
                Ok(response)
            }
        })
    }
}

impl Upstream {
    /// Sends an `Upgrade` handshake to `authority` on a connection of its
    /// own, waiting at most `timeout` for the answer's headers. A `101`
    /// keeps its `Upgrade` field (the tunnel's protocol); every other
    /// hop-by-hop field is removed as usual.
    ///
    /// # Errors
    ///
    /// As [`Upstream::send`].
    pub async fn send_upgrade(
        &self,
        target: &UpstreamConfig,
        request: Request<UpstreamBody>,
        timeout: Duration,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        let exchange = self.pool.send_upgrade(target, request);
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(UpstreamError::Timeout(timeout)),
            Ok(Err(failure)) => Err(failure.into()),
            Ok(Ok(mut response)) => {
                let protocol = response.headers_mut().remove(header::UPGRADE);
                strip_hop_by_hop(response.headers_mut());
                if let Some(protocol) = protocol {
                    response.headers_mut().insert(header::UPGRADE, protocol);
                }
                Ok(response)
            }
        }
    }
}

/// The client end of a connection: its IP, rendered once per connection
/// for `X-Forwarded-For` (formatting an address per request costs more
/// than the rest of the header work).
#[derive(Clone, Debug)]
pub struct Peer {
    addr: std::net::IpAddr,
    ip: HeaderValue,
    /// Its forwarded headers are believed (`security.trusted_proxies`);
    /// decided per request, as a reload may change the list.
    trusted: bool,
    /// Where the app's interim responses to this peer's requests go.
    interim: Option<Interim>,
    /// The id of the request being forwarded.
    request_id: RequestId,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            addr: addr.ip(),
            ip,
            trusted: false,
            interim: None,
            request_id: RequestId::Made([0, 0]),
        }
    }

    /// The peer, its forwarded headers believed or not under `security`.
    pub(crate) fn judged(mut self, security: &crate::config::SecurityConfig) -> Self {
        self.trusted = security.trusts(self.addr);
        self
    }

    /// The peer, sending the request whose id is `id`.
    pub(crate) fn asking(mut self, id: RequestId) -> Self {
        self.request_id = id;
        self
    }

    /// Its address.
    pub(crate) fn addr(&self) -> std::net::IpAddr {
        self.addr
    }

    /// Whether its forwarded headers are believed.
    pub(crate) fn trusted(&self) -> bool {
        self.trusted
    }

    /// The peer, with its connection's interim responses written by
    /// `interim`.
    pub(crate) fn with_interim(mut self, interim: Option<Interim>) -> Self {
        self.interim = interim;
        self
    }
}

/// One request to the app, as the proxy sends it: what the client asked,
/// for which normalized target, and from where. Borrowed: the upstream
/// request built from it copies what it needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpstreamRequest<'a> {
    pub method: &'a Method,
    /// The client's target, reused when it is the normalized one.
    pub uri: &'a Uri,
    /// The client's headers, through [`drop_untrusted`] already: the proxy
    /// does that once, at the door, before anything reads them.
    pub headers: &'a HeaderMap,
    pub target: &'a Normalized,
    pub client: &'a Peer,
}

/// Builds the request [`Upstream::send`] sends to
/// `runtime.upstream.authority`: an origin-form target (the base path, then
/// the normalized path and query; the client's `uri` itself when that is
/// the same) and a `Host`.
pub(crate) fn request(
    outgoing: &UpstreamRequest<'_>,
    runtime: &RuntimeConfig,
    body: UpstreamBody,
) -> Request<UpstreamBody> {
    let UpstreamRequest {
        method,
        uri,
        headers: client_headers,
        target,
        client,
    } = *outgoing;
    let config = &runtime.upstream;
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
    forwarded_headers(&mut headers, host.as_ref(), client);
    // The app logs the same id as cachecar (the client's is in `headers`).
    if let RequestId::Made(_) = client.request_id {
        headers.insert(X_REQUEST_ID.clone(), client.request_id.value());
    }
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = upstream_uri(uri, target, config);
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    if let Some(interim) = &client.interim {
        interim.attach(&mut request, strip_hop_by_hop);
    }
    request
}

/// Headers [`forwarded_headers`] and `Host` may add to the client's.
const FORWARDED_ADDED: usize = 7;

/// A request's id, as the access log and the app see it: the client's
/// `X-Request-Id` when it is 1 to 200 visible characters, else 128 random
/// bits written as 32 hex digits only when needed (a hit that is not
/// logged never writes one).
#[derive(Clone, Debug)]
pub(crate) enum RequestId {
    /// The client's, forwarded as it came.
    Sent(HeaderValue),
    /// Made here: 128 bits (two words, so the enum has no 16-byte
    /// alignment to pad every `Peer` to).
    Made([u64; 2]),
}

pub(crate) static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl RequestId {
    /// The id of a request with `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        match headers.get(&X_REQUEST_ID) {
            Some(v)
                if !v.is_empty()
                    && v.len() <= 200
                    && v.as_bytes().iter().all(|c| c.is_ascii_graphic()) =>
            {
                RequestId::Sent(v.clone())
            }
            _ => RequestId::Made([fastrand::u64(..), fastrand::u64(..)]),
        }
    }

    /// The header value.
    pub(crate) fn value(&self) -> HeaderValue {
        match self {
            RequestId::Sent(v) => v.clone(),
            RequestId::Made(words) => HeaderValue::from_bytes(&hex(*words))
                .unwrap_or_else(|_| HeaderValue::from_static("0")),
        }
    }
}

impl RequestId {
    /// `f` of the id as text, without the formatting machinery (the
    /// access log writes one per request).
    pub(crate) fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            RequestId::Sent(v) => f(v.to_str().unwrap_or("?")),
            RequestId::Made(words) => f(std::str::from_utf8(&hex(*words)).unwrap_or("?")),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

/// Two words as 32 lower-case hex digits, without the formatting machinery
/// (this runs for every forwarded request without an id).
fn hex(words: [u64; 2]) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let word = words[i / 16];
        *byte = DIGITS[((word >> (60 - 4 * (i % 16))) & 0xf) as usize];
    }
    out
}

/// Client maps up to this size are copied name by name rather than cloned.
const SMALL_MAP: usize = 4;

/// A copy of the client's headers with room for what forwarding adds.
///
/// A clone keeps the map's hash table, so no name is hashed again, but its
/// entry list has no room (a `Vec` clone is exact, and `reserve` only
/// grows the table, which a map parsed by hyper already has): the headers
/// added then grow the list once or twice. A small map is cheaper to
/// rebuild at the right size, hashing its few names again.
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

#[cfg(test)]
mod tests;
