//! cachecar on Redis, end to end: replicas share one cache and stay
//! coherent, the cluster works, and every Redis fault (killed, frozen,
//! late, out of memory, corrupt values) leaves requests answered by the
//! upstream within about the timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::redis_server::{RedisCluster, RedisServer};
use crate::support::{ADMIN_TOKEN, Reply, TestProxy, config, eventually, get, send, trace_init};

const RULES: &str = r#"routes:
  - { name: docs, match: "GET /docs/{id}" }
invalidate:
  - match: PUT /docs/{id}
    purge: ["GET /docs/{id}"]
"#;

/// Answers GETs with `<path> v<n>`, where n counts the GETs of that path,
/// so a re-fetch shows in the body; optionally slowly.
#[derive(Clone, Default)]
struct Versions {
    seen: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    delay: Duration,
}

impl Respond for Versions {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut map = self.seen.lock().unwrap();
        let n = map.entry(req.url.path().to_string()).or_default();
        *n += 1;
        ResponseTemplate::new(200)
            .set_body_string(format!("{} v{n}", req.url.path()))
            .set_delay(self.delay)
    }
}

impl Versions {
    fn count(&self, path: &str) -> usize {
        self.seen.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        server
    }
}

/// A config with the `store` on `redis` (a `url:` or `cluster:` line).
fn redis_config(upstream: &str, store: &str, redis: &str, extra: &str) -> String {
    let l1 = if store == "tiered" {
        "  l1: { max_bytes: 8MiB, ttl: 60s }\n"
    } else {
        ""
    };
    config(
        upstream,
        &format!(
            "cache:\n  store: {store}\n  redis: {{ {redis}, timeout: 50ms, key_prefix: \"cc:\" }}\n{l1}{extra}{RULES}"
        ),
    )
}

fn url_line(redis: &RedisServer) -> String {
    format!("url: \"{}\"", redis.url())
}

/// What most tests here start from: a Redis of their own, the versioned
/// app, and the config of a `store` on them (plus `extra` cache lines).
struct Stack {
    redis: RedisServer,
    app: Versions,
    _upstream: MockServer,
    yaml: String,
}

impl Stack {
    async fn start(store: &str) -> Self {
        Self::with(store, Versions::default(), "").await
    }

    async fn with(store: &str, app: Versions, extra: &str) -> Self {
        Self::on(RedisServer::start().await, store, app, extra).await
    }

    /// On `redis`, started as the test needs it.
    async fn on(redis: RedisServer, store: &str, app: Versions, extra: &str) -> Self {
        let upstream = app.serve().await;
        let yaml = redis_config(&upstream.uri(), store, &url_line(&redis), extra);
        Self {
            redis,
            app,
            _upstream: upstream,
            yaml,
        }
    }
}

async fn status(proxy: &TestProxy) -> serde_json::Value {
    let reply = get(&proxy.admin_url("/status"), &[]).await;
    serde_json::from_slice(&reply.body).expect("status is JSON")
}

async fn put(proxy: &TestProxy, path: &str) -> Reply {
    send(Method::PUT, &proxy.url(path), &[HOST], "{}").await
}

/// Every replica is reached under one name, as behind a Service: the host
/// is part of the cache key, and each test proxy has its own port.
const HOST: (&str, &str) = ("host", "api.test");

/// GET through a replica, under the shared name.
async fn fetch(url: &str) -> Reply {
    get(url, &[HOST]).await
}

/// Puts `redis` over its memory limit with other data, to stay: 2 MiB of
/// it under a limit of 1 MiB with `noeviction`, so every write is refused.
pub(crate) async fn over_maxmemory(redis: &RedisServer) {
    let chunk = "x".repeat(64 << 10);
    for n in 0..32 {
        let _: () = redis.cmd(&["SET", &format!("junk:{n}"), &chunk]).await;
    }
    let _: () = redis
        .cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .await;
    let _: () = redis.cmd(&["CONFIG", "SET", "maxmemory", "1mb"]).await;
    let mut conn = redis.conn().await;
    let refused: redis::RedisResult<()> = redis::cmd("SET")
        .arg("probe")
        .arg("1")
        .query_async(&mut conn)
        .await;
    assert!(refused.is_err(), "redis refuses writes");
}

/// Waits until `proxy` serves `path` from the cache again (after a fault).
async fn caching_resumes(proxy: &TestProxy, path: &str) -> bool {
    eventually(Duration::from_secs(15), || async {
        fetch(&proxy.url(path)).await;
        fetch(&proxy.url(path)).await.x_cache() == "HIT"
    })
    .await
}

#[tokio::test]
async fn two_replicas_share_one_redis_and_stay_coherent() {
    trace_init();
    let stack = Stack::start("redis").await;
    let (a, b) = (
        TestProxy::start(&stack.yaml).await,
        TestProxy::start(&stack.yaml).await,
    );

    let first = fetch(&a.url("/docs/1")).await;
    assert_eq!(
        (first.status.as_u16(), first.x_cache().as_str()),
        (200, "MISS")
    );
    // Writes are in the background: B sees the entry once it landed.
    assert!(
        eventually(Duration::from_secs(2), || async {
            fetch(&b.url("/docs/1")).await.x_cache() == "HIT"
        })
        .await,
        "filled through A, hit through B"
    );
    assert_eq!(fetch(&b.url("/docs/1")).await.text(), "/docs/1 v1");
    assert_eq!(stack.app.count("/docs/1"), 1);

    // A mutation through B is seen through A at once: no L1 to wait for.
    assert_eq!(put(&b, "/docs/1").await.status, 204);
    let after = fetch(&a.url("/docs/1")).await;
    assert_eq!(
        (after.x_cache().as_str(), after.text().as_str()),
        ("MISS", "/docs/1 v2")
    );

    healthy_and_counted(&a, &stack.redis).await;
}

