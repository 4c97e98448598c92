//! RFC 9111 behaviour from the outside: a scripted upstream, counted
//! requests, and the cache headers cachecar writes.

use std::time::Duration;

use http::Method;

use crate::support::{Scripted, TestProxy, TinyUpstream, config, get, respond, send, trace_init};

/// A catch-all route with no TTL of its own: a plain shared cache.
const PLAIN: &str = "defaults: {}\nroutes:\n  - { name: all, match: \"GET /{*p}\" }\n";

async fn plain(responses: Vec<wiremock::ResponseTemplate>) -> (Scripted, TestProxy) {
    let upstream = Scripted::start(responses).await;
    let proxy = TestProxy::start(&config(&upstream.server.uri(), PLAIN)).await;
    (upstream, proxy)
}

/// One RFC rule: the origin's response headers, then whether the second
/// request (after `pause`) is served from the cache.
struct Rule {
    name: &'static str,
    response: &'static [(&'static str, &'static str)],
    status: u16,
    pause: Duration,
    second_from_cache: bool,
}

const RULES: &[Rule] = &[
    Rule {
        name: "max-age makes it fresh",
        response: &[("cache-control", "max-age=60")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: true,
    },
    Rule {
        name: "no freshness, no validator: not stored",
        response: &[],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "no-store",
        response: &[("cache-control", "max-age=60, no-store")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "private in a shared cache",
        response: &[("cache-control", "private, max-age=60")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "Set-Cookie",
        response: &[("cache-control", "max-age=60"), ("set-cookie", "a=1")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "Vary: *",
        response: &[("cache-control", "max-age=60"), ("vary", "*")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "max-age=0",
        response: &[("cache-control", "max-age=0")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "malformed max-age is ignored",
        response: &[("cache-control", "max-age =60")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "quoted max-age inside an extension is ignored",
        response: &[("cache-control", "x=\"max-age=60\", max-age=0")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "s-maxage wins over max-age",
        response: &[("cache-control", "max-age=60, s-maxage=1")],
        status: 200,
        pause: Duration::from_millis(1_100),
        second_from_cache: false,
    },
    Rule {
        name: "Age counts against max-age",
        response: &[("cache-control", "max-age=10"), ("age", "15")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "invalid Expires is already expired",
        response: &[("expires", "Thu, 18 Aug 2050 02:01:18 UTC")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "future Expires",
        response: &[("expires", "Thu, 18 Aug 2050 02:01:18 GMT")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: true,
    },
    Rule {
        name: "heuristic freshness from Last-Modified",
        response: &[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")],
        status: 200,
        pause: Duration::ZERO,
        second_from_cache: true,
    },
    Rule {
        name: "no heuristic for 201",
        response: &[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")],
        status: 201,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "explicit freshness makes 400 storable",
        response: &[("cache-control", "max-age=60")],
        status: 400,
        pause: Duration::ZERO,
        second_from_cache: true,
    },
    Rule {
        name: "server errors are never stored",
        response: &[("cache-control", "max-age=60")],
        status: 503,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
    Rule {
        name: "206 is never stored",
        response: &[
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 0-1/4"),
        ],
        status: 206,
        pause: Duration::ZERO,
        second_from_cache: false,
    },
];

/// Every rule of the table, each against its own upstream and proxy.
#[tokio::test]
async fn rfc_9111_storage_and_freshness_rules() {
    trace_init();
    for rule in RULES {
        let (upstream, proxy) = plain(vec![respond(rule.status, rule.response, "body")]).await;
        let first = get(&proxy.url("/x"), &[]).await;
        assert_eq!(first.status.as_u16(), rule.status, "{}", rule.name);
        tokio::time::sleep(rule.pause).await;
        let second = get(&proxy.url("/x"), &[]).await;
        let expected_upstream = if rule.second_from_cache { 1 } else { 2 };
        assert_eq!(
            upstream.count().await,
            expected_upstream,
            "{}: {second:?}",
            rule.name
        );
        assert_eq!(
            second.x_cache() == "HIT",
            rule.second_from_cache,
            "{}",
            rule.name
        );
    }
}

/// A fresh hit keeps the origin's Date and computes Age; a miss passes the
/// origin's Age on.
#[tokio::test]
async fn age_and_date_follow_rfc_9111() {
    trace_init();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let (_upstream, proxy) = plain(vec![respond(
        200,
        &[
            ("cache-control", "max-age=600"),
            ("age", "30"),
            ("date", &date),
        ],
        "x",
    )])
    .await;
    let miss = get(&proxy.url("/x"), &[]).await;
    assert_eq!(miss.header("age"), "30");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let hit = get(&proxy.url("/x"), &[]).await;
    assert_eq!(hit.header("date"), date);
    let age: u64 = hit.header("age").parse().unwrap();
    assert!((31..=33).contains(&age), "age {age}");
}

/// A stale entry is revalidated with its validators; a 304 refreshes the
/// stored headers and freshness and the client gets the full response.
#[tokio::test]
async fn stale_entries_are_revalidated_and_updated_by_304() {
    trace_init();
    let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    let (upstream, proxy) = plain(vec![
        respond(
            200,
            &[
                ("cache-control", "max-age=1"),
                ("etag", "\"v1\""),
                ("last-modified", lm),
                ("x-version", "1"),
            ],
            "body one",
        ),
        respond(
            304,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("x-version", "2"),
            ],
            "",
        ),
    ])
    .await;
    assert_eq!(get(&proxy.url("/x"), &[]).await.x_cache(), "MISS");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let revalidated = get(&proxy.url("/x"), &[]).await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(revalidated.text(), "body one");
    assert_eq!(revalidated.x_cache(), "REVALIDATED");
    assert_eq!(
        revalidated.header("cache-status"),
        "cachecar; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.header("x-version"), "2");
    let requests = upstream.requests().await;
    assert_eq!(requests[1].headers["if-none-match"], "\"v1\"");
    assert_eq!(requests[1].headers["if-modified-since"], lm);
    let hit = get(&proxy.url("/x"), &[]).await;
    assert_eq!(
        (hit.x_cache().as_str(), hit.header("x-version").as_str()),
        ("HIT", "2")
    );
    assert_eq!(upstream.count().await, 2);
}

/// A revalidation answered with a full 200 replaces the entry.
#[tokio::test]
async fn a_200_to_a_revalidation_replaces_the_entry() {
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
            "new",
        ),
    ])
    .await;
    get(&proxy.url("/x"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let second = get(&proxy.url("/x"), &[]).await;
    assert_eq!(second.text(), "new");
    assert_eq!(
        second.header("cache-status"),
        "cachecar; fwd=stale; fwd-status=200; stored"
    );
    assert_eq!(get(&proxy.url("/x"), &[]).await.text(), "new");
    assert_eq!(upstream.count().await, 2);
}

/// `no-cache` responses are stored but revalidated on every use, and
/// `must-revalidate` forbids serving stale even with a configured window.
#[tokio::test]
async fn no_cache_and_must_revalidate_are_honoured() {
    trace_init();
    let (upstream, proxy) = plain(vec![
        respond(
            200,
            &[("cache-control", "no-cache"), ("etag", "\"a\"")],
            "x",
        ),
        respond(304, &[("etag", "\"a\"")], ""),
    ])
    .await;
    get(&proxy.url("/x"), &[]).await;
    let second = get(&proxy.url("/x"), &[]).await;
    assert_eq!(second.x_cache(), "REVALIDATED");
    assert_eq!(upstream.count().await, 2);

    let upstream = Scripted::start(vec![respond(
        200,
        &[("cache-control", "max-age=1, must-revalidate")],
        "x",
    )])
    .await;
    let rules = "defaults: { stale_while_revalidate: 60s }\nroutes:\n  - { name: all, match: \"GET /{*p}\" }\n";
    let proxy = TestProxy::start(&config(&upstream.server.uri(), rules)).await;
    get(&proxy.url("/y"), &[]).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        get(&proxy.url("/y"), &[]).await.x_cache(),
        "MISS",
        "never served stale"
    );
}

/// Fields a qualified `no-cache="f"` or `private="f"` names are not kept
/// in the entry (RFC 9111 §5.2.2.4, §5.2.2.7): a hit goes without them,
/// whatever case the directive is written in.
#[tokio::test]
async fn fields_named_by_qualified_no_cache_and_private_are_not_stored() {
    trace_init();
    let (upstream, proxy) = plain(vec![
        respond(
            200,
            &[
                ("cache-control", "max-age=60, No-Cache=\"x-a\""),
                ("cache-control", "private=\"X-B, x-c\""),
                ("x-a", "1"),
                ("x-b", "2"),
                ("x-c", "3"),
                ("x-d", "4"),
            ],
            "x",
        ),
        respond(200, &[("cache-control", "max-age=60"), ("x-a", "1")], "y"),
    ])
    .await;
    let miss = get(&proxy.url("/q"), &[]).await;
    assert_eq!(miss.x_cache(), "MISS");
    assert_eq!(miss.header("x-a"), "1", "the origin's own answer is whole");
    let hit = get(&proxy.url("/q"), &[]).await;
    assert_eq!(hit.x_cache(), "HIT");
    for stripped in ["x-a", "x-b", "x-c"] {
        assert_eq!(hit.header(stripped), "", "{stripped} was stored");
    }
    assert_eq!(hit.header("x-d"), "4");

    // An unqualified response keeps all its fields.
    get(&proxy.url("/r"), &[]).await;
    let hit = get(&proxy.url("/r"), &[]).await;
    assert_eq!(
        (hit.x_cache().as_str(), hit.header("x-a").as_str()),
        ("HIT", "1")
    );
    assert_eq!(upstream.count().await, 2);
}

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
    tokio::time::sleep(Duration::from_millis(1_100)).await;
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
    tokio::time::sleep(Duration::from_millis(1_100)).await;
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
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r = get(&proxy.url("/y"), &[]).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "saved"));
    assert!(
        r.header("cache-status").contains("detail=stale-if-error"),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        get(&proxy.url("/y"), &[]).await.status,
        502,
        "window passed"
    );
}

/// Vary: one entry per variant, bounded per URL; Accept-Encoding reduced.
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
