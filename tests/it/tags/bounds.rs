//! The bounds of `cache.tags`: tags beyond `max_per_entry` or longer than
//! `max_length` are dropped and counted, never an error; the headers read
//! and whether they reach the client are the operator's to choose.

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{admin_purge_tags, explain, fetch, hit};
use crate::support::{TestProxy, config, trace_init};

async fn app(header: &str, tags: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).insert_header(header, tags))
        .mount(&server)
        .await;
    server
}

const ROUTES: &str = "routes:\n  - { name: docs, match: \"GET /docs/{id}\" }\n";

#[tokio::test]
async fn tags_past_the_bounds_are_dropped_and_counted() {
    trace_init();
    let upstream = app("surrogate-key", "e d c b a muchtoolongtag a").await;
    let cache = "cache:\n  tags: { max_per_entry: 3, max_length: 10 }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), &format!("{cache}{ROUTES}"))).await;
    let miss = fetch(&proxy, "/docs/1").await;
    assert_eq!(miss.status, 200, "never an error to the client");
    assert_eq!(miss.header("surrogate-key"), "");
    hit(&proxy, "/docs/1").await;
    let shown = explain(&proxy, "/docs/1").await;
    let kept: Vec<&str> = shown["entry"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["c", "d", "e"], "the first three, in the order sent");
    let m = proxy.scrape().await;
    assert_eq!(
        m.sample("cachecar_tags_dropped_total", &[("reason", "count")]),
        2.0
    );
    assert_eq!(
        m.sample("cachecar_tags_dropped_total", &[("reason", "length")]),
        1.0
    );
    // A dropped tag does not reach the entry.
    admin_purge_tags(&proxy, &["a"]).await;
    assert_eq!(fetch(&proxy, "/docs/1").await.x_cache(), "HIT");
    admin_purge_tags(&proxy, &["e"]).await;
    assert_eq!(fetch(&proxy, "/docs/1").await.x_cache(), "MISS");
}

#[tokio::test]
async fn the_tag_headers_and_their_stripping_are_configurable() {
    trace_init();
    let upstream = app("x-tags", "one,two").await;
    let cache = "cache:\n  tags: { headers: [x-tags], strip: false }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), &format!("{cache}{ROUTES}"))).await;
    assert_eq!(fetch(&proxy, "/docs/1").await.header("x-tags"), "one,two");
    assert_eq!(hit(&proxy, "/docs/1").await.header("x-tags"), "one,two");
    admin_purge_tags(&proxy, &["two"]).await;
    assert_eq!(fetch(&proxy, "/docs/1").await.x_cache(), "MISS");

    // Reading tags can be turned off.
    let off = "cache:\n  tags: { headers: [] }\n";
    let proxy = TestProxy::start(&config(&upstream.uri(), &format!("{off}{ROUTES}"))).await;
    fetch(&proxy, "/docs/1").await;
    hit(&proxy, "/docs/1").await;
    admin_purge_tags(&proxy, &["two"]).await;
    assert_eq!(fetch(&proxy, "/docs/1").await.x_cache(), "HIT");
}
