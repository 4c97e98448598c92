//! Errors of the request path, and [`ProxyError::into_response`], the one
//! place any of them becomes a response (as linkerd's `ServerRescue`).
//!
//! Cache failures are not here: they never fail a request (a failed read is
//! a miss, a failed write is logged and counted). What is here is what the
//! client must be told: a request refused (4xx, the framing ones closing
//! the connection), or an upstream that failed (502 when it could not be
//! reached or answered badly, 504 when it did not answer in time). Bodies
//! are short plain text and name no hosts or addresses; details go to the
//! log, once, from `into_response`.

use http::{HeaderValue, Response, StatusCode, header};

use super::body::{Body, BodyLimit};
use super::guard::Refusal;
use super::upstream::UpstreamError;
use crate::rules::normalize::NormalizeError;

/// Why the proxy answered with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The request broke one of the guard's rules.
    #[error("request refused: {}", .0.reason)]
    Refused(Refusal),
    /// The request target could not be normalized.
    #[error("bad request: {0}")]
    BadTarget(#[from] NormalizeError),
    /// The client's body broke a limit while it was being forwarded.
    #[error("request body refused: {0}")]
    ClientBody(BodyLimit),
    /// `only-if-cached`, and nothing stored could answer (RFC 9111 §5.2.1.7).
    #[error("only-if-cached and not cached")]
    NotCached,
    /// The upstream exchange failed before response headers.
    #[error(transparent)]
    Upstream(UpstreamError),
    /// The upstream response body failed while it was being read for storing.
    #[error("upstream response body failed: {0}")]
    UpstreamBody(#[source] hyper::Error),
    /// The fill this request waited for failed with this status; the
    /// leader's request logged why.
    #[error("the coalesced fill failed with {0}")]
    Collapsed(StatusCode),
    /// A write turned away before the app saw it: its purge could not be
    /// recorded now (`cache.redis.on_purge_failure: refuse`).
    #[error("write refused: its purge cannot be recorded now")]
    PurgeUnrecordable,
    /// An `Upgrade` handshake past `upgrade.max_tunnels`.
    #[error("too many open tunnels")]
    TooManyTunnels,
    /// The app switched to a protocol the client did not ask for, or
    /// switched without naming one (RFC 9110 §15.2.2).
    #[error("upstream switched protocols wrongly: {0}")]
    BadSwitch(&'static str),
}

impl From<UpstreamError> for ProxyError {
    /// An exchange that failed because the client's body broke a limit is
    /// the client's error, not the upstream's.
    fn from(e: UpstreamError) -> Self {
        match BodyLimit::find(&e) {
            Some(limit) => ProxyError::ClientBody(limit),
            None => ProxyError::Upstream(e),
        }
    }
}

impl ProxyError {
    /// Logs the error once and turns it into the response the client gets.
    /// `route` names the route in the log (`none` when no rule matched).
    pub(crate) fn into_response(self, route: &str) -> Response<Body> {
        let (status, text, close) = self.answer();
        match &self {
            ProxyError::Upstream(_) | ProxyError::UpstreamBody(_) | ProxyError::BadSwitch(_) => {
                tracing::warn!(route, status = status.as_u16(), cause = %self, "upstream failed")
            }
            _ => {
                tracing::debug!(route, status = status.as_u16(), cause = %self, "answered with an error")
            }
        }
        let mut response = status_response(status, text);
        if matches!(
            self,
            ProxyError::PurgeUnrecordable | ProxyError::TooManyTunnels
        ) {
            // The probe that could let it through runs within a second.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// The status, the body, and whether to close the connection.
    fn answer(&self) -> (StatusCode, &'static str, bool) {
        match self {
            ProxyError::Refused(r) => (r.status, r.reason, r.close),
            ProxyError::BadTarget(_) => (StatusCode::BAD_REQUEST, "bad request\n", false),
            ProxyError::ClientBody(BodyLimit::TooLarge(_)) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
                true,
            ),
            ProxyError::ClientBody(BodyLimit::Timeout(_) | BodyLimit::TooSlow(_)) => {
                (StatusCode::REQUEST_TIMEOUT, "request body too slow", true)
            }
            ProxyError::ClientBody(BodyLimit::Malformed) => {
                (StatusCode::BAD_REQUEST, "malformed request body\n", true)
            }
            ProxyError::NotCached => (StatusCode::GATEWAY_TIMEOUT, "not cached\n", false),
            ProxyError::Upstream(UpstreamError::Timeout(_)) => {
                (StatusCode::GATEWAY_TIMEOUT, UPSTREAM_TIMED_OUT, false)
            }
            ProxyError::Upstream(_) | ProxyError::UpstreamBody(_) | ProxyError::BadSwitch(_) => {
                (StatusCode::BAD_GATEWAY, UPSTREAM_UNAVAILABLE, false)
            }
            ProxyError::TooManyTunnels => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many open tunnels; retry\n",
                false,
            ),
            ProxyError::Collapsed(status) if *status == StatusCode::GATEWAY_TIMEOUT => {
                (*status, UPSTREAM_TIMED_OUT, false)
            }
            ProxyError::Collapsed(status) => (*status, UPSTREAM_UNAVAILABLE, false),
            ProxyError::PurgeUnrecordable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the cache cannot record this write's invalidation now; retry\n",
                false,
            ),
        }
    }

    /// The status the client gets.
    pub(crate) fn status(&self) -> StatusCode {
        self.answer().0
    }
}

const UPSTREAM_TIMED_OUT: &str = "upstream timed out\n";
const UPSTREAM_UNAVAILABLE: &str = "upstream unavailable\n";

/// A short plain-text response that no cache may store.
fn status_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::full(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
