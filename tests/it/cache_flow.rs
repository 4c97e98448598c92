//! Miss -> hit -> expired; bypass when no rule; what goes into the key;
//! what is never stored.

use std::time::Duration;

use http::Method;
use wiremock::matchers::{header, header_exists, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{TestProxy, config, get, send, trace_init};

const DOCS: &str = "routes:\n  - { name: docs, match: \"GET /docs/{*path}\", ttl: 60s }\n";

async fn mock_get(server: &MockServer, p: &str, template: ResponseTemplate, times: u64) {
    Mock::given(method("GET"))
        .and(path(p))
        .respond_with(template)
        .expect(times)
        .mount(server)
        .await;
}

/// A first GET goes upstream and is stored; a second is answered from memory.
#[tokio::test]
async fn miss_then_hit_with_one_upstream_request() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(
        &upstream,
        "/docs/a",
        ResponseTemplate::new(200).set_body_string("doc a"),
        1,
    )
    .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;

    let first = get(&proxy.url("/docs/a"), &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "doc a");
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.header("cache-status"), "cachecar; fwd=miss; stored");

    let second = get(&proxy.url("/docs/a"), &[]).await;
    assert_eq!(second.text(), "doc a");
    assert_eq!(second.x_cache(), "HIT");
    assert!(
        second
            .header("cache-status")
            .starts_with("cachecar; hit; ttl="),
        "{second:?}"
    );
    let age: u64 = second.header("age").parse().expect("Age on a hit");
    assert!(age <= 1, "age {age}");
}

/// An entry is served until its TTL runs out, then fetched again.
#[tokio::test]
async fn expired_entry_goes_back_upstream() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(
        &upstream,
        "/docs/a",
        ResponseTemplate::new(200).set_body_string("x"),
        2,
    )
    .await;
    let rules = "routes:\n  - { name: docs, match: \"GET /docs/{*path}\", ttl: 1s }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rules)).await;
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "HIT");
    proxy.clock.advance(Duration::from_millis(1_100));
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "MISS");
}

/// The origin's max-age wins over the rule's ttl under `respect`.
#[tokio::test]
async fn origin_max_age_wins_under_respect() {
    trace_init();
    let upstream = MockServer::start().await;
    let template = ResponseTemplate::new(200)
        .insert_header("cache-control", "max-age=1")
        .set_body_string("x");
    mock_get(&upstream, "/docs/a", template, 2).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "MISS");
    let hit = get(&proxy.url("/docs/a"), &[]).await;
    assert_eq!(hit.header("cache-status"), "cachecar; hit; ttl=0");
    proxy.clock.advance(Duration::from_millis(1_100));
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "MISS");
}

/// Requests no route matches are forwarded every time, marked BYPASS.
#[tokio::test]
async fn unmatched_requests_are_forwarded_untouched() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(
        &upstream,
        "/other",
        ResponseTemplate::new(200).set_body_string("o"),
        2,
    )
    .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    for _ in 0..2 {
        let r = get(&proxy.url("/other"), &[]).await;
        assert_eq!(r.text(), "o");
        assert_eq!(r.x_cache(), "BYPASS");
        assert_eq!(
            r.header("cache-status"),
            "cachecar; fwd=bypass; detail=no-route"
        );
    }
}

/// Responses that must not be stored say why, and go upstream every time.
#[tokio::test]
async fn never_stored_responses_are_forwarded_each_time() {
    trace_init();
    let upstream = MockServer::start().await;
    let cases = [
        (
            "/docs/nostore",
            ResponseTemplate::new(200).insert_header("cache-control", "no-store"),
            "no-store",
        ),
        (
            "/docs/private",
            ResponseTemplate::new(200).insert_header("cache-control", "private"),
            "private",
        ),
        (
            "/docs/cookie",
            ResponseTemplate::new(200).insert_header("set-cookie", "a=1"),
            "set-cookie",
        ),
        (
            "/docs/star",
            ResponseTemplate::new(200).insert_header("vary", "*"),
            "vary-star",
        ),
        ("/docs/error", ResponseTemplate::new(500), "status"),
        ("/docs/partial", ResponseTemplate::new(206), "partial"),
    ];
    for (p, template, _) in &cases {
        mock_get(&upstream, p, template.clone(), 2).await;
    }
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    for (p, _, reason) in &cases {
        for _ in 0..2 {
            let r = get(&proxy.url(p), &[]).await;
            assert_eq!(r.x_cache(), "MISS", "{p}");
            assert_eq!(
                r.header("cache-status"),
                format!("cachecar; fwd=miss; detail={reason}")
            );
        }
    }
}

