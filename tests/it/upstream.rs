//! The upstream side: failures become 502/504 and are never cached; bodies
//! stream both ways; HTTP/2 (h2c) clients work.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use wiremock::matchers::{body_string, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{TestProxy, config, get, send, trace_init};

const DOCS: &str = "routes:\n  - { name: docs, match: \"GET /docs/{*path}\" }\n";

/// An address nothing listens on.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A refused connection is a 502 with a short plain body, and not cached.
#[tokio::test]
async fn unreachable_upstream_is_a_502() {
    trace_init();
    let proxy = TestProxy::start(&config(&closed_port().await, DOCS)).await;
    for _ in 0..2 {
        let r = get(&proxy.url("/docs/a"), &[]).await;
        assert_eq!(r.status, 502);
        assert_eq!(r.text(), "upstream unavailable\n");
        assert_eq!(r.x_cache(), "MISS");
    }
    let r = get(&proxy.url("/not-cached"), &[]).await;
    assert_eq!(r.status, 502);
}

/// No response headers within `upstream.timeout` is a 504.
#[tokio::test]
async fn slow_upstream_is_a_504() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    let started = std::time::Instant::now();
    let r = get(&proxy.url("/docs/slow"), &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.text(), "upstream timed out\n");
    assert!(
        started.elapsed() < Duration::from_millis(2_900),
        "timeout is 2 s"
    );
}

/// An error answer is not stored, so the next request goes upstream again.
#[tokio::test]
async fn error_answers_are_not_cached() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/docs/flaky"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/docs/flaky"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    assert_eq!(get(&proxy.url("/docs/flaky"), &[]).await.status, 503);
    assert_eq!(get(&proxy.url("/docs/flaky"), &[]).await.text(), "ok");
    assert_eq!(get(&proxy.url("/docs/flaky"), &[]).await.x_cache(), "HIT");
}

/// Request bodies reach the upstream intact.
#[tokio::test]
async fn request_bodies_are_forwarded() {
    trace_init();
    let upstream = MockServer::start().await;
    let payload = "p".repeat(200_000);
    Mock::given(method("POST"))
        .and(path("/upload"))
        .and(body_string(payload.clone()))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    let r = send(Method::POST, &proxy.url("/upload"), &[], payload).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.x_cache(), "BYPASS");
}

/// An HTTP/2 client speaking h2c (prior knowledge) is served, hits included.
#[tokio::test]
async fn h2c_clients_are_served() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/docs/h2"))
        .respond_with(ResponseTemplate::new(200).set_body_string("over h2"))
        .expect(1)
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for expected in ["MISS", "HIT"] {
        let resp = client
            .get(proxy.url("/docs/h2").parse().unwrap())
            .await
            .expect("h2c request");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.headers()["x-cache"], expected);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"over h2");
    }
}

/// An app that takes 150 ms per request and records the most requests it
/// had in flight at once.
async fn concurrency_recording_app() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (n, p) = (now.clone(), peak.clone());
    let app = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (n, p) = (n.clone(), p.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let (n, p) = (n.clone(), p.clone());
                    async move {
                        let in_flight = n.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(in_flight, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        n.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, peak, app)
}

/// `limits.h2_max_concurrent_streams` is advertised and held: 12 requests
/// on one HTTP/2 connection reach the app at most 3 at a time.
#[tokio::test]
async fn h2_streams_per_connection_are_bounded() {
    trace_init();
    let (addr, peak, app) = concurrency_recording_app().await;
    let proxy = TestProxy::start(&config(
        &format!("http://{addr}"),
        "limits: { h2_max_concurrent_streams: 3 }\n",
    ))
    .await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // One request first, so the client has the server's SETTINGS; streams
    // opened before that beyond the limit are refused (REFUSED_STREAM).
    let first: http::Uri = proxy.url("/s/first").parse().unwrap();
    assert_eq!(client.get(first).await.unwrap().status(), 200);
    let requests: Vec<_> = (0..12)
        .map(|i| {
            let client = client.clone();
            let uri: http::Uri = proxy.url(&format!("/s/{i}")).parse().unwrap();
            tokio::spawn(async move { client.get(uri).await.map(|r| r.status()) })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap().expect("h2 request").as_u16(), 200);
    }
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (1..=3).contains(&peak),
        "peak concurrency at the app: {peak}"
    );
    app.abort();
}
