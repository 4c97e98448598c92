//! Tags (surrogate keys): entries tagged by the app's `Surrogate-Key` and
//! `Cache-Tag` headers and by the route's own `tags`, purged by a rule's
//! `purge_tags` and by `POST /admin/purge {"tags": [...]}`, on every store
//! and across replicas; the tag headers never reach the client; a fill that
//! races a tag purge is never served after it; the per-entry bounds.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::redis_server::{RedisCluster, RedisServer};
use crate::support::{ADMIN_TOKEN, Reply, TestProxy, config, eventually, get, send, trace_init};

mod bounds;

const RULES: &str = r#"routes:
  - { name: docs, match: "GET /docs/{id}" }
  - { name: threads, match: "GET /threads/{id}", tags: ["thread:{id}"] }
  - { name: posts, match: "GET /threads/{id}/posts", tags: ["thread:{id}", "posts"] }
invalidate:
  - { name: author-edit, match: "PUT /authors/{name}", purge_tags: ["author:{name}"] }
  - { name: new-post, match: "POST /threads/{id}/posts", purge_tags: ["thread:{id}"] }
"#;

/// Every replica is reached under one name, as behind a Service.
const HOST: (&str, &str) = ("host", "api.test");

/// The app: GETs answer `<path> v<n>` (n counts the GETs of the path), the
/// documents tagged with `Surrogate-Key: doc:<id> docs author:<a>` and
/// `Cache-Tag: lang:en`; `/docs/slow` answers after `slow`.
#[derive(Clone, Default)]
struct Tagged {
    seen: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    slow: Duration,
}

impl Respond for Tagged {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_string();
        let n = {
            let mut map = self.seen.lock().unwrap();
            let n = map.entry(path.clone()).or_default();
            *n += 1;
            *n
        };
        let mut reply = ResponseTemplate::new(200).set_body_string(format!("{path} v{n}"));
        if let Some(id) = path.strip_prefix("/docs/") {
            let author = if id == "3" { "b" } else { "a" };
            reply = reply
                .insert_header("surrogate-key", format!("doc:{id} docs author:{author}"))
                .insert_header("cache-tag", "lang:en");
        }
        if path == "/docs/slow" {
            reply = reply.set_delay(self.slow);
        }
        reply
    }
}

impl Tagged {
    async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        for m in ["PUT", "POST"] {
            Mock::given(method(m))
                .respond_with(ResponseTemplate::new(204))
                .mount(&server)
                .await;
        }
        server
    }
}

async fn fetch(proxy: &TestProxy, path: &str) -> Reply {
    get(&proxy.url(path), &[HOST]).await
}

pub(crate) async fn admin_purge_tags(proxy: &TestProxy, tags: &[&str]) -> Reply {
    let body = serde_json::json!({ "tags": tags }).to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = proxy.admin_url("/admin/purge");
    send(Method::POST, &url, &[("authorization", &auth)], body).await
}

pub(crate) async fn explain(proxy: &TestProxy, path: &str) -> Value {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = proxy.admin_url(&format!("/admin/explain?url={path}&header=Host:api.test"));
    let reply = get(&url, &[("authorization", &auth)]).await;
    serde_json::from_slice(&reply.body).expect("explain is JSON")
}

/// Until `path` through `proxy` answers other than `before` (a purge on
/// another replica reaches this one's L1 by message).
async fn changes(proxy: &TestProxy, path: &str, before: &str) {
    let changed = eventually(Duration::from_secs(3), || async {
        fetch(proxy, path).await.text() != before
    })
    .await;
    assert!(changed, "{path}: purged, no longer {before}");
}

