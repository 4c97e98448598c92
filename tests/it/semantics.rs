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
/// request (`pause` later, by the proxy's clock) is served from the cache.
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
        name: "an Expires whose only fault is its weekday is read (RFC 9110 §5.6.7)",
        response: &[("expires", "Mon, 18 Aug 2050 02:01:18 GMT")],
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
        name: "explicit freshness makes 410 storable",
        response: &[("cache-control", "max-age=60")],
        status: 410,
        pause: Duration::ZERO,
        second_from_cache: true,
    },
    Rule {
        name: "a 400 is not stored unless status_ttl lists it",
        response: &[("cache-control", "max-age=60")],
        status: 400,
        pause: Duration::ZERO,
        second_from_cache: false,
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
        proxy.clock.advance(rule.pause);
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
    proxy.clock.advance(Duration::from_millis(1_100));
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
    proxy.clock.advance(Duration::from_millis(1_100));
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
    proxy.clock.advance(Duration::from_millis(1_100));
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
    proxy.clock.advance(Duration::from_millis(1_100));
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

mod ages;

mod interim;

mod stale;

mod statuses;

mod targeted;

mod requests;
