//! Errors of the request path and the one place they become responses.
//!
//! Cache failures are not here: they never fail a request (a failed read is
//! a miss, a failed write is logged and counted). What is here is what the
//! client must be told: a request we refuse (400) or an upstream that failed
//! (502 when it could not be reached or answered badly, 504 when it did not
//! answer in time). Bodies are short plain text and name no hosts or
//! addresses; details go to the log, once, from [`ProxyError::to_response`].

use http::{HeaderValue, Response, StatusCode, header};

use crate::proxy::body::Body;
use crate::proxy::normalize::NormalizeError;
use crate::proxy::upstream::UpstreamError;

/// Why the proxy answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request target could not be normalized.
    #[error("bad request: {0}")]
    BadRequest(#[from] NormalizeError),
    /// The upstream exchange failed before response headers.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream response body failed while it was being read for storing.
    #[error("upstream response body failed: {0}")]
    UpstreamBody(#[source] hyper::Error),
}

/// Who caused an error; picks the status and the log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something we refuse.
    Downstream,
    /// The upstream failed.
    Upstream,
}

impl ProxyError {
    /// Who caused it.
    pub fn source_kind(&self) -> ErrorSource {
        match self {
            ProxyError::BadRequest(_) => ErrorSource::Downstream,
            ProxyError::Upstream(_) | ProxyError::UpstreamBody(_) => ErrorSource::Upstream,
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) | ProxyError::UpstreamBody(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Logs the error once and turns it into the response the client gets.
    pub fn to_response(&self, route: &str) -> Response<Body> {
        let status = self.status();
        match self.source_kind() {
            ErrorSource::Downstream => {
                tracing::debug!(route, status = status.as_u16(), cause = %self, "request refused")
            }
            ErrorSource::Upstream => {
                tracing::warn!(route, status = status.as_u16(), cause = %self, "upstream failed")
            }
        }
        let text = match status {
            StatusCode::BAD_REQUEST => "bad request\n",
            StatusCode::GATEWAY_TIMEOUT => "upstream timed out\n",
            _ => "upstream unavailable\n",
        };
        status_response(status, text)
    }
}

/// A short plain-text error response that no cache may store.
pub fn status_response(status: StatusCode, text: &'static str) -> Response<Body> {
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
