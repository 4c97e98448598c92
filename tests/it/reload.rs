//! Hot reload, kill switch, warmup and the access log's siblings: what an
//! operator does while traffic flows (docs/operations.md).
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

/// `/status` still shows the first config (`hash`), and every error of the
/// refused reload with its line and column.
async fn refusal_is_shown(proxy: &TestProxy, hash: &Value) {
    let s = status(proxy).await;
    assert_eq!(s["config"]["generation"], 1);
    assert_eq!(&s["config"]["hash"], hash);
    let last = &s["config"]["last_reload"];
    assert_eq!(last["result"], "refused");
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
    let refused = || async {
        let error = [("result", "refused")];
        proxy.counter("cachecar_config_reloads_total", &error).await == 1.0
    };
    let counted = eventually(Duration::from_secs(3), refused).await;
    assert!(counted, "the broken file is counted once");
    refusal_is_shown(&proxy, &hash).await;
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
    let applied = || async { generation(&proxy).await == 2 };
    assert!(eventually(Duration::from_secs(3), applied).await);
    let last = status(&proxy).await["config"]["last_reload"].clone();
    assert_eq!(last["result"], "applied");
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

/// With `cache.enabled: false`, every request bypasses the cache and
/// reaches the app.
async fn bypassed_while_off(proxy: &TestProxy, up: &MockServer) {
    for _ in 0..2 {
        let reply = get(&proxy.url("/api/docs/a"), &[("host", "api.test")]).await;
        assert_eq!(reply.x_cache(), "BYPASS");
        assert!(
            reply.header("cache-status").contains("detail=disabled"),
            "{reply:?}"
        );
    }
    assert_eq!(
        hits(up, "/api/docs/a").await,
        3,
        "every request reached the app"
    );
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
    bypassed_while_off(&proxy, &up).await;
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

mod warmup;
