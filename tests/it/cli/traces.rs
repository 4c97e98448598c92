//! OpenTelemetry traces from the real binary to a collector in the test
//! (OTLP/HTTP, decoded with `opentelemetry-proto`'s types): the spans of a
//! miss, a hit and a pass, with their parents, kinds and attributes, and
//! the context the app receives.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use super::*;

/// An OTLP/HTTP receiver keeping every span it is sent, and the
/// `service.name` of each batch.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    services: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let services: Arc<Mutex<Vec<String>>> = Arc::default();
        let (kept, named) = (Arc::clone(&spans), Arc::clone(&services));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, named) = (Arc::clone(&kept), Arc::clone(&named));
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let (kept, named) = (Arc::clone(&kept), Arc::clone(&named));
                        async move {
                            assert_eq!(request.uri().path(), "/v1/traces");
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for resource in export.resource_spans {
                                let attributes = resource.resource.map(|r| r.attributes);
                                if let Some(name) =
                                    attributes.and_then(|a| text(&a, "service.name"))
                                {
                                    named.lock().unwrap().push(name);
                                }
                                for scope in resource.scope_spans {
                                    kept.lock().unwrap().extend(scope.spans);
                                }
                            }
                            let response = http::Response::new(Full::new(Bytes::new()));
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        Self {
            port,
            spans,
            services,
            task,
        }
    }

    /// Every span's trace id and name, for failure messages.
    fn all(&self) -> Vec<(String, String)> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .map(|s| (hex(&s.trace_id), s.name.clone()))
            .collect()
    }

    fn spans_of(&self, trace: &str) -> Vec<Span> {
        let trace = hex_bytes(trace);
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect()
    }
}

