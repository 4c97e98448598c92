//! Targeted cache control (RFC 9213): `CDN-Cache-Control` and cachecar's own
//! `Cachecar-Cache-Control` stand in for `Cache-Control`, so the app can give
//! the sidecar a lifetime other than the one browsers get.

use super::*;

/// Precedence: cachecar's field, then `CDN-Cache-Control`, then
/// `Cache-Control`; the client sees `Cache-Control` and `CDN-Cache-Control`
/// as the app sent them, and never cachecar's own field.
#[tokio::test]
async fn targeted_fields_win_over_cache_control_in_order() {
    trace_init();
    let headers = [
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=1"),
        ("cachecar-cache-control", "max-age=60"),
    ];
    let (upstream, proxy) = plain(vec![respond(200, &headers, "x")]).await;
    let miss = get(&proxy.url("/x"), &[]).await;
    assert_eq!(miss.x_cache(), "MISS");
    assert_eq!(miss.header("cache-control"), "no-store");
    assert_eq!(miss.header("cdn-cache-control"), "max-age=1");
    assert_eq!(miss.header("cachecar-cache-control"), "");
    proxy.clock.advance(Duration::from_secs(30));
    let hit = get(&proxy.url("/x"), &[]).await;
    assert_eq!(hit.x_cache(), "HIT", "cachecar's field gave it 60 s");
    assert_eq!(hit.header("cache-control"), "no-store");
    assert_eq!(hit.header("cachecar-cache-control"), "");
    assert_eq!(upstream.count().await, 1);

    // Without cachecar's field, CDN-Cache-Control decides.
    let (upstream, proxy) = plain(vec![respond(
        200,
        &[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "no-store"),
        ],
        "x",
    )])
    .await;
    get(&proxy.url("/y"), &[]).await;
    assert_eq!(get(&proxy.url("/y"), &[]).await.x_cache(), "MISS");
    assert_eq!(upstream.count().await, 2);
}

/// The directives keep their meaning in a targeted field: `stale-if-error`
/// serves stale, `private` keeps it out; an invalid field (not a Structured
/// Fields dictionary) is ignored as if absent.
#[tokio::test]
async fn targeted_directives_and_invalid_fields() {
    trace_init();
    let (_upstream, proxy) = plain(vec![
        respond(
            200,
            &[("cachecar-cache-control", "max-age=1, stale-if-error=60")],
            "saved",
        ),
        respond(503, &[], "down"),
    ])
    .await;
    get(&proxy.url("/x"), &[]).await;
    proxy.clock.advance(Duration::from_millis(1_100));
    let r = get(&proxy.url("/x"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "saved"));

    let (upstream, proxy) = plain(vec![respond(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "private"),
        ],
        "x",
    )])
    .await;
    get(&proxy.url("/p"), &[]).await;
    get(&proxy.url("/p"), &[]).await;
    assert_eq!(upstream.count().await, 2, "private in the targeted field");

    let (upstream, proxy) = plain(vec![respond(
        200,
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60, &&&"),
        ],
        "x",
    )])
    .await;
    get(&proxy.url("/i"), &[]).await;
    get(&proxy.url("/i"), &[]).await;
    assert_eq!(upstream.count().await, 2, "an invalid field is ignored");
}

/// The operator names cachecar's field, or turns `CDN-Cache-Control` off
/// (when a CDN in front is meant to be its only reader).
#[tokio::test]
async fn targeted_fields_are_configurable() {
    trace_init();
    let rules = "cache: { targeted_field: X-Sidecar-Cache, cdn_cache_control: false }\n\
                 defaults: { ttl: origin }\n\
                 routes:\n  - { name: all, match: \"GET /{*p}\" }\n";
    let upstream = Scripted::start(vec![respond(
        200,
        &[
            ("cdn-cache-control", "max-age=60"),
            ("x-sidecar-cache", "max-age=60"),
        ],
        "x",
    )])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    let miss = get(&proxy.url("/x"), &[]).await;
    assert_eq!(miss.header("x-sidecar-cache"), "");
    assert_eq!(get(&proxy.url("/x"), &[]).await.x_cache(), "HIT");

    let upstream = Scripted::start(vec![respond(
        200,
        &[("cdn-cache-control", "max-age=60")],
        "x",
    )])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/y"), &[]).await;
    get(&proxy.url("/y"), &[]).await;
    assert_eq!(upstream.count().await, 2, "CDN-Cache-Control is not read");
}
