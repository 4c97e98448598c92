//! What selects an entry: users, credentials, the query, keyed headers, `Vary`, HEAD.

use super::*;

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

/// With `hosts`, a relative warmup target is filled under the canonical
/// name, so a client reaching the app by any alias finds it; the app is
/// asked with the canonical `Host` only, the one the entry is keyed by.
#[tokio::test]
async fn relative_warmup_is_hit_through_any_alias() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("index"))
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(
        &upstream.uri(),
        "hosts: { canonical: api, aliases: \"*\" }\nroutes:\n  - { name: docs, match: \"GET /docs/{*p}\", ttl: 1h }\nwarmup: [GET /docs/index]\n",
    ))
    .await;
    let warmed = crate::support::eventually(Duration::from_secs(3), || async {
        get(&proxy.url("/docs/index"), &[("host", "10.1.2.3:8080")])
            .await
            .x_cache()
            == "HIT"
    })
    .await;
    assert!(
        warmed,
        "a client by the pod's address hits the warmed entry"
    );
    assert_eq!(
        get(&proxy.url("/docs/index"), &[("host", "api.ns")])
            .await
            .x_cache(),
        "HIT"
    );
    get(
        &proxy.url("/docs/other"),
        &[("host", "api.ns.svc.cluster.local")],
    )
    .await;
    let hosts: Vec<String> = upstream
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["host"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        hosts,
        ["api", "api"],
        "the app only ever sees the canonical name"
    );
}
