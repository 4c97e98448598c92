//! Serving stale: `stale-while-revalidate` and `stale-if-error`.

use super::*;

/// stale-while-revalidate answers stale at once and refreshes once.
#[tokio::test]
async fn stale_while_revalidate_refreshes_once_in_the_background() {
    trace_init();
    let (upstream, proxy) = plain(vec![
        respond(
            200,
            &[("cache-control", "max-age=1, stale-while-revalidate=60")],
            "old",
        ),
        respond(200, &[("cache-control", "max-age=60")], "new")
            .set_delay(Duration::from_millis(300)),
    ])
    .await;
    get(&proxy.url("/x"), &[]).await;
    proxy.clock.advance(Duration::from_millis(1_100));
    let started = std::time::Instant::now();
    let stale: Vec<_> = futures_join((0..20).map(|_| get_owned(proxy.url("/x")))).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "stale answers do not wait"
    );
    for r in &stale {
        assert_eq!((r.x_cache().as_str(), r.text().as_str()), ("STALE", "old"));
    }
    assert!(
        crate::support::eventually(Duration::from_secs(3), || async {
            get(&proxy.url("/x"), &[]).await.text() == "new"
        })
        .await
    );
    assert_eq!(upstream.count().await, 2, "exactly one background refresh");
}

/// stale-if-error answers stale when the upstream answers 5xx or is down,
/// and not once the window has passed.
#[tokio::test]
async fn stale_if_error_serves_stale_when_the_upstream_fails() {
    trace_init();
    let (_upstream, proxy) = plain(vec![
        respond(
            200,
            &[("cache-control", "max-age=1, stale-if-error=60")],
            "saved",
        ),
        respond(503, &[], "down"),
    ])
    .await;
    get(&proxy.url("/x"), &[]).await;
    proxy.clock.advance(Duration::from_millis(1_100));
    let r = get(&proxy.url("/x"), &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str(), r.x_cache().as_str()),
        (200, "saved", "STALE")
    );
    assert!(r.header("cache-status").contains("fwd-status=503"), "{r:?}");

    let upstream = TinyUpstream::start(
        200,
        &[("cache-control", "max-age=1, stale-if-error=2")],
        "saved",
    )
    .await;
    let proxy = TestProxy::start(&config(&upstream.uri(), PLAIN)).await;
    get(&proxy.url("/y"), &[]).await;
    upstream.stop();
    proxy.clock.advance(Duration::from_millis(1_100));
    let r = get(&proxy.url("/y"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "saved"));
    assert!(
        r.header("cache-status").contains("detail=stale-if-error"),
        "{r:?}"
    );
    proxy.clock.advance(Duration::from_millis(2_000));
    assert_eq!(
        get(&proxy.url("/y"), &[]).await.status,
        502,
        "window passed"
    );
}

async fn get_owned(url: String) -> crate::support::Reply {
    get(&url, &[]).await
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
