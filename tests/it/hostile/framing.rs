//! Framing both ways: an app that sends `Content-Length` beside chunked, a
//! client whose header names hide dashes behind underscores, and request
//! bodies whose chunked framing is broken.

use super::*;

/// An app that frames every answer with both `Content-Length: 190` and
/// chunked, over keep-alive connections: the chunked body has 42 bytes.
async fn double_framing_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    const BODY: &str = "forty-two bytes of body, chunked, not 190!";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                for _ in 0..20 {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: 190\r\nTransfer-Encoding: chunked\r\n\
                             Cache-Control: max-age=60\r\n\r\n{:x}\r\n{BODY}\r\n0\r\n\r\n",
                            BODY.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    assert_eq!(BODY.len(), 42);
    (addr, task)
}

/// RFC 9112 §6.3: chunked wins and the length goes. Two pipelined requests
/// on one connection both get the 42 bytes, framed to match, the second
/// from the cache; nothing waits for 190 bytes that never come.
#[tokio::test]
async fn content_length_beside_chunked_from_the_app_is_removed() {
    trace_init();
    let (addr, task) = double_framing_upstream().await;
    let proxy = TestProxy::start(&config(&format!("http://{addr}"), RULES)).await;
    let get = "GET /api/docs/te HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let last = "GET /api/docs/te HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n";
    let r = raw(proxy.addr, format!("{get}{last}").as_bytes()).await;
    assert!(
        r.closed,
        "both answers came and the connection closed: {r:?}"
    );
    let answers: Vec<&str> = r.text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 2, "{r:?}");
    for answer in &answers {
        assert!(answer.starts_with("200"), "{answer}");
        assert!(!answer.contains("content-length: 190"), "{answer}");
        assert!(answer.contains("forty-two bytes of body"), "{answer}");
    }
    assert!(answers[1].contains("x-cache: HIT"), "{}", answers[1]);
    assert!(answers[1].contains("content-length: 42"), "{}", answers[1]);
    task.abort();
}

/// `X_Forwarded_Host` is `X-Forwarded-Host` to CGI and many frameworks:
/// names with `_` never reach the app, so none of them can make it answer
/// for another host, URL or method than the one cachecar keyed.
#[tokio::test]
async fn header_names_with_underscores_never_reach_the_app() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let r = raw(
        proxy.addr,
        b"GET /api/docs/u HTTP/1.1\r\nHost: api.test\r\nX_Forwarded_Host: evil.example\r\n\
          X_Original_URL: /admin\r\nX_HTTP_Method_Override: DELETE\r\n\
          Transfer_Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 200, "{r:?}");
    let victim = victim(proxy.addr, "/api/docs/u").await;
    assert_eq!(x_cache(&victim), "HIT");
    assert!(!victim.body().contains("evil") && !victim.body().contains("admin"));
    let received = up.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 1);
    let names: Vec<String> = received[0].headers.keys().map(|n| n.to_string()).collect();
    assert!(names.iter().all(|n| !n.contains('_')), "{names:?}");
}

/// Broken chunked request bodies are the client's error: 400, the
/// connection closed, and counted as aborted by the client, never as an
/// upstream failure.
#[tokio::test]
async fn malformed_chunked_request_bodies_are_a_client_error() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(1 << 20));
    let bodies = [
        "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_string(),
        "5\nhello\n0\n\n".to_string(),
        "0x5\r\nhello\r\n0\r\n\r\n".to_string(),
        extension,
    ];
    for body in &bodies {
        let r = raw(
            proxy.addr,
            format!(
                "POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(r.status(), 400, "{}: {r:?}", &body[..body.len().min(24)]);
        assert!(r.closed);
    }
    let scrape = proxy.scrape().await;
    let class = |c: &str| {
        crate::support::metric_value(
            &scrape.0,
            "cachecar_upstream_requests_total",
            &[("status_class", c)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(class("error"), 0.0, "{}", scrape.0);
    let aborted = class("client_aborted");
    assert!(aborted >= 1.0, "{}", scrape.0);
}
