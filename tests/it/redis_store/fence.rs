//! The fence: once Redis is back after an outage, a replica that found it
//! unreachable serves nothing stored before, because another replica's
//! purges may have been lost meanwhile (that replica stopped before it
//! could replay them).

use super::*;

/// How Redis goes away and comes back.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGSTOP, then SIGCONT.
    Frozen,
    /// Killed, then restarted from its append-only file.
    Restarted,
}

/// B has `/docs/1` cached; Redis goes away; B sees it (its requests fail
/// and its circuit opens); `/docs/1` is written through A, whose purge
/// cannot reach Redis, and A stops before Redis is back. What B answers for
/// `/docs/1` once its circuit has closed again.
async fn read_after_a_lost_purge(outage: Outage, store: &str, fence: bool) -> String {
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let mut stack = Stack::on(redis, store, Versions::default(), "").await;
    stack.yaml = stack.yaml.replace(
        "key_prefix: \"cc:\"",
        &format!("key_prefix: \"cc:\", fence_after_outage: {fence}"),
    );
    let a = TestProxy::start(&stack.yaml).await;
    let b = TestProxy::start(&stack.yaml).await;
    assert!(caching_resumes(&b, "/docs/1").await, "B has it cached");
    let cached = fetch(&b.url("/docs/1")).await.text();
    match outage {
        Outage::Frozen => stack.redis.freeze(),
        Outage::Restarted => stack.redis.kill(),
    }
    for _ in 0..5 {
        assert_eq!(fetch(&b.url("/docs/2")).await.status, 200);
    }
    assert_ne!(status(&b).await["cache"]["store"]["circuit"], "closed");
    assert_eq!(put(&a, "/docs/1").await.status, 204);
    assert_eq!(status(&a).await["cache"]["store"]["pending_purges"], 2);
    a.begin_shutdown();
    a.join().await;
    match outage {
        Outage::Frozen => stack.redis.thaw(),
        Outage::Restarted => stack.redis.launch().await,
    }
    let closed = eventually(Duration::from_secs(15), || async {
        status(&b).await["cache"]["store"]["circuit"] == "closed"
    })
    .await;
    assert!(closed, "B's circuit closes again");
    let read = fetch(&b.url("/docs/1")).await.text();
    assert!(read.starts_with("/docs/1 v"), "{read}");
    if read == cached {
        return format!("the cached {cached}");
    }
    read
}

#[tokio::test]
async fn after_a_freeze_nothing_stored_before_it_is_served() {
    trace_init();
    let read = read_after_a_lost_purge(Outage::Frozen, "redis", true).await;
    assert!(!read.starts_with("the cached"), "B served {read}");
}

#[tokio::test]
async fn after_a_restart_with_its_data_nothing_stored_before_it_is_served() {
    trace_init();
    let read = read_after_a_lost_purge(Outage::Restarted, "redis", true).await;
    assert!(!read.starts_with("the cached"), "B served {read}");
}

#[tokio::test]
async fn after_a_freeze_the_tiered_store_serves_nothing_stored_before_it() {
    trace_init();
    let read = read_after_a_lost_purge(Outage::Frozen, "tiered", true).await;
    assert!(!read.starts_with("the cached"), "B served {read}");
}

/// `fence_after_outage: false` keeps the cache warm through an outage, and
/// so serves what a lost purge should have ended: the trade it makes.
#[tokio::test]
async fn without_the_fence_entries_outlive_an_outage() {
    trace_init();
    // Restarted, not frozen: a frozen Redis still takes in what a replica
    // sends, and runs it when it thaws, so a purge sent then is not lost.
    let read = read_after_a_lost_purge(Outage::Restarted, "redis", false).await;
    assert!(read.starts_with("the cached"), "B served {read}");
}
