//! Hot reload, kill switch, warmup and the access log's siblings: what an
//! operator does while traffic flows (issue 5).
//!
//! Config files live in per-test directories under `CARGO_TARGET_TMPDIR`;
//! the ConfigMap test lays one out as the kubelet does (`..data` symlink).

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{ADMIN_TOKEN, TestProxy, config, eventually, get, send, trace_init};

/// An upstream answering every GET 200 with a body naming the path.
async fn upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("body"))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    server
}

/// Upstream requests for `path` so far.
async fn hits(server: &MockServer, path: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == path)
        .count()
}

fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

async fn status(proxy: &TestProxy) -> Value {
    serde_json::from_slice(&get(&proxy.admin_url("/status"), &[]).await.body).expect("json")
}

async fn generation(proxy: &TestProxy) -> u64 {
    status(proxy).await["config"]["generation"]
        .as_u64()
        .unwrap()
}

async fn admin_reload(proxy: &TestProxy) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let reply = send(
        Method::POST,
        &proxy.admin_url("/admin/reload"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    (
        reply.status.as_u16(),
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    )
}

async fn x_cache(proxy: &TestProxy, path: &str) -> String {
    get(&proxy.url(path), &[("host", "api.test")])
        .await
        .x_cache()
}

const DOCS: &str = "routes:\n  - name: docs\n    match: GET /api/docs/{*path}\n";
const DOCS_AND_ITEMS: &str = "routes:\n  - name: docs\n    match: GET /api/docs/{*path}\n  - name: items\n    match: GET /api/items/{id}\n";
/// Tests that must see a file event rather than the poll turn polling off.
const NO_POLL: &str = "reload: { poll_interval: 0s }\n";

#[tokio::test]
async fn a_configmap_symlink_swap_adds_a_route_that_caches() {
    trace_init();
    let up = upstream().await;
    let d = dir("configmap");
    // The kubelet's layout: cachecar.yaml -> ..data/cachecar.yaml,
    // ..data -> ..<timestamp>; an update writes a new timestamped dir,
    // points ..data_tmp at it and renames ..data_tmp over ..data.
    std::fs::create_dir(d.join("..v1")).unwrap();
    write(
        &d.join("..v1/cachecar.yaml"),
        &config(&up.uri(), &format!("{NO_POLL}{DOCS}")),
    );
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/cachecar.yaml", d.join("cachecar.yaml")).unwrap();
    let proxy = TestProxy::start_file(&d.join("cachecar.yaml")).await;
    assert_eq!(
        x_cache(&proxy, "/api/items/1").await,
        "BYPASS",
        "no route yet"
    );

    std::fs::create_dir(d.join("..v2")).unwrap();
    write(
        &d.join("..v2/cachecar.yaml"),
        &config(&up.uri(), &format!("{NO_POLL}{DOCS_AND_ITEMS}")),
    );
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..v1")).unwrap();

    assert!(
        eventually(Duration::from_secs(3), || async {
            generation(&proxy).await == 2
        })
        .await,
        "the swap is applied within seconds, without the poll"
    );
    assert_eq!(x_cache(&proxy, "/api/items/1").await, "MISS");
    assert_eq!(x_cache(&proxy, "/api/items/1").await, "HIT");
    assert_eq!(
        hits(&up, "/api/items/1").await,
        2,
        "the bypass, then one fill"
    );
    assert_eq!(
        status(&proxy).await["config"]["last_reload"]["trigger"],
        "watch"
    );
    assert_eq!(proxy.metric("cachecar_config_generation", &[]).await, 2.0);
}

#[tokio::test]
async fn a_broken_file_is_refused_counted_and_shown_and_the_old_rules_keep_working() {
    trace_init();
    let up = upstream().await;
    let d = dir("broken");
    let file = d.join("cachecar.yaml");
    write(&file, &config(&up.uri(), &format!("{NO_POLL}{DOCS}")));
    let proxy = TestProxy::start_file(&file).await;
    assert_eq!(x_cache(&proxy, "/api/docs/a").await, "MISS");
    let hash = status(&proxy).await["config"]["hash"].clone();

    // An in-place write of a file with two mistakes.
    let broken = config(
        &up.uri(),
        "routes:\n  - name: docs\n    match: GET /api/docs/{*path}\n    ttl: forever\n    colour: blue\n",
    );
    write(&file, &broken);
    assert!(
        eventually(Duration::from_secs(3), || async {
            proxy
                .metric("cachecar_config_reloads_total", &[("result", "error")])
                .await
                == 1.0
        })
        .await,
        "the broken file is counted once"
    );
    let s = status(&proxy).await;
    assert_eq!(s["config"]["generation"], 1);
    assert_eq!(s["config"]["hash"], hash);
    let last = &s["config"]["last_reload"];
    assert_eq!(last["result"], "error");
    let errors: Vec<String> = last["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(errors.len(), 2, "every error: {errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("9:10: routes[0].ttl")),
        "line:column: {errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("colour")), "{errors:?}");
    assert_eq!(
        x_cache(&proxy, "/api/docs/a").await,
        "HIT",
        "old rules still serve"
    );

    // The admin endpoint reports the same, with 422.
    let (code, body) = admin_reload(&proxy).await;
    assert_eq!(code, 422);
    assert_eq!(body["result"], "refused");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);

    // Fixing the file applies it.
    write(
        &file,
        &config(&up.uri(), &format!("{NO_POLL}{DOCS_AND_ITEMS}")),
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            generation(&proxy).await == 2
        })
        .await
    );
    assert_eq!(
        status(&proxy).await["config"]["last_reload"]["result"],
        "ok"
    );
}

