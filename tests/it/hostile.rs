//! Hostile bytes (issue 6): each attack is written raw to a fresh TCP
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

#[tokio::test]
async fn smuggling_framings_are_refused_and_close_the_connection() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let smuggled = "GET /api/docs/admin HTTP/1.1\r\nHost: api.test\r\n\r\n";
    // Content-Length with Transfer-Encoding: hyper lets chunked win, drops
    // the length and closes after answering (RFC 9112 §6.1), so the bytes
    // after the chunked body are never read as a request.
    let r = raw(
        proxy.addr,
        format!("POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}").as_bytes(),
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
    up.reset().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Echo)
        .mount(&up)
        .await;
    let attacks = [
        format!(
            "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{smuggled}"
        ),
        format!(
            "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4, 40\r\n\r\nabcd{smuggled}"
        ),
        format!(
            "GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\nX-Folded: a\r\n b\r\n\r\n{smuggled}"
        ),
        format!("GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\nX-Bare: a\rb\r\n\r\n{smuggled}"),
        format!("GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\nHost: evil.test\r\n\r\n{smuggled}"),
    ];
    for attack in &attacks {
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

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!("limits: {{ header_read_timeout: 300ms }}\n{RULES}"),
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\nX-Slow: ")
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Keep trickling bytes; the timeout is for the whole header.
        if stream.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut b)).await
        {
            if n == 0 || b.starts_with(b"HTTP/1.1 408") {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(1500));
    // An idle keep-alive connection is closed by the same timer.
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    idle.write_all(b"GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert_eq!(end, Ok(true), "idle keep-alive closed within 2 s");
    assert!(got.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn host_and_forwarded_header_tricks_cannot_poison_an_entry() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    // The attacker fills the entry with headers the app would reflect.
    let attack = raw(
        proxy.addr,
        b"GET /api/docs/p HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-Host: evil.test\r\nX-Original-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nForwarded: host=evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(attack.status(), 200);
    assert!(
        attack.body().contains("xfh=api.test xou=- override=-"),
        "the app never saw the attacker's headers: {}",
        attack.body()
    );
    let v = victim(proxy.addr, "/api/docs/p").await;
    assert_eq!(x_cache(&v), "HIT");
    assert!(
        !v.body().contains("evil") && !v.body().contains("admin") && !v.body().contains("DELETE")
    );

    // Another Host is another entry, never this one.
    let other = raw(
        proxy.addr,
        b"GET /api/docs/q HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(other.body().contains("host=evil.test"));
    let v = victim(proxy.addr, "/api/docs/q").await;
    assert_eq!(x_cache(&v), "MISS", "{v:?}");
    assert!(v.body().contains("host=api.test"));

    // An absolute-form target that disagrees with Host is refused.
    let r = raw(
        proxy.addr,
        b"GET http://api.test/api/docs/q HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 400, "{r:?}");
}

#[tokio::test]
async fn allowed_hosts_refuse_the_rest_before_the_app_sees_them() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!("security: {{ allowed_hosts: [api.test] }}\n{RULES}"),
    ))
    .await;
    let r = raw(
        proxy.addr,
        b"GET /api/docs/a HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 421, "{r:?}");
    let r = raw(proxy.addr, b"GET /api/docs/a HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status(), 421, "HTTP/1.0 without Host: {r:?}");
    assert_eq!(received(&up).await, 0);
    assert_eq!(victim(proxy.addr, "/api/docs/a").await.status(), 200);
}

#[tokio::test]
async fn path_tricks_on_cached_routes_are_refused() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    for target in [
        "/static/..%2fapi/me",
        "/static/..%2Fapi/me",
        "/static/a%5c..%5capi",
        "/static/me;x.css",
        "/static/a%00.css",
        "/static/a%23b",
        "/static/a%3fb=1",
        "/static/a\\b",
        "/static/%c0%afapi/me",
        "/static/..%252fapi/me",
    ] {
        let r = raw(
            proxy.addr,
            format!("GET {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(r.status(), 400, "{target} -> {r:?}");
    }
    assert_eq!(received(&up).await, 0, "none reached the app");
    // A fragment never reaches the key or the app: the target parser
    // drops it, so both see the same path.
    let r = raw(
        proxy.addr,
        b"GET /static/f.css#../../admin HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.body().contains("path=/static/f.css "), "{r:?}");
    // Dot segments resolve once, to a path the key and the app agree on.
    let r = raw(
        proxy.addr,
        b"GET /static/x/../a.css HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.body().contains("path=/static/a.css"), "{r:?}");
}

#[tokio::test]
async fn an_authenticated_response_is_never_stored_for_everyone() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    // The "/api/me/x.css" trick: a public route, an authenticated request.
    let r = raw(
        proxy.addr,
        b"GET /static/me/x.css HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer alice\r\nCookie: s=alice\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_ne!(x_cache(&r), "HIT");
    let v = victim(proxy.addr, "/static/me/x.css").await;
    assert_eq!(x_cache(&v), "MISS", "alice's answer was not stored: {v:?}");
}

#[tokio::test]
async fn a_get_with_a_body_is_not_cached_and_purge_methods_are_only_forwarded() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let r = raw(
        proxy.addr,
        b"GET /api/docs/b HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!((r.status(), x_cache(&r)), (200, "BYPASS"), "{r:?}");
    assert_eq!(x_cache(&victim(proxy.addr, "/api/docs/b").await), "MISS");
    assert_eq!(x_cache(&victim(proxy.addr, "/api/docs/b").await), "HIT");
    for method in ["PURGE", "BAN"] {
        let r = raw(
            proxy.addr,
            format!("{method} /api/docs/b HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(
            r.status(),
            405,
            "forwarded to the app, which refused: {r:?}"
        );
        assert!(r.body().contains(&format!("method={method}")), "{r:?}");
    }
    assert_eq!(
        x_cache(&victim(proxy.addr, "/api/docs/b").await),
        "HIT",
        "the app refused them, so nothing was purged"
    );
}

/// An upstream that promises 100 bytes, sends 10 and closes.
async fn truncating_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=60\r\n\r\n0123456789")
                .await;
            drop(s);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_truncated_upstream_response_is_502_and_never_stored() {
    trace_init();
    let (addr, task) = truncating_upstream().await;
    let proxy = TestProxy::start(&config(&format!("http://{addr}"), RULES)).await;
    for _ in 0..2 {
        let r = victim(proxy.addr, "/api/docs/t").await;
        assert_eq!(r.status(), 502, "{r:?}");
        assert_ne!(x_cache(&r), "HIT");
    }
    task.abort();
}

/// A flood of unique URLs: the memory store stays within its byte bound.
#[tokio::test]
async fn a_flood_of_unique_urls_stays_within_the_memory_bound() {
    trace_init();
    let up = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(2048)))
        .mount(&up)
        .await;
    let bound = 256 * 1024;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!("cache: {{ memory: {{ max_bytes: {bound} }} }}\n{RULES}"),
    ))
    .await;
    let addr = proxy.addr;
    let mut peak = 0.0f64;
    for batch in 0..30 {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let url = format!("http://{addr}/api/docs/{batch}-{i}?q={i}");
                tokio::spawn(async move { crate::support::get(&url, &[]).await.status })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        peak = peak.max(proxy.metric("cachecar_memory_store_bytes", &[]).await);
    }
    assert!(peak > 0.0, "entries were stored");
    assert!(
        peak <= f64::from(bound),
        "600 entries of 2 KiB held in a {bound}-byte store: peak {peak}"
    );
}

#[tokio::test]
async fn unkeyed_query_parameters_never_reach_the_app() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    // Parameter cloaking: a framework splitting on `;` or reading names
    // case-insensitively would see page=evil; the key sees page=1.
    let attack = raw(
        proxy.addr,
        b"GET /api/items/1?page=1&utm=x;page=evil&PAGE=evil HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(attack.body().ends_with("query=page=1"), "{attack:?}");
    let v = victim(proxy.addr, "/api/items/1?page=1").await;
    assert_eq!(x_cache(&v), "HIT");
    assert!(!v.body().contains("evil"), "{v:?}");
}

#[tokio::test]
async fn more_unkeyed_host_and_scheme_headers_never_reach_the_app() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let r = raw(
        proxy.addr,
        b"GET /api/docs/h HTTP/1.1\r\nHost: api.test\r\nX-Host: evil.test\r\nX-Forwarded-Scheme: nothttps\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.body().contains("xhost=- scheme=-"), "{r:?}");
}
