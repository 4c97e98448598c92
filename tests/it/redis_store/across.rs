//! Coalescing across replicas: one upstream request for a cold key however
//! many replicas ask, and waiters that give up on a fill that takes too long.

use super::*;

#[tokio::test]
async fn cold_key_through_many_replicas_makes_one_upstream_request() {
    trace_init();
    let app = Versions {
        delay: Duration::from_millis(400),
        ..Default::default()
    };
    let coalesce = "  coalesce: { wait_timeout: 5s, across_instances: true }\n";
    let stack = Stack::with("redis", app, coalesce).await;
    let replicas = [
        TestProxy::start(&stack.yaml).await,
        TestProxy::start(&stack.yaml).await,
        TestProxy::start(&stack.yaml).await,
    ];
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let url = replicas[n % 3].url("/docs/cold");
            tokio::spawn(async move { fetch(&url).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "/docs/cold v1")
        );
    }
    assert_eq!(
        stack.app.count("/docs/cold"),
        1,
        "one upstream request for 3 replicas"
    );
    let collapsed: f64 = {
        let mut sum = 0.0;
        for p in &replicas {
            sum += p
                .counter("cachecar_coalesced_requests_total", &[("route", "docs")])
                .await;
        }
        sum
    };
    assert!(
        collapsed >= 2.0,
        "other replicas waited for the lock holder"
    );
}

#[tokio::test]
async fn waiters_on_another_replicas_fill_give_up_after_wait_timeout() {
    trace_init();
    let app = Versions {
        delay: Duration::from_millis(1500),
        ..Default::default()
    };
    let coalesce = "  coalesce: { wait_timeout: 300ms, across_instances: true }\n";
    let stack = Stack::with("redis", app, coalesce).await;
    let yaml = stack.yaml.replace("timeout: 2s", "timeout: 5s");
    let (a, b) = (TestProxy::start(&yaml).await, TestProxy::start(&yaml).await);
    let leader = tokio::spawn({
        let url = a.url("/docs/slow");
        async move { fetch(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let waiter = fetch(&b.url("/docs/slow")).await;
    let waited = started.elapsed();
    assert_eq!(waiter.status, 200);
    assert_eq!(leader.await.unwrap().status, 200);
    // B gave up on A's lock after 300 ms and fetched itself (1.5 s).
    assert_eq!(stack.app.count("/docs/slow"), 2);
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}
