//! The first thing a request meets: refusals of what a shared cache must
//! not guess at (docs/security.md).
//!
//! - Framing that two HTTP parsers could read differently (request
//!   smuggling): `Transfer-Encoding` together with `Content-Length`, a
//!   `Transfer-Encoding` other than exactly `chunked`, differing duplicate
//!   `Content-Length`s. hyper refuses most of these itself; this is the
//!   second line, and it answers 400 with `Connection: close`.
//! - Targets: longer than `limits.max_uri_bytes` (414), no or several
//!   `Host`s on HTTP/1.1, an absolute-form target whose authority
//!   disagrees with `Host`, a host outside `security.allowed_hosts` (421).
//! - Bodies declared larger than `limits.max_request_body_bytes` (413).
//! - Paths of requests that a cache or purge rule applies to, which still
//!   hold an encoded `/`, `\`, NUL, `#` or `?` or a `;` path parameter
//!   after normalization: the app may decode them into a different
//!   resource than the one cachecar keyed or purged, so they are refused
//!   rather than guessed at.
//!
//! Pure: no I/O.

use http::{HeaderMap, Request, StatusCode, Version, header};

use crate::config::{RuntimeConfig, host_matches};
use crate::rules::normalize::Normalized;

/// Why a request is refused, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The status to answer with.
    pub(crate) status: StatusCode,
    /// A short plain-text reason (no request data echoed).
    pub(crate) reason: &'static str,
    /// Close the connection after answering: the framing is untrusted.
    pub(crate) close: bool,
}

impl Refusal {
    const fn new(status: StatusCode, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            close: false,
        }
    }

    const fn closing(status: StatusCode, reason: &'static str) -> Self {
        Self {
            status,
            reason,
            close: true,
        }
    }
}

/// Checks framing, target and declared body size before anything else.
///
/// # Errors
///
/// The [`Refusal`] to answer with.
pub(super) fn screen<B>(request: &Request<B>, config: &RuntimeConfig) -> Result<(), Refusal> {
    let length = framing(request.headers())?;
    target(request, config.limits.max_uri_bytes)?;
    host(request)?;
    if let Some(length) = length
        && length > config.limits.max_request_body_bytes
    {
        return Err(Refusal::closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    Ok(())
}

/// The target: no longer than `max_uri_bytes`, and `http` or `https`
/// when it names a scheme.
fn target<B>(request: &Request<B>, max_uri_bytes: usize) -> Result<(), Refusal> {
    let uri = request.uri();
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > max_uri_bytes {
        return Err(Refusal::new(
            StatusCode::URI_TOO_LONG,
            "request target too long",
        ));
    }
    if uri
        .scheme()
        .is_some_and(|s| s != &http::uri::Scheme::HTTP && s != &http::uri::Scheme::HTTPS)
    {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "unsupported scheme"));
    }
    Ok(())
}

/// `Host`: exactly one on HTTP/1.1, and the same as an absolute-form
/// target's authority.
fn host<B>(request: &Request<B>) -> Result<(), Refusal> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::closing(
            StatusCode::BAD_REQUEST,
            "more than one Host",
        ));
    }
    if request.version() == Version::HTTP_11 && host.is_none() {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "missing Host"));
    }
    if let (Some(authority), Some(host)) = (request.uri().authority(), host)
        && !authority
            .as_str()
            .eq_ignore_ascii_case(host.to_str().unwrap_or(""))
        && request.version() <= Version::HTTP_11
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the target's authority and Host differ",
        ));
    }
    Ok(())
}

/// `security.allowed_hosts`: is `host` (lower-cased, maybe with a port)
/// one of them? An entry without a port allows every port.
pub(super) fn host_allowed(config: &RuntimeConfig, host: Option<&str>) -> Result<(), Refusal> {
    let allowed = &config.security.allowed_hosts;
    if allowed.is_empty() {
        return Ok(());
    }
    let misdirected = Refusal::new(StatusCode::MISDIRECTED_REQUEST, "unknown host");
    let Some(host) = host else {
        return Err(misdirected);
    };
    if allowed.iter().any(|a| host_matches(a, host)) {
        Ok(())
    } else {
        Err(misdirected)
    }
}

/// Refuses a path that a cache or purge rule applies to when it still
/// carries something an app may decode differently from cachecar.
pub(super) fn path(target: &Normalized) -> Result<(), Refusal> {
    // Escapes are upper-cased by normalization. `%C0`/`%C1` start overlong
    // UTF-8 (`%C0%AF` is `/` to a lax decoder) and are never valid.
    const ENCODED: [&str; 7] = ["%2F", "%5C", "%00", "%23", "%3F", "%C0", "%C1"];
    let p = &target.path;
    // One pass for the common path with nothing to look at.
    if !p.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        return Ok(());
    }
    if p.contains('\\')
        || p.contains(';')
        || ENCODED.iter().any(|e| p.contains(e))
        || double_encoded(p)
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "path holds an encoded separator or a path parameter",
        ));
    }
    Ok(())
}

/// `%25` followed by the escape of a separator or dot (`%252F`, `%252e`):
/// an app that decodes twice would see `/` or `.` where cachecar saw text.
fn double_encoded(path: &str) -> bool {
    path.match_indices("%25").any(|(i, _)| {
        let next = path.get(i + 3..i + 5).unwrap_or("").to_ascii_uppercase();
        matches!(
            next.as_str(),
            "2F" | "5C" | "00" | "2E" | "23" | "3F" | "C0" | "C1"
        )
    })
}

/// Refuses ambiguous framing; else the declared body length, if any.
fn framing(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let smuggling = Refusal::closing(StatusCode::BAD_REQUEST, "ambiguous message framing");
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if te.next().is_some()
            || headers.contains_key(header::CONTENT_LENGTH)
            || !first.as_bytes().eq_ignore_ascii_case(b"chunked")
        {
            return Err(smuggling);
        }
    }
    content_length(headers)
}

/// The declared body length: every `Content-Length` must be the same
/// plain decimal number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let smuggling = Refusal::closing(StatusCode::BAD_REQUEST, "ambiguous message framing");
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
                return Err(smuggling);
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(smuggling)?;
            if length.is_some_and(|l| l != n) {
                return Err(smuggling);
            }
            length = Some(n);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests;
