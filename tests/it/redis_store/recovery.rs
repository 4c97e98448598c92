//! Recovery from the faults where Redis answers but cannot serve: loading
//! its data after a restart, out of memory.

use super::*;

/// `n` GETs of `url`, 100 ms apart, each answered; the slowest's time.
async fn steady_traffic(url: String, n: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for _ in 0..n {
        let started = Instant::now();
        assert_eq!(fetch(&url).await.status, 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slowest
}

/// Redis restarting with a dataset that takes seconds to load answers
/// `LOADING` to everything, PING included. Requests are answered upstream
/// meanwhile, and once it has loaded the circuit closes and caching
/// resumes: the probe wants Redis usable, and a `LOADING` answer to it
/// counts as a failed probe, not as no answer at all.
#[tokio::test]
async fn redis_loading_its_data_fails_open_then_caching_resumes() {
    trace_init();
    let (mut stack, b) = loaded_stack().await;
    stack.redis.kill();
    let traffic = tokio::spawn(steady_traffic(b.url("/docs/2"), 50));
    // Down long enough for the circuit to open and the prober to start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_ne!(status(&b).await["cache"]["store"]["circuit"], "closed");
    relaunch_loading(&mut stack.redis).await;
    let slowest = traffic.await.unwrap();
    assert!(slowest < Duration::from_millis(500), "slowest {slowest:?}");
    assert!(
        caching_resumes(&b, "/docs/1").await,
        "caching resumes after loading"
    );
    assert_eq!(status(&b).await["cache"]["store"]["circuit"], "closed");
}

/// A write through A while Redis is down and then loading its data (which
/// holds the entries and counters from before): once B serves from Redis
/// again, it never serves what the write changed.
#[tokio::test]
async fn a_write_while_redis_restarts_and_loads_is_never_read_old_elsewhere() {
    trace_init();
    let (mut stack, b) = loaded_stack().await;
    let a = TestProxy::start(&stack.yaml).await;
    let cached = fetch(&b.url("/docs/1")).await.text();
    stack.redis.kill();
    let traffic = tokio::spawn(steady_traffic(b.url("/docs/2"), 20));
    assert_eq!(put(&a, "/docs/1").await.status, 204);
    relaunch_loading(&mut stack.redis).await;
    traffic.await.unwrap();
    assert!(
        caching_resumes(&b, "/docs/3").await,
        "B serves from Redis again"
    );
    assert_ne!(fetch(&b.url("/docs/1")).await.text(), cached);
}

/// A stack whose Redis holds 20,000 other keys on disk, and replica B on it
/// with `/docs/1` cached and saved with them.
async fn loaded_stack() -> (Stack, TestProxy) {
    let redis = RedisServer::start_with(&["--enable-debug-command", "local"]).await;
    let stack = Stack::on(redis, "redis", Versions::default(), "").await;
    let b = TestProxy::start(&stack.yaml).await;
    assert!(caching_resumes(&b, "/docs/1").await, "warm");
    let populate = ["DEBUG", "POPULATE", "20000", "junk", "10"];
    let _: () = stack.redis.cmd(&populate).await;
    let _: () = stack.redis.cmd(&["SAVE"]).await;
    (stack, b)
}

/// Starts `redis` again from its data, slowly: 20,000 keys at 100 µs each
/// are about 2 s of `LOADING`, with the event loop answering between keys.
async fn relaunch_loading(redis: &mut RedisServer) {
    let slow = [
        "--key-load-delay",
        "100",
        "--loading-process-events-interval-bytes",
        "1024",
    ];
    redis.relaunch_with(&slow).await;
}

/// Redis out of memory refuses every write, but a purge still lands (its
/// counters are a few bytes, written by `allow-oom` scripts): a write
/// through A is never followed by B serving what it ended.
#[tokio::test]
async fn a_purge_lands_while_redis_is_out_of_memory() {
    trace_init();
    let stack = Stack::start("redis").await;
    let (a, b) = (
        TestProxy::start(&stack.yaml).await,
        TestProxy::start(&stack.yaml).await,
    );
    assert!(caching_resumes(&b, "/docs/1").await, "B has it cached");
    let before = fetch(&b.url("/docs/1")).await.text();
    over_maxmemory(&stack.redis).await;

    assert_eq!(put(&a, "/docs/1").await.status, 204);
    let after = fetch(&b.url("/docs/1")).await;
    assert_ne!(after.text(), before, "B served what the purge ended");
    assert_eq!(
        status(&a).await["cache"]["store"]["pending_purges"],
        0,
        "the purge was recorded, not left for later"
    );
}
