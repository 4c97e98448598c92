//! Negative and error caching under the operator's control: `status_ttl`
//! per route and in `defaults`; 4xx other than 404 and 410, and 5xx, only
//! when listed.

use super::*;

/// A 400 with `max-age` is not stored by default: one bad request would
/// deny the URL to everyone for a minute. A listed 400 is.
#[tokio::test]
async fn client_errors_are_stored_only_when_listed() {
    trace_init();
    let (upstream, proxy) = plain(vec![respond(
        400,
        &[("cache-control", "max-age=60")],
        "bad",
    )])
    .await;
    get(&proxy.url("/x"), &[]).await;
    let second = get(&proxy.url("/x"), &[]).await;
    assert_eq!(second.status, 400);
    assert!(
        second.header("cache-status").contains("detail=status"),
        "{second:?}"
    );
    assert_eq!(upstream.count().await, 2);

    let rules = "defaults: { ttl: origin, status_ttl: { 400: origin } }\nroutes:\n  - { name: all, match: \"GET /{*p}\" }\n";
    let upstream = Scripted::start(vec![respond(
        400,
        &[("cache-control", "max-age=60")],
        "bad",
    )])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/x"), &[]).await;
    assert_eq!(get(&proxy.url("/x"), &[]).await.x_cache(), "HIT");
    assert_eq!(upstream.count().await, 1);
}

/// Per-status lifetimes, like nginx's `proxy_cache_valid 404 1m`: a route's
/// 404s live for their own ttl, shorter than the route's; 5xx are stored
/// only where listed, for the time listed.
#[tokio::test]
async fn per_status_ttls_apply_per_route() {
    trace_init();
    let rules = "defaults: { ttl: 1h }\n\
                 routes:\n  \
                 - { name: items, match: \"GET /items/{id}\", status_ttl: { 404: 10s, 5xx: 2s } }\n  \
                 - { name: other, match: \"GET /{*p}\" }\n";
    let upstream = Scripted::start(vec![respond(404, &[], "gone")]).await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/items/1"), &[]).await;
    proxy.clock.advance(Duration::from_secs(9));
    assert_eq!(get(&proxy.url("/items/1"), &[]).await.x_cache(), "HIT");
    proxy.clock.advance(Duration::from_secs(2));
    assert_eq!(get(&proxy.url("/items/1"), &[]).await.x_cache(), "MISS");
    // Another route keeps the route's ttl for its 404s.
    get(&proxy.url("/a"), &[]).await;
    proxy.clock.advance(Duration::from_secs(60));
    assert_eq!(get(&proxy.url("/a"), &[]).await.x_cache(), "HIT");

    let upstream = Scripted::start(vec![respond(503, &[], "down")]).await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/items/2"), &[]).await;
    let hit = get(&proxy.url("/items/2"), &[]).await;
    assert_eq!((hit.status.as_u16(), hit.x_cache().as_str()), (503, "HIT"));
    proxy.clock.advance(Duration::from_secs(3));
    assert_eq!(get(&proxy.url("/items/2"), &[]).await.x_cache(), "MISS");
    get(&proxy.url("/b"), &[]).await;
    assert_eq!(
        get(&proxy.url("/b"), &[]).await.x_cache(),
        "MISS",
        "unlisted 5xx"
    );
}