/// `/status` and the metrics of a replica using a healthy `redis`, and
/// its keys under the prefix.
async fn healthy_and_counted(a: &TestProxy, redis: &RedisServer) {
    let s = status(a).await;
    assert_eq!(s["cache"]["store"]["backend"], "redis");
    assert_eq!(s["cache"]["store"]["up"], true);
    assert_eq!(s["cache"]["store"]["circuit"], "closed");
    assert_eq!(s["cache"]["store"]["redis"]["key_prefix"], "cc:");
    assert!(
        !s.to_string().contains(&redis.port.to_string()),
        "no address in /status"
    );
    assert_eq!(
        a.metric("cachecar_store_up", &[("backend", "redis")]).await,
        1.0
    );
    assert!(
        a.metric(
            "cachecar_store_operation_duration_seconds_count",
            &[("backend", "redis"), ("op", "lookup")]
        )
        .await
            >= 2.0
    );
    let keys = redis.keys("cc:*").await;
    assert!(keys.iter().any(|k| k.starts_with("cc:e:docs:")), "{keys:?}");
}

#[tokio::test]
async fn a_purge_through_one_replica_empties_the_other_replicas_l1() {
    trace_init();
    let stack = Stack::start("tiered").await;
    let (a, b) = (
        TestProxy::start(&stack.yaml).await,
        TestProxy::start(&stack.yaml).await,
    );
    for p in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(5), || async {
                status(p).await["cache"]["store"]["l1_in_use"] == true
            })
            .await
        );
    }
    fetch(&a.url("/docs/1")).await;
    assert!(
        eventually(Duration::from_secs(2), || async {
            fetch(&b.url("/docs/1")).await.x_cache() == "HIT"
        })
        .await
    );
    // B now answers from its L1: no Redis command at all.
    let _: () = stack.redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    assert_eq!(fetch(&b.url("/docs/1")).await.x_cache(), "HIT");
    let stats: String = stack.redis.cmd(&["INFO", "commandstats"]).await;
    assert!(
        !stats.contains("cmdstat_mget"),
        "L1 hit went to redis: {stats}"
    );

    // PUT through A; B's L1 (trusted for 60 s) drops the entry when the
    // invalidation message arrives, well within the time asserted here.
    assert_eq!(put(&a, "/docs/1").await.status, 204);
    let purged_at = Instant::now();
    let seen = std::sync::Mutex::new(String::new());
    let fresh = eventually(Duration::from_millis(500), || async {
        let text = fetch(&b.url("/docs/1")).await.text();
        *seen.lock().unwrap() = text.clone();
        text != "/docs/1 v1"
    })
    .await;
    assert!(fresh, "B still served the purged entry from L1");
    eprintln!(
        "L1 of B dropped the entry {:?} after the PUT returned",
        purged_at.elapsed()
    );
    assert_eq!(*seen.lock().unwrap(), "/docs/1 v2");
}

#[tokio::test]
async fn l1_is_bypassed_while_invalidations_cannot_arrive() {
    trace_init();
    let mut stack = Stack::start("tiered").await;
    let proxy = TestProxy::start(&stack.yaml).await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "warm");
    let before = stack.app.count("/docs/1");

    // Redis gone: the subscription drops, L1 is no longer trusted (another
    // replica's purge could not reach us), every request goes upstream.
    stack.redis.kill();
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&proxy).await["cache"]["store"]["l1_in_use"] == false
        })
        .await
    );
    for _ in 0..5 {
        let r = fetch(&proxy.url("/docs/1")).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.x_cache(), "HIT");
    }
    assert_eq!(stack.app.count("/docs/1"), before + 5);
    assert_eq!(get(&proxy.admin_url("/readyz"), &[]).await.status, 200);

    stack.redis.launch().await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "caching resumes");
    assert_eq!(status(&proxy).await["cache"]["store"]["l1_in_use"], true);
}

#[tokio::test]
async fn replicas_share_a_redis_cluster() {
    trace_init();
    let cluster = RedisCluster::start().await;
    let app = Versions::default();
    let upstream = app.serve().await;
    let seeds = cluster
        .urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = redis_config(
        &upstream.uri(),
        "tiered",
        &format!("cluster: [{seeds}]"),
        "",
    );
    let (a, b) = (TestProxy::start(&yaml).await, TestProxy::start(&yaml).await);
    for n in 0..8 {
        let path = format!("/docs/{n}");
        fetch(&a.url(&path)).await;
        assert!(
            eventually(Duration::from_secs(3), || async {
                fetch(&b.url(&path)).await.x_cache() == "HIT"
            })
            .await,
            "{path}: filled through A, hit through B"
        );
    }
    assert_eq!(app.count("/docs/3"), 1);
    let mut holding = 0;
    for node in &cluster.nodes {
        holding += usize::from(!node.keys("cc:e:*").await.is_empty());
    }
    assert!(holding >= 2, "entries spread over the nodes");

    assert_eq!(put(&b, "/docs/3").await.status, 204);
    assert!(
        eventually(Duration::from_millis(500), || async {
            fetch(&a.url("/docs/3")).await.text() == "/docs/3 v2"
        })
        .await,
        "a purge through B reaches A's L1 over the cluster"
    );
}

mod across;
mod aliases;
mod faults;
mod fence;
mod purges;
mod recovery;
