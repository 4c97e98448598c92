//! Interim responses: the app's `103 Early Hints` reach an HTTP/1.1 client
//! while the app is still working, ahead of the final response, and are
//! never stored; `100 Continue` stays hyper's.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;

/// With fields about the connection, which never reach the client.
const HINTS: &[u8] = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nConnection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n";
const FINAL: &[u8] =
    b"HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 5\r\n\r\nhello";

/// An app that answers each request with a 103, then, once told to, the
/// final response.
async fn hinting_app() -> (SocketAddr, mpsc::UnboundedSender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, mut told) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            loop {
                if read_head(&mut stream).await.is_none() {
                    break;
                }
                stream.write_all(HINTS).await.unwrap();
                if told.recv().await.is_none() {
                    return;
                }
                stream.write_all(FINAL).await.unwrap();
            }
        }
    });
    (addr, go)
}

/// Reads one request head (or a response head) whole; `None` at EOF.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// Reads until `n` bytes have come, or two seconds pass.
async fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut out))
        .await
        .expect("in time")
        .expect("read");
    out
}

#[tokio::test]
async fn early_hints_reach_the_client_before_the_final_response() {
    trace_init();
    let (app, go) = hinting_app().await;
    let proxy = TestProxy::start(&config(&format!("http://{app}"), PLAIN)).await;
    let mut client = TcpStream::connect(proxy.url("").trim_start_matches("http://"))
        .await
        .unwrap();
    client
        .write_all(b"GET /page HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    // The hints come while the app still holds its final response.
    let hints = read_head(&mut client).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&hints),
        "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
    );
    go.send(()).unwrap();
    let head = String::from_utf8(read_head(&mut client).await.unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("x-cache: MISS"), "{head}");
    assert_eq!(read_n(&mut client, 5).await, b"hello");

    // Stored without them: a hit has no interim response.
    client
        .write_all(b"GET /page HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    let head = String::from_utf8(read_head(&mut client).await.unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("x-cache: HIT") && !head.contains("link"),
        "{head}"
    );
    assert_eq!(read_n(&mut client, 5).await, b"hello");
}

/// Requests the cache passes on get them too; an HTTP/1.0 client never
/// does (RFC 9110 §15.2).
#[tokio::test]
async fn early_hints_pass_through_but_not_to_http_1_0() {
    trace_init();
    let (app, go) = hinting_app().await;
    let proxy = TestProxy::start(&config(&format!("http://{app}"), PLAIN)).await;
    let addr = proxy.url("");
    let addr = addr.trim_start_matches("http://");
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(
            b"GET /private HTTP/1.1\r\nHost: example.test\r\nAuthorization: Bearer x\r\n\r\n",
        )
        .await
        .unwrap();
    let hints = read_head(&mut client).await.unwrap();
    assert!(hints.starts_with(b"HTTP/1.1 103 Early Hints\r\n"));
    go.send(()).unwrap();
    let head = String::from_utf8(read_head(&mut client).await.unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(read_n(&mut client, 5).await, b"hello");

    let mut old = TcpStream::connect(addr).await.unwrap();
    old.write_all(b"GET /old HTTP/1.0\r\nHost: example.test\r\n\r\n")
        .await
        .unwrap();
    go.send(()).unwrap();
    let head = String::from_utf8(read_head(&mut old).await.unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert_eq!(read_n(&mut old, 5).await, b"hello");
}

/// `Expect: 100-continue`: the client gets one `100 Continue` (hyper's,
/// once the body is wanted), never a second one from the app, then the
/// final response.
#[tokio::test]
async fn one_100_continue_reaches_the_client() {
    trace_init();
    let app = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("PUT"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&app)
        .await;
    let proxy = TestProxy::start(&config(&app.uri(), PLAIN)).await;
    let addr = proxy.url("");
    let mut client = TcpStream::connect(addr.trim_start_matches("http://"))
        .await
        .unwrap();
    client
        .write_all(b"PUT /x HTTP/1.1\r\nHost: example.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let interim = String::from_utf8(read_head(&mut client).await.unwrap()).unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"hello").await.unwrap();
    let head = String::from_utf8(read_head(&mut client).await.unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    assert_eq!(app.received_requests().await.unwrap()[0].body, b"hello");
}
