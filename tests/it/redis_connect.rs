//! Reaching Redis the ways teams run it: `redis-server --tls-port` with a
//! CA the test made (with and without client certificates), and a master
//! and replica watched by Sentinel (`redis-server --sentinel`), failed
//! over while cachecar serves.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::certs::TestCa;
use crate::redis_server::{RedisServer, free_port};
use crate::support::*;

const ROUTES: &str = "routes:\n  - { name: docs, match: \"GET /docs/{id}\" }\n\
    invalidate:\n  - { match: \"PUT /docs/{id}\", purge: [\"GET /docs/{id}\"] }\n";

/// A config for `app` with `store` on `redis` (a flow mapping's inside).
fn on_redis(app: &str, store: &str, redis: &str) -> String {
    config(
        app,
        &format!("cache: {{ store: {store}, redis: {{ timeout: 1s, {redis} }} }}\n{ROUTES}"),
    )
}

/// A redis-server with a plain port (for the test's own checks) and a TLS
/// port presenting a certificate for `localhost` from `ca`; clients must
/// present one from `ca` when `auth_clients`.
async fn tls_redis(ca: &TestCa, auth_clients: bool) -> (RedisServer, u16) {
    let leaf = ca.leaf("redis", &["localhost", "127.0.0.1"], false);
    let tls_port = free_port();
    let (port, cert, key, ca_file) = (
        tls_port.to_string(),
        leaf.cert_file.display().to_string(),
        leaf.key_file.display().to_string(),
        ca.ca_file().display().to_string(),
    );
    let auth = if auth_clients { "yes" } else { "no" };
    let server = RedisServer::start_with(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        auth,
    ])
    .await;
    (server, tls_port)
}

