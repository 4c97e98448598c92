//! Warmup at start and after reloads, and the slow-request counter.

use super::*;

/// The warmed targets are hits for clients sending their hosts.
async fn targets_are_hits(proxy: &TestProxy, authority: &str) {
    let relative = get(&proxy.url("/api/docs/index"), &[("host", authority)]).await;
    assert_eq!(
        relative.x_cache(),
        "HIT",
        "relative targets use the upstream's host"
    );
    let absolute = get(
        &proxy.url("/api/docs/intro?lang=en"),
        &[("host", "api.test")],
    )
    .await;
    assert_eq!(absolute.x_cache(), "HIT");
}

/// Readiness waits for the warmup; a reload that adds a target fetches
/// only that one.
#[tokio::test]
async fn warmup_fills_before_ready_once_per_target_and_again_only_for_new_targets() {
    trace_init();
    let up = upstream().await;
    let d = dir("warmup");
    let file = d.join("cachecar.yaml");
    let authority = up.address().to_string();
    let rules = |warmup: &str| {
        config(
            &up.uri(),
            &format!("reload: {{ watch: false, poll_interval: 0s }}\n{DOCS}warmup:\n{warmup}"),
        )
    };
    write(
        &file,
        &rules("  - GET /api/docs/index\n  - GET http://api.test/api/docs/intro?lang=en\n"),
    );
    let proxy = TestProxy::start_file(&file).await;
    let ready = || async { get(&proxy.admin_url("/readyz"), &[]).await.status == 200 };
    assert!(eventually(Duration::from_secs(10), ready).await);
    // Ready means warm: both fetched once, before any client asked.
    assert_eq!(hits(&up, "/api/docs/index").await, 1);
    assert_eq!(hits(&up, "/api/docs/intro").await, 1);
    assert_eq!(
        proxy
            .metric("cachecar_warmup_total", &[("result", "stored")])
            .await,
        2.0
    );
    targets_are_hits(&proxy, &authority).await;

    // A reload adding a target fetches it; the others are still fresh.
    write(
        &file,
        &rules(
            "  - GET /api/docs/index\n  - GET http://api.test/api/docs/intro?lang=en\n  - GET /api/docs/new\n",
        ),
    );
    assert_eq!(admin_reload(&proxy).await.1["result"], "applied");
    let new_fetched = || async { hits(&up, "/api/docs/new").await == 1 };
    assert!(eventually(Duration::from_secs(5), new_fetched).await);
    let fresh = || async {
        let fresh = [("result", "fresh")];
        proxy.counter("cachecar_warmup_total", &fresh).await == 2.0
    };
    assert!(eventually(Duration::from_secs(5), fresh).await);
    assert_eq!(hits(&up, "/api/docs/index").await, 1);
}

#[tokio::test]
async fn warmup_targets_must_be_gets_of_cached_routes() {
    let up = "http://127.0.0.1:9";
    let bad = config(
        up,
        &format!(
            "{DOCS}warmup:\n  - POST /api/docs/a\n  - GET /elsewhere\n  - GET /api/docs/a\n  - GET /api/docs/a\n  - /api/docs/b\n"
        ),
    );
    let err = cachecar::config::load_str(&bad, &|_| None)
        .expect_err("invalid warmup")
        .to_string();
    for needle in [
        "only GET requests can warm",
        "matches no route",
        "listed twice",
        "expected `GET /path`",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
}

#[tokio::test]
async fn slow_requests_are_counted_per_route() {
    trace_init();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(150)))
        .mount(&server)
        .await;
    let proxy = TestProxy::start(&config(
        &server.uri(),
        &format!("log: {{ slow_request: 100ms, access_sample: 0.0 }}\n{DOCS}"),
    ))
    .await;
    assert_eq!(x_cache(&proxy, "/api/docs/slow").await, "MISS");
    assert_eq!(x_cache(&proxy, "/api/docs/slow").await, "HIT");
    assert_eq!(
        proxy
            .metric("cachecar_slow_requests_total", &[("route", "docs")])
            .await,
        1.0,
        "the miss was slow, the hit was not"
    );
}