/// Bodies over `max_body_bytes` stream through whole and are not stored,
/// with and without a Content-Length.
#[tokio::test]
async fn large_bodies_stream_through_unstored() {
    trace_init();
    let upstream = MockServer::start().await;
    let big = "x".repeat(300 * 1024);
    mock_get(
        &upstream,
        "/docs/big",
        ResponseTemplate::new(200).set_body_string(big.clone()),
        2,
    )
    .await;
    let rules = format!("cache: {{ max_body_bytes: 100KiB }}\n{DOCS}");
    let proxy = TestProxy::start(&config(&upstream.uri(), &rules)).await;
    for _ in 0..2 {
        let r = get(&proxy.url("/docs/big"), &[]).await;
        assert_eq!(r.body.len(), big.len());
        assert_eq!(
            r.header("cache-status"),
            "cachecar; fwd=miss; detail=too-large"
        );
    }
}

/// A GET with a body is never answered from or stored in the cache.
#[tokio::test]
async fn get_with_a_body_bypasses_the_cache() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(&upstream, "/docs/b", ResponseTemplate::new(200), 2).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    for _ in 0..2 {
        let r = send(Method::GET, &proxy.url("/docs/b"), &[], "payload").await;
        assert_eq!(
            r.header("cache-status"),
            "cachecar; fwd=bypass; detail=request-body"
        );
    }
}

/// `cache.enabled: false` is a pure pass-through.
#[tokio::test]
async fn disabled_cache_passes_everything_through() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(&upstream, "/docs/a", ResponseTemplate::new(200), 2).await;
    let rules = format!("cache: {{ enabled: false }}\n{DOCS}");
    let proxy = TestProxy::start(&config(&upstream.uri(), &rules)).await;
    for _ in 0..2 {
        let r = get(&proxy.url("/docs/a"), &[]).await;
        assert_eq!(
            r.header("cache-status"),
            "cachecar; fwd=bypass; detail=disabled"
        );
    }
}

/// A forwarded request tells the app who the client is the way nginx and
/// Envoy do: `X-Forwarded-For` appended to (its last hop is the real peer),
/// `X-Real-IP` the peer; a peer that is not a trusted proxy cannot claim a
/// scheme, host or address. From a `trusted_proxies` peer those are kept.
#[tokio::test]
async fn forwarded_requests_carry_forwarding_headers() {
    trace_init();
    let sent = [
        ("x-forwarded-for", "9.9.9.9"),
        ("x-forwarded-proto", "https"),
        ("x-real-ip", "9.9.9.9"),
    ];
    for (security, xff, proto, real_ip) in [
        ("", "9.9.9.9, 127.0.0.1", "http", "127.0.0.1"),
        (
            "security: { trusted_proxies: [127.0.0.0/8] }\n",
            "9.9.9.9, 127.0.0.1",
            "https",
            "9.9.9.9",
        ),
    ] {
        let upstream = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/other"))
            .and(move |req: &Request| req.headers.get("x-forwarded-for").is_some_and(|v| v == xff))
            .and(header("x-forwarded-proto", proto))
            .and(header("x-real-ip", real_ip))
            .and(header_exists("x-forwarded-host"))
            .and(header("via", "1.1 cachecar"))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&upstream)
            .await;
        let proxy = TestProxy::start(&config(&upstream.uri(), &format!("{security}{DOCS}"))).await;
        let r = get(&proxy.url("/other"), &sent).await;
        assert_eq!(
            r.status,
            204,
            "{security}: {:?}",
            upstream.received_requests().await
        );
    }
}

mod keys;
