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
    tokio::time::sleep(Duration::from_millis(1_100)).await;
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
    tokio::time::sleep(Duration::from_millis(1_100)).await;
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

/// Echoes who asked, so a wrong share would show in the body.
struct EchoUser;

impl Respond for EchoUser {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let who = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_string();
        ResponseTemplate::new(200).set_body_string(format!("data of {who}"))
    }
}

/// `scope: user` keeps one entry per identity and never crosses users.
#[tokio::test]
async fn user_scope_keeps_users_apart() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(EchoUser)
        .expect(3) // alice once, bob once, anonymous once (not cached)
        .mount(&upstream)
        .await;
    let rules = "routes:\n  - { name: me, match: GET /me, scope: user }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rules)).await;
    let alice = [("authorization", "Bearer alice")];
    let bob = [("authorization", "Bearer bob")];
    for _ in 0..3 {
        assert_eq!(
            get(&proxy.url("/me"), &alice).await.text(),
            "data of Bearer alice"
        );
        assert_eq!(
            get(&proxy.url("/me"), &bob).await.text(),
            "data of Bearer bob"
        );
    }
    let anonymous = get(&proxy.url("/me"), &[]).await;
    assert_eq!(
        anonymous.header("cache-status"),
        "cachecar; fwd=bypass; detail=no-identity"
    );
}

/// Identity can come from a cookie.
#[tokio::test]
async fn user_scope_can_use_a_cookie() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(
        &upstream,
        "/me",
        ResponseTemplate::new(200).set_body_string("x"),
        2,
    )
    .await;
    let rules =
        "identity: { cookie: sid }\nroutes:\n  - { name: me, match: GET /me, scope: user }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rules)).await;
    assert_eq!(
        get(&proxy.url("/me"), &[("cookie", "sid=1; theme=dark")])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&proxy.url("/me"), &[("cookie", "theme=light; sid=1")])
            .await
            .x_cache(),
        "HIT"
    );
    assert_eq!(
        get(&proxy.url("/me"), &[("cookie", "sid=2")])
            .await
            .x_cache(),
        "MISS"
    );
}

/// A public route neither serves nor stores for requests with credentials,
/// unless the response or the route allows sharing.
#[tokio::test]
async fn credentials_on_public_routes_bypass_the_shared_entry() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(
        &upstream,
        "/docs/a",
        ResponseTemplate::new(200).set_body_string("public"),
        3,
    )
    .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    // Anonymous fill.
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "MISS");
    // With credentials: not served from the anonymous entry, not stored.
    for creds in [("authorization", "Bearer x"), ("cookie", "sid=1")] {
        let r = get(&proxy.url("/docs/a"), &[creds]).await;
        assert_eq!(r.x_cache(), "MISS");
        assert_eq!(
            r.header("cache-status"),
            "cachecar; fwd=miss; detail=authorization"
        );
    }
    // Anonymous still hits.
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "HIT");
}

/// `share_authenticated: true` lets credentialed requests share the entry.
#[tokio::test]
async fn share_authenticated_routes_serve_everyone() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(
        &upstream,
        "/shared",
        ResponseTemplate::new(200).set_body_string("s"),
        1,
    )
    .await;
    let rules = "routes:\n  - { name: s, match: GET /shared, share_authenticated: true }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rules)).await;
    assert_eq!(
        get(&proxy.url("/shared"), &[("authorization", "Bearer a")])
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&proxy.url("/shared"), &[("authorization", "Bearer b")])
            .await
            .x_cache(),
        "HIT"
    );
    assert_eq!(get(&proxy.url("/shared"), &[]).await.x_cache(), "HIT");
}

/// `key.query` modes: all (order-insensitive), none, and an allow-list.
#[tokio::test]
async fn query_key_modes() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(&upstream, "/all", ResponseTemplate::new(200), 2).await;
    mock_get(&upstream, "/none", ResponseTemplate::new(200), 1).await;
    mock_get(&upstream, "/some", ResponseTemplate::new(200), 2).await;
    let rules = "routes:\n  - { name: all, match: GET /all }\n  - { name: none, match: GET /none, key: { query: none } }\n  - { name: some, match: GET /some, key: { query: [page] } }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rules)).await;
    let cases = [
        ("/all?a=1&b=2", "MISS"),
        ("/all?b=2&a=1", "HIT"),
        ("/all?a=1&b=3", "MISS"),
        ("/none?x=1", "MISS"),
        ("/none?x=2", "HIT"),
        ("/none", "HIT"),
        ("/some?page=1&utm=a", "MISS"),
        ("/some?utm=b&page=1", "HIT"),
        ("/some?page=2", "MISS"),
    ];
    for (target, expected) in cases {
        assert_eq!(
            get(&proxy.url(target), &[]).await.x_cache(),
            expected,
            "{target}"
        );
    }
}

