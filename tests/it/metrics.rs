//! Metrics move with the flow, and labels come from route names and small
//! enums only.

use http::Method;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{TestProxy, config, get, send, trace_init};

const RULES: &str = r#"routes:
  - { name: docs, match: "GET /docs/{*path}" }
invalidate:
  - { name: docs-edit, match: "PUT /docs/{id}", purge: ["GET /docs/{id}"] }
"#;

/// A metric, its labels, and a value.
type Sample = (&'static str, &'static [(&'static str, &'static str)], f64);

/// Samples after the requests of `counters_follow_the_requests`, and their values.
const EXACT: &[Sample] = &[
    ("cachecar_cache_hits_total", &[("route", "docs")], 2.0),
    ("cachecar_cache_misses_total", &[("route", "docs")], 2.0),
    (
        "cachecar_requests_total",
        &[
            ("route", "docs"),
            ("method", "GET"),
            ("cache_status", "hit"),
        ],
        2.0,
    ),
    (
        "cachecar_requests_total",
        &[("route", "none"), ("cache_status", "bypass")],
        1.0,
    ),
    // 2 GET misses + the PUT
    (
        "cachecar_upstream_requests_total",
        &[("route", "docs"), ("status_class", "2xx")],
        3.0,
    ),
    (
        "cachecar_not_stored_total",
        &[("route", "docs"), ("reason", "authorization")],
        1.0,
    ),
    (
        "cachecar_invalidations_total",
        &[("rule", "docs-edit")],
        1.0,
    ),
    ("cachecar_invalidations_total", &[("rule", "self")], 1.0),
    ("cachecar_memory_store_entries", &[], 1.0),
    ("cachecar_config_generation", &[], 1.0),
    ("cachecar_inflight_requests", &[], 0.0),
];

/// Samples there that are at least these values.
const AT_LEAST: &[Sample] = &[
    ("cachecar_memory_store_bytes", &[], 1.0),
    (
        "cachecar_request_duration_seconds_count",
        &[("route", "docs"), ("cache_status", "hit")],
        2.0,
    ),
    (
        "cachecar_store_operation_duration_seconds_count",
        &[("backend", "memory"), ("op", "lookup")],
        4.0,
    ),
];

/// Hits, misses, upstream requests, not-stored reasons and invalidations
/// are counted per route / rule.
#[tokio::test]
async fn counters_follow_the_requests() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x"))
        .mount(&upstream)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
    get(&proxy.url("/docs/a"), &[]).await; // miss
    get(&proxy.url("/docs/a"), &[]).await; // hit
    get(&proxy.url("/docs/a"), &[]).await; // hit
    get(&proxy.url("/docs/a"), &[("authorization", "Bearer x")]).await; // miss, not stored
    get(&proxy.url("/unrouted/12345"), &[]).await; // bypass
    send(Method::PUT, &proxy.url("/docs/a"), &[], "").await; // invalidation

    let scrape = proxy.scrape().await;
    for &(name, labels, want) in EXACT {
        assert_eq!(scrape.sample(name, labels), want, "{name} {labels:?}");
    }
    for &(name, labels, least) in AT_LEAST {
        assert!(scrape.sample(name, labels) >= least, "{name} {labels:?}");
    }
}

/// No label value is a raw path, query or credential.
#[tokio::test]
async fn labels_never_carry_request_data() {
    trace_init();
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), RULES)).await;
    for i in 0..20 {
        get(
            &proxy.url(&format!("/docs/page-{i}?secret=q{i}")),
            &[("authorization", "Bearer tok")],
        )
        .await;
        get(&proxy.url(&format!("/random/{i}")), &[]).await;
    }
    let text = get(&proxy.admin_url("/metrics"), &[]).await.text();
    for needle in ["page-", "secret", "/random", "tok", "127.0.0.1"] {
        assert!(!text.contains(needle), "metrics leak {needle:?}");
    }
    let series = text
        .lines()
        .filter(|l| l.starts_with("cachecar_requests_total{"))
        .count();
    // Each route's five GET series exist from the start; the URLs add
    // none, only the unrouted request's own.
    let routes = RULES.matches("name:").count();
    assert!(
        series <= 5 * routes + 2,
        "requests_total has {series} series for 40 distinct URLs"
    );
}

/// Every route's main series, the store's error counters and the reload
/// counters are exported at zero from the first scrape after a load, so
/// `rate()` and alerts see the first event; a reload adds the new route's.
#[tokio::test]
async fn series_start_at_zero_before_any_request() {
    trace_init();
    let up = MockServer::start().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        "routes:\n  - { name: docs, match: \"GET /docs/{*p}\" }\n",
    ))
    .await;
    let scrape = proxy.scrape().await;
    for (name, labels) in [
        (
            "cachecar_requests_total",
            vec![
                ("route", "docs"),
                ("method", "GET"),
                ("cache_status", "hit"),
            ],
        ),
        (
            "cachecar_requests_total",
            vec![("route", "docs"), ("cache_status", "bypass")],
        ),
        ("cachecar_cache_hits_total", vec![("route", "docs")]),
        ("cachecar_cache_misses_total", vec![("route", "docs")]),
        (
            "cachecar_upstream_requests_total",
            vec![("route", "docs"), ("status_class", "5xx")],
        ),
        (
            "cachecar_upstream_requests_total",
            vec![("route", "docs"), ("status_class", "timeout")],
        ),
        (
            "cachecar_request_duration_seconds_count",
            vec![("route", "docs"), ("cache_status", "miss")],
        ),
        (
            "cachecar_store_errors_total",
            vec![("backend", "memory"), ("op", "lookup")],
        ),
        ("cachecar_config_reloads_total", vec![("result", "refused")]),
    ] {
        assert_eq!(scrape.sample(name, &labels), 0.0, "{name} {labels:?}");
    }
}
