//! Requests that try to make the app answer something other than what cachecar keyed: forwarded-header, host, path and query tricks, credentials.

use super::*;

#[tokio::test]
async fn host_and_forwarded_header_tricks_cannot_poison_an_entry() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    // The attacker fills the entry with headers the app would reflect.
    let attack = raw(
        proxy.addr,
        b"GET /api/docs/p HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-Host: evil.test\r\nX-Original-URL: /admin\r\nX-HTTP-Method-Override: DELETE\r\nForwarded: host=evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(attack.status(), 200);
    assert!(
        attack.body().contains("xfh=api.test xou=- override=-"),
        "the app never saw the attacker's headers: {}",
        attack.body()
    );
    let v = victim(proxy.addr, "/api/docs/p").await;
    assert_eq!(x_cache(&v), "HIT");
    assert!(
        !v.body().contains("evil") && !v.body().contains("admin") && !v.body().contains("DELETE")
    );

    // Another Host is another entry, never this one.
    let other = raw(
        proxy.addr,
        b"GET /api/docs/q HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(other.body().contains("host=evil.test"));
    let v = victim(proxy.addr, "/api/docs/q").await;
    assert_eq!(x_cache(&v), "MISS", "{v:?}");
    assert!(v.body().contains("host=api.test"));

    // An absolute-form target that disagrees with Host is refused.
    let r = raw(
        proxy.addr,
        b"GET http://api.test/api/docs/q HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 400, "{r:?}");
}

#[tokio::test]
async fn allowed_hosts_refuse_the_rest_before_the_app_sees_them() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!("security: {{ allowed_hosts: [api.test] }}\n{RULES}"),
    ))
    .await;
    let r = raw(
        proxy.addr,
        b"GET /api/docs/a HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 421, "{r:?}");
    let r = raw(proxy.addr, b"GET /api/docs/a HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status(), 421, "HTTP/1.0 without Host: {r:?}");
    assert_eq!(received(&up).await, 0);
    assert_eq!(victim(proxy.addr, "/api/docs/a").await.status(), 200);
}

#[tokio::test]
async fn path_tricks_on_cached_routes_are_refused() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    for target in [
        "/static/..%2fapi/me",
        "/static/..%2Fapi/me",
        "/static/a%5c..%5capi",
        "/static/me;x.css",
        "/static/a%00.css",
        "/static/a%23b",
        "/static/a%3fb=1",
        "/static/a\\b",
        "/static/%c0%afapi/me",
        "/static/..%252fapi/me",
    ] {
        let r = raw(
            proxy.addr,
            format!("GET {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(r.status(), 400, "{target} -> {r:?}");
    }
    assert_eq!(received(&up).await, 0, "none reached the app");
    // A fragment never reaches the key or the app: the target parser
    // drops it, so both see the same path.
    let r = raw(
        proxy.addr,
        b"GET /static/f.css#../../admin HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.body().contains("path=/static/f.css "), "{r:?}");
    // Dot segments resolve once, to a path the key and the app agree on.
    let r = raw(
        proxy.addr,
        b"GET /static/x/../a.css HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.body().contains("path=/static/a.css"), "{r:?}");
}

#[tokio::test]
async fn an_authenticated_response_is_never_stored_for_everyone() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    // The "/api/me/x.css" trick: a public route, an authenticated request.
    let r = raw(
        proxy.addr,
        b"GET /static/me/x.css HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer alice\r\nCookie: s=alice\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_ne!(x_cache(&r), "HIT");
    let v = victim(proxy.addr, "/static/me/x.css").await;
    assert_eq!(x_cache(&v), "MISS", "alice's answer was not stored: {v:?}");
}

#[tokio::test]
async fn a_get_with_a_body_is_not_cached_and_purge_methods_are_only_forwarded() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let r = raw(
        proxy.addr,
        b"GET /api/docs/b HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!((r.status(), x_cache(&r)), (200, "BYPASS"), "{r:?}");
    assert_eq!(x_cache(&victim(proxy.addr, "/api/docs/b").await), "MISS");
    assert_eq!(x_cache(&victim(proxy.addr, "/api/docs/b").await), "HIT");
    for method in ["PURGE", "BAN"] {
        let r = raw(
            proxy.addr,
            format!("{method} /api/docs/b HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(
            r.status(),
            405,
            "forwarded to the app, which refused: {r:?}"
        );
        assert!(r.body().contains(&format!("method={method}")), "{r:?}");
    }
    assert_eq!(
        x_cache(&victim(proxy.addr, "/api/docs/b").await),
        "HIT",
        "the app refused them, so nothing was purged"
    );
}

#[tokio::test]
async fn unkeyed_query_parameters_never_reach_the_app() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    // Parameter cloaking: a framework splitting on `;` or reading names
    // case-insensitively would see page=evil; the key sees page=1.
    let attack = raw(
        proxy.addr,
        b"GET /api/items/1?page=1&utm=x;page=evil&PAGE=evil HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(attack.body().ends_with("query=page=1"), "{attack:?}");
    let v = victim(proxy.addr, "/api/items/1?page=1").await;
    assert_eq!(x_cache(&v), "HIT");
    assert!(!v.body().contains("evil"), "{v:?}");
}

#[tokio::test]
async fn more_unkeyed_host_and_scheme_headers_never_reach_the_app() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(&up.uri(), RULES)).await;
    let r = raw(
        proxy.addr,
        b"GET /api/docs/h HTTP/1.1\r\nHost: api.test\r\nX-Host: evil.test\r\nX-Forwarded-Scheme: nothttps\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.body().contains("xhost=- scheme=-"), "{r:?}");
}
