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
    let debug = ["--enable-debug-command", "local"];
    let mut redis = RedisServer::start_with(&debug).await;
    let app = Versions::default();
    let upstream = app.serve().await;
    let proxy = TestProxy::start(&redis_config(
        &upstream.uri(),
        "redis",
        &url_line(&redis),
        "",
    ))
    .await;
    assert!(caching_resumes(&proxy, "/docs/1").await, "warm");
    let _: () = redis
        .cmd(&["DEBUG", "POPULATE", "20000", "junk", "10"])
        .await;
    let _: () = redis.cmd(&["SAVE"]).await;

    redis.kill();
    let traffic = tokio::spawn(steady_traffic(proxy.url("/docs/2"), 50));
    // Down long enough for the circuit to open and the prober to start.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_ne!(status(&proxy).await["cache"]["store"]["circuit"], "closed");
    // 20,000 keys at 100 µs each: about 2 s of LOADING, with the event
    // loop answering between keys.
    redis
        .relaunch_with(&[
            "--key-load-delay",
            "100",
            "--loading-process-events-interval-bytes",
            "1024",
        ])
        .await;
    let slowest = traffic.await.unwrap();
    assert!(slowest < Duration::from_millis(500), "slowest {slowest:?}");
    assert!(
        caching_resumes(&proxy, "/docs/1").await,
        "caching resumes after loading"
    );
    assert_eq!(status(&proxy).await["cache"]["store"]["circuit"], "closed");
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
