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

use super::normalize::Normalized;
use crate::config::RuntimeConfig;

/// Why a request is refused, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer with.
    pub status: StatusCode,
    /// A short plain-text reason (no request data echoed).
    pub reason: &'static str,
    /// Close the connection after answering: the framing is untrusted.
    pub close: bool,
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
pub fn screen<B>(request: &Request<B>, config: &RuntimeConfig) -> Result<(), Refusal> {
    let headers = request.headers();
    let length = framing(headers)?;
    let limits = &config.limits;
    let target_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len())
        + request.uri().authority().map_or(0, |a| a.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(Refusal::new(
            StatusCode::URI_TOO_LONG,
            "request target too long",
        ));
    }
    if request
        .uri()
        .scheme()
        .is_some_and(|s| s != &http::uri::Scheme::HTTP && s != &http::uri::Scheme::HTTPS)
    {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "unsupported scheme"));
    }
    let mut hosts = headers.get_all(header::HOST).iter();
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
    if let Some(length) = length
        && length > limits.max_request_body_bytes
    {
        return Err(Refusal::closing(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    Ok(())
}

/// `security.allowed_hosts`: is `host` (lower-cased, maybe with a port)
/// one of them? An entry without a port allows every port.
pub fn host_allowed(config: &RuntimeConfig, host: Option<&str>) -> Result<(), Refusal> {
    let allowed = &config.security.allowed_hosts;
    if allowed.is_empty() {
        return Ok(());
    }
    let misdirected = Refusal::new(StatusCode::MISDIRECTED_REQUEST, "unknown host");
    let Some(host) = host else {
        return Err(misdirected);
    };
    let bare = strip_port(host);
    if allowed.iter().any(|a| a == host || a == bare) {
        Ok(())
    } else {
        Err(misdirected)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host
            .rsplit_once("]:")
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

/// Refuses a path that a cache or purge rule applies to when it still
/// carries something an app may decode differently from cachecar.
pub fn path(target: &Normalized) -> Result<(), Refusal> {
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
mod tests {
    use super::*;

    fn config(extra: &str) -> RuntimeConfig {
        crate::config::load_str(
            &format!("upstream: {{ url: \"http://127.0.0.1:8000\" }}\n{extra}"),
            &|_| None,
        )
        .unwrap()
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::get(target);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn ambiguous_framing_is_refused_and_closes() {
        let c = config("");
        for headers in [
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("content-length", "3"),
            ][..],
            &[("host", "a"), ("transfer-encoding", "xchunked")],
            &[("host", "a"), ("transfer-encoding", "chunked, identity")],
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                ("host", "a"),
                ("content-length", "3"),
                ("content-length", "4"),
            ],
            &[("host", "a"), ("content-length", "3, 4")],
            &[("host", "a"), ("content-length", "+3")],
        ] {
            let r = screen(&req("/x", headers), &c).unwrap_err();
            assert_eq!(
                (r.status, r.close),
                (StatusCode::BAD_REQUEST, true),
                "{headers:?}"
            );
        }
        assert!(screen(&req("/x", &[("host", "a"), ("content-length", "3, 3")]), &c).is_ok());
        assert!(
            screen(
                &req("/x", &[("host", "a"), ("transfer-encoding", "Chunked")]),
                &c
            )
            .is_ok()
        );
    }

    #[test]
    fn targets_and_hosts() {
        let c = config("limits: { max_uri_bytes: 64 }\n");
        let long = format!("/{}", "a".repeat(64));
        assert_eq!(
            screen(&req(&long, &[("host", "a")]), &c)
                .unwrap_err()
                .status,
            414
        );
        assert_eq!(
            screen(&req("/x", &[]), &c).unwrap_err().status,
            400,
            "no Host"
        );
        assert_eq!(
            screen(&req("/x", &[("host", "a"), ("host", "b")]), &c)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            screen(&req("http://victim/x", &[("host", "evil")]), &c)
                .unwrap_err()
                .status,
            400
        );
        assert!(screen(&req("http://A/x", &[("host", "a")]), &c).is_ok());
    }

    #[test]
    fn declared_bodies_over_the_limit_are_413() {
        let c = config("limits: { max_request_body_bytes: 10 }\n");
        let r = screen(&req("/x", &[("host", "a"), ("content-length", "11")]), &c);
        assert_eq!(r.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(screen(&req("/x", &[("host", "a"), ("content-length", "10")]), &c).is_ok());
    }

    #[test]
    fn allowed_hosts_match_with_or_without_port() {
        let c = config("security: { allowed_hosts: [api.example, \"admin.example:8443\"] }\n");
        assert!(host_allowed(&c, Some("api.example")).is_ok());
        assert!(host_allowed(&c, Some("api.example:8080")).is_ok());
        assert!(host_allowed(&c, Some("admin.example:8443")).is_ok());
        assert!(host_allowed(&c, Some("admin.example:9999")).is_err());
        assert!(host_allowed(&c, Some("evil.example")).is_err());
        assert!(host_allowed(&c, None).is_err());
        assert!(host_allowed(&config(""), Some("anything")).is_ok());
    }

    #[test]
    fn paths_that_apps_may_decode_differently_are_refused() {
        let t = |p: &str| Normalized {
            path: p.into(),
            query: None,
            host: None,
        };
        for bad in [
            "/a%2Fb",
            "/a%5Cb",
            "/a%00",
            "/a%23b",
            "/a%3Fb",
            "/a\\b",
            "/api/me;x.css",
            "/a%C0%AFb",
            "/a%252Fb",
            "/a%252fb",
            "/a%252E%252E/b",
        ] {
            assert!(path(&t(bad)).is_err(), "{bad}");
        }
        assert!(path(&t("/api/me/x.css")).is_ok());
        assert!(path(&t("/a%20b")).is_ok());
        assert!(path(&t("/100%25")).is_ok(), "a literal % is fine");
        assert!(path(&t("/caf%C3%A9")).is_ok(), "valid UTF-8 is fine");
    }
}
