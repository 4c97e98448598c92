//! POST/PUT/PATCH/DELETE purge the right entries only, for every user, and
//! only when the upstream says the mutation succeeded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{TestProxy, config, get, send, trace_init};

const RULES: &str = r#"routes:
  - { name: list, match: GET /api/conversations, scope: user }
  - { name: messages, match: "GET /api/conversations/{id}/messages", scope: user }
  - { name: conversation, match: "GET /api/conversations/{id}", scope: user }
  - { name: docs, match: "GET /docs/{*path}" }
invalidate:
  - match: PUT /api/conversations/{id}
    purge:
      - GET /api/conversations/{id}
      - GET /api/conversations/{id}/*
      - GET /api/conversations
  - match: DELETE /api/conversations/{id}
    purge: ["GET /api/conversations/{id}"]
"#;

/// Counts requests per path and answers with the count, so a re-fetch shows.
#[derive(Clone, Default)]
struct Counter(Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>);

impl Respond for Counter {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(req.url.path().to_string()).or_default();
        *n += 1;
        ResponseTemplate::new(200).set_body_string(format!("{} #{n}", req.url.path()))
    }
}

impl Counter {
    fn count(&self, p: &str) -> usize {
        self.0.lock().unwrap().get(p).copied().unwrap_or(0)
    }
}

async fn upstream_with(counter: &Counter, mutation_status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(counter.clone())
        .mount(&server)
        .await;
    for m in ["PUT", "DELETE", "POST", "PATCH"] {
        Mock::given(method(m))
            .respond_with(ResponseTemplate::new(mutation_status))
            .mount(&server)
            .await;
    }
    server
}

const ALICE: [(&str, &str); 1] = [("authorization", "Bearer alice")];
const BOB: [(&str, &str); 1] = [("authorization", "Bearer bob")];

async fn warm(proxy: &TestProxy, paths: &[&str]) {
    for p in paths {
        for who in [ALICE, BOB] {
            get(&proxy.url(p), &who).await;
            assert_eq!(
                get(&proxy.url(p), &who).await.x_cache(),
                "HIT",
                "{p} warmed"
            );
        }
    }
}

/// A PUT purges every listed target for every user, and nothing else.
#[tokio::test]
async fn put_purges_listed_targets_for_all_users() {
    trace_init();
    let counter = Counter::default();
    let upstream = upstream_with(&counter, 200).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
    let paths = [
        "/api/conversations",
        "/api/conversations/42",
        "/api/conversations/42/messages",
        "/api/conversations/7",
        "/api/conversations/7/messages",
    ];
    warm(&proxy, &paths).await;
    get(&proxy.url("/docs/x"), &[]).await;

    let put = send(
        Method::PUT,
        &proxy.url("/api/conversations/42"),
        &ALICE,
        "{}",
    )
    .await;
    assert_eq!(put.status, 200);

    for who in [ALICE, BOB] {
        let purged = &paths[..3];
        for p in purged {
            let x_cache = get(&proxy.url(p), &who).await.x_cache();
            assert_eq!(x_cache, "MISS", "{p} purged");
        }
        for p in &paths[3..] {
            let x_cache = get(&proxy.url(p), &who).await.x_cache();
            assert_eq!(x_cache, "HIT", "{p} untouched");
        }
    }
    assert_eq!(get(&proxy.url("/docs/x"), &[]).await.x_cache(), "HIT");
    assert_eq!(
        counter.count("/api/conversations/7"),
        2,
        "one fill per user"
    );
}

/// Query strings are purged along with the path.
#[tokio::test]
async fn purge_covers_every_query_string() {
    trace_init();
    let counter = Counter::default();
    let upstream = upstream_with(&counter, 200).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
    warm(
        &proxy,
        &["/api/conversations?page=1", "/api/conversations?page=2"],
    )
    .await;
    send(
        Method::PUT,
        &proxy.url("/api/conversations/1"),
        &ALICE,
        "{}",
    )
    .await;
    for p in ["/api/conversations?page=1", "/api/conversations?page=2"] {
        assert_eq!(get(&proxy.url(p), &BOB).await.x_cache(), "MISS", "{p}");
    }
}

/// A mutation the upstream refuses (4xx/5xx) purges nothing.
#[tokio::test]
async fn failed_mutations_purge_nothing() {
    trace_init();
    for status in [404, 500] {
        let counter = Counter::default();
        let upstream = upstream_with(&counter, status).await;
        let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
        warm(&proxy, &["/api/conversations/42"]).await;
        let put = send(
            Method::PUT,
            &proxy.url("/api/conversations/42"),
            &ALICE,
            "{}",
        )
        .await;
        assert_eq!(put.status, status);
        assert_eq!(
            get(&proxy.url("/api/conversations/42"), &ALICE)
                .await
                .x_cache(),
            "HIT"
        );
    }
}

/// Any successful unsafe request purges its own URL (RFC 9111 §4.4), even
/// without an `invalidate` rule.
#[tokio::test]
async fn successful_unsafe_requests_purge_their_own_url() {
    trace_init();
    let counter = Counter::default();
    let upstream = upstream_with(&counter, 204).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
    get(&proxy.url("/docs/page?v=1"), &[]).await;
    get(&proxy.url("/docs/other"), &[]).await;
    let post = send(Method::POST, &proxy.url("/docs/page"), &[], "x").await;
    assert_eq!(post.status, 204);
    assert_eq!(
        get(&proxy.url("/docs/page?v=1"), &[]).await.x_cache(),
        "MISS"
    );
    assert_eq!(get(&proxy.url("/docs/other"), &[]).await.x_cache(), "HIT");
    // PATCH too.
    send(Method::PATCH, &proxy.url("/docs/other"), &[], "x").await;
    assert_eq!(get(&proxy.url("/docs/other"), &[]).await.x_cache(), "MISS");
}

/// A DELETE rule purges only what it lists.
#[tokio::test]
async fn delete_rule_purges_only_its_targets() {
    trace_init();
    let counter = Counter::default();
    let upstream = upstream_with(&counter, 200).await;
    let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
    warm(&proxy, &["/api/conversations", "/api/conversations/5"]).await;
    send(Method::DELETE, &proxy.url("/api/conversations/5"), &BOB, "").await;
    assert_eq!(
        get(&proxy.url("/api/conversations/5"), &ALICE)
            .await
            .x_cache(),
        "MISS"
    );
    assert_eq!(
        get(&proxy.url("/api/conversations"), &ALICE)
            .await
            .x_cache(),
        "HIT"
    );
}

/// Answers GETs slowly with a version number the PUTs advance.
#[derive(Clone, Default)]
struct Versioned(Arc<AtomicUsize>);

impl Respond for Versioned {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let v = self.0.load(Ordering::SeqCst);
        ResponseTemplate::new(200)
            .set_body_string(format!("version {v}"))
            .set_delay(Duration::from_millis(400))
    }
}

/// A fill that started before a purge is never served after it: the GET
/// reads version 0 upstream, a PUT (version 1) completes meanwhile, and the
/// next GET must not get version 0 from the cache.
#[tokio::test]
async fn fill_started_before_purge_is_not_served_after_it() {
    trace_init();
    let version = Versioned::default();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/api/conversations/42$"))
        .respond_with(version.clone())
        .expect(2)
        .mount(&upstream)
        .await;
    let bump = version.0.clone();
    Mock::given(method("PUT"))
        .respond_with(move |_: &Request| {
            bump.fetch_add(1, Ordering::SeqCst);
            ResponseTemplate::new(200)
        })
        .expect(1)
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
    let url = proxy.url("/api/conversations/42");

    let slow_get = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &ALICE).await }
    });
    // Let the GET reach the upstream and read version 0.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let put = send(Method::PUT, &url, &BOB, "{}").await;
    assert_eq!(put.status, 200);
    let stale = slow_get.await.unwrap();
    assert_eq!(stale.text(), "version 0");
    assert_eq!(stale.header("cache-status"), "cachecar; fwd=miss; stored");

    let after = get(&url, &ALICE).await;
    assert_eq!(
        after.x_cache(),
        "MISS",
        "the racing fill must not be served"
    );
    assert_eq!(after.text(), "version 1");
    assert_eq!(get(&url, &ALICE).await.x_cache(), "HIT");
}
