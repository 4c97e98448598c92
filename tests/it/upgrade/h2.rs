//! WebSocket over HTTP/2 (RFC 8441): an extended `CONNECT` from an HTTP/2
//! client reaches the app as an HTTP/1.1 WebSocket handshake, and the
//! stream carries the frames both ways.

use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;

/// Sends an extended CONNECT for `path` on a new HTTP/2 connection to
/// `proxy`; its response and, on a 200, the stream.
async fn extended_connect(
    proxy: &TestProxy,
    path: &str,
) -> (http::StatusCode, Option<hyper::upgrade::Upgraded>) {
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // The server's SETTINGS (which enable extended CONNECT) arrive just
    // after the handshake; ask again until they have (bounded).
    for _ in 0..50 {
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("http://api.test{path}"))
            .header("sec-websocket-version", "13")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        send.ready().await.unwrap();
        match send.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let upgraded = match status.is_success() {
                    true => Some(hyper::upgrade::on(response).await.unwrap()),
                    false => None,
                };
                return (status, upgraded);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("the extended CONNECT was never sent");
}

#[tokio::test]
async fn a_websocket_over_http2_reaches_an_http1_app() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = TestProxy::start(&config(&app.url(), "")).await;
    let (status, stream) = extended_connect(&proxy, "/ws").await;
    assert_eq!(status, 200);
    let stream = TokioIo::new(stream.expect("the stream"));
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    ws.send(Message::text("over h2")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert_eq!(echoed.unwrap().unwrap().unwrap(), Message::text("over h2"));
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert_eq!(
        echoed.unwrap().unwrap().unwrap(),
        Message::binary(vec![1, 2, 3])
    );
    let tunnelled = [("route", "none"), ("result", "tunnelled")];
    assert_eq!(
        proxy.counter("cachecar_upgrades_total", &tunnelled).await,
        1.0
    );
    // A refusal from the app comes back as it came, and opens nothing.
    let (status, stream) = extended_connect(&proxy, "/refuse").await;
    assert_eq!(status, 403);
    assert!(stream.is_none());
}