/// A string attribute's value.
fn text(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one span called `name` among `spans`.
fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span in {:?}", names(spans));
    found[0]
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

/// A config on `port` and `admin` for `app`, exporting to the collector on
/// `collector`, with one route.
fn traced_config(port: u16, admin: u16, app: &str, collector: u16) -> std::path::PathBuf {
    write_config(
        "traces",
        &format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
             upstream: {{ url: \"{app}\" }}\nshutdown: {{ drain_delay: 0s }}\n\
             traces: {{ enabled: true, endpoint: \"http://127.0.0.1:{collector}\" }}\n\
             routes:\n  - {{ name: docs, match: \"GET /docs/{{id}}\" }}\n"
        ),
    )
}

#[tokio::test]
async fn a_miss_a_hit_and_a_pass_are_traced_with_their_parents() {
    trace_init();
    let collector = Collector::start().await;
    let app = crate::support::Scripted::start(vec![crate::support::respond(
        200,
        &[("cache-control", "max-age=60")],
        "doc",
    )])
    .await;
    let (port, admin) = (free_port(), free_port());
    let path = traced_config(port, admin, &app.server.uri(), collector.port);
    let child = run_quietly(&path);
    assert!(port_open(port).await, "proxy port opens");
    let traces = [
        ("miss", "/docs/1", "0af7651916cd43dd8448eb211c80319c"),
        ("hit", "/docs/1", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("pass", "/other", "5c0f26fb2b0e4f53b4c2ba1d9ef0a111"),
    ];
    for (_, path, trace) in traces {
        let parent = format!("00-{trace}-b7ad6b7169203331-01");
        let reply = get(
            &format!("http://127.0.0.1:{port}{path}"),
            &[("traceparent", &parent)],
        )
        .await;
        assert_eq!(reply.status, 200);
    }
    let status = tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    // Spans are flushed at shutdown at the latest.
    let arrived = eventually(Duration::from_secs(5), || async {
        traces
            .iter()
            .all(|(_, _, t)| !collector.spans_of(t).is_empty())
    })
    .await;
    assert!(
        arrived,
        "every trace reaches the collector: {:?}",
        collector.all()
    );
    let services = collector.services.lock().unwrap().clone();
    assert!(services.iter().all(|s| s == "cachecar"), "{services:?}");
    let received = app.requests().await;
    for (what, _, trace) in traces {
        check_trace(what, &collector.spans_of(trace), trace, &received);
    }
}

/// The spans of one request: a server span whose parent is the client's,
/// with the status and cache status as attributes; children for the
/// lookup and (but for a hit) the upstream exchange, whose context the app
/// received.
fn check_trace(what: &str, spans: &[Span], trace: &str, received: &[wiremock::Request]) {
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("{what}: a server span in {:?}", names(spans)));
    let parent = hex(&server.parent_span_id);
    assert_eq!(
        parent, "b7ad6b7169203331",
        "{what}: the client's span is its parent"
    );
    let status = text(&server.attributes, "http.response.status_code");
    assert_eq!(status.as_deref(), Some("200"), "{what}");
    let cache = text(&server.attributes, "cachecar.cache_status");
    let expected = if what == "pass" { "bypass" } else { what };
    assert_eq!(cache.as_deref(), Some(expected), "{what}");
    for child in spans.iter().filter(|s| s.span_id != server.span_id) {
        let name = &child.name;
        assert_eq!(
            child.parent_span_id, server.span_id,
            "{what}: {name} is the request's child"
        );
    }
    let client = SpanKind::Client as i32;
    let upstream: Vec<&Span> = spans.iter().filter(|s| s.kind == client).collect();
    if what == "hit" {
        assert!(upstream.is_empty(), "a hit asks no one: {:?}", names(spans));
        named(spans, "cache lookup");
        return;
    }
    assert_eq!(upstream.len(), 1, "{what}: {:?}", names(spans));
    // The app got the upstream span as its parent.
    let sent = format!("00-{trace}-{}-01", hex(&upstream[0].span_id));
    let got = |r: &&wiremock::Request| {
        r.headers
            .get("traceparent")
            .is_some_and(|v| v == sent.as_str())
    };
    assert!(
        received.iter().any(|r| got(&r)),
        "{what}: the app receives {sent}"
    );
    check_route(what, server, spans);
}

/// A routed request's server span is named and labelled by its route; a
/// pass's by its method alone.
fn check_route(what: &str, server: &Span, spans: &[Span]) {
    if what == "miss" {
        assert_eq!(server.name, "GET /docs/{id}");
        let route = text(&server.attributes, "http.route");
        assert_eq!(route.as_deref(), Some("/docs/{id}"));
        let name = text(&server.attributes, "cachecar.route");
        assert_eq!(name.as_deref(), Some("docs"));
        named(spans, "cache lookup");
    } else {
        assert_eq!(server.name, "GET");
        assert_eq!(text(&server.attributes, "cachecar.route"), None);
    }
}

/// A collector that is not there costs requests nothing: they are
/// answered, and the failed exports are counted.
#[tokio::test]
async fn a_missing_collector_fails_no_request() {
    trace_init();
    let app = crate::support::Scripted::start(vec![crate::support::respond(200, &[], "doc")]).await;
    let (port, admin, nowhere) = (free_port(), free_port(), free_port());
    let path = write_config(
        "traces-nowhere",
        &format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
             upstream: {{ url: \"{}\" }}\nshutdown: {{ drain_delay: 0s }}\n\
             traces: {{ enabled: true, endpoint: \"http://127.0.0.1:{nowhere}\", timeout: 1s }}\n",
            app.server.uri()
        ),
    );
    let child = run_quietly(&path);
    assert!(port_open(port).await, "proxy port opens");
    for i in 0..20 {
        let reply = get(&format!("http://127.0.0.1:{port}/p{i}"), &[]).await;
        assert_eq!(reply.status, 200);
    }
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    let failed = [("result", "failed")];
    let counted = eventually(Duration::from_secs(5), || async {
        let text = get(&metrics, &[]).await.text();
        crate::support::metric_value(&text, "cachecar_trace_exports_total", &failed)
            .is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(counted, "failed exports are counted");
    let status = tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