#[tokio::test]
async fn the_redis_and_tiered_stores_work_over_tls() {
    trace_init();
    let ca = TestCa::new("redis-ca");
    let (redis, tls_port) = tls_redis(&ca, false).await;
    let app = Scripted::start(vec![respond(
        200,
        &[("cache-control", "max-age=60")],
        "doc",
    )])
    .await;
    let target = format!(
        "url: \"rediss://localhost:{tls_port}/0\", tls: {{ ca_file: \"{}\" }}",
        ca.ca_file().display()
    );
    let shared = TestProxy::start(&on_redis(&app.server.uri(), "redis", &target)).await;
    let tiered = TestProxy::start(&on_redis(&app.server.uri(), "tiered", &target)).await;
    // One Host for both instances: it is part of the key.
    let host = [("host", "api.test")];
    assert_eq!(get(&shared.url("/docs/1"), &host).await.x_cache(), "MISS");
    assert!(
        !redis.keys("cachecar:e:*").await.is_empty(),
        "stored in redis over TLS"
    );
    // The other instance finds it in Redis, then in its L1.
    assert_eq!(get(&tiered.url("/docs/1"), &host).await.x_cache(), "HIT");
    assert_eq!(get(&tiered.url("/docs/1"), &host).await.x_cache(), "HIT");
    assert_eq!(app.count().await, 1);
    // A write through one instance reaches the other's L1 over the TLS
    // subscription.
    wiremock::Mock::given(wiremock::matchers::method("PUT"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&app.server)
        .await;
    send(http::Method::PUT, &shared.url("/docs/1"), &host, "new").await;
    let dropped = eventually(Duration::from_secs(5), || async {
        get(&tiered.url("/docs/1"), &host).await.x_cache() == "MISS"
    })
    .await;
    assert!(dropped, "the purge reaches the tiered instance");
}

#[tokio::test]
async fn a_redis_that_asks_for_client_certificates_gets_ours() {
    trace_init();
    let ca = TestCa::new("redis-mtls-ca");
    let (_redis, tls_port) = tls_redis(&ca, true).await;
    let client = ca.leaf("cachecar", &["cachecar"], true);
    let app = Scripted::start(vec![respond(
        200,
        &[("cache-control", "max-age=60")],
        "doc",
    )])
    .await;
    let url = format!("url: \"rediss://localhost:{tls_port}/0\"");
    let ca_file = ca.ca_file().display().to_string();
    // Without a certificate Redis refuses the handshake: cachecar fails
    // open, every request answered by the app.
    let anonymous = format!("{url}, tls: {{ ca_file: \"{ca_file}\" }}");
    let proxy = TestProxy::start(&on_redis(&app.server.uri(), "redis", &anonymous)).await;
    for _ in 0..2 {
        let reply = get(&proxy.url("/docs/1"), &[]).await;
        assert_eq!(
            (reply.status.as_u16(), reply.x_cache().as_str()),
            (200, "MISS")
        );
    }
    assert_eq!(app.count().await, 2);
    let with_cert = format!(
        "{url}, tls: {{ ca_file: \"{ca_file}\", cert_file: \"{}\", key_file: \"{}\" }}",
        client.cert_file.display(),
        client.key_file.display()
    );
    let proxy = TestProxy::start(&on_redis(&app.server.uri(), "redis", &with_cert)).await;
    assert_eq!(get(&proxy.url("/docs/2"), &[]).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/docs/2"), &[]).await.x_cache(), "HIT");
}

/// A `redis-server --sentinel` process watching one master.
struct Sentinel {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl Sentinel {
    async fn start(master_port: u16) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("cachecar-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {}\n\
                 sentinel monitor primary 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds primary 1000\n\
                 sentinel failover-timeout primary 5000\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs as a sentinel");
        let sentinel = Self { port, child, dir };
        let up = eventually(Duration::from_secs(10), || async {
            sentinel.master_port().await == Some(master_port)
        })
        .await;
        assert!(up, "the sentinel monitors the master");
        sentinel
    }

    async fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> Option<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.ok()
    }

    /// The port of the master the sentinel names now.
    async fn master_port(&self) -> Option<u16> {
        let addr: Vec<String> = self
            .query(&["SENTINEL", "get-master-addr-by-name", "primary"])
            .await?;
        addr.get(1)?.parse().ok()
    }

    /// Fails the master over and waits until the sentinel names the one on
    /// `to`.
    async fn fail_over(&self, to: u16) {
        let synced = eventually(Duration::from_secs(10), || async {
            let replicas: Option<Vec<redis::Value>> =
                self.query(&["SENTINEL", "replicas", "primary"]).await;
            replicas.is_some_and(|r| !r.is_empty())
        })
        .await;
        assert!(synced, "the sentinel knows the replica");
        // Asked again while the sentinel still finds no replica good enough
        // (it learns their state from INFO every second or so).
        let failed_over = eventually(Duration::from_secs(15), || async {
            let ok: Option<String> = self.query(&["SENTINEL", "FAILOVER", "primary"]).await;
            ok.as_deref() == Some("OK")
        })
        .await;
        assert!(failed_over, "the sentinel starts a failover");
        let moved = eventually(Duration::from_secs(20), || async {
            self.master_port().await == Some(to)
        })
        .await;
        assert!(moved, "the replica is the master now");
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Caching goes on through the new master after `SENTINEL FAILOVER`, and
/// no request fails on the way.
#[tokio::test]
async fn a_sentinel_failover_is_followed_without_a_restart() {
    trace_init();
    let master = RedisServer::start().await;
    let replica_of = master.port.to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &replica_of]).await;
    let sentinel = Sentinel::start(master.port).await;
    let app = Scripted::start(vec![respond(
        200,
        &[("cache-control", "max-age=60")],
        "doc",
    )])
    .await;
    let target = format!(
        "sentinel: {{ master: primary, nodes: [\"redis://127.0.0.1:{}\"] }}",
        sentinel.port
    );
    let proxy = TestProxy::start(&on_redis(&app.server.uri(), "redis", &target)).await;
    assert_eq!(get(&proxy.url("/docs/1"), &[]).await.x_cache(), "MISS");
    assert_eq!(get(&proxy.url("/docs/1"), &[]).await.x_cache(), "HIT");
    assert!(!master.keys("cachecar:e:*").await.is_empty());
    sentinel.fail_over(replica.port).await;
    let before = replica.keys("cachecar:e:*").await.len();
    // Every request is answered; within a few seconds a new URL is stored
    // on the new master and served from the cache. (Writes that reach the
    // old master before the sentinel demotes it are lost with its data, as
    // for any Redis client.)
    let mut n = 0;
    let replica = &replica;
    let resumed = eventually(Duration::from_secs(20), || {
        n += 1;
        let url = proxy.url(&format!("/docs/after-{n}"));
        async move {
            let first = get(&url, &[]).await;
            assert_eq!(first.status, 200, "no request fails during the failover");
            let hit = get(&url, &[]).await.x_cache() == "HIT";
            hit && replica.keys("cachecar:e:*").await.len() > before
        }
    })
    .await;
    assert!(resumed, "caching resumes through the new master");
    let role: Vec<redis::Value> = replica.cmd(&["ROLE"]).await;
    assert_eq!(
        role.first(),
        Some(&redis::Value::BulkString(b"master".to_vec()))
    );
}