/// Until `path` is a hit through `proxy` (a remote store writes in the
/// background).
async fn hit(proxy: &TestProxy, path: &str) -> Reply {
    for _ in 0..150 {
        let reply = fetch(proxy, path).await;
        if reply.x_cache() == "HIT" {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} becomes a hit within 3 s");
}

/// The whole story on one deployment: `a` fills, `b` writes and purges
/// (the same proxy for the memory store).
async fn tags_purge_what_they_name(a: &TestProxy, b: &TestProxy, app: &Tagged) {
    header_tags(a, b).await;
    route_tags(a, b).await;
    admin_tags(a, b, app).await;
    let m = b.scrape().await;
    for rule in ["author-edit", "new-post", "admin"] {
        assert_eq!(
            m.sample("cachecar_tag_purges_total", &[("rule", rule)]),
            1.0
        );
    }
}

/// The app's tag headers: kept from the client, shown by explain, purged
/// by a rule's `purge_tags` with the mutation's capture.
async fn header_tags(a: &TestProxy, b: &TestProxy) {
    for doc in ["/docs/1", "/docs/2", "/docs/3"] {
        let miss = fetch(a, doc).await;
        assert_eq!(miss.x_cache(), "MISS");
        let hit = hit(b, doc).await;
        for reply in [&miss, &hit] {
            assert_eq!(reply.header("surrogate-key"), "", "tags stay in the cache");
            assert_eq!(reply.header("cache-tag"), "");
        }
    }
    let shown = explain(a, "/docs/1").await;
    let tags: Vec<&str> = shown["entry"]["tags"]
        .as_array()
        .expect("explain lists the entry's tags")
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["author:a", "doc:1", "docs", "lang:en"]);
    let doc1 = hit(a, "/docs/1").await.text();
    let doc2 = hit(a, "/docs/2").await.text();
    let doc3 = hit(a, "/docs/3").await.text();
    let put = send(Method::PUT, &b.url("/authors/a"), &[HOST], "{}").await;
    assert_eq!(put.status, 204);
    changes(a, "/docs/1", &doc1).await;
    changes(a, "/docs/2", &doc2).await;
    assert_eq!(hit(a, "/docs/3").await.text(), doc3, "author b untouched");
}

/// The route's tags from captures, purged by a rule.
async fn route_tags(a: &TestProxy, b: &TestProxy) {
    let mut threads = Vec::new();
    for p in ["/threads/7", "/threads/7/posts", "/threads/8"] {
        fetch(a, p).await;
        hit(b, p).await;
        threads.push(hit(a, p).await.text());
    }
    let post = send(Method::POST, &b.url("/threads/7/posts"), &[HOST], "{}").await;
    assert_eq!(post.status, 204);
    changes(a, "/threads/7", &threads[0]).await;
    changes(a, "/threads/7/posts", &threads[1]).await;
    assert_eq!(hit(a, "/threads/8").await.text(), threads[2]);
}

/// The admin API purges a header tag and a route tag.
async fn admin_tags(a: &TestProxy, b: &TestProxy, app: &Tagged) {
    let doc3 = hit(a, "/docs/3").await.text();
    let doc1 = hit(a, "/docs/1").await.text();
    let posts = hit(a, "/threads/7/posts").await.text();
    let thread8 = hit(a, "/threads/8").await.text();
    let purged = admin_purge_tags(b, &["docs", "posts"]).await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    changes(a, "/docs/3", &doc3).await;
    changes(a, "/docs/1", &doc1).await;
    changes(a, "/threads/7/posts", &posts).await;
    assert_eq!(hit(a, "/threads/8").await.text(), thread8);
    let fetched = app.seen.lock().unwrap()["/threads/8"];
    assert!(fetched <= 2, "/threads/8 filled once per replica at most");
}

fn store_config(upstream: &str, cache: &str) -> String {
    config(upstream, &format!("{cache}{RULES}"))
}

fn redis_cache(store: &str, redis: &str) -> String {
    let l1 = if store == "tiered" {
        "  l1: { max_bytes: 8MiB, ttl: 60s }\n"
    } else {
        ""
    };
    format!(
        "cache:\n  store: {store}\n  redis: {{ {redis}, timeout: 500ms, key_prefix: \"cc:\" }}\n{l1}"
    )
}

#[tokio::test]
async fn tags_on_the_memory_store() {
    trace_init();
    let app = Tagged::default();
    let upstream = app.serve().await;
    let proxy = TestProxy::start(&store_config(&upstream.uri(), "")).await;
    tags_purge_what_they_name(&proxy, &proxy, &app).await;
}

