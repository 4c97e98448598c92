//! The access log and the slow-request warning, as JSON lines on stderr
//! of the real binary: sampling, where the time went, and what joins a line
//! with the ingress's and the app's (request id, the client's or one made
//! and forwarded; trace id; client address behind trusted proxies; host;
//! normalized path with the query redacted; user agent).

use super::*;

/// An upstream answering GETs with 12 bytes after 80 ms.
async fn slow_upstream() -> wiremock::MockServer {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let up = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("twelve bytes")
                .set_delay(Duration::from_millis(80)),
        )
        .mount(&up)
        .await;
    up
}

/// cachecar run with the config at `path`, JSON logs piped from stderr,
/// once its proxy `port` opens.
pub(super) async fn run_with_json_logs(path: &std::path::Path, port: u16) -> Child {
    let child = bin()
        .args(["--log-format", "json", "--config"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(port_open(port).await, "proxy port opens");
    child
}

/// Stops `child` with SIGTERM and returns what it wrote.
pub(super) async fn terminate_with_output(child: Child) -> std::process::Output {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

/// The JSON log events of `target` in `stderr`.
pub(super) fn events_of(stderr: &[u8], target: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["target"] == target)
        .collect()
}

/// The access log (sampled; slow requests always kept) and the slow-request
/// warning, as JSON lines on stderr.
#[tokio::test]
async fn json_access_log_samples_and_slow_requests_name_where_time_went() {
    trace_init();
    let up = slow_upstream().await;
    let (port, admin) = (free_port(), free_port());
    let path = write_config(
        "logs",
        &format!(
            "listen: 127.0.0.1:{port}\nupstream: {{ url: \"{}\" }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ drain_delay: 0s }}\nlog: {{ access_sample: 0.0, slow_request: 40ms }}\nroutes:\n  - name: docs\n    match: GET /a\n    ttl: 1m\n",
            up.uri()
        ),
    );
    let child = run_with_json_logs(&path, port).await;
    let url = format!("http://127.0.0.1:{port}/a");
    assert_eq!(get(&url, &[]).await.x_cache(), "MISS");
    assert_eq!(get(&url, &[]).await.x_cache(), "HIT");
    let out = terminate_with_output(child).await;
    let of = |target: &str| events_of(&out.stderr, target);
    let access = of("cachecar::access");
    assert_eq!(
        access.len(),
        1,
        "only the slow miss is kept at sample 0: {access:?}"
    );
    let a = &access[0];
    assert_eq!(a["route"], "docs");
    assert_eq!(a["method"], "GET");
    assert_eq!(a["status"], 200);
    assert_eq!(a["cache_status"], "miss");
    assert_eq!(a["bytes"], 12);
    assert!(a["upstream_us"].as_u64().unwrap() >= 80_000, "{a}");
    assert!(a["store_us"].is_u64(), "{a}");
    let slow = of("cachecar::slow");
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0]["route"], "docs");
    assert_eq!(slow[0]["spent_in"], "upstream");
    assert!(slow[0]["upstream_ms"].as_u64().unwrap() >= 80);
}

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
    let child = run_with_json_logs(&path, port).await;
    for (path, headers) in requests {
        get(&format!("http://127.0.0.1:{port}{path}"), headers).await;
    }
    let out = terminate_with_output(child).await;
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
