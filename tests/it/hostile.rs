//! Hostile bytes (docs/security.md): each attack is written raw to a fresh TCP
//! connection, its answer and whether the connection was closed are
//! checked, and where it matters a clean victim request on a new connection
//! shows that nothing was poisoned. The upstream records what it received
//! and echoes the headers an attacker would like it to act on.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{TestProxy, config, trace_init};

/// Echoes what the app would act on: the path it saw, and the headers
/// that name a host, a URL or a method.
struct Echo;

impl Respond for Echo {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let h = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        let body = format!(
            "method={} path={} host={} xfh={} xou={} override={} xhost={} scheme={} query={}",
            req.method,
            req.url.path(),
            h("host"),
            h("x-forwarded-host"),
            h("x-original-url"),
            h("x-http-method-override"),
            h("x-host"),
            h("x-forwarded-scheme"),
            req.url.query().unwrap_or("-"),
        );
        // Like most apps, it does not know cache-admin methods.
        let status = if matches!(req.method.as_str(), "PURGE" | "BAN") {
            405
        } else {
            200
        };
        ResponseTemplate::new(status).set_body_string(body)
    }
}

async fn echo_upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Echo)
        .mount(&server)
        .await;
    server
}

async fn received(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

const RULES: &str = "routes:\n  - name: docs\n    match: GET /api/docs/{*path}\n  - name: assets\n    match: GET /static/{*path}\n  - name: items\n    match: GET /api/items/{id}\n    key: { query: [page] }\n";

/// What a raw exchange produced.
#[derive(Debug)]
struct Raw {
    text: String,
    closed: bool,
}

impl Raw {
    fn status(&self) -> u16 {
        self.text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn body(&self) -> &str {
        self.text.split("\r\n\r\n").nth(1).unwrap_or("")
    }
}

/// Writes `bytes` and reads until the server closes or 1.5 s pass.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut closed = false;
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    Raw {
        text: String::from_utf8_lossy(&buf).into_owned(),
        closed,
    }
}

/// A clean GET on a new connection: the victim.
async fn victim(addr: SocketAddr, path: &str) -> Raw {
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

fn x_cache(r: &Raw) -> &str {
    r.text
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or("")
}

/// A request cachecar must never read out of another's body.
const SMUGGLED: &str = "GET /api/docs/admin HTTP/1.1\r\nHost: api.test\r\n\r\n";

/// Content-Length with Transfer-Encoding: hyper lets chunked win, drops the
/// length and closes after answering (RFC 9112 §6.1), so the bytes after
/// the chunked body are never read as a request.
#[tokio::test]
async fn content_length_beside_chunked_is_answered_once_and_closes() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let r = raw(
        proxy.addr,
        format!("POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}").as_bytes(),
    )
    .await;
    assert!(r.closed, "{r:?}");
    assert_eq!(
        r.text.matches("HTTP/1.1").count(),
        1,
        "one answer only: {r:?}"
    );
    let seen: Vec<String> = up
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|q| format!("{} {}", q.method, q.url.path()))
        .collect();
    assert_eq!(seen, ["POST /api/docs/a"], "nothing smuggled");
}

/// Framings two parsers could read differently, each followed by a
/// smuggled request.
fn smuggling_attacks() -> Vec<String> {
    let post = "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\n";
    let get = "GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\n";
    [
        format!("{post}Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("{post}Content-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"),
        format!("{post}Content-Length: 4, 40\r\n\r\nabcd"),
        format!("{get}X-Folded: a\r\n b\r\n\r\n"),
        format!("{get}X-Bare: a\rb\r\n\r\n"),
        format!("{get}Host: evil.test\r\n\r\n"),
    ]
    .into_iter()
    .map(|attack| attack + SMUGGLED)
    .collect()
}

#[tokio::test]
async fn smuggling_framings_are_refused_and_close_the_connection() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    for attack in &smuggling_attacks() {
        let r = raw(proxy.addr, attack.as_bytes()).await;
        assert_eq!(r.status(), 400, "{attack:?} -> {r:?}");
        assert!(r.closed, "connection must close after {attack:?}");
        assert_eq!(
            r.text.matches("HTTP/1.1").count(),
            1,
            "one answer only: {r:?}"
        );
    }
    assert_eq!(received(&up).await, 0, "nothing reached the app");
    let v = victim(proxy.addr, "/api/docs/admin").await;
    assert_eq!((v.status(), x_cache(&v)), (200, "MISS"));
}

#[tokio::test]
async fn oversized_requests_get_431_414_and_413() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!(
            "limits: {{ max_header_bytes: 8KiB, max_headers: 20, max_uri_bytes: 1KiB, max_request_body_bytes: 1KiB }}\n{RULES}"
        ),
    ))
    .await;
    let big = "a".repeat(9000);
    let r = raw(
        proxy.addr,
        format!("GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 431, "{r:?}");
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw(
        proxy.addr,
        format!("GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 431, "{r:?}");
    let long = "b".repeat(1100);
    let r = raw(
        proxy.addr,
        format!("GET /api/docs/{long} HTTP/1.1\r\nHost: api.test\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 414, "{r:?}");
    let r = raw(
        proxy.addr,
        b"POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 2000\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 413, "{r:?}");
    assert!(r.closed);
    assert_eq!(received(&up).await, 0);
}

#[tokio::test]
async fn streamed_bodies_are_held_to_the_size_and_pace_limits() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!(
            "limits: {{ max_request_body_bytes: 1KiB, request_body_timeout: 300ms }}\n{RULES}"
        ),
    ))
    .await;
    let chunk = "c".repeat(2000);
    let r = raw(
        proxy.addr,
        format!(
            "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status(), 413, "{r:?}");
    assert!(r.closed);
    let started = Instant::now();
    let r = raw(
        proxy.addr,
        b"POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 10\r\n\r\nab",
    )
    .await;
    assert_eq!(r.status(), 408, "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(1400));
    let ok = raw(
        proxy.addr,
        b"POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(ok.status(), 200, "{ok:?}");
}

mod framing;
mod poisoning;
mod slow;
mod upstream_and_memory;