#[tokio::test]
async fn tags_on_redis_and_tiered_across_replicas() {
    trace_init();
    for store in ["redis", "tiered"] {
        let redis = RedisServer::start().await;
        let app = Tagged::default();
        let upstream = app.serve().await;
        let cache = redis_cache(store, &format!("url: \"{}\"", redis.url()));
        let yaml = store_config(&upstream.uri(), &cache);
        let (a, b) = (TestProxy::start(&yaml).await, TestProxy::start(&yaml).await);
        tags_purge_what_they_name(&a, &b, &app).await;
        assert!(
            !redis.keys("cc:g:t:author:a").await.is_empty(),
            "{store}: a tag is one counter"
        );
    }
}

#[tokio::test]
async fn tags_on_a_redis_cluster() {
    trace_init();
    let cluster = RedisCluster::start().await;
    let seeds: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    for store in ["redis", "tiered"] {
        for node in &cluster.nodes {
            let _: String = node.cmd(&["FLUSHALL"]).await;
        }
        let app = Tagged::default();
        let upstream = app.serve().await;
        let cache = redis_cache(store, &format!("cluster: [{}]", seeds.join(", ")));
        let yaml = store_config(&upstream.uri(), &cache);
        let (a, b) = (TestProxy::start(&yaml).await, TestProxy::start(&yaml).await);
        tags_purge_what_they_name(&a, &b, &app).await;
    }
}

/// A fill in flight when a tag it carries is purged: its response answers
/// the request that fetched it, and is never served after the purge.
async fn raced_fill_is_not_served(cache: &str) {
    let app = Tagged {
        slow: Duration::from_millis(600),
        ..Tagged::default()
    };
    let upstream = app.serve().await;
    let proxy = Arc::new(TestProxy::start(&store_config(&upstream.uri(), cache)).await);
    let filling = {
        let proxy = proxy.clone();
        tokio::spawn(async move { fetch(&proxy, "/docs/slow").await })
    };
    // The request has reached the app (its lookup is done) before the purge.
    let reached = eventually(Duration::from_secs(3), || async {
        app.seen.lock().unwrap().contains_key("/docs/slow")
    })
    .await;
    assert!(reached);
    assert_eq!(admin_purge_tags(&proxy, &["docs"]).await.status, 200);
    let first = filling.await.unwrap();
    assert_eq!(
        first.text(),
        "/docs/slow v1",
        "the fetching request gets it"
    );
    // Give a background write the time it would take.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = fetch(&proxy, "/docs/slow").await;
    assert_eq!(
        after.text(),
        "/docs/slow v2",
        "{cache}: the raced fill is not served"
    );
    // A fill no purge raced is stored as usual (a remote store writes in
    // the background, so a request may refill before it lands).
    assert_ne!(hit(&proxy, "/docs/slow").await.text(), "/docs/slow v1");
}

#[tokio::test]
async fn a_fill_racing_a_tag_purge_is_never_served_after_it() {
    trace_init();
    raced_fill_is_not_served("").await;
    let redis = RedisServer::start().await;
    for store in ["redis", "tiered"] {
        let cache = redis_cache(store, &format!("url: \"{}\"", redis.url()));
        raced_fill_is_not_served(&cache).await;
        redis.cmd::<String>(&["FLUSHALL"]).await;
    }
}

/// `MGET` calls since `CONFIG RESETSTAT`.
async fn mgets(redis: &RedisServer) -> u64 {
    let info: String = redis.cmd(&["INFO", "commandstats"]).await;
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_mget:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// On the redis store, a hit on an entry with the app's tags reads them in
/// a second `MGET`; route tags ride in the first (docs/redis.md, "Round
/// trips").
#[tokio::test]
async fn the_apps_tags_cost_a_hit_one_more_round_trip_on_redis() {
    trace_init();
    let redis = RedisServer::start().await;
    let app = Tagged::default();
    let upstream = app.serve().await;
    let cache = redis_cache("redis", &format!("url: \"{}\"", redis.url()));
    let proxy = TestProxy::start(&store_config(&upstream.uri(), &cache)).await;
    for (path, expected) in [("/docs/1", 2), ("/threads/7", 1)] {
        fetch(&proxy, path).await;
        hit(&proxy, path).await;
        let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
        assert_eq!(fetch(&proxy, path).await.x_cache(), "HIT");
        assert_eq!(mgets(&redis).await, expected, "{path}");
    }
}
