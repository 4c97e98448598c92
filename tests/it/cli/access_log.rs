//! The access log joins with the ingress's and the app's: request id (the
//! client's, or one made and forwarded), trace id, client address behind
//! trusted proxies, host, normalized path with the query redacted, user
//! agent.

use super::*;

/// Runs cachecar (JSON logs, behind trusted proxies `127.0.0.0/8` and
/// `10.0.0.0/8`) in front of an app answering `ok`, sends `requests`
/// (path and headers), and returns the app's server and the access events.
async fn logged(
    requests: &[(&str, Vec<(&str, &str)>)],
) -> (wiremock::MockServer, Vec<serde_json::Value>, Vec<u8>, u16) {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let up = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&up)
        .await;
    let (port, admin) = (free_port(), free_port());
    let path = write_config(
        "access-log",
        &format!(
            "listen: 127.0.0.1:{port}\nupstream: {{ url: \"{}\" }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ drain_delay: 0s }}\nsecurity: {{ trusted_proxies: [127.0.0.0/8, 10.0.0.0/8] }}\nroutes:\n  - {{ name: docs, match: \"GET /docs/{{*p}}\", ttl: 1m }}\n",
            up.uri()
        ),
    );
    let child = bin()
        .args(["--log-format", "json", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(port_open(port).await, "proxy port opens");
    for (path, headers) in requests {
        get(&format!("http://127.0.0.1:{port}{path}"), headers).await;
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let access = events_of(&out.stderr, "cachecar::access");
    (up, access, out.stderr, port)
}

#[tokio::test]
async fn access_log_lines_carry_what_joins_them_with_other_logs() {
    trace_init();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let first = vec![
        ("x-request-id", "req-123"),
        ("traceparent", traceparent.as_str()),
        ("user-agent", "probe/1"),
        ("x-forwarded-for", "203.0.113.7, 10.1.2.3"),
    ];
    let (up, access, stderr, port) =
        logged(&[("/docs/./a?token=secret", first), ("/docs/b", vec![])]).await;
    assert_eq!(access.len(), 2, "{access:?}");
    let a = &access[0];
    assert_eq!(a["request_id"], "req-123");
    assert_eq!(a["trace_id"], trace);
    assert_eq!(a["client"], "203.0.113.7", "the last untrusted hop: {a}");
    assert_eq!(a["host"], format!("127.0.0.1:{port}"));
    assert_eq!(a["path"], "/docs/a?", "normalized, query redacted: {a}");
    assert_eq!(a["user_agent"], "probe/1");
    assert_eq!(
        (a["route"].as_str(), a["status"].as_u64()),
        (Some("docs"), Some(200))
    );
    assert_eq!(
        (a["cache_status"].as_str(), a["bytes"].as_u64()),
        (Some("miss"), Some(2))
    );
    assert!(a["upstream_us"].is_u64(), "{a}");
    assert!(
        !stderr.windows(6).any(|w| w == b"secret"),
        "the query stays out of the log"
    );

    // Without one, an id is made, logged and forwarded: the app's logs join.
    let b = &access[1];
    let made = b["request_id"].as_str().unwrap();
    assert!(
        made.len() == 32 && made.bytes().all(|c| c.is_ascii_hexdigit()),
        "{b}"
    );
    assert_eq!(b["client"], "127.0.0.1");
    let received = up.received_requests().await.unwrap();
    assert_eq!(received[0].headers["x-request-id"], "req-123");
    assert_eq!(received[1].headers["x-request-id"], made);
}
