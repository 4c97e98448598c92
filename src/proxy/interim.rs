//! Interim (1xx) responses from the app, passed on to the client ahead of
//! the final response (RFC 9110 §15.2): `103 Early Hints` (RFC 8297) lets a
//! browser start loading what the page will need while the app is still
//! working on it.
//!
//! hyper's client hands 1xx responses to a callback on the request
//! (`hyper::ext::on_informational`) and its server cannot send one, so the
//! listener, which owns the client connection, writes them: an
//! [`InterimWriter`] takes each encoded head and puts it on the wire before
//! the final response's first byte (docs/architecture.md, "Interim
//! responses"). Only HTTP/1.1 clients get them (an HTTP/1.0 client must
//! not, §15.2; an HTTP/2 connection is framed by hyper alone), and never
//! `100 Continue` (hyper answers `Expect` itself) or `101` (no upgrade is
//! relayed). Interim responses are never stored.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode, header};

/// The side of a client connection that writes interim responses.
pub trait InterimWriter: Send + Sync {
    /// An upstream request that may bring interim responses is on its way:
    /// be ready to be woken to write them.
    fn expect(&self);
    /// Writes `head` (a whole 1xx response) before the final response, if
    /// the request is still waiting for it; else drops it.
    fn write(&self, head: Bytes);
}

/// Where the interim responses of one client connection go.
#[derive(Clone)]
pub struct Interim(Arc<dyn InterimWriter>);

impl std::fmt::Debug for Interim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interim")
    }
}

impl Interim {
    /// Interim responses for the connection `writer` writes to.
    pub fn new(writer: Arc<dyn InterimWriter>) -> Self {
        Self(writer)
    }

    /// Has the 1xx responses to `request` passed on, their headers first
    /// cleaned of what describes the connection by `clean` (the proxy's
    /// hop-by-hop stripping, RFC 9110 §7.6.1).
    pub(crate) fn attach<B>(&self, request: &mut Request<B>, clean: fn(&mut HeaderMap)) {
        self.0.expect();
        let writer = self.0.clone();
        hyper::ext::on_informational(request, move |response| {
            let mut headers = response.headers().clone();
            clean(&mut headers);
            if let Some(head) = encode(response.status(), &headers) {
                writer.write(head);
            }
        });
    }
}

/// The interim response as HTTP/1.1 writes it (hop-by-hop fields already
/// cleaned by the caller), without a length; `None` for 100 and 101.
pub(crate) fn encode(status: StatusCode, headers: &HeaderMap) -> Option<Bytes> {
    if !status.is_informational()
        || status == StatusCode::CONTINUE
        || status == StatusCode::SWITCHING_PROTOCOLS
    {
        return None;
    }
    let mut out = BytesMut::with_capacity(64);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("Interim").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            continue; // a 1xx has no body
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn early_hints_are_written_without_a_length() {
        let mut h = HeaderMap::new();
        h.append(
            header::LINK,
            HeaderValue::from_static("</a.css>; rel=preload"),
        );
        h.append(
            header::LINK,
            HeaderValue::from_static("</b.js>; rel=preload"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let head = encode(StatusCode::from_u16(103).unwrap(), &h).unwrap();
        assert_eq!(
            &head[..],
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nlink: </b.js>; rel=preload\r\n\r\n"
        );
        assert!(encode(StatusCode::CONTINUE, &h).is_none());
        assert!(encode(StatusCode::SWITCHING_PROTOCOLS, &h).is_none());
        assert!(encode(StatusCode::OK, &h).is_none());
        let processing = encode(StatusCode::PROCESSING, &HeaderMap::new()).unwrap();
        assert_eq!(&processing[..], b"HTTP/1.1 102 Processing\r\n\r\n");
    }
}
