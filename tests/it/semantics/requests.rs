//! What the request asks: conditionals, ranges, HEAD, request directives; and `Vary` and `Location`.

use super::*;

/// Client conditionals are answered 304 from a fresh entry.
#[tokio::test]
async fn client_conditionals_get_304_from_a_fresh_entry() {
    trace_init();
    let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    let (upstream, proxy) = plain(vec![respond(
        200,
        &[
            ("cache-control", "max-age=60"),
            ("etag", "W/\"e\""),
            ("last-modified", lm),
        ],
        "x",
    )])
    .await;
    // The fill does not forward the client's conditions: it needs a full response.
    let first = get(&proxy.url("/x"), &[("if-none-match", "\"e\"")]).await;
    assert_eq!(first.status, 304);
    assert!(
        !upstream.requests().await[0]
            .headers
            .contains_key("if-none-match")
    );
    let hit = get(&proxy.url("/x"), &[("if-none-match", "\"other\", W/\"e\"")]).await;
    assert_eq!((hit.status.as_u16(), hit.x_cache().as_str()), (304, "HIT"));
    assert_eq!(hit.header("etag"), "W/\"e\"");
    assert!(hit.body.is_empty());
    assert_eq!(
        get(&proxy.url("/x"), &[("if-modified-since", lm)])
            .await
            .status,
        304
    );
    assert_eq!(
        get(&proxy.url("/x"), &[("if-none-match", "\"nope\"")])
            .await
            .status,
        200
    );
    assert_eq!(upstream.count().await, 1);
}

/// Request directives: no-cache revalidates, max-age limits age,
/// only-if-cached never goes upstream.
#[tokio::test]
async fn request_directives_are_honoured() {
    trace_init();
    let (upstream, proxy) = plain(vec![
        respond(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"a\"")],
            "x",
        ),
        respond(304, &[("etag", "\"a\"")], ""),
    ])
    .await;
    let missing = get(&proxy.url("/x"), &[("cache-control", "only-if-cached")]).await;
    assert_eq!(missing.status, 504);
    assert_eq!(upstream.count().await, 0);
    get(&proxy.url("/x"), &[]).await;
    let forced = get(&proxy.url("/x"), &[("cache-control", "no-cache")]).await;
    assert_eq!(
        forced.header("cache-status"),
        "cachecar; fwd=request; fwd-status=304; stored"
    );
    assert_eq!(upstream.count().await, 2);
    assert_eq!(
        get(&proxy.url("/x"), &[("cache-control", "only-if-cached")])
            .await
            .x_cache(),
        "HIT"
    );
}

/// Vary: one entry per variant, bounded per URL.
#[tokio::test]
async fn vary_stores_bounded_variants() {
    trace_init();
    let upstream = Scripted::start(vec![respond(
        200,
        &[("cache-control", "max-age=60"), ("vary", "X-Lang")],
        "x",
    )])
    .await;
    let rules = "defaults: {}\ncache: { max_variants: 2 }\nroutes:\n  - { name: all, match: \"GET /{*p}\" }\n";
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    for lang in ["en", "fr"] {
        assert_eq!(
            get(&proxy.url("/x"), &[("x-lang", lang)]).await.x_cache(),
            "MISS"
        );
    }
    for lang in ["en", "fr"] {
        assert_eq!(
            get(&proxy.url("/x"), &[("x-lang", lang)]).await.x_cache(),
            "HIT",
            "{lang}"
        );
    }
    let third = get(&proxy.url("/x"), &[("x-lang", "de")]).await;
    assert_eq!(
        third.header("cache-status"),
        "cachecar; fwd=vary-miss; detail=variants"
    );
    assert_eq!(
        get(&proxy.url("/x"), &[("x-lang", "en")]).await.x_cache(),
        "HIT"
    );
    assert_eq!(upstream.count().await, 3);
}

/// `Accept-Encoding` is reduced to one coding, so spellings of the same
/// choice share the variant, and the upstream is asked with that coding.
#[tokio::test]
async fn accept_encoding_is_reduced_before_varying() {
    trace_init();
    let upstream = Scripted::start(vec![respond(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
        "x",
    )])
    .await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), PLAIN)).await;
    get(
        &proxy.url("/z"),
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(
        get(&proxy.url("/z"), &[("accept-encoding", "br;q=0.9, gzip")])
            .await
            .x_cache(),
        "HIT"
    );
    assert_eq!(
        upstream.requests().await[0].headers["accept-encoding"],
        "gzip"
    );
}

/// `Accept-Language` variants are matched by what they mean: case, spaces,
/// the order of equal weights and how a weight is written do not split them.
#[tokio::test]
async fn accept_language_variants_are_normalised() {
    trace_init();
    let (upstream, proxy) = plain(vec![respond(
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        "x",
    )])
    .await;
    get(&proxy.url("/x"), &[("accept-language", "en, de;q=0.5")]).await;
    for same in ["EN, De;q=0.50", " de;q=0.500 ,en", "en;q=1.0, de;q=0.5"] {
        let r = get(&proxy.url("/x"), &[("accept-language", same)]).await;
        assert_eq!(r.x_cache(), "HIT", "{same}");
    }
    let other = get(&proxy.url("/x"), &[("accept-language", "de, en;q=0.5")]).await;
    assert_eq!(other.x_cache(), "MISS");
    assert_eq!(upstream.count().await, 2);
}

/// A HEAD miss fills the cache with a GET; a Range hit is a 206 slice.
#[tokio::test]
async fn head_fills_with_get_and_ranges_come_from_the_entry() {
    trace_init();
    let (upstream, proxy) = plain(vec![respond(
        200,
        &[("cache-control", "max-age=60")],
        "0123456789",
    )])
    .await;
    let head = send(Method::HEAD, &proxy.url("/x"), &[], "").await;
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "10");
    assert_eq!(
        upstream.requests().await[0].method,
        wiremock::http::Method::GET
    );
    let range = get(&proxy.url("/x"), &[("range", "bytes=2-4")]).await;
    assert_eq!((range.status.as_u16(), range.text().as_str()), (206, "234"));
    assert_eq!(range.header("content-range"), "bytes 2-4/10");
    assert_eq!(
        get(&proxy.url("/x"), &[("range", "bytes=20-")])
            .await
            .status,
        416
    );
    assert_eq!(upstream.count().await, 1);
}

/// A successful unsafe request invalidates same-origin Location and
/// Content-Location, never another host's.
#[tokio::test]
async fn location_headers_of_mutations_are_invalidated_on_the_same_host() {
    trace_init();
    let upstream =
        Scripted::start(vec![respond(200, &[("cache-control", "max-age=60")], "x")]).await;
    for (path, location) in [
        ("/make-a", "/items/a"),
        ("/make-b", "http://elsewhere.test/items/b"),
    ] {
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path(path))
            .respond_with(wiremock::ResponseTemplate::new(201).insert_header("location", location))
            .mount(&upstream.server)
            .await;
    }
    let proxy = TestProxy::start(&config(&upstream.server.uri(), PLAIN)).await;
    get(&proxy.url("/items/a"), &[]).await;
    get(&proxy.url("/items/b"), &[]).await;
    send(Method::POST, &proxy.url("/make-a"), &[], "x").await;
    send(Method::POST, &proxy.url("/make-b"), &[], "x").await;
    assert_eq!(get(&proxy.url("/items/a"), &[]).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/items/b"), &[]).await.x_cache(), "HIT");
}
