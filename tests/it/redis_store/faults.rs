//! Redis frozen, killed, absent at start, full, or holding corrupt values: requests never fail, and caching resumes.

use super::*;

/// SIGSTOP: connections open, nothing answers, the worst case for a client.
async fn frozen_redis(store: &str) {
    trace_init();
    let stack = Stack::start(store).await;
    let proxy = TestProxy::start(&stack.yaml).await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "warm");

    stack.redis.freeze();
    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        let r = fetch(&proxy.url(&format!("/docs/{}", n % 3))).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status, 200, "request {n}");
        assert!(r.text().starts_with("/docs/"));
    }
    eprintln!("{store}: slowest of 20 requests with redis frozen: {slowest:?}");
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    assert_eq!(get(&proxy.admin_url("/readyz"), &[]).await.status, 200);
    assert_eq!(status(&proxy).await["cache"]["store"]["up"], false);
    assert_eq!(
        proxy
            .metric("cachecar_store_circuit_open", &[("backend", store)])
            .await,
        1.0
    );
    assert!(
        proxy
            .metric("cachecar_store_errors_total", &[("backend", store)])
            .await
            >= 3.0
    );

    stack.redis.thaw();
    assert!(caching_resumes(&proxy, "/docs/7").await, "caching resumes");
    assert_eq!(status(&proxy).await["cache"]["store"]["circuit"], "closed");
    assert_eq!(get(&proxy.admin_url("/readyz"), &[]).await.status, 200);
}

#[tokio::test]
async fn frozen_redis_costs_requests_at_most_the_timeout() {
    frozen_redis("redis").await;
}

#[tokio::test]
async fn frozen_redis_under_the_tiered_store_too() {
    frozen_redis("tiered").await;
}

#[tokio::test]
async fn killed_redis_fails_open_and_caching_resumes_when_it_returns() {
    trace_init();
    let mut stack = Stack::start("redis").await;
    let proxy = TestProxy::start(&stack.yaml).await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "warm");

    stack.redis.kill();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(fetch(&proxy.url("/docs/1")).await.status, 200);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    assert_eq!(
        proxy
            .metric("cachecar_store_up", &[("backend", "redis")])
            .await,
        0.0
    );
    assert_eq!(get(&proxy.admin_url("/readyz"), &[]).await.status, 200);

    // Back, empty (no persistence): the breaker's probe re-admits it.
    stack.redis.launch().await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "caching resumes");
    assert_eq!(
        proxy
            .metric("cachecar_store_up", &[("backend", "redis")])
            .await,
        1.0
    );
}

#[tokio::test]
async fn cachecar_starts_without_redis_and_uses_it_when_it_appears() {
    trace_init();
    let mut redis = RedisServer::unstarted();
    let app = Versions::default();
    let upstream = app.serve().await;
    let yaml = redis_config(&upstream.uri(), "tiered", &url_line(&redis), "");
    let proxy = TestProxy::start(&yaml).await;
    assert_eq!(get(&proxy.admin_url("/readyz"), &[]).await.status, 200);
    for _ in 0..3 {
        let r = fetch(&proxy.url("/docs/1")).await;
        assert_eq!((r.status.as_u16(), r.x_cache().as_str()), (200, "MISS"));
    }
    redis.launch().await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "caching starts");
}

#[tokio::test]
async fn redis_out_of_memory_is_a_miss_not_an_error() {
    trace_init();
    let stack = Stack::start("redis").await;
    let proxy = TestProxy::start(&stack.yaml).await;
    over_maxmemory(&stack.redis).await;

    for n in 0..10 {
        let started = Instant::now();
        let r = fetch(&proxy.url(&format!("/docs/{}", n % 2))).await;
        assert_eq!(r.status, 200);
        assert_ne!(r.x_cache(), "HIT");
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert!(
        proxy
            .metric("cachecar_store_errors_total", &[("backend", "redis")])
            .await
            >= 1.0
    );
    // An answering Redis is up: OOM replies do not open the circuit.
    assert_eq!(status(&proxy).await["cache"]["store"]["circuit"], "closed");

    let _: () = stack.redis.cmd(&["CONFIG", "SET", "maxmemory", "0"]).await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "caching resumes");
}

#[tokio::test]
async fn corrupt_entries_in_redis_are_refetched_and_replaced() {
    trace_init();
    let stack = Stack::start("redis").await;
    let proxy = TestProxy::start(&stack.yaml).await;
    assert!(caching_resumes(&proxy, "/docs/1").await);
    let keys = stack.redis.keys("cc:e:*").await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    // Truncated, then garbage: never served, never an error.
    let mut conn = stack.redis.conn().await;
    let value: Vec<u8> = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let truncated = value[..value.len() / 2].to_vec();
    for bad in [truncated, b"\x00garbage".to_vec()] {
        let _: () = redis::cmd("SET")
            .arg(&keys[0])
            .arg(bad)
            .query_async(&mut conn)
            .await
            .unwrap();
        let before = stack.app.count("/docs/1");
        let r = fetch(&proxy.url("/docs/1")).await;
        assert_eq!((r.status.as_u16(), r.x_cache().as_str()), (200, "MISS"));
        assert!(r.text().starts_with("/docs/1 v"));
        assert_eq!(stack.app.count("/docs/1"), before + 1);
        assert!(caching_resumes(&proxy, "/docs/1").await, "replaced");
    }
}

#[tokio::test]
async fn a_purge_made_while_redis_is_frozen_is_applied_when_it_returns() {
    trace_init();
    let stack = Stack::start("redis").await;
    let (a, b) = (
        TestProxy::start(&stack.yaml).await,
        TestProxy::start(&stack.yaml).await,
    );
    assert!(caching_resumes(&a, "/docs/1").await);
    let cached = fetch(&a.url("/docs/1")).await.text();
    assert_eq!(fetch(&b.url("/docs/1")).await.text(), cached);

    stack.redis.freeze();
    // The app applies the mutation; the purge cannot reach Redis and waits.
    assert_eq!(put(&a, "/docs/1").await.status, 204);
    let pending = status(&a).await["cache"]["store"]["pending_purges"].as_u64();
    assert!(pending >= Some(1), "{pending:?}");
    let admin = send(
        Method::POST,
        &a.admin_url("/admin/purge"),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        r#"{"targets": ["GET /docs/2"]}"#,
    )
    .await;
    assert_eq!(admin.status, 503);
    assert!(admin.text().contains("queued"), "{}", admin.text());

    stack.redis.thaw();
    // A never serves what it purged, even before the replay.
    for _ in 0..5 {
        assert_ne!(fetch(&a.url("/docs/1")).await.text(), cached);
    }
    assert!(
        eventually(Duration::from_secs(15), || async {
            status(&a).await["cache"]["store"]["pending_purges"] == 0
        })
        .await,
        "the purges are replayed"
    );
    assert_ne!(fetch(&b.url("/docs/1")).await.text(), cached);
}
