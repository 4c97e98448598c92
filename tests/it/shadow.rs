//! Shadow mode: a route that fills and looks up the cache as it would, but
//! answers every request from the app and counts where the cache would have
//! served something else. A missing invalidation rule shows as mismatches
//! after a write; a complete one shows none; the client always gets the
//! app's answer; fields that change on every call can be left out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{Reply, TestProxy, config, get, send, trace_init};

/// The app: an item's summary reflects how often the item was written
/// (`v`), and carries a `generated_at` that changes on every call.
#[derive(Clone, Default)]
pub(crate) struct Items {
    version: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Respond for Items {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if req.method.as_str() == "PUT" {
            self.version.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(204);
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let v = self.version.load(Ordering::SeqCst) + 1;
        let body = format!(
            r#"{{"path":"{}","v":{v},"generated_at":{call}}}"#,
            req.url.path()
        );
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_string(body)
    }
}

impl Items {
    pub(crate) async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        for m in ["GET", "PUT"] {
            Mock::given(method(m))
                .respond_with(self.clone())
                .mount(&server)
                .await;
        }
        server
    }
}

/// The summary route in shadow; `rule` is the invalidation it has (or not).
pub(crate) fn shadow_config(upstream: &str, shadow: &str, rule: &str) -> String {
    let routes = format!(
        "routes:\n  - name: summary\n    match: \"GET /items/{{id}}/summary\"\n    mode: shadow\n{shadow}{rule}"
    );
    config(upstream, &routes)
}

pub(crate) const IGNORE_GENERATED_AT: &str = "    shadow: { ignore_json_fields: [generated_at] }\n";
const RULE: &str =
    "invalidate:\n  - { match: \"PUT /items/{id}\", purge: [\"GET /items/{id}/summary\"] }\n";

fn version(reply: &Reply) -> u64 {
    let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
    json["v"].as_u64().unwrap()
}

