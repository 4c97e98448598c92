//! SIGTERM under continuous load: clients on keep-alive connections and
//! clients opening a connection per request keep sending through the drain
//! delay and the close. A request is either refused (no connection) or
//! answered in full; none is accepted and then cut off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestProxy, config, trace_init};

/// How one request ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// A whole response; whether it asked to close the connection.
    Answered { close: bool },
    /// The connection was gone before the request was written.
    NotSent,
    /// Written, then the connection ended without a whole response.
    CutOff(String),
}

/// Sends one GET on `conn` and reads the whole response.
async fn exchange(conn: &mut TcpStream, path: &str) -> Ended {
    let request = format!("GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n");
    if conn.write_all(request.as_bytes()).await.is_err() {
        return Ended::NotSent;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
        match read {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            other => return Ended::CutOff(format!("{other:?} after {seen:?}")),
        }
        let text = String::from_utf8_lossy(&seen).to_lowercase();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if seen.len() >= head_end + 4 + length {
                return Ended::Answered {
                    close: text[..head_end].contains("connection: close"),
                };
            }
        }
    }
}

/// A client that sends requests until its connections are refused, on one
/// keep-alive connection at a time (or a new one per request).
async fn client(addr: SocketAddr, keep_alive: bool, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let (mut answered, mut cut) = (0, Vec::new());
    let mut conn: Option<TcpStream> = None;
    for i in 0..2000 {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let (mut c, reused) = match conn.take() {
            Some(c) => (c, true),
            None => match TcpStream::connect(addr).await {
                Ok(c) => (c, false),
                Err(_) => break, // refused: the listener is closed
            },
        };
        match exchange(&mut c, &format!("/load/{i}")).await {
            Ended::Answered { close } => {
                answered += 1;
                if keep_alive && !close {
                    conn = Some(c);
                }
            }
            Ended::NotSent => {}
            Ended::CutOff(how) => {
                cut.push(format!("{}: {how}", if reused { "reused" } else { "new" }))
            }
        }
    }
    (answered, cut)
}

#[tokio::test]
async fn shutdown_under_continuous_load_cuts_no_request_off() {
    trace_init();
    let upstream = super::answering("done", Duration::from_millis(2)).await;
    let yaml = config(&upstream.uri(), "").replace("drain_delay: 0s", "drain_delay: 300ms");
    let proxy = TestProxy::start(&yaml).await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..64)
        .map(|n| tokio::spawn(client(proxy.addr, n % 2 == 0, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.begin_shutdown();
    proxy.join().await;
    stop.store(true, Ordering::Release);
    let (mut answered, mut cut) = (0, Vec::new());
    for c in clients {
        let (a, c) = c.await.unwrap();
        answered += a;
        cut.extend(c);
    }
    assert!(answered > 100, "the load ran: {answered} answered");
    assert!(
        cut.is_empty(),
        "{} of {answered} cut off: {cut:?}",
        cut.len()
    );
}
