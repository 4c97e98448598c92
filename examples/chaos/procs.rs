//! The processes of a chaos run: one `redis-server` (RDB and AOF, as the
//! compose stack runs it) and the cachecar replicas, each on a free
//! loopback port, with the faults done to them by signals.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`, `HUP`) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status();
}

/// Waits (bounded) for `child` to exit.
fn reap(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The Redis of the run.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub async fn start(dir: &Path) -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: dir.join("redis"),
            child: None,
        };
        std::fs::create_dir_all(&redis.dir).expect("redis dir");
        redis.launch(&[]).await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it on its port and data, with `extra` arguments; waits until
    /// it answers (loading included).
    pub async fn launch(&mut self, extra: &[&str]) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--save", "60 1000"])
            .args(["--enable-debug-command", "local", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..1000 {
            if self.cmd(&["PING"]).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not answer within 20 s");
    }

    /// One command, with a short timeout.
    pub async fn cmd(&self, args: &[&str]) -> Result<redis::Value, String> {
        let run = async {
            let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            cmd.query_async(&mut conn).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    pub fn freeze(&self) {
        signal(self.child.as_ref().expect("running"), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.child.as_ref().expect("running"), "CONT");
    }

    /// SIGTERM (Redis writes its data) and waits for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "CONT");
            signal(&child, "TERM");
            reap(&mut child);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cachecar replica.
pub struct Replica {
    pub port: u16,
    config: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl Replica {
    pub async fn start(bin: &Path, config: PathBuf, port: u16) -> Self {
        let mut replica = Self {
            port,
            config,
            bin: bin.to_path_buf(),
            child: None,
        };
        replica.launch().await;
        replica
    }

    pub async fn launch(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--log-filter", "error", "run", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the cachecar binary");
        self.child = Some(child);
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cachecar did not listen within 10 s");
    }

    pub fn hup(&self) {
        signal(self.child.as_ref().expect("running"), "HUP");
    }

    /// SIGTERM and wait: the drain.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            tokio::task::spawn_blocking(move || reap(&mut child))
                .await
                .expect("reaped");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
