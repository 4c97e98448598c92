//! The upstream connection pool: connections are reused, a connection the
//! app closed is never used for an answer, a half-read response never leaves
//! its connection in the pool, idle connections are closed on time, and a
//! connection to the upstream before a reload is not reused after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{TestProxy, config, eventually, get, trace_init};

const ROUTES: &str = "routes:\n  - { name: docs, match: \"GET /docs/{*path}\" }\n";

/// An origin that counts the connections it accepted and saw closed.
struct Origin {
    url: String,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the origin treats its connections.
#[derive(Clone, Copy)]
enum Mode {
    /// hyper with keep-alive: `/big` is a 16 MiB body, `/slow/{ms}` waits
    /// that long before its `ok`, anything else is `ok` at once.
    KeepAlive,
    /// Answers one request, then closes without saying so
    /// (no `Connection: close`), as an app past its keep-alive limit does.
    SilentClose,
}

const BIG: usize = 16 << 20;

impl Origin {
    async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed.clone());
        let big = Bytes::from(vec![b'x'; BIG]);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (c, big) = (c.clone(), big.clone());
                tokio::spawn(async move {
                    match mode {
                        Mode::KeepAlive => {
                            serve_keep_alive(stream, big, Bytes::from_static(b"ok")).await
                        }
                        Mode::SilentClose => serve_once(stream).await,
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            url,
            accepted,
            closed,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Answers `big` to `/big` and `answer` to anything else.
async fn serve_keep_alive(stream: TcpStream, big: Bytes, answer: Bytes) {
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let body = if req.uri().path().ends_with("/big") {
            big.clone()
        } else {
            answer.clone()
        };
        let delay = req
            .uri()
            .path()
            .strip_prefix("/slow/")
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        async move {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("cache-control", "no-store")
                    .body(Full::new(body))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

async fn serve_once(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok")
        .await;
}

/// Sequential requests, passed through or filled, share one connection.
#[tokio::test]
async fn connections_are_reused() {
    trace_init();
    let origin = Origin::start(Mode::KeepAlive).await;
    let proxy = TestProxy::start(&config(&origin.url, ROUTES)).await;
    for i in 0..20 {
        let path = if i % 2 == 0 { "/pass" } else { "/docs/a" };
        let r = get(&proxy.url(&format!("{path}?n={i}")), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "ok");
    }
    assert_eq!(
        origin.accepted(),
        1,
        "one upstream connection for 20 requests"
    );
}

/// Each exchange on a reused connection gets the whole `upstream.timeout`
/// (2 s in these tests) from its own start: not what an earlier exchange
/// on the connection left, and not unbounded.
#[tokio::test]
async fn each_exchange_on_a_reused_connection_has_its_own_timeout() {
    trace_init();
    let origin = Origin::start(Mode::KeepAlive).await;
    let proxy = TestProxy::start(&config(&origin.url, ROUTES)).await;
    assert_eq!(get(&proxy.url("/pass/a"), &[]).await.status, 200);
    // Idle past the first exchange's deadline.
    tokio::time::sleep(Duration::from_millis(2_300)).await;

    let started = std::time::Instant::now();
    let r = get(&proxy.url("/slow/1200"), &[]).await;
    assert_eq!(r.status, 200, "1.2 s is within a fresh 2 s");
    assert!(started.elapsed() >= Duration::from_millis(1_200));
    assert_eq!(origin.accepted(), 1, "on the same connection");

    let started = std::time::Instant::now();
    let r = get(&proxy.url("/slow/4000"), &[]).await;
    assert_eq!(r.status, 504);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_900) && took < Duration::from_millis(2_900),
        "timed out at 2 s: {took:?}"
    );
}

/// An app that closes every connection after one answer, without saying
/// so: each request still gets its answer (a request the closed connection
/// never sent goes out on a new one; a GET that was sent is retried once).
#[tokio::test]
async fn connections_the_app_closed_are_not_used() {
    trace_init();
    let origin = Origin::start(Mode::SilentClose).await;
    let proxy = TestProxy::start(&config(&origin.url, ROUTES)).await;
    for i in 0..20 {
        let r = get(&proxy.url(&format!("/pass?n={i}")), &[]).await;
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.text(), "ok");
        if i % 4 == 0 {
            // Give the close time to arrive, as between real requests.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(origin.accepted() >= 20);
}

/// A connection is busy until its response body is read: a request made
/// meanwhile gets another one at once. A client that leaves mid-body gets
/// its upstream connection closed, with the rest of the body unread, never
/// handed to a later request.
#[tokio::test]
async fn a_half_read_response_closes_its_connection() {
    trace_init();
    let origin = Origin::start(Mode::KeepAlive).await;
    let proxy = TestProxy::start(&config(&origin.url, ROUTES)).await;
    let addr = proxy
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut client = TcpStream::connect(&addr).await.unwrap();
    client
        .write_all(b"GET /pass/big HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0 && first.starts_with(b"HTTP/1.1 200"));
    // The big body is stalled on the client: the next request must not
    // wait for its connection.
    let small = tokio::time::timeout(Duration::from_secs(2), get(&proxy.url("/pass/a"), &[]))
        .await
        .expect("not held up by the busy connection");
    assert_eq!(small.text(), "ok");
    assert_eq!(origin.accepted(), 2);
    drop(client);
    assert!(
        eventually(Duration::from_secs(5), || async { origin.closed() == 1 }).await,
        "the upstream connection with unread body bytes is closed"
    );
    let r = get(&proxy.url("/pass/small"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok", "the next answer is its own");
    assert_eq!(origin.accepted(), 2, "the idle connection was reused");
}

/// Idle pooled connections are closed after `upstream.idle_timeout`.
#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    trace_init();
    let origin = Origin::start(Mode::KeepAlive).await;
    let yaml = config(&origin.url, ROUTES).replace(
        "connect_timeout: 500ms,",
        "connect_timeout: 500ms, idle_timeout: 1s,",
    );
    let proxy = TestProxy::start(&yaml).await;
    let r = get(&proxy.url("/pass"), &[]).await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(origin.closed(), 0, "kept while younger than the timeout");
    assert!(
        eventually(Duration::from_secs(4), || async { origin.closed() == 1 }).await,
        "closed within two reaper periods of the 1 s idle timeout"
    );
    let r = get(&proxy.url("/pass"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(origin.accepted(), 2);
}

/// An origin with keep-alive answering every request with `name` (after
/// `/slow/{ms}`'s wait).
async fn named_origin(name: &'static str) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = Bytes::from_static(name.as_bytes());
            tokio::spawn(serve_keep_alive(stream, Bytes::new(), answer));
        }
    });
    (url, task)
}

/// When a reload points cachecar at another upstream, a connection to the
/// old one that comes back afterwards (its response read after the switch)
/// is closed, not pooled beside the new upstream's.
#[tokio::test]
async fn a_connection_to_the_previous_upstream_is_not_reused_after_a_switch() {
    trace_init();
    let (a, a_task) = named_origin("a").await;
    let (b, b_task) = named_origin("b").await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pool-switch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cachecar.yaml");
    let reload = "reload: { poll_interval: 0s }\n";
    std::fs::write(&file, config(&a, reload)).unwrap();
    let proxy = TestProxy::start_file(&file).await;
    assert_eq!(get(&proxy.url("/pass"), &[]).await.text(), "a");

    // An answer from `a` that ends after the switch to `b`.
    let slow = tokio::spawn({
        let url = proxy.url("/slow/1500");
        async move { get(&url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(&file, config(&b, reload)).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || async {
            get(&proxy.url("/pass"), &[]).await.text() == "b"
        })
        .await,
        "the reload points cachecar at b"
    );
    assert_eq!(slow.await.unwrap().text(), "a");
    for i in 0..5 {
        let r = get(&proxy.url(&format!("/pass?n={i}")), &[]).await;
        assert_eq!(r.text(), "b", "a connection to the old upstream was reused");
    }
    a_task.abort();
    b_task.abort();
}
