//! The binary: `check` output and exit codes, `run` until SIGTERM, and the
//! README's first command, `cachecar demo`.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{eventually, get, trace_init};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cachecar"));
    cmd.env_remove("RUST_LOG").env_remove("CACHECAR_CONFIG");
    cmd
}

fn write_config(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}.yaml", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write temp config");
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(path: &std::path::Path) -> Output {
    bin()
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("run cachecar check")
}

/// `cachecar --config path` (the default `run`), output discarded.
fn run_quietly(path: &std::path::Path) -> Child {
    bin()
        .arg("--config")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cachecar")
}

/// Sends SIGTERM and waits (bounded) for the exit status.
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("cachecar did not exit within 5 s of SIGTERM");
}

async fn port_open(port: u16) -> bool {
    eventually(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
}

/// `check` on the shipped reference config prints the route table and what
/// each invalidation rule purges, and exits 0.
#[test]
fn check_accepts_the_reference_config() {
    let out = check(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/cachecar.yaml"
    )));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("valid (hash "), "{stdout}");
    assert!(stdout.contains("conversation-list"), "{stdout}");
    assert!(stdout.contains("GET /api/conversations/{id}"), "{stdout}");
    assert!(
        stdout.contains("-> route `conversation`: entries with id={id}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-> route `conversation-list`: all entries"),
        "{stdout}"
    );
}

/// `check` on a broken config lists every problem with line:column and
/// exits 2.
#[test]
fn check_lists_every_problem_and_exits_2() {
    let path = write_config(
        "broken",
        "upstream:\n  url: ftp://app\nlisten: nowhere\nroutes:\n  - name: a\n    match: GET /a\n    ttl: soon\n    colour: blue\ninvalidate:\n  - match: PUT /b\n    purge: [GET /nothing]\n",
    );
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("5 problems"), "{stderr}");
    for expected in [
        ":2:8: upstream.url",
        ":3:9: listen",
        ":7:10: routes[0].ttl",
        ":8:5: routes[0].colour",
        ":11:13: invalidate[0].purge",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
}

