//! Monitoring proven for real: a `prometheus` (Debian's package, installed
//! by the test script) scrapes cachecar's admin port every second with the
//! shipped alert rules loaded, after a mixed workload over the tiered store;
//! then every expression of the Grafana dashboard and of the rules is
//! evaluated through Prometheus's HTTP API, and a frozen Redis takes the
//! circuit-open alert to pending.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::redis_server::{RedisServer, free_port};
use crate::support::{TestProxy, config, eventually, get, send, trace_init};

const RULES: &str = "routes:\n  - { name: docs, match: \"GET /docs/{id}\", ttl: 1h }\n  - { name: broken, match: \"GET /broken/{id}\" }\n  - { name: preview, match: \"GET /preview/{id}\", ttl: 1h, mode: shadow }\ninvalidate:\n  - { match: \"PUT /docs/{id}\", purge: [\"GET /docs/{id}\"] }\n";

/// A running Prometheus, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    /// Scrapes `target` (host:port) every second, with the shipped rules
    /// evaluated every second.
    fn start(target: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cachecar-prom-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rules = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/prometheus/cachecar-rules.yml"
        );
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nrule_files: [\"{rules}\"]\nscrape_configs:\n  - job_name: cachecar\n    static_configs: [{{ targets: [\"{target}\"] }}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/test.sh installs it)");
        Self { child, port, dir }
    }

    /// `/api/v1/<path>` as JSON.
    async fn api(&self, path: &str) -> Value {
        let reply = get(
            &format!("http://127.0.0.1:{}/api/v1/{path}", self.port),
            &[],
        )
        .await;
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null)
    }

    /// The answer to an instant query.
    async fn answer(&self, expr: &str) -> Value {
        self.api(&format!("query?query={}", url_escape(expr))).await
    }

    /// The result of an instant query; panics when Prometheus refuses it.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let answer = self.answer(expr).await;
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `expr` of the Grafana dashboard, with its panel title, and
/// Grafana's `$__rate_interval` made what it would be for a 1 s scrape.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/grafana/dashboards/cachecar.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    let mut panels: Vec<Value> = dashboard["panels"].as_array().cloned().unwrap_or_default();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        for target in panel["targets"].as_array().cloned().unwrap_or_default() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("").to_string();
                out.push((title, expr.replace("$__rate_interval", "15s")));
            }
        }
    }
    out
}

/// The mixed workload: misses and hits, a purge, a pass-through, requests
/// on a shadow route and an upstream error, a few times over.
async fn workload(proxy: &TestProxy) {
    for round in 0..3 {
        for id in 0..5 {
            get(&proxy.url(&format!("/docs/{id}")), &[]).await;
            get(&proxy.url(&format!("/docs/{id}")), &[]).await;
        }
        send(
            Method::PUT,
            &proxy.url(&format!("/docs/{round}")),
            &[],
            "{}",
        )
        .await;
        get(&proxy.url("/unrouted"), &[]).await;
        for _ in 0..3 {
            get(&proxy.url("/preview/1"), &[]).await;
        }
    }
    // Enough failing answers for the alert's traffic floor (0.1/s over 5m).
    for n in 0..40 {
        get(&proxy.url(&format!("/broken/{n}")), &[]).await;
    }
}

/// The app: 500 on `/broken/*`, 200 elsewhere, 204 to PUTs.
async fn app() -> MockServer {
    let app = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/broken/"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("doc"))
        .mount(&app)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&app)
        .await;
    app
}

/// Waits until `prometheus` is ready and scrapes cachecar.
async fn scraping(prometheus: &Prometheus) {
    let listening = eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", prometheus.port))
            .await
            .is_ok()
    })
    .await;
    assert!(listening, "prometheus listens");
    // It answers 503 while it starts.
    let up = eventually(Duration::from_secs(20), || async {
        let answer = prometheus.answer("up{job=\"cachecar\"} == 1").await;
        answer["data"]["result"]
            .as_array()
            .is_some_and(|r| r.len() == 1)
    })
    .await;
    assert!(up, "prometheus scrapes cachecar");
}

/// Every dashboard query evaluates, and the panels that matter have data.
async fn dashboard_evaluates(prometheus: &Prometheus) {
    let must_have_data = [
        "Requests by route and cache status",
        "Hit ratio by route",
        "Latency p50 / p99 by route and cache status",
        "Upstream latency p50 / p99 by route",
        "Upstream requests by status class",
        "Invalidations by rule",
        "Store up / circuit open",
        "Store latency p99 by operation",
        "Shadow routes: would-be hit ratio",
    ];
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "the dashboard's queries: {}",
        queries.len()
    );
    for (title, expr) in &queries {
        let result = prometheus.query(expr).await;
        if must_have_data.contains(&title.as_str()) {
            assert!(!result.is_empty(), "panel {title:?} has no data: {expr}");
        }
    }
}

/// Every shipped rule is loaded, healthy, and its expression evaluates.
async fn rules_evaluate(prometheus: &Prometheus) {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/prometheus/cachecar-rules.yml"
    ))
    .unwrap()
    .matches("- alert:")
    .count();
    let rules = prometheus.api("rules").await;
    let all: Vec<Value> = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(all.len(), shipped, "{rules}");
    for rule in &all {
        assert_eq!(rule["health"], "ok", "{rule}");
        prometheus.query(rule["query"].as_str().unwrap()).await;
    }
}

#[tokio::test]
async fn prometheus_evaluates_every_dashboard_query_and_alert_on_real_data() {
    trace_init();
    let app = app().await;
    let redis = RedisServer::start().await;
    let yaml = config(
        &app.uri(),
        &format!(
            "cache:\n  store: tiered\n  redis: {{ url: \"{}\", timeout: 50ms }}\n  l1: {{ max_bytes: 8MiB, ttl: 5s }}\n{RULES}",
            redis.url()
        ),
    );
    let proxy = TestProxy::start(&yaml).await;
    let admin = proxy.admin_url("");
    let prometheus = Prometheus::start(admin.trim_start_matches("http://").trim_end_matches('/'));
    scraping(&prometheus).await;
    // Rates need two scrapes after the traffic.
    for _ in 0..2 {
        workload(&proxy).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    dashboard_evaluates(&prometheus).await;
    rules_evaluate(&prometheus).await;
    // The app's 500s on `broken` make the upstream-errors alert pending.
    let failing = prometheus
        .query("ALERTS{alertname=\"CachecarUpstreamErrors\",route=\"broken\"}")
        .await;
    assert!(
        !failing.is_empty(),
        "upstream errors on `broken` are pending"
    );

    // A frozen Redis opens the circuit under traffic: the alert goes pending.
    redis.freeze();
    let pending = eventually(Duration::from_secs(20), || async {
        for id in 10..14 {
            get(&proxy.url(&format!("/docs/{id}")), &[]).await;
        }
        !prometheus
            .query("ALERTS{alertname=\"CachecarStoreCircuitOpen\",alertstate=\"pending\"}")
            .await
            .is_empty()
    })
    .await;
    redis.thaw();
    assert!(pending, "the circuit-open alert goes pending");
}
