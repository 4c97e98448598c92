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

/// `s-maxage` carries `proxy-revalidate` for a shared cache (RFC 9111
/// §5.2.2.10): a configured `stale_if_error` does not serve it stale when
/// the origin fails; a `max-age` response is.
#[tokio::test]
async fn s_maxage_responses_are_not_served_stale_on_error() {
    trace_init();
    let rules = "defaults: { ttl: origin, stale_if_error: 60s }\nroutes:\n  - { name: all, match: \"GET /{*p}\" }\n";
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "s-maxage=1")], "shared"),
        respond(503, &[], "down"),
    ])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/x"), &[]).await;
    proxy.clock.advance(Duration::from_millis(1_100));
    let r = get(&proxy.url("/x"), &[]).await;
    assert_eq!(r.status, 503, "{r:?}");

    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "max-age=1")], "private-ok"),
        respond(503, &[], "down"),
    ])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/x"), &[]).await;
    proxy.clock.advance(Duration::from_millis(1_100));
    let r = get(&proxy.url("/x"), &[]).await;
    assert_eq!((r.status.as_u16(), r.x_cache().as_str()), (200, "STALE"));
}

/// An expired entry with no validator and no stale window is still kept
/// for `keep_stale`, so a request's `max-stale` (or `stale-if-error`) has
/// something to serve; after that it is gone.
#[tokio::test]
async fn expired_entries_are_kept_for_max_stale() {
    trace_init();
    // The default: kept for five minutes.
    let (upstream, proxy) = plain(vec![
        respond(200, &[("cache-control", "max-age=1")], "kept"),
        respond(200, &[("cache-control", "max-age=1")], "new"),
    ])
    .await;
    get(&proxy.url("/x"), &[]).await;
    proxy.clock.advance(Duration::from_secs(11));
    let r = get(&proxy.url("/x"), &[("cache-control", "max-stale=60")]).await;
    assert_eq!(
        (r.text().as_str(), r.x_cache().as_str()),
        ("kept", "STALE"),
        "{r:?}"
    );
    let r = get(&proxy.url("/x"), &[("cache-control", "max-stale=5")]).await;
    assert_eq!(
        r.text(),
        "new",
        "ten seconds stale is more than max-stale=5"
    );
    assert_eq!(upstream.count().await, 2);

    // Past keep_stale nothing is left to accept.
    let rules = "defaults: { ttl: origin, keep_stale: 30s }\nroutes:\n  - { name: all, match: \"GET /{*p}\" }\n";
    let upstream = Scripted::start(vec![
        respond(200, &[("cache-control", "max-age=1")], "kept"),
        respond(200, &[("cache-control", "max-age=1")], "new"),
    ])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/y"), &[]).await;
    proxy.clock.advance(Duration::from_secs(40));
    let r = get(&proxy.url("/y"), &[("cache-control", "max-stale")]).await;
    assert_eq!(r.text(), "new");
}

/// A HEAD on a stale entry revalidates with a conditional HEAD, never a
/// GET: a 304 refreshes the entry, as does a 200 with the same strong
/// validator (RFC 9111 §4.3.5); a different one is answered as it came.
#[tokio::test]
async fn head_on_a_stale_entry_revalidates_with_head() {
    trace_init();
    let (upstream, proxy) = plain(vec![
        respond(
            200,
            &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
            "0123456789",
        ),
        respond(
            304,
            &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
            "",
        ),
    ])
    .await;
    get(&proxy.url("/x"), &[]).await;
    proxy.clock.advance(Duration::from_millis(1_100));
    let head = send(Method::HEAD, &proxy.url("/x"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "10");
    assert_eq!(head.x_cache(), "REVALIDATED");
    let requests = upstream.requests().await;
    assert_eq!(requests[1].method, wiremock::http::Method::HEAD);
    assert_eq!(requests[1].headers["if-none-match"], "\"v1\"");
    let hit = get(&proxy.url("/x"), &[]).await;
    assert_eq!(
        (hit.x_cache().as_str(), hit.text().as_str()),
        ("HIT", "0123456789")
    );
    assert_eq!(upstream.count().await, 2);
}

/// A 200 to a HEAD revalidation with another validator is passed on; the
/// stale entry is left for a GET to replace.
#[tokio::test]
async fn head_revalidation_with_a_new_validator_is_passed_on() {
    trace_init();
    let (upstream, proxy) = plain(vec![
        respond(
            200,
            &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
            "old",
        ),
        respond(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"v2\"")],
            "",
        ),
        respond(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"v2\"")],
            "new",
        ),
    ])
    .await;
    get(&proxy.url("/y"), &[]).await;
    proxy.clock.advance(Duration::from_millis(1_100));
    let head = send(Method::HEAD, &proxy.url("/y"), &[], "").await;
    assert_eq!(
        (head.status.as_u16(), head.header("etag").as_str()),
        (200, "\"v2\"")
    );
    assert_eq!(
        upstream.requests().await[1].method,
        wiremock::http::Method::HEAD
    );
    assert_eq!(get(&proxy.url("/y"), &[]).await.text(), "new");
    assert_eq!(upstream.count().await, 3);
}
