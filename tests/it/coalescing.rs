//! Stampede protection: concurrent misses for one key make one upstream
//! request, and the edge cases around it.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::support::{Reply, Scripted, TestProxy, config, get, respond, trace_init};

const RULES: &str = "routes:\n  - { name: all, match: \"GET /{*p}\" }\n";

async fn concurrently(url: String, n: usize) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

/// Hundreds of concurrent cold requests make one upstream request, and
/// every one of them gets the response.
#[tokio::test]
async fn a_stampede_makes_one_upstream_request() {
    trace_init();
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "max-age=60")], "the one answer")
            .set_delay(Duration::from_millis(500)),
    ])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), RULES)).await;
    let replies = concurrently(proxy.url("/cold"), 300).await;
    assert_eq!(upstream.count().await, 1);
    assert!(
        replies
            .iter()
            .all(|r| r.status == 200 && r.text() == "the one answer")
    );
    let collapsed = replies
        .iter()
        .filter(|r| r.header("cache-status") == "cachecar; fwd=miss; collapsed")
        .count();
    let hits = replies.iter().filter(|r| r.x_cache() == "HIT").count();
    assert_eq!(collapsed + hits, 299, "all but the leader waited or hit");
    assert_eq!(
        proxy
            .counter("cachecar_coalesced_requests_total", &[("route", "all")])
            .await,
        collapsed as f64
    );
}

/// An uncacheable answer releases the waiters at once (they go upstream
/// themselves), and the key is then remembered: later requests do not wait.
#[tokio::test]
async fn uncacheable_answers_release_waiters_and_are_remembered() {
    trace_init();
    let delay = Duration::from_millis(400);
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "no-store")], "private").set_delay(delay),
    ])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), RULES)).await;
    let started = Instant::now();
    let replies = concurrently(proxy.url("/u"), 10).await;
    let took = started.elapsed();
    assert!(replies.iter().all(|r| r.text() == "private"));
    assert_eq!(
        upstream.count().await,
        10,
        "each waiter went upstream itself"
    );
    assert!(
        took < delay * 3,
        "waiters were released when the leader answered ({took:?})"
    );
    // Hit-for-miss: now nobody waits for anybody.
    let started = Instant::now();
    concurrently(proxy.url("/u"), 5).await;
    assert!(
        started.elapsed() < delay * 2,
        "no waiting once known uncacheable"
    );
    assert_eq!(upstream.count().await, 15);
}

/// A waiter gives up after `wait_timeout`, goes upstream itself, and does
/// not store what it gets.
#[tokio::test]
async fn waiters_give_up_after_the_wait_timeout() {
    trace_init();
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "max-age=60")], "slow")
            .set_delay(Duration::from_millis(1_500)),
    ])
    .await;
    let rules = format!("cache: {{ coalesce: {{ wait_timeout: 200ms }} }}\n{RULES}");
    let proxy = TestProxy::start(&config(&upstream.server.uri(), &rules)).await;
    let replies = concurrently(proxy.url("/w"), 4).await;
    let timed_out = replies
        .iter()
        .filter(|r| r.header("cache-status").contains("detail=wait-timeout"))
        .count();
    assert_eq!(timed_out, 3, "{replies:?}");
    assert_eq!(upstream.count().await, 4);
    assert_eq!(
        get(&proxy.url("/w"), &[]).await.x_cache(),
        "HIT",
        "the leader stored"
    );
}

/// A leader whose client disconnects still completes the fill for the
/// waiters and the cache.
#[tokio::test]
async fn a_disconnecting_leader_does_not_cancel_the_fill() {
    trace_init();
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "max-age=60")], "filled")
            .set_delay(Duration::from_millis(500)),
    ])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), RULES)).await;
    let mut leader = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = format!("GET /d HTTP/1.1\r\nhost: {}\r\n\r\n", proxy.addr);
    leader.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let follower = tokio::spawn({
        let url = proxy.url("/d");
        async move { get(&url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(leader); // the leader's client goes away mid-fill
    let follower = follower.await.unwrap();
    assert_eq!(follower.text(), "filled");
    assert!(
        follower.header("cache-status").contains("collapsed"),
        "{follower:?}"
    );
    assert_eq!(get(&proxy.url("/d"), &[]).await.x_cache(), "HIT");
    assert_eq!(upstream.count().await, 1);
}

/// A failing upstream gets one request per key, not a herd: waiters get
/// the leader's error.
#[tokio::test]
async fn a_failing_upstream_is_not_stampeded() {
    trace_init();
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "max-age=60")], "late").set_delay(Duration::from_secs(3)),
    ])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), RULES)).await;
    let started = Instant::now();
    let replies = concurrently(proxy.url("/f"), 10).await;
    assert!(replies.iter().all(|r| r.status == 504), "{replies:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2_900),
        "one timeout, not ten in a row"
    );
    assert_eq!(upstream.count().await, 1);
}

/// With coalescing off, every miss goes upstream.
#[tokio::test]
async fn coalescing_can_be_turned_off() {
    trace_init();
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "max-age=60")], "x").set_delay(Duration::from_millis(300)),
    ])
    .await;
    let rules = format!("cache: {{ coalesce: {{ enabled: false }} }}\n{RULES}");
    let proxy = TestProxy::start(&config(&upstream.server.uri(), &rules)).await;
    concurrently(proxy.url("/o"), 5).await;
    assert_eq!(upstream.count().await, 5);
}
