//! Read your writes: once a write that matches an invalidation rule has
//! been answered, no later read, through this replica or another sharing
//! the store, gets data from before it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::redis_server::RedisServer;
use crate::support::{TestProxy, config, get, send, trace_init};

const RULES: &str = r#"routes:
  - { name: r, match: "GET /r/{id}" }
invalidate:
  - match: PUT /r/{id}
    purge: ["GET /r/{id}"]
"#;

/// An app whose resources have versions. A PUT bumps the version before it
/// answers; a GET answers the version current when it arrived, after
/// `delay`, so a slow fill can straddle a write.
#[derive(Clone, Default)]
struct Versioned {
    versions: Arc<Mutex<HashMap<String, u64>>>,
    delay: Duration,
}

impl Respond for Versioned {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut versions = self.versions.lock().unwrap();
        let version = versions.entry(req.url.path().to_string()).or_default();
        if req.method == Method::PUT {
            *version += 1;
            return ResponseTemplate::new(204);
        }
        ResponseTemplate::new(200)
            .insert_header("cache-control", "max-age=60")
            .set_body_string(version.to_string())
            .set_delay(self.delay)
    }
}

impl Versioned {
    async fn serve(delay: Duration) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(Versioned {
                delay,
                ..Self::default()
            })
            .mount(&server)
            .await;
        server
    }
}

/// Two replicas sharing one store (`memory`: one replica, twice).
struct Replicas {
    a: Arc<TestProxy>,
    b: Arc<TestProxy>,
    _redis: Option<RedisServer>,
    _app: MockServer,
}

impl Replicas {
    /// `cache` lines go inside the `cache:` section.
    async fn start(store: &str, cache: &str) -> Self {
        let app = Versioned::serve(Duration::from_millis(600)).await;
        if store == "memory" {
            let yaml = config(
                &app.uri(),
                &format!("cache:\n  store: memory\n{cache}{RULES}"),
            );
            let a = Arc::new(TestProxy::start(&yaml).await);
            return Self {
                b: a.clone(),
                a,
                _redis: None,
                _app: app,
            };
        }
        let redis = RedisServer::start().await;
        let l1 = if store == "tiered" {
            "  l1: { max_bytes: 8MiB, ttl: 60s }\n"
        } else {
            ""
        };
        let yaml = config(
            &app.uri(),
            &format!(
                "cache:\n  store: {store}\n  redis: {{ url: \"{}\", timeout: 200ms }}\n{l1}{cache}{RULES}",
                redis.url()
            ),
        );
        Self {
            a: Arc::new(TestProxy::start(&yaml).await),
            b: Arc::new(TestProxy::start(&yaml).await),
            _redis: Some(redis),
            _app: app,
        }
    }
}

/// A fill of `/r/1` starts through A, `/r/1` is written through `writer`
/// while the fill waits for the app, and once the write is answered
/// `/r/1` is read through `reader`: it must be the written version.
async fn read_after_write_during_a_fill(
    replicas: &Replicas,
    writer: &TestProxy,
    reader: &TestProxy,
) {
    let early = tokio::spawn({
        let a = replicas.a.clone();
        async move { get(&a.url("/r/1"), &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let put = send(Method::PUT, &writer.url("/r/1"), &[], "{}").await;
    assert_eq!(put.status, 204);
    let read = get(&reader.url("/r/1"), &[]).await;
    assert_eq!(
        read.text(),
        "1",
        "a read after the acknowledged write got older data ({})",
        read.header("cache-status")
    );
    assert_eq!(
        early.await.unwrap().text(),
        "0",
        "the early read began before the write"
    );
    // And the slow fill's entry, stamped before the write, never serves.
    assert_eq!(get(&reader.url("/r/1"), &[]).await.text(), "1");
}

#[tokio::test]
async fn a_read_after_a_write_does_not_join_a_fill_from_before_it_memory() {
    trace_init();
    let r = Replicas::start("memory", "").await;
    read_after_write_during_a_fill(&r, &r.a, &r.a).await;
}

#[tokio::test]
async fn a_read_after_a_write_does_not_join_a_fill_from_before_it_redis() {
    trace_init();
    let r = Replicas::start("redis", "").await;
    read_after_write_during_a_fill(&r, &r.a, &r.a).await;
    let r = Replicas::start("redis", "").await;
    read_after_write_during_a_fill(&r, &r.b, &r.a).await;
}

#[tokio::test]
async fn a_read_after_a_write_does_not_join_a_fill_from_before_it_tiered() {
    trace_init();
    let r = Replicas::start("tiered", "").await;
    read_after_write_during_a_fill(&r, &r.a, &r.a).await;
    let r = Replicas::start("tiered", "").await;
    read_after_write_during_a_fill(&r, &r.b, &r.a).await;
}

/// Across instances, the other replica waits on A's fill lock: it must not
/// take A's entry, filled before the write.
#[tokio::test]
async fn a_read_after_a_write_does_not_take_another_replicas_fill_from_before_it() {
    trace_init();
    let across = "  coalesce: { wait_timeout: 5s, across_instances: true }\n";
    let r = Replicas::start("redis", across).await;
    read_after_write_during_a_fill(&r, &r.a, &r.b).await;
}
