//! The faults, each run under the load for a quarter of a minute or so.

use std::time::Duration;

use crate::procs::{Redis, Replica};

/// What a scenario acts on.
pub struct Env {
    pub redis: Redis,
    pub replicas: Vec<Replica>,
}

/// The scenarios, by name, in the order they run.
pub const ALL: [&str; 8] = [
    "baseline",
    "redis frozen 5 s",
    "redis restarted with its data",
    "redis out of memory 5 s",
    "redis loading 200k keys",
    "replica restarted during an outage",
    "replica SIGTERM under load",
    "config reload under load",
];

async fn pause(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

async fn cmd(env: &Env, args: &[&str]) {
    if let Err(e) = env.redis.cmd(args).await {
        eprintln!("chaos: redis {args:?}: {e}");
    }
}

/// Runs the faults of scenario `name`; the load runs around it.
pub async fn run(name: &str, env: &mut Env) {
    match name {
        "redis frozen 5 s" => {
            pause(5.0).await;
            env.redis.freeze();
            pause(5.0).await;
            env.redis.thaw();
            pause(6.0).await;
        }
        "redis restarted with its data" => {
            pause(5.0).await;
            env.redis.stop();
            pause(1.0).await;
            env.redis.launch(&[]).await;
            pause(8.0).await;
        }
        "redis out of memory 5 s" => {
            pause(5.0).await;
            cmd(env, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
            cmd(env, &["CONFIG", "SET", "maxmemory", "1"]).await;
            pause(5.0).await;
            cmd(env, &["CONFIG", "SET", "maxmemory", "0"]).await;
            pause(6.0).await;
        }
        "redis loading 200k keys" => loading(env).await,
        "replica restarted during an outage" => restart_during_outage(env).await,
        "replica SIGTERM under load" => {
            pause(5.0).await;
            env.replicas[0].stop().await;
            pause(1.0).await;
            env.replicas[0].launch().await;
            pause(6.0).await;
        }
        "config reload under load" => {
            pause(5.0).await;
            for r in &env.replicas {
                r.hup();
            }
            pause(8.0).await;
        }
        _ => pause(15.0).await,
    }
}

/// Replica A stops while Redis is frozen (its pending purges die with it)
/// and starts again before Redis is back.
async fn restart_during_outage(env: &mut Env) {
    pause(5.0).await;
    env.redis.freeze();
    pause(2.0).await;
    env.replicas[0].stop().await;
    env.replicas[0].launch().await;
    pause(1.0).await;
    env.redis.thaw();
    pause(7.0).await;
}

/// A restart that reads 200,000 keys from disk at 20 µs each: 4 s of
/// `LOADING`, answering between keys.
async fn loading(env: &mut Env) {
    cmd(env, &["DEBUG", "POPULATE", "200000", "junk", "10"]).await;
    cmd(env, &["SAVE"]).await;
    pause(5.0).await;
    env.redis.stop();
    let slow = [
        "--key-load-delay",
        "20",
        "--loading-process-events-interval-bytes",
        "4096",
    ];
    env.redis.launch(&slow).await;
    pause(8.0).await;
    cmd(env, &["FLUSHALL"]).await;
    env.redis.stop();
    env.redis.launch(&[]).await;
}
