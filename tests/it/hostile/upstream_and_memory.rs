//! An upstream that breaks off mid-body, and a flood of unique URLs: neither is stored or grows memory past its bound.

use super::*;

/// An upstream that promises 100 bytes, sends 10 and closes.
async fn truncating_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        for _ in 0..20 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=60\r\n\r\n0123456789")
                .await;
            drop(s);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_truncated_upstream_response_is_502_and_never_stored() {
    trace_init();
    let (addr, task) = truncating_upstream().await;
    let proxy = TestProxy::start(&config(&format!("http://{addr}"), RULES)).await;
    for _ in 0..2 {
        let r = victim(proxy.addr, "/api/docs/t").await;
        assert_eq!(r.status(), 502, "{r:?}");
        assert_ne!(x_cache(&r), "HIT");
    }
    task.abort();
}

/// A flood of unique URLs: the memory store stays within its byte bound.
#[tokio::test]
async fn a_flood_of_unique_urls_stays_within_the_memory_bound() {
    trace_init();
    let up = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(2048)))
        .mount(&up)
        .await;
    let bound = 256 * 1024;
    let proxy = TestProxy::start(&config(
        &up.uri(),
        &format!("cache: {{ memory: {{ max_bytes: {bound} }} }}\n{RULES}"),
    ))
    .await;
    let addr = proxy.addr;
    let mut peak = 0.0f64;
    for batch in 0..30 {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let url = format!("http://{addr}/api/docs/{batch}-{i}?q={i}");
                tokio::spawn(async move { crate::support::get(&url, &[]).await.status })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        peak = peak.max(proxy.metric("cachecar_memory_store_bytes", &[]).await);
    }
    assert!(peak > 0.0, "entries were stored");
    assert!(
        peak <= f64::from(bound),
        "600 entries of 2 KiB held in a {bound}-byte store: peak {peak}"
    );
}
