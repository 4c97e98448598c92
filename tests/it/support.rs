//! Shared helpers: start cachecar in-process on loopback ports, talk to it
//! over real TCP, and wait for asynchronous effects with a deadline.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachecar::App;
use cachecar::clock::Clock;
use cachecar::config::load_str;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The admin token every test proxy uses.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running cachecar.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The clock it judges freshness by: `clock.advance(d)` ages every
    /// entry by `d` without waiting.
    pub clock: Clock,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Starts tracing once per test binary; `RUST_LOG` shows proxy logs.
pub fn trace_init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A config on loopback ports with an admin token, no drain delay, a 60 s
/// fallback TTL (unless `rest` has its own `defaults:`), and `rest` (routes,
/// invalidate, ...) appended.
pub fn config(upstream: &str, rest: &str) -> String {
    let defaults = if rest.contains("defaults:") {
        ""
    } else {
        "defaults: { ttl: 60s }\n"
    };
    format!(
        "listen: 127.0.0.1:0\n\
         upstream: {{ url: \"{upstream}\", connect_timeout: 500ms, timeout: 2s }}\n\
         admin: {{ listen: 127.0.0.1:0, token: {ADMIN_TOKEN} }}\n\
         shutdown: {{ drain_delay: 0s, grace_period: 5s }}\n\
         {defaults}{rest}"
    )
}

impl TestProxy {
    /// Loads `yaml` and serves it.
    pub async fn start(yaml: &str) -> Self {
        let config =
            load_str(yaml, &|_| None).unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        Self::serve(config).await
    }

    /// Loads the file at `path` (so it reloads) and serves it.
    pub async fn start_file(path: &std::path::Path) -> Self {
        let config = cachecar::config::load_file(path, &|_| None)
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        Self::serve(config).await
    }

    async fn serve(config: cachecar::config::RuntimeConfig) -> Self {
        let clock = Clock::manual();
        let app = App::bind_with_clock(config, clock.clone())
            .await
            .expect("bind loopback ports");
        let (addr, admin) = (app.proxy_addr(), app.admin_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Self {
            addr,
            admin,
            clock,
            shutdown,
            task,
        }
    }

    /// `http://<proxy>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<admin>/<path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Starts the shutdown; `join` waits for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for the app to stop, with a deadline.
    pub async fn join(self) {
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("app stops within 10 s")
            .expect("app task does not panic");
    }

    /// The value of one sample of a metric, e.g.
    /// `metric("cachecar_cache_hits_total", &[("route", "docs")])`.
    ///
    /// # Panics
    ///
    /// When there is no such sample: a zero that is asserted must be one
    /// cachecar exports, not a name that has gone.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = get(&self.admin_url("/metrics"), &[]).await.text();
        metric_value(&text, name, labels)
            .unwrap_or_else(|| panic!("no sample of {name} with {labels:?}"))
    }

    /// One scrape of `/metrics`, to read many samples from.
    pub async fn scrape(&self) -> Scrape {
        Scrape(get(&self.admin_url("/metrics"), &[]).await.text())
    }

    /// A counter's value: its series appear with their first event, so
    /// one without a sample yet counts 0.
    ///
    /// # Panics
    ///
    /// When no counter of that name is exported at all.
    pub async fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = get(&self.admin_url("/metrics"), &[]).await.text();
        assert!(
            text.contains(&format!("# TYPE {name} counter")),
            "cachecar exports no counter named {name}"
        );
        metric_value(&text, name, labels).unwrap_or(0.0)
    }
}

/// The text of one `/metrics` scrape.
pub struct Scrape(pub String);

impl Scrape {
    /// The value of one sample, as [`TestProxy::metric`] reads it.
    ///
    /// # Panics
    ///
    /// When there is no such sample.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.0, name, labels)
            .unwrap_or_else(|| panic!("no sample of {name} with {labels:?}"))
    }
}

/// The sum of the samples in Prometheus text whose labels include all of
/// `labels` (series are exported at zero from the start, so one label set
/// may match several); `None` when none does.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

impl Reply {
    /// The body as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as a string ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("<binary>"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `X-Cache`.
    pub fn x_cache(&self) -> String {
        self.header("x-cache")
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `url` with `headers`.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::GET, url, headers, Bytes::new()).await
}

/// Sends a request and reads the whole response (10 s deadline).
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body.into()))
        .expect("valid test request");
    let exchange = async {
        let resp = client()
            .request(req)
            .await
            .expect("request reaches cachecar");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body reads").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("response within 10 s")
}

/// Polls `check` every 20 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream that answers with scripted responses in order (repeating the
/// last) and records what it received: the "scripted upstream" of the RFC
/// tests.
pub struct Scripted {
    pub server: wiremock::MockServer,
}

#[derive(Clone)]
struct Script(
    std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<wiremock::ResponseTemplate>>>,
);

impl wiremock::Respond for Script {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let mut queue = self.0.lock().unwrap();
        if queue.len() > 1 {
            queue.pop_front().unwrap()
        } else {
            queue.front().cloned().expect("a scripted response")
        }
    }
}

impl Scripted {
    /// Serves `responses` to GET and HEAD requests, in order.
    pub async fn start(responses: Vec<wiremock::ResponseTemplate>) -> Self {
        let server = wiremock::MockServer::start().await;
        let script = Script(std::sync::Arc::new(std::sync::Mutex::new(responses.into())));
        for method in ["GET", "HEAD"] {
            wiremock::Mock::given(wiremock::matchers::method(method))
                .respond_with(script.clone())
                .mount(&server)
                .await;
        }
        Self { server }
    }

    /// Requests received so far.
    pub async fn requests(&self) -> Vec<wiremock::Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// How many requests were received.
    pub async fn count(&self) -> usize {
        self.requests().await.len()
    }
}

/// A response template with headers.
pub fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> wiremock::ResponseTemplate {
    let mut t = wiremock::ResponseTemplate::new(status).set_body_string(body.to_string());
    for (k, v) in headers {
        t = t.append_header(*k, *v);
    }
    t
}

/// A minimal upstream that can really go away: stopping it closes the port,
/// so connections are refused (wiremock servers are pooled and reused).
pub struct TinyUpstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TinyUpstream {
    /// Answers every request with `status`, `headers` and `body`, closing
    /// each connection after one exchange.
    pub async fn start(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: &'static str,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let headers = headers.to_vec();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let headers = headers.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let mut resp = http::Response::builder().status(status);
                        for (k, v) in &headers {
                            resp = resp.header(*k, *v);
                        }
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from_static(body.as_bytes())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    /// `http://addr`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the port: from now on connections are refused.
    pub fn stop(&self) {
        self.task.abort();
    }
}