#[tokio::test]
async fn admin_reload_applies_reports_restart_only_settings_and_keeps_them() {
    trace_init();
    let up = upstream().await;
    let d = dir("admin");
    let file = d.join("cachecar.yaml");
    // No watch, no poll: only explicit reloads.
    let no_auto = "reload: { watch: false, poll_interval: 0s }\n";
    write(&file, &config(&up.uri(), &format!("{no_auto}{DOCS}")));
    let proxy = TestProxy::start_file(&file).await;

    let (code, body) = admin_reload(&proxy).await;
    assert_eq!((code, body["result"].as_str()), (200, Some("unchanged")));

    // A new route plus a new listen address and memory bound.
    let text = config(
        &up.uri(),
        &format!("{no_auto}cache: {{ memory: {{ max_bytes: 1MiB }} }}\n{DOCS_AND_ITEMS}"),
    )
    .replace("listen: 127.0.0.1:0\n", "listen: 127.0.0.1:1\n");
    write(&file, &text);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(generation(&proxy).await, 1, "nothing reloads by itself");
    let (code, body) = admin_reload(&proxy).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"], "applied");
    assert_eq!(body["generation"], 2);
    let restart: Vec<&str> = body["restart_required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(restart, ["listen", "cache.memory.max_bytes"]);
    // Still listening where it was, and the new route works.
    assert_eq!(x_cache(&proxy, "/api/items/7").await, "MISS");
    assert_eq!(x_cache(&proxy, "/api/items/7").await, "HIT");
    assert_eq!(
        status(&proxy).await["config"]["last_reload"]["restart_required"][0],
        "listen"
    );
}

#[tokio::test]
async fn a_changed_route_does_not_serve_old_entries_and_unchanged_routes_keep_theirs() {
    trace_init();
    let up = upstream().await;
    let d = dir("keyshape");
    let file = d.join("cachecar.yaml");
    let rules = |docs_key: &str| {
        config(
            &up.uri(),
            &format!(
                "reload: {{ watch: false, poll_interval: 0s }}\nroutes:\n  - name: docs\n    match: GET /api/docs/{{*path}}\n    key: {{ query: {docs_key} }}\n  - name: items\n    match: GET /api/items/{{id}}\n"
            ),
        )
    };
    write(&file, &rules("all"));
    let proxy = TestProxy::start_file(&file).await;
    for path in ["/api/docs/a?lang=en", "/api/docs/a?lang=de", "/api/items/1"] {
        assert_eq!(x_cache(&proxy, path).await, "MISS");
        assert_eq!(x_cache(&proxy, path).await, "HIT");
    }

    // The docs key drops the query: under the new rules ?lang=en and
    // ?lang=de are one entry, so neither old entry may answer.
    write(&file, &rules("none"));
    assert_eq!(admin_reload(&proxy).await.1["result"], "applied");
    assert_eq!(x_cache(&proxy, "/api/docs/a?lang=de").await, "MISS");
    assert_eq!(
        x_cache(&proxy, "/api/docs/a?lang=en").await,
        "HIT",
        "one entry now"
    );
    assert_eq!(hits(&up, "/api/docs/a").await, 3);
    assert_eq!(
        x_cache(&proxy, "/api/items/1").await,
        "HIT",
        "the unchanged route keeps its entries"
    );
    assert_eq!(hits(&up, "/api/items/1").await, 1);
}

#[tokio::test]
async fn the_kill_switch_turns_caching_off_and_on_and_purges_still_apply_meanwhile() {
    trace_init();
    let up = upstream().await;
    let d = dir("kill");
    let file = d.join("cachecar.yaml");
    let rules = |enabled: bool| {
        config(
            &up.uri(),
            &format!(
                "reload: {{ watch: false, poll_interval: 0s }}\ncache: {{ enabled: {enabled} }}\n{DOCS_AND_ITEMS}"
            ),
        )
    };
    write(&file, &rules(true));
    let proxy = TestProxy::start_file(&file).await;
    for path in ["/api/docs/a", "/api/items/1"] {
        assert_eq!(x_cache(&proxy, path).await, "MISS");
        assert_eq!(x_cache(&proxy, path).await, "HIT");
    }

    write(&file, &rules(false));
    assert_eq!(admin_reload(&proxy).await.1["result"], "applied");
    for _ in 0..2 {
        let reply = get(&proxy.url("/api/docs/a"), &[("host", "api.test")]).await;
        assert_eq!(reply.x_cache(), "BYPASS");
        assert!(
            reply.header("cache-status").contains("detail=disabled"),
            "{reply:?}"
        );
    }
    assert_eq!(
        hits(&up, "/api/docs/a").await,
        3,
        "every request reached the app"
    );
    // A mutation while caching is off still purges.
    let put = send(
        Method::PUT,
        &proxy.url("/api/items/1"),
        &[("host", "api.test")],
        "x",
    )
    .await;
    assert_eq!(put.status, 204);

    write(&file, &rules(true));
    assert_eq!(admin_reload(&proxy).await.1["result"], "applied");
    assert_eq!(
        x_cache(&proxy, "/api/docs/a").await,
        "HIT",
        "entries survive the switch"
    );
    assert_eq!(
        x_cache(&proxy, "/api/items/1").await,
        "MISS",
        "changed while caching was off, so not served"
    );
}

#[tokio::test]
async fn warmup_fills_before_ready_once_per_target_and_again_only_for_new_targets() {
    trace_init();
    let up = upstream().await;
    let d = dir("warmup");
    let file = d.join("cachecar.yaml");
    let authority = up.address().to_string();
    let rules = |warmup: &str| {
        config(
            &up.uri(),
            &format!("reload: {{ watch: false, poll_interval: 0s }}\n{DOCS}warmup:\n{warmup}"),
        )
    };
    write(
        &file,
        &rules("  - GET /api/docs/index\n  - GET http://api.test/api/docs/intro?lang=en\n"),
    );
    let proxy = TestProxy::start_file(&file).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&proxy.admin_url("/readyz"), &[]).await.status == 200
        })
        .await
    );
    // Ready means warm: both fetched once, before any client asked.
    assert_eq!(hits(&up, "/api/docs/index").await, 1);
    assert_eq!(hits(&up, "/api/docs/intro").await, 1);
    assert_eq!(
        proxy
            .metric("cachecar_warmup_total", &[("result", "stored")])
            .await,
        2.0
    );
    let relative = get(&proxy.url("/api/docs/index"), &[("host", &authority)]).await;
    assert_eq!(
        relative.x_cache(),
        "HIT",
        "relative targets use the upstream's host"
    );
    let absolute = get(
        &proxy.url("/api/docs/intro?lang=en"),
        &[("host", "api.test")],
    )
    .await;
    assert_eq!(absolute.x_cache(), "HIT");

    // A reload adding a target fetches it; the others are still fresh.
    write(
        &file,
        &rules(
            "  - GET /api/docs/index\n  - GET http://api.test/api/docs/intro?lang=en\n  - GET /api/docs/new\n",
        ),
    );
    assert_eq!(admin_reload(&proxy).await.1["result"], "applied");
    assert!(
        eventually(Duration::from_secs(5), || async {
            hits(&up, "/api/docs/new").await == 1
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            proxy
                .metric("cachecar_warmup_total", &[("result", "fresh")])
                .await
                == 2.0
        })
        .await
    );
    assert_eq!(hits(&up, "/api/docs/index").await, 1);
}