/// The app is asked exactly what the key covers: parameters the key
/// ignores are not forwarded, so they cannot shape a stored answer.
#[tokio::test]
async fn parameters_the_key_ignores_are_not_forwarded() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/none"))
        .and(|req: &Request| req.url.query().is_none())
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&upstream)
        .await;
    let rules = "routes:\n  - { name: none, match: GET /none, key: { query: none } }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rules)).await;
    assert_eq!(get(&proxy.url("/none?x=1"), &[]).await.status, 200);
}

/// Headers listed in `key.headers` select different entries.
#[tokio::test]
async fn keyed_headers_select_entries() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(&upstream, "/greet", ResponseTemplate::new(200), 2).await;
    let rules =
        "routes:\n  - { name: g, match: GET /greet, key: { headers: [accept-language] } }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rules)).await;
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(get(&proxy.url("/greet"), &en).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/greet"), &fr).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/greet"), &en).await.x_cache(), "HIT");
    assert_eq!(get(&proxy.url("/greet"), &fr).await.x_cache(), "HIT");
}

/// A response with `Vary` is only served to requests with the same values.
#[tokio::test]
async fn vary_mismatch_is_a_miss() {
    trace_init();
    let upstream = MockServer::start().await;
    let template = ResponseTemplate::new(200).insert_header("vary", "X-Tenant");
    mock_get(&upstream, "/docs/v", template, 2).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    let a = [("x-tenant", "a")];
    assert_eq!(get(&proxy.url("/docs/v"), &a).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/docs/v"), &a).await.x_cache(), "HIT");
    let b = get(&proxy.url("/docs/v"), &[("x-tenant", "b")]).await;
    assert_eq!(b.header("cache-status"), "cachecar; fwd=vary-miss; stored");
}

/// HEAD is answered from the GET entry, without a body.
#[tokio::test]
async fn head_is_served_from_the_get_entry() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(
        &upstream,
        "/docs/h",
        ResponseTemplate::new(200).set_body_string("12345"),
        1,
    )
    .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    assert_eq!(get(&proxy.url("/docs/h"), &[]).await.x_cache(), "MISS");
    let head = send(Method::HEAD, &proxy.url("/docs/h"), &[], "").await;
    assert_eq!(head.x_cache(), "HIT");
    assert_eq!(head.header("content-length"), "5");
    assert!(head.body.is_empty());
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

/// Equivalent spellings of a path share the entry, and the upstream sees
/// the normalized path.
#[tokio::test]
async fn equivalent_paths_share_an_entry() {
    trace_init();
    let upstream = MockServer::start().await;
    mock_get(&upstream, "/docs/a", ResponseTemplate::new(200), 1).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    assert_eq!(get(&proxy.url("/docs/%61"), &[]).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/docs/./a"), &[]).await.x_cache(), "HIT");
    assert_eq!(get(&proxy.url("/x/../docs/a"), &[]).await.x_cache(), "HIT");
    assert_eq!(get(&proxy.url("/docs/a%zz"), &[]).await.status, 400);
}

/// The upstream sees forwarding headers set from the connection (the
/// client's claims are overwritten), not the client's hop-by-hop ones.
#[tokio::test]
async fn forwarded_requests_carry_forwarding_headers() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/other"))
        .and(|req: &Request| {
            req.headers
                .get("x-forwarded-for")
                .is_some_and(|v| v == "127.0.0.1")
        })
        .and(header("x-forwarded-proto", "http"))
        .and(header_exists("x-forwarded-host"))
        .and(header("via", "1.1 cachecar"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), DOCS)).await;
    let r = get(
        &proxy.url("/other"),
        &[
            ("x-forwarded-for", "9.9.9.9"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
}
