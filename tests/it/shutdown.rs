//! Draining: readiness turns 503, in-flight requests complete, new
//! connections are refused.

use std::time::Duration;

use tokio::net::TcpStream;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{TestProxy, config, eventually, get, trace_init};

/// An app answering every GET with `body` after `delay`.
async fn answering(body: &str, delay: Duration) -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(body)
                .set_delay(delay),
        )
        .mount(&upstream)
        .await;
    upstream
}

/// A request in flight when shutdown starts still gets its full answer; the
/// listener is closed afterwards.
#[tokio::test]
async fn in_flight_request_completes_and_new_connections_are_refused() {
    trace_init();
    let upstream = answering("slow answer", Duration::from_millis(700)).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), "")).await;
    let addr = proxy.addr;
    let url = proxy.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.begin_shutdown();

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "slow answer");
    proxy.join().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}

/// During the drain delay readiness is 503 while traffic is still served.
#[tokio::test]
async fn readiness_turns_503_while_draining() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let yaml = config(&upstream.uri(), "").replace("drain_delay: 0s", "drain_delay: 1s");
    let proxy = TestProxy::start(&yaml).await;
    assert_eq!(get(&proxy.admin_url("/readyz"), &[]).await.status, 200);
    proxy.begin_shutdown();
    let admin = proxy.admin_url("/readyz");
    assert!(
        eventually(Duration::from_millis(500), || {
            let admin = admin.clone();
            async move { get(&admin, &[]).await.status == 503 }
        })
        .await,
        "readiness turns 503"
    );
    assert_eq!(get(&proxy.url("/still-served"), &[]).await.status, 200);
    proxy.join().await;
}

/// SIGTERM under load: 40 requests in flight all complete, and the app
/// stops well before the grace period ends.
#[tokio::test]
async fn shutdown_under_load_completes_every_in_flight_request() {
    trace_init();
    let upstream = answering("done", Duration::from_millis(400)).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), "")).await;
    let requests: Vec<_> = (0..40)
        .map(|i| {
            let url = proxy.url(&format!("/load/{i}"));
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = std::time::Instant::now();
    proxy.begin_shutdown();
    for r in requests {
        let r = r.await.unwrap();
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "done"));
    }
    proxy.join().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped once drained, not at the 5 s grace deadline: {:?}",
        started.elapsed()
    );
}

/// An idle keep-alive connection is closed when shutdown starts, so it does
/// not hold the process until the grace deadline.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_at_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), "")).await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.ends_with(b"\r\n\r\nok") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        answered.is_ok(),
        "answered: {}",
        String::from_utf8_lossy(&seen)
    );

    let started = std::time::Instant::now();
    proxy.begin_shutdown();
    let closed = tokio::time::timeout(Duration::from_secs(3), conn.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle connection is closed: {closed:?}"
    );
    proxy.join().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped at once, not at the 5 s grace deadline: {:?}",
        started.elapsed()
    );
}

mod under_load;
