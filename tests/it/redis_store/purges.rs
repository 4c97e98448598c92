//! A write whose purge cannot reach Redis (`cache.redis.on_purge_failure`):
//! `wait` holds the answer until the purge is replayed (or `purge_wait`
//! passes), `answer` answers at once, `refuse` turns writes away before the
//! app sees them while Redis is known to be unreachable. Each is counted.

use super::*;

/// A stack with the policy, and replica A on it with `/docs/1` cached.
async fn with_policy(policy: &str, wait: &str) -> (Stack, TestProxy) {
    let mut stack = Stack::start("redis").await;
    stack.yaml = stack.yaml.replace(
        "key_prefix: \"cc:\"",
        &format!("key_prefix: \"cc:\", on_purge_failure: {policy}, purge_wait: {wait}"),
    );
    let a = TestProxy::start(&stack.yaml).await;
    assert!(caching_resumes(&a, "/docs/1").await, "A has it cached");
    (stack, a)
}

/// How many PUTs reached the app.
async fn puts(app: &MockServer) -> usize {
    let seen = app.received_requests().await.unwrap_or_default();
    seen.iter().filter(|r| r.method == Method::PUT).count()
}

async fn outcome(proxy: &TestProxy, outcome: &str) -> f64 {
    proxy
        .counter("cachecar_purge_failures_total", &[("outcome", outcome)])
        .await
}

/// Redis frozen for 600 ms: the write's answer waits for its purge, which
/// the prober replays once Redis is back, so a read through another
/// replica right after the answer never sees the old entry.
#[tokio::test]
async fn wait_answers_a_write_once_its_purge_is_recorded() {
    trace_init();
    let (stack, a) = with_policy("wait", "5s").await;
    let b = TestProxy::start(&stack.yaml).await;
    let cached = fetch(&b.url("/docs/1")).await.text();
    stack.redis.freeze();
    let started = Instant::now();
    let write = tokio::spawn({
        let url = a.url("/docs/1");
        async move { send(Method::PUT, &url, &[HOST], "{}").await }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    stack.redis.thaw();
    let write = write.await.unwrap();
    assert_eq!(write.status, 204);
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "the answer waited"
    );
    assert_ne!(fetch(&b.url("/docs/1")).await.text(), cached);
    assert_eq!(outcome(&a, "waited").await, 1.0);
}

/// `answer`: the write is answered at once, and counted as unrecorded.
#[tokio::test]
async fn answer_answers_a_write_at_once_and_counts_it_unrecorded() {
    trace_init();
    let (stack, a) = with_policy("answer", "5s").await;
    stack.redis.freeze();
    let started = Instant::now();
    assert_eq!(put(&a, "/docs/1").await.status, 204);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome(&a, "unrecorded").await, 1.0);
    // A itself never serves what its pending purge ended.
    assert_ne!(fetch(&a.url("/docs/1")).await.x_cache(), "HIT");
    stack.redis.thaw();
}

/// `refuse`: while A's circuit is open, a write is answered 503 with
/// `Retry-After` and never reaches the app; once Redis is back, writes go
/// through again.
#[tokio::test]
async fn refuse_turns_writes_away_while_redis_is_unreachable() {
    trace_init();
    let (stack, a) = with_policy("refuse", "1s").await;
    stack.redis.freeze();
    for _ in 0..5 {
        assert_eq!(fetch(&a.url("/docs/2")).await.status, 200);
    }
    assert_ne!(status(&a).await["cache"]["store"]["circuit"], "closed");
    let refused = put(&a, "/docs/1").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(
        puts(&stack._upstream).await,
        0,
        "the app never saw the write"
    );
    assert_eq!(outcome(&a, "refused").await, 1.0);
    stack.redis.thaw();
    let through = eventually(Duration::from_secs(15), || async {
        put(&a, "/docs/1").await.status == 204
    })
    .await;
    assert!(through, "writes go through once Redis is back");
    assert_eq!(puts(&stack._upstream).await, 1);
}