/// A missing config file is a clear error, exit 2.
#[test]
fn check_without_a_readable_file_exits_2() {
    let out = check(std::path::Path::new("/nonexistent/cachecar.yaml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let out = bin().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `run` serves with the given config and exits 0 on SIGTERM.
#[tokio::test]
async fn run_serves_and_exits_cleanly_on_sigterm() {
    trace_init();
    let (port, admin) = (free_port(), free_port());
    let path = write_config(
        "run",
        &format!(
            "listen: 127.0.0.1:{port}\nupstream: {{ url: \"http://127.0.0.1:9\" }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ drain_delay: 0s }}\n"
        ),
    );
    let child = run_quietly(&path);
    assert!(port_open(admin).await, "admin port opens");
    // The admin port accepts as soon as it is bound; readiness turns 200
    // once the proxy is serving (503 "starting" until then).
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    let ready = eventually(Duration::from_secs(5), || {
        let readyz = readyz.clone();
        async move { get(&readyz, &[]).await.status == 200 }
    })
    .await;
    assert!(ready, "readiness turns 200");
    let r = get(&format!("http://127.0.0.1:{port}/x"), &[]).await;
    assert_eq!(r.status, 502, "upstream on the discard port is down");
    let status = tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// `SIGHUP` re-reads the file (here with file watching and polling off, so
/// nothing else could have applied the in-place edit).
#[tokio::test]
async fn sighup_applies_an_in_place_edit() {
    trace_init();
    let (port, admin) = (free_port(), free_port());
    let text = |route: &str| {
        format!(
            "listen: 127.0.0.1:{port}\nupstream: {{ url: \"http://127.0.0.1:9\" }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ drain_delay: 0s }}\nreload: {{ watch: false, poll_interval: 0s }}\nroutes:\n  - name: {route}\n    match: GET /a\n"
        )
    };
    let path = write_config("sighup", &text("first"));
    let child = run_quietly(&path);
    assert!(port_open(admin).await, "admin port opens");
    let status_url = format!("http://127.0.0.1:{admin}/status");
    std::fs::write(&path, text("second")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before: serde_json::Value =
        serde_json::from_slice(&get(&status_url, &[]).await.body).unwrap();
    assert_eq!(
        before["config"]["generation"], 1,
        "no reload without the signal"
    );
    let _ = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status();
    let applied = eventually(Duration::from_secs(5), || {
        let url = status_url.clone();
        async move {
            let s: serde_json::Value = serde_json::from_slice(&get(&url, &[]).await.body).unwrap();
            s["config"]["generation"] == 2 && s["config"]["last_reload"]["trigger"] == "sighup"
        }
    })
    .await;
    let status = tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    assert!(applied, "SIGHUP applied the edit");
    assert!(status.success(), "still exits cleanly: {status:?}");
}

/// `cachecar healthcheck` exits 0 against a ready admin port, 1 when
/// nothing listens or the answer is not 200.
#[tokio::test]
async fn healthcheck_reports_readiness_by_exit_code() {
    trace_init();
    let (port, admin) = (free_port(), free_port());
    let path = write_config(
        "health",
        &format!(
            "listen: 127.0.0.1:{port}\nupstream: {{ url: \"http://127.0.0.1:9\" }}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nshutdown: {{ drain_delay: 0s }}\n"
        ),
    );
    let check = |url: String| {
        tokio::task::spawn_blocking(move || {
            bin()
                .args(["healthcheck", "--url", &url])
                .output()
                .unwrap()
                .status
                .code()
        })
    };
    let down = check(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .unwrap();
    assert_eq!(down, Some(1), "nothing listening yet");
    let child = run_quietly(&path);
    assert!(port_open(admin).await);
    let ready = eventually(Duration::from_secs(5), || {
        let url = format!("http://127.0.0.1:{admin}/readyz");
        async move { check(url).await.unwrap() == Some(0) }
    })
    .await;
    let missing = check(format!("http://127.0.0.1:{admin}/nothing"))
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    assert!(ready, "ready admin port passes");
    assert_eq!(missing, Some(1), "a 404 fails");
    assert!(status.success());
}

/// GET `url`, and how long it took.
async fn timed_get(url: &str, headers: &[(&str, &str)]) -> (crate::support::Reply, Duration) {
    let start = std::time::Instant::now();
    let reply = get(url, headers).await;
    (reply, start.elapsed())
}

/// `cachecar demo`: first call goes to the slow demo API, the second is a
/// hit, a PUT invalidates; SIGTERM exits 0.
#[tokio::test]
async fn demo_runs_without_any_other_service() {
    trace_init();
    let (port, admin) = (free_port(), free_port());
    let child = bin()
        .args(["demo", "--latency", "100ms", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(port_open(port).await, "demo port opens");
    let url = format!("http://127.0.0.1:{port}/api/conversations");
    let alice = [("authorization", "Bearer alice")];
    let (first, first_took) = timed_get(&url, &alice).await;
    let (second, second_took) = timed_get(&url, &alice).await;
    assert_eq!(
        (first.x_cache().as_str(), second.x_cache().as_str()),
        ("MISS", "HIT")
    );
    assert_eq!(first.body, second.body);
    assert!(first_took >= Duration::from_millis(100), "{first_took:?}");
    assert!(
        second_took < first_took,
        "{second_took:?} vs {first_took:?}"
    );
    let bob = get(&url, &[("authorization", "Bearer bob")]).await;
    assert!(bob.text().contains("Bike repair") && !bob.text().contains("Lisbon"));
    let put = crate::support::send(
        http::Method::PUT,
        &format!("http://127.0.0.1:{port}/api/conversations/1"),
        &[
            ("authorization", "Bearer alice"),
            ("content-type", "application/json"),
        ],
        r#"{"title":"Renamed"}"#,
    )
    .await;
    assert_eq!(put.status, 200);
    let after = get(&url, &alice).await;
    assert_eq!(after.x_cache(), "MISS");
    assert!(after.text().contains("Renamed"));
    let status = tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

mod access_log;

mod check;

mod memory;
mod shadow_log;

mod traces;
