//! The admin listener: health, readiness, status, token-protected purge and
//! explain.

use http::Method;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN_TOKEN, TestProxy, config, get, send, trace_init};

const RULES: &str = r#"routes:
  - { name: conversation, match: "GET /api/conversations/{id}", scope: user }
  - { name: docs, match: "GET /docs/{*path}" }
invalidate:
  - { match: "PUT /api/conversations/{id}", purge: ["GET /api/conversations/{id}"] }
"#;

async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x"))
        .mount(&server)
        .await;
    server
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

async fn admin_post(
    proxy: &TestProxy,
    path: &str,
    token: &str,
    body: &str,
) -> crate::support::Reply {
    let auth = bearer(token);
    send(
        Method::POST,
        &proxy.admin_url(path),
        &[(auth.0, &auth.1)],
        body.to_string(),
    )
    .await
}

/// Liveness, readiness and status answer without a token.
#[tokio::test]
async fn health_readiness_and_status() {
    trace_init();
    let up = upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    assert_eq!(get(&proxy.admin_url("/healthz"), &[]).await.status, 200);
    let ready = get(&proxy.admin_url("/readyz"), &[]).await;
    assert_eq!(
        (ready.status.as_u16(), ready.text().as_str()),
        (200, "ready\n")
    );
    let status: Value =
        serde_json::from_slice(&get(&proxy.admin_url("/status"), &[]).await.body).unwrap();
    assert_eq!(status["config"]["generation"], 1);
    assert_eq!(status["config"]["hash"].as_str().unwrap().len(), 16);
    assert_eq!(status["cache"]["store"]["backend"], "memory");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(get(&proxy.admin_url("/nope"), &[]).await.status, 404);
}

/// Without a configured token, /admin/* answers 403.
#[tokio::test]
async fn admin_endpoints_are_forbidden_without_a_configured_token() {
    trace_init();
    let up = upstream().await;
    let yaml = config(&up.uri(), RULES).replace(&format!("token: {ADMIN_TOKEN}"), "token: \"\"");
    let proxy = TestProxy::start(&yaml).await;
    let r = admin_post(&proxy, "/admin/purge", "", r#"{"targets":["GET /docs/a"]}"#).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        get(&proxy.admin_url("/admin/explain?url=/docs/a"), &[])
            .await
            .status,
        403
    );
}

