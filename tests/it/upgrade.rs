//! `Upgrade` tunnels: a real WebSocket echo app (tokio-tungstenite) behind
//! cachecar, real WebSocket clients, and raw sockets for what must not
//! open a tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

mod h2;
mod limits;

/// A WebSocket app: `/ws` and `/api/live` echo every text and binary
/// message and close when told `bye`; `/refuse` answers the handshake 403,
/// other paths 200; a request that does not ask to upgrade gets a plain
/// `200 plain`.
pub(super) struct EchoApp {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoApp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(echo(stream));
            }
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn echo(mut stream: TcpStream) {
    let head = peek_head(&stream).await;
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let answer = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let refusal = match path.as_str() {
        _ if !head.contains("\r\nupgrade:") => Some(answer("200 OK", "plain")),
        "/ws" | "/api/live" => None,
        "/refuse" => Some(answer("403 Forbidden", "no websocket here (403)")),
        _ => Some(answer("200 OK", "no websocket here (200)")),
    };
    if let Some(refusal) = refusal {
        let _ = stream.write_all(refusal.as_bytes()).await;
        return;
    }
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        let echoed = match message {
            Message::Text(t) if t.as_str() == "bye" => ws.close(None).await,
            m @ (Message::Text(_) | Message::Binary(_)) => ws.send(m).await,
            _ => Ok(()),
        };
        if echoed.is_err() {
            return;
        }
    }
}

/// The request head waiting on `stream`, lower-cased, read without
/// taking it.
async fn peek_head(stream: &TcpStream) -> String {
    let mut buf = [0u8; 4096];
    let mut head = String::new();
    for _ in 0..50 {
        let Ok(n) = stream.peek(&mut buf).await else {
            break;
        };
        head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        if head.contains("\r\n\r\n") || n == buf.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    head
}

pub(super) type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A WebSocket client connected through `proxy` to `path`.
pub(super) async fn connect(proxy: &TestProxy, path: &str) -> Client {
    let url = format!("ws://{}{path}", proxy.addr);
    let (ws, response) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("handshake within 5 s")
    .expect("handshake succeeds through cachecar");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers()["cache-status"],
        "cachecar; fwd=bypass; detail=upgrade"
    );
    ws
}

/// The next data or close message, within 5 s.
pub(super) async fn next(ws: &mut Client) -> Option<Message> {
    loop {
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s");
        match got {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

const ROUTES: &str = "routes:\n  - { name: everything, match: \"GET /{*path}\" }\n";

#[tokio::test]
async fn messages_cross_both_ways_and_the_client_closes() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = TestProxy::start(&config(&app.url(), ROUTES)).await;
    let mut ws = connect(&proxy, "/ws").await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("hello")));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::binary(binary)));
    assert_eq!(
        proxy.metric("cachecar_upgrade_tunnels_open", &[]).await,
        1.0
    );
    ws.close(None).await.unwrap();
    // The app answers the close; then both connections end.
    assert!(matches!(
        next(&mut ws).await,
        Some(Message::Close(_)) | None
    ));
    drop(ws);
    let closed = eventually(Duration::from_secs(5), || async {
        let text = proxy.scrape().await.0;
        let closed = [("reason", "closed")];
        metric_value(&text, "cachecar_upgrade_tunnels_closed_total", &closed) == Some(1.0)
    })
    .await;
    assert!(closed, "the tunnel is counted closed");
    let scrape = proxy.scrape().await;
    assert_eq!(scrape.sample("cachecar_upgrade_tunnels_open", &[]), 0.0);
    let tunnelled = [("route", "everything"), ("result", "tunnelled")];
    assert_eq!(scrape.sample("cachecar_upgrades_total", &tunnelled), 1.0);
    // Nothing about a handshake is stored: the route never hit or missed.
    let route = [("route", "everything")];
    assert_eq!(scrape.sample("cachecar_cache_misses_total", &route), 0.0);
}

#[tokio::test]
async fn the_app_closes_and_the_client_is_told() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = TestProxy::start(&config(&app.url(), "")).await;
    let mut ws = connect(&proxy, "/api/live").await;
    ws.send(Message::text("one")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("one")));
    ws.send(Message::text("bye")).await.unwrap();
    assert!(matches!(next(&mut ws).await, Some(Message::Close(_))));
    assert_eq!(next(&mut ws).await, None, "then the connection ends");
}

#[tokio::test]
async fn many_tunnels_at_once_keep_their_own_messages() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = std::sync::Arc::new(TestProxy::start(&config(&app.url(), "")).await);
    let mut clients = Vec::new();
    for c in 0..64 {
        let proxy = proxy.clone();
        clients.push(tokio::spawn(async move {
            let mut ws = connect(&proxy, "/ws").await;
            for i in 0..20 {
                let text = format!("client {c} message {i}");
                ws.send(Message::text(text.clone())).await.unwrap();
                assert_eq!(next(&mut ws).await, Some(Message::text(text)));
            }
            ws.close(None).await.unwrap();
            drop(ws);
        }));
    }
    for client in clients {
        client.await.expect("every client gets its own echoes");
    }
    let tunnelled = [("route", "none"), ("result", "tunnelled")];
    assert_eq!(
        proxy.counter("cachecar_upgrades_total", &tunnelled).await,
        64.0
    );
}

/// A handshake and, in the same write, a request that must be read as HTTP
/// if no tunnel opens: the app's 200 or 403 is passed back and the second
/// request is answered on its own (no byte was spliced to the app).
#[tokio::test]
async fn an_answer_other_than_101_opens_no_tunnel() {
    trace_init();
    let app = EchoApp::start().await;
    let proxy = TestProxy::start(&config(&app.url(), "")).await;
    for (path, status) in [("/refuse", "403"), ("/plain", "200")] {
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\
             GET /second HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"
        );
        let text = exchange(proxy.addr, handshake.as_bytes()).await;
        let statuses: Vec<&str> = text
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &text[i + 9..i + 12])
            .collect();
        assert_eq!(statuses, [status, "200"], "{text}");
        assert!(
            text.contains(&format!("no websocket here ({status})")),
            "{text}"
        );
    }
    let refused = [("route", "none"), ("result", "refused")];
    assert_eq!(
        proxy.counter("cachecar_upgrades_total", &refused).await,
        2.0
    );
    assert_eq!(
        proxy.metric("cachecar_upgrade_tunnels_open", &[]).await,
        0.0
    );
}

/// Writes `bytes` and reads until the server closes (at most 5 s).
pub(super) async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut text = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut text));
    let _ = read.await;
    String::from_utf8_lossy(&text).into_owned()
}
