//! Slow clients: a head that trickles, a connection left idle, a body that
//! keeps sending below the minimum rate.

use super::*;

/// An echoing upstream behind a proxy with short client timeouts: 300 ms
/// for a head from its first byte, 1 s idle between requests.
async fn with_header_timeout() -> (MockServer, TestProxy) {
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!("limits: {{ header_read_timeout: 300ms, idle_timeout: 1s }}\n{RULES}"),
    ))
    .await;
    (up, proxy)
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout() {
    trace_init();
    let (_up, proxy) = with_header_timeout().await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\nX-Slow: ")
        .await
        .unwrap();
    let mut closed = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Keep trickling bytes; the timeout is for the whole header.
        if stream.write_all(b"a").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut b)).await
        {
            if n == 0 || b.starts_with(b"HTTP/1.1 408") {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// An idle keep-alive connection is not a slow head: it outlives the
/// header timeout, serves its next request, and is closed once it has been
/// idle for `idle_timeout`.
#[tokio::test]
async fn idle_keep_alive_connections_last_until_the_idle_timeout() {
    trace_init();
    let (_up, proxy) = with_header_timeout().await;
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    let request = b"GET /api/docs/a HTTP/1.1\r\nHost: api.test\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        idle.write_all(request).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        // Idle for twice the header timeout, well within the idle one.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(end, Ok(true), "idle keep-alive closed");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// A body that keeps sending, but below `request_body_min_rate`, is cut off
/// after one window with 408, the app's request aborted.
#[tokio::test]
async fn a_body_below_the_minimum_rate_gets_408() {
    trace_init();
    let up = echo_upstream().await;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!(
            "limits: {{ request_body_min_rate: 100, request_body_rate_window: 500ms }}\n{RULES}"
        ),
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /api/docs/a HTTP/1.1\r\nHost: api.test\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..30 {
        // 2 bytes every 100 ms: 20 bytes a second.
        let _ = stream.write_all(b"ab").await;
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || !answer.is_empty() {
                break;
            }
        }
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}
