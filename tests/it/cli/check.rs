//! `cachecar check`'s route analysis.

use super::*;

/// `check` warns of a route only when an earlier one matches every one of
/// its requests: `GET /` is not behind `GET /{*path}` (a catch-all takes
/// one character at least), and at run time `/` is answered by its own
/// route; `GET /{*rest}` behind `GET /{*path}` is.
#[tokio::test]
async fn check_warns_only_of_routes_that_are_really_unreachable() {
    let upstream = crate::support::Scripted::start(vec![crate::support::respond(
        200,
        &[("cache-control", "max-age=60")],
        "x",
    )])
    .await;
    let routes = "routes:\n  - { name: everything, match: \"GET /{*path}\" }\n  - { name: root, match: \"GET /\" }\n";
    let path = write_config(
        "root-behind-catch-all",
        &format!(
            "upstream: {{ url: \"{}\" }}\n{routes}",
            upstream.server.uri()
        ),
    );
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("unreachable") && !stderr.contains("unreachable"),
        "{stdout}\n{stderr}"
    );

    let proxy =
        crate::support::TestProxy::start(&crate::support::config(&upstream.server.uri(), routes))
            .await;
    let metrics = || async { proxy.scrape().await };
    crate::support::get(&proxy.url("/"), &[]).await;
    let scrape = metrics().await;
    assert_eq!(
        scrape.sample("cachecar_requests_total", &[("route", "root")]),
        1.0,
        "{}",
        scrape.0
    );
}

/// `check` does warn of a catch-all behind another catch-all.
#[test]
fn check_warns_of_a_route_behind_an_equal_catch_all() {
    let shadowed = "routes:\n  - { name: everything, match: \"GET /{*path}\" }\n  - { name: rest, match: \"GET /{*rest}\" }\n";
    let path = write_config(
        "rest-behind-catch-all",
        &format!("upstream: {{ url: \"http://127.0.0.1:1\" }}\n{shadowed}"),
    );
    let out = check(&path);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("route `rest` (/{*rest}) is unreachable"),
        "{all}"
    );
}