/// A missing or wrong bearer token is 401 and purges nothing.
#[tokio::test]
async fn wrong_tokens_are_refused() {
    trace_init();
    let up = upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    get(&proxy.url("/docs/a"), &[]).await;
    for token in ["wrong", "", &format!("{ADMIN_TOKEN}x")] {
        let r = admin_post(
            &proxy,
            "/admin/purge",
            token,
            r#"{"targets":["GET /docs/a"]}"#,
        )
        .await;
        assert_eq!(r.status, 401, "token {token:?}");
        assert_eq!(r.header("www-authenticate"), "Bearer");
    }
    let r = send(
        Method::POST,
        &proxy.admin_url("/admin/purge"),
        &[],
        r#"{"targets":[]}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "HIT");
}

/// An admin purge of one URL drops it for every user and query string.
#[tokio::test]
async fn admin_purge_of_one_url() {
    trace_init();
    let up = upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let users = [
        [("authorization", "Bearer a")],
        [("authorization", "Bearer b")],
    ];
    for u in &users {
        get(&proxy.url("/api/conversations/1?x=1"), u).await;
        get(&proxy.url("/api/conversations/2"), u).await;
    }
    let r = admin_post(
        &proxy,
        "/admin/purge",
        ADMIN_TOKEN,
        r#"{"targets":["GET /api/conversations/1"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["purged"][0]["routes"][0], "conversation");
    for u in &users {
        assert_eq!(
            get(&proxy.url("/api/conversations/1?x=1"), u)
                .await
                .x_cache(),
            "MISS"
        );
        assert_eq!(
            get(&proxy.url("/api/conversations/2"), u).await.x_cache(),
            "HIT"
        );
    }
}

/// Wildcards and a trailing `*` purge whole groups.
#[tokio::test]
async fn admin_purge_with_patterns() {
    trace_init();
    let up = upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    for p in ["/docs/a", "/docs/b/c"] {
        get(&proxy.url(p), &[]).await;
    }
    let u = [("authorization", "Bearer a")];
    get(&proxy.url("/api/conversations/1"), &u).await;
    let r = admin_post(
        &proxy,
        "/admin/purge",
        ADMIN_TOKEN,
        r#"{"targets":["GET /docs/*"]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&proxy.url("/docs/a"), &[]).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/docs/b/c"), &[]).await.x_cache(), "MISS");
    assert_eq!(
        get(&proxy.url("/api/conversations/1"), &u).await.x_cache(),
        "HIT"
    );
    let r = admin_post(
        &proxy,
        "/admin/purge",
        ADMIN_TOKEN,
        r#"{"targets":["GET /api/conversations/{id}"]}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        get(&proxy.url("/api/conversations/1"), &u).await.x_cache(),
        "MISS"
    );
}

/// Bad purge requests are refused with every problem named, and purge nothing.
#[tokio::test]
async fn bad_purge_requests_are_refused() {
    trace_init();
    let up = upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    get(&proxy.url("/docs/a"), &[]).await;
    let r = admin_post(
        &proxy,
        "/admin/purge",
        ADMIN_TOKEN,
        r#"{"targets":["GET /docs/a","GET /nowhere","PUT /docs/a"]}"#,
    )
    .await;
    assert_eq!(r.status, 422);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(
        get(&proxy.url("/docs/a"), &[]).await.x_cache(),
        "HIT",
        "all or nothing"
    );
    for bad in [
        "not json",
        r#"{"targets":[]}"#,
        r#"{"targets":["GET /docs/a"],"extra":1}"#,
    ] {
        assert_eq!(
            admin_post(&proxy, "/admin/purge", ADMIN_TOKEN, bad)
                .await
                .status,
            400,
            "{bad}"
        );
    }
}

/// `GET /admin/explain?{query}` with the admin token, as JSON.
async fn explain(proxy: &TestProxy, query: &str) -> Value {
    let auth = bearer(ADMIN_TOKEN);
    let url = proxy.admin_url(&format!("/admin/explain?{query}"));
    let r = get(&url, &[(auth.0, &auth.1)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice::<Value>(&r.body).unwrap()
}

/// Explain names the route, the key parts, the tokens and the entry state,
/// and shows identity only as present/absent.
#[tokio::test]
async fn explain_describes_the_decision() {
    trace_init();
    let up = upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let secret = "Bearer%20s3cret-user-token";
    let e = explain(
        &proxy,
        &format!("method=GET&url=/api/conversations/9&header=Authorization:%20{secret}"),
    )
    .await;
    assert_eq!(e["route"]["name"], "conversation");
    assert_eq!(e["route"]["captures"]["id"], "9");
    assert_eq!(e["key"]["identity"], "present");
    assert_eq!(e["entry"]["stored"], false);
    assert_eq!(
        e["route"]["purged_by"][0]["rule"],
        "PUT /api/conversations/{id}"
    );
    assert!(
        !e.to_string().contains("s3cret"),
        "no raw credentials in explain"
    );

    get(
        &proxy.url("/api/conversations/9"),
        &[("authorization", "Bearer s3cret-user-token")],
    )
    .await;
    let e = explain(
        &proxy,
        &format!("url=/api/conversations/9&header=Authorization:%20{secret}"),
    )
    .await;
    assert_eq!(
        e["entry"]["stored"], false,
        "the key covers the host, and none was given"
    );
    assert!(e["note"].as_str().unwrap().contains("Host"), "{e}");
    let host = format!("header=Host:%20{}", proxy.addr);
    let e = explain(
        &proxy,
        &format!("url=/api/conversations/9&header=Authorization:%20{secret}&{host}"),
    )
    .await;
    assert_eq!(e["entry"]["stored"], true);
    assert_eq!(e["entry"]["would_serve"], "hit");
    assert_eq!(e["tokens"].as_array().unwrap().len(), 3);
}

/// Explain says why a request is not cacheable, and refuses a query
/// without a URL.
#[tokio::test]
async fn explain_says_why_a_request_is_not_cached() {
    trace_init();
    let up = upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let auth = bearer(ADMIN_TOKEN);
    let e = explain(&proxy, "url=/api/conversations/9").await;
    assert_eq!(e["cacheable"], false);
    assert_eq!(e["reason"], "no-identity");
    let e = explain(&proxy, "url=/elsewhere").await;
    assert_eq!(e["reason"], "no-route");
    let e = explain(&proxy, "method=PUT&url=/api/conversations/9").await;
    assert_eq!(e["mutation"]["rules"][0], "PUT /api/conversations/{id}");
    let r = get(
        &proxy.admin_url("/admin/explain?method=GET"),
        &[(auth.0, &auth.1)],
    )
    .await;
    assert_eq!(r.status, 400);
}
