//! What bounds a tunnel: its idle time, how many are open, shutdown; and
//! the handshakes that are not tunnelled at all.

use super::*;

/// A config whose `upgrade:` and `shutdown:` are `upgrade` and `grace`.
fn limited(app: &EchoApp, upgrade: &str, grace: &str) -> String {
    config(&app.url(), &format!("upgrade: {upgrade}\n")).replace(
        "shutdown: { drain_delay: 0s, grace_period: 5s }",
        &format!("shutdown: {{ drain_delay: 0s, grace_period: {grace} }}"),
    )
}

#[tokio::test]
async fn a_quiet_tunnel_is_closed_after_the_idle_timeout() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = TestProxy::start(&limited(&app, "{ idle_timeout: 300ms }", "5s")).await;
    let mut ws = connect(&proxy, "/ws").await;
    // Traffic keeps it open past the timeout...
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        assert_eq!(next(&mut ws).await, Some(Message::text(format!("{i}"))));
    }
    // ...and silence closes it.
    assert_eq!(next(&mut ws).await, None, "closed once quiet");
    let idle = [("reason", "idle")];
    let counted = eventually(Duration::from_secs(2), || async {
        let text = proxy.scrape().await.0;
        metric_value(&text, "cachecar_upgrade_tunnels_closed_total", &idle) == Some(1.0)
    })
    .await;
    assert!(counted);
}

#[tokio::test]
async fn handshakes_past_max_tunnels_are_answered_503() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = TestProxy::start(&limited(&app, "{ max_tunnels: 1 }", "5s")).await;
    let mut first = connect(&proxy, "/ws").await;
    let url = format!("ws://{}/ws", proxy.addr);
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "1");
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    let over = [("route", "none"), ("result", "over_limit")];
    assert_eq!(proxy.counter("cachecar_upgrades_total", &over).await, 1.0);
    // The first still works, and once it is closed a new one may open.
    first.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut first).await, Some(Message::text("still here")));
    first.close(None).await.unwrap();
    drop(first);
    let reopened = eventually(Duration::from_secs(5), || async {
        tokio_tungstenite::connect_async(url.clone()).await.is_ok()
    })
    .await;
    assert!(reopened);
}

/// Shutdown waits `grace_period` for tunnels, then closes them; the
/// process stops.
#[tokio::test]
async fn shutdown_closes_tunnels_left_open_after_the_grace_period() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = TestProxy::start(&limited(&app, "{}", "400ms")).await;
    let mut ws = connect(&proxy, "/ws").await;
    let asked = std::time::Instant::now();
    proxy.begin_shutdown();
    // Within the grace period the tunnel still carries messages.
    ws.send(Message::text("during the drain")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("during the drain")));
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the tunnel is closed once the grace runs out"
    );
    assert!(
        asked.elapsed() >= Duration::from_millis(400),
        "not before the grace period ran out: {:?}",
        asked.elapsed()
    );
    proxy.join().await;
}

/// With `upgrade.enabled: false`, a protocol not listed, or a method other
/// than GET, `Upgrade` is a hop-by-hop field like any other: the app gets
/// a plain request.
#[tokio::test]
async fn handshakes_not_allowed_are_plain_requests() {
    trace_init();
    let app = Scripted::start(vec![respond(200, &[], "plain")]).await;
    for upgrade in ["upgrade: { enabled: false }\n", ""] {
        let proxy = TestProxy::start(&config(&app.server.uri(), upgrade)).await;
        for protocol in ["websocket", "h2c", "something-else"] {
            if upgrade.is_empty() && protocol == "websocket" {
                continue;
            }
            let asked = [("connection", "upgrade"), ("upgrade", protocol)];
            let reply = get(&proxy.url("/ws"), &asked).await;
            assert_eq!(reply.status, 200, "{upgrade} {protocol}");
            assert_eq!(reply.text(), "plain");
        }
    }
    // A write is never a tunnel, so it can never skip its invalidation.
    let proxy = TestProxy::start(&config(&app.server.uri(), "")).await;
    let asked = [("connection", "upgrade"), ("upgrade", "websocket")];
    let write = send(http::Method::POST, &proxy.url("/ws"), &asked, "").await;
    assert_eq!(write.status, 404, "the app's own answer to the POST");
    for request in app.requests().await {
        assert!(!request.headers.contains_key("upgrade"));
        assert!(!request.headers.contains_key("connection"));
    }
    assert_eq!(app.count().await, 6);
}