async fn status_of(proxy: &TestProxy) -> serde_json::Value {
    let status = get(&proxy.admin_url("/status"), &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    json["shadow"][0].clone()
}

async fn results(proxy: &TestProxy) -> [f64; 4] {
    let m = proxy.scrape().await;
    ["match", "mismatch", "miss", "uncompared"].map(|r| {
        m.sample(
            "cachecar_shadow_requests_total",
            &[("route", "summary"), ("result", r)],
        )
    })
}

/// Fill, then a would-be hit that matches, then a write: the next request
/// is what the rule decides.
async fn write_between_reads(proxy: &TestProxy) -> Reply {
    let url = proxy.url("/items/1/summary");
    let first = get(&url, &[]).await;
    assert_eq!((first.x_cache().as_str(), version(&first)), ("MISS", 1));
    let second = get(&url, &[]).await;
    assert_eq!(
        second.x_cache(),
        "BYPASS",
        "a would-be hit is answered by the app"
    );
    assert!(second.header("cache-status").contains("detail=shadow"));
    assert_eq!(version(&second), 1);
    let put = send(Method::PUT, &proxy.url("/items/1"), &[], "{}").await;
    assert_eq!(put.status, 204);
    get(&url, &[]).await
}

#[tokio::test]
async fn a_missing_rule_shows_as_mismatches_and_the_client_gets_the_app() {
    trace_init();
    let app = Items::default();
    let upstream = app.serve().await;
    let proxy = TestProxy::start(&shadow_config(&upstream.uri(), IGNORE_GENERATED_AT, "")).await;
    assert_eq!(results(&proxy).await, [0.0; 4], "exported at zero");
    let third = write_between_reads(&proxy).await;
    assert_eq!(version(&third), 2, "the app's answer, not the stored one");
    assert_eq!(third.x_cache(), "BYPASS", "the stored v1 would have served");
    assert_eq!(results(&proxy).await, [1.0, 1.0, 1.0, 0.0]);
    let mismatches = proxy
        .metric("cachecar_shadow_mismatches_total", &[("route", "summary")])
        .await;
    assert_eq!(mismatches, 1.0);
    let status = status_of(&proxy).await;
    assert_eq!(status["route"], "summary");
    assert_eq!(
        (
            status["requests"].as_u64(),
            status["would_be_hits"].as_u64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(status["mismatch_ratio"].as_f64(), Some(0.5));
    // The cache holds what a cache-mode route would serve: still v1.
    assert_eq!(
        app.calls.load(Ordering::SeqCst),
        3,
        "every request reached the app"
    );
}

#[tokio::test]
async fn a_complete_rule_shows_no_mismatch() {
    trace_init();
    let app = Items::default();
    let upstream = app.serve().await;
    let yaml = shadow_config(&upstream.uri(), IGNORE_GENERATED_AT, RULE);
    let proxy = TestProxy::start(&yaml).await;
    let third = write_between_reads(&proxy).await;
    assert_eq!(version(&third), 2);
    assert_eq!(
        third.x_cache(),
        "MISS",
        "the rule purged the entry: a would-be miss"
    );
    assert_eq!(results(&proxy).await, [1.0, 0.0, 2.0, 0.0]);
    let fourth = get(&proxy.url("/items/1/summary"), &[]).await;
    assert_eq!(version(&fourth), 2);
    assert_eq!(results(&proxy).await, [2.0, 0.0, 2.0, 0.0]);
    assert_eq!(status_of(&proxy).await["mismatches"], 0);
}

#[tokio::test]
async fn fields_that_change_on_every_call_mismatch_unless_left_out() {
    trace_init();
    let app = Items::default();
    let upstream = app.serve().await;
    let proxy = TestProxy::start(&shadow_config(&upstream.uri(), "", RULE)).await;
    let url = proxy.url("/items/1/summary");
    get(&url, &[]).await;
    get(&url, &[]).await;
    assert_eq!(
        results(&proxy).await,
        [0.0, 1.0, 1.0, 0.0],
        "generated_at differs"
    );
}

/// `defaults.mode: shadow` puts every route in shadow; a route may opt out.
#[tokio::test]
async fn the_whole_config_can_be_in_shadow() {
    trace_init();
    let app = Items::default();
    let upstream = app.serve().await;
    let rest = "defaults: { ttl: 60s, mode: shadow }\nroutes:\n  \
                - { name: summary, match: \"GET /items/{id}/summary\" }\n  \
                - { name: item, match: \"GET /items/{id}\", mode: cache }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), rest)).await;
    for _ in 0..2 {
        get(&proxy.url("/items/1/summary"), &[]).await;
    }
    get(&proxy.url("/items/1"), &[]).await;
    assert_eq!(get(&proxy.url("/items/1"), &[]).await.x_cache(), "HIT");
    let status = get(&proxy.admin_url("/status"), &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    let shadowed = json["shadow"].as_array().unwrap();
    assert_eq!(shadowed.len(), 1, "only the summary route: {shadowed:?}");
    assert_eq!(shadowed[0]["would_be_hits"], 1);
}

/// The adoption path: shadow, read the counts, switch to `mode: cache` by
/// a reload, and the entries filled in shadow serve at once.
#[tokio::test]
async fn switching_to_cache_serves_what_shadow_filled() {
    trace_init();
    let app = Items::default();
    let upstream = app.serve().await;
    let dir = std::env::temp_dir().join(format!("cachecar-shadow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cachecar.yaml");
    let shadowed = shadow_config(&upstream.uri(), IGNORE_GENERATED_AT, RULE);
    let shadowed = format!("reload: {{ poll_interval: 0s, watch: false }}\n{shadowed}");
    std::fs::write(&file, &shadowed).unwrap();
    let proxy = TestProxy::start_file(&file).await;
    let url = proxy.url("/items/1/summary");
    for _ in 0..2 {
        get(&url, &[]).await;
    }
    assert_eq!(status_of(&proxy).await["mismatches"], 0);
    std::fs::write(&file, shadowed.replace("mode: shadow", "mode: cache")).unwrap();
    let auth = format!("Bearer {}", crate::support::ADMIN_TOKEN);
    let reload = send(
        Method::POST,
        &proxy.admin_url("/admin/reload"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let calls = app.calls.load(Ordering::SeqCst);
    let hit = get(&url, &[]).await;
    assert_eq!(
        hit.x_cache(),
        "HIT",
        "filled in shadow, served in cache mode"
    );
    assert_eq!(app.calls.load(Ordering::SeqCst), calls);
    let _ = std::fs::remove_dir_all(&dir);
}
