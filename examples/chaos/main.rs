//! A chaos run against two cachecar replicas on one Redis: a mixed
//! workload (90% GET, 10% PUT over 200 versioned resources) under faults,
//! counting requests, non-2xx answers, refused and failed connections,
//! stale reads and p99 per scenario. `scripts/chaos.sh` builds and runs it;
//! docs/redis.md, "Consistency", has a run.
//!
//! ```text
//! chaos [cachecar binary]     STORE=tiered|redis WORKERS=32 SCENARIOS="baseline,..."
//! ```
//!
//! A read is stale when it returns a version older than one whose PUT was
//! answered before the read began, less 50 ms for pub/sub delivery.

mod load;
mod origin;
mod procs;
mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use procs::{Redis, Replica, free_port};
use scenarios::Env;

fn config(store: &str, port: u16, origin: std::net::SocketAddr, redis: &str) -> String {
    let l1 = if store == "tiered" {
        "\n  l1: { max_bytes: 16MiB, ttl: 5s }"
    } else {
        ""
    };
    format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{} }}\n\
         upstream: {{ url: \"http://{origin}\", timeout: 5s }}\n\
         log: {{ access_sample: 0.0, slow_request: 0s }}\n\
         shutdown: {{ drain_delay: 1s, grace_period: 5s }}\n\
         reload: {{ watch: false, poll_interval: 0s }}\n\
         cache:\n  store: {store}\n  redis: {{ url: \"{redis}\", timeout: 50ms }}{l1}\n\
         routes:\n  - {{ name: r, match: \"GET /r/{{id}}\" }}\n\
         invalidate:\n  - match: \"PUT /r/{{id}}\"\n    purge: [\"GET /r/{{id}}\"]\n",
        free_port()
    )
}

#[tokio::main]
async fn main() {
    let bin = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/release/cachecar"), PathBuf::from);
    let store = std::env::var("STORE").unwrap_or_else(|_| "tiered".into());
    let workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(32);
    let only = std::env::var("SCENARIOS").ok();
    let dir = std::env::temp_dir().join(format!("cachecar-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let origin = origin::start().await;
    let redis = Redis::start(&dir).await;
    let mut replicas = Vec::new();
    for n in 0..2 {
        let port = free_port();
        let path = dir.join(format!("replica-{n}.yaml"));
        std::fs::write(&path, config(&store, port, origin, &redis.url())).expect("config");
        replicas.push(Replica::start(&bin, path, port).await);
    }
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    let mut env = Env { redis, replicas };
    println!("store {store}, {workers} workers, 2 replicas, 200 resources, 10% writes\n");
    println!("| scenario | requests | non-2xx | refused | failed | stale reads | p99 ms |");
    println!("|---|---|---|---|---|---|---|");
    for name in scenarios::ALL {
        if only
            .as_ref()
            .is_some_and(|o| !o.split(',').any(|s| name.starts_with(s.trim())))
        {
            continue;
        }
        let load = load::Load::start(&ports, workers, Duration::from_millis(50));
        scenarios::run(name, &mut env).await;
        let mut s = load.stop().await;
        let p99 = s.p99_ms();
        println!(
            "| {name} | {} | {} | {} | {} | {} | {p99:.1} |",
            s.requests, s.non_2xx, s.refused, s.failed, s.stale
        );
    }
    drop(env);
    let _ = std::fs::remove_dir_all(&dir);
}
