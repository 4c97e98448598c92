//! TLS and HTTP/2 to the app: an HTTPS app with a CA the test made,
//! reached through cachecar with the name checked, with and without a
//! client certificate, over HTTP/2 when ALPN agrees; and h2c.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::certs::TestCa;
use crate::support::*;

/// An app that answers every request `200 secure <path>`, cacheable, with
/// the HTTP version it was asked in (`x-version`) and whether the
/// connection presented a client certificate (`x-client-cert`); over TLS
/// when given a server config.
struct App {
    addr: SocketAddr,
    /// Connections accepted (TLS handshakes begun).
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl App {
    async fn start(tls: Option<rustls::ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => serve(stream, false).await,
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let client_cert = tls.get_ref().1.peer_certificates().is_some();
                            serve(tls, client_cert).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }
}

async fn serve<S>(stream: S, client_cert: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: http::Request<_>| async move {
        let response = http::Response::builder()
            .header("cache-control", "max-age=60")
            .header("x-version", format!("{:?}", request.version()))
            .header("x-client-cert", if client_cert { "yes" } else { "no" })
            .body(Full::new(Bytes::from(format!(
                "secure {}",
                request.uri().path()
            ))))
            .unwrap();
        Ok::<_, std::convert::Infallible>(response)
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// cachecar in front of `https://localhost:<port>` with `tls` as its
/// `upstream.tls` (and `more` in `upstream:`).
async fn proxy_for(app: &App, tls: &str, more: &str) -> TestProxy {
    let yaml = config(&format!("https://localhost:{}", app.addr.port()), ROUTES).replace(
        "timeout: 2s }",
        &format!("timeout: 2s, tls: {tls}{more} }}"),
    );
    TestProxy::start(&yaml).await
}

const ROUTES: &str = "routes:\n  - { name: secure, match: \"GET /{*path}\" }\n";

#[tokio::test]
async fn a_verified_app_is_reached_over_http2_when_alpn_agrees() {
    trace_init();
    let ca = TestCa::new("app-ca");
    let leaf = ca.leaf("app", &["localhost"], false);
    let app = App::start(Some(ca.server(&leaf, &[b"h2", b"http/1.1"], None))).await;
    let tls = format!("{{ ca_file: \"{}\" }}", ca.ca_file().display());
    let proxy = proxy_for(&app, &tls, "").await;
    let first = get(&proxy.url("/a"), &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "secure /a");
    assert_eq!(first.header("x-version"), "HTTP/2.0");
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/a"), &[]).await.x_cache(), "HIT");
    // Misses in parallel share the one HTTP/2 connection.
    let misses: Vec<_> = (0..16)
        .map(|i| tokio::spawn(get_owned(proxy.url(&format!("/p{i}")))))
        .collect();
    for miss in misses {
        assert_eq!(miss.await.unwrap(), 200);
    }
    assert_eq!(app.connections.load(Ordering::SeqCst), 1);
}

async fn get_owned(url: String) -> u16 {
    get(&url, &[]).await.status.as_u16()
}

#[tokio::test]
async fn http1_is_spoken_when_asked_or_when_the_app_offers_nothing_else() {
    trace_init();
    let ca = TestCa::new("app-ca");
    let leaf = ca.leaf("app", &["localhost"], false);
    let tls = format!("{{ ca_file: \"{}\" }}", ca.ca_file().display());
    let both = App::start(Some(ca.server(&leaf, &[b"h2", b"http/1.1"], None))).await;
    let proxy = proxy_for(&both, &tls, ", http_version: http1").await;
    assert_eq!(
        get(&proxy.url("/a"), &[]).await.header("x-version"),
        "HTTP/1.1"
    );
    let http1_only = App::start(Some(ca.server(&leaf, &[b"http/1.1"], None))).await;
    let proxy = proxy_for(&http1_only, &tls, "").await;
    assert_eq!(
        get(&proxy.url("/a"), &[]).await.header("x-version"),
        "HTTP/1.1"
    );
    let no_alpn = App::start(Some(ca.server(&leaf, &[], None))).await;
    let proxy = proxy_for(&no_alpn, &tls, "").await;
    assert_eq!(
        get(&proxy.url("/a"), &[]).await.header("x-version"),
        "HTTP/1.1"
    );
}

/// A certificate for another name, or from a CA cachecar does not trust,
/// is refused: 502, and the exchange counted as an error.
#[tokio::test]
async fn a_wrong_name_or_an_unknown_ca_is_refused() {
    trace_init();
    let ca = TestCa::new("app-ca");
    let other = ca.leaf("other", &["other.example"], false);
    let app = App::start(Some(ca.server(&other, &[b"http/1.1"], None))).await;
    let tls = format!("{{ ca_file: \"{}\" }}", ca.ca_file().display());
    let proxy = proxy_for(&app, &tls, "").await;
    let refused = get(&proxy.url("/a"), &[]).await;
    assert_eq!(refused.status, 502);
    let errors = [("route", "secure"), ("status_class", "error")];
    assert_eq!(
        proxy
            .counter("cachecar_upstream_requests_total", &errors)
            .await,
        1.0
    );
    // The name it does carry, set as the one to check, is accepted.
    let named = format!(
        "{{ ca_file: \"{}\", server_name: other.example }}",
        ca.ca_file().display()
    );
    let proxy = proxy_for(&app, &named, "").await;
    assert_eq!(get(&proxy.url("/a"), &[]).await.status, 200);
    // Another CA's certificate for the right name is refused.
    let stranger = TestCa::new("stranger-ca");
    let leaf = stranger.leaf("app", &["localhost"], false);
    let app = App::start(Some(stranger.server(&leaf, &[b"http/1.1"], None))).await;
    let proxy = proxy_for(&app, &tls, "").await;
    assert_eq!(get(&proxy.url("/a"), &[]).await.status, 502);
    // insecure_skip_verify takes it, and says so loudly at load.
    let insecure = "{ insecure_skip_verify: true }";
    let yaml = config(&format!("https://localhost:{}", app.addr.port()), ROUTES)
        .replace("timeout: 2s }", &format!("timeout: 2s, tls: {insecure} }}"));
    let loaded = cachecar::config::load_str(&yaml, &|_| None).unwrap();
    assert!(loaded.warnings.iter().any(|w| w.contains("NOT checked")));
    let proxy = proxy_for(&app, insecure, "").await;
    assert_eq!(get(&proxy.url("/a"), &[]).await.status, 200);
}

#[tokio::test]
async fn an_app_that_asks_for_a_client_certificate_gets_ours() {
    trace_init();
    let ca = TestCa::new("app-ca");
    let clients = TestCa::new("client-ca");
    let leaf = ca.leaf("app", &["localhost", "127.0.0.1"], false);
    let client = clients.leaf("cachecar", &["cachecar"], true);
    let server = ca.server(&leaf, &[b"h2", b"http/1.1"], Some(&clients));
    let app = App::start(Some(server)).await;
    let anonymous = format!("{{ ca_file: \"{}\" }}", ca.ca_file().display());
    let proxy = proxy_for(&app, &anonymous, "").await;
    assert_eq!(get(&proxy.url("/a"), &[]).await.status, 502);
    let with_cert = format!(
        "{{ ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\" }}",
        ca.ca_file().display(),
        client.cert_file.display(),
        client.key_file.display()
    );
    let proxy = proxy_for(&app, &with_cert, "").await;
    let reply = get(&proxy.url("/a"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-client-cert"), "yes");
}

/// `http_version: http2` on an `http://` upstream: HTTP/2 with prior
/// knowledge (h2c).
#[tokio::test]
async fn h2c_with_prior_knowledge() {
    trace_init();
    let app = App::start(None).await;
    let yaml = config(&format!("http://{}", app.addr), ROUTES)
        .replace("timeout: 2s }", "timeout: 2s, http_version: http2 }");
    let proxy = TestProxy::start(&yaml).await;
    let reply = get(&proxy.url("/a"), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-version"), "HTTP/2.0");
}

#[test]
fn bad_tls_settings_are_reported_at_load() {
    let ca = TestCa::new("load-ca");
    let leaf = ca.leaf("x", &["localhost"], true);
    let load = |upstream: &str| {
        let yaml = format!("upstream: {upstream}\n");
        match cachecar::config::load_str(&yaml, &|_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let missing = load("{ url: \"https://app\", tls: { ca_file: /nonexistent/ca.pem } }");
    assert!(
        missing.contains("upstream.tls.ca_file") && missing.contains("/nonexistent/ca.pem"),
        "{missing}"
    );
    let not_pem = load(&format!(
        "{{ url: \"https://app\", tls: {{ ca_file: \"{}\" }} }}",
        leaf.key_file.display()
    ));
    assert!(
        not_pem.contains("no certificate") || not_pem.contains("PEM"),
        "{not_pem}"
    );
    let half = load(&format!(
        "{{ url: \"https://app\", tls: {{ cert_file: \"{}\" }} }}",
        leaf.cert_file.display()
    ));
    assert!(half.contains("go together"), "{half}");
    let plain = load("{ url: \"http://app\", tls: { insecure_skip_verify: true } }");
    assert!(plain.contains("https:// upstream.url only"), "{plain}");
    let version = load("{ url: \"http://app\", http_version: http3 }");
    assert!(version.contains("upstream.http_version"), "{version}");
}

/// A WebSocket to an HTTPS app that also speaks HTTP/2: the handshake
/// goes on a TLS connection of its own that offers HTTP/1.1 only.
#[tokio::test]
async fn websocket_to_an_https_app() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    trace_init();
    let ca = TestCa::new("ws-ca");
    let leaf = ca.leaf("app", &["localhost"], false);
    let acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(ca.server(&leaf, &[b"h2", b"http/1.1"], None)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(stream).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() && ws.send(m).await.is_err() {
                return;
            }
        }
    });
    let tls = format!("{{ ca_file: \"{}\" }}", ca.ca_file().display());
    let yaml = config(&format!("https://localhost:{port}"), "")
        .replace("timeout: 2s }", &format!("timeout: 2s, tls: {tls} }}"));
    let proxy = TestProxy::start(&yaml).await;
    let url = format!("ws://{}/ws", proxy.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    let echoed = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await;
    assert_eq!(echoed.unwrap().unwrap().unwrap(), Message::text("over tls"));
    app.abort();
}