#[tokio::test]
async fn warmup_targets_must_be_gets_of_cached_routes() {
    let up = "http://127.0.0.1:9";
    let bad = config(
        up,
        &format!(
            "{DOCS}warmup:\n  - POST /api/docs/a\n  - GET /elsewhere\n  - GET /api/docs/a\n  - GET /api/docs/a\n  - /api/docs/b\n"
        ),
    );
    let err = cachecar::config::load_str(&bad, &|_| None)
        .expect_err("invalid warmup")
        .to_string();
    for needle in [
        "only GET requests can warm",
        "matches no route",
        "listed twice",
        "expected `GET /path`",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
}

#[tokio::test]
async fn slow_requests_are_counted_per_route() {
    trace_init();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(150)))
        .mount(&server)
        .await;
    let proxy = TestProxy::start(&config(
        &server.uri(),
        &format!("log: {{ slow_request: 100ms, access_sample: 0.0 }}\n{DOCS}"),
    ))
    .await;
    assert_eq!(x_cache(&proxy, "/api/docs/slow").await, "MISS");
    assert_eq!(x_cache(&proxy, "/api/docs/slow").await, "HIT");
    assert_eq!(
        proxy
            .metric("cachecar_slow_requests_total", &[("route", "docs")])
            .await,
        1.0,
        "the miss was slow, the hit was not"
    );
}
