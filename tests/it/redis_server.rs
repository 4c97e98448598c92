//! Real `redis-server` processes for the tests: each on a free loopback
//! port, without persistence, killed on drop. Faults are real too: `kill`
//! ends the process, `freeze` sends SIGSTOP (the port still accepts TCP
//! connections, nothing answers), `thaw` sends SIGCONT.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cachecar-test-redis-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch dir");
    dir
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra `redis-server` arguments
    /// (e.g. `["--maxmemory", "2mb"]`).
    pub async fn start_with(extra: &[&str]) -> Self {
        let mut server = Self::unstarted_with(extra);
        server.launch().await;
        server
    }

    /// A server with a port chosen but not started (for "Redis comes up
    /// later" tests); [`RedisServer::launch`] starts it.
    pub fn unstarted() -> Self {
        Self::unstarted_with(&[])
    }

    fn unstarted_with(extra: &[&str]) -> Self {
        Self {
            port: free_port(),
            child: None,
            dir: scratch_dir(),
            extra: extra.iter().map(ToString::to_string).collect(),
        }
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts (or restarts) the process on its port and waits for PING.
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}); scripts/test.sh installs it with apt-get, \
                     or install the redis-server package"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers().await {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Restarts the process with `extra` arguments instead of the ones it
    /// was started with (its data directory stays): `launch` after `kill`.
    pub async fn relaunch_with(&mut self, extra: &[&str]) {
        self.kill();
        self.extra = extra.iter().map(ToString::to_string).collect();
        self.launch().await;
    }

    /// Whether the server answers PING within 200 ms.
    pub async fn answers(&self) -> bool {
        let ping = async {
            let client = redis::Client::open(self.url()).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_millis(200), ping).await,
            Ok(Some(_))
        )
    }

    /// A connection for inspecting or tampering with what is stored.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }

    /// Runs one command and returns its reply.
    pub async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut self.conn().await)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Every key (tests only; cachecar never scans).
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        self.cmd(&["KEYS", pattern]).await
    }

    /// Ends the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = signal(&child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the port accepts connections, nothing is answered.
    pub fn freeze(&self) {
        signal(self.child.as_ref().expect("running"), "STOP").expect("SIGSTOP redis");
    }

    /// SIGCONT after [`RedisServer::freeze`].
    pub fn thaw(&self) {
        signal(self.child.as_ref().expect("running"), "CONT").expect("SIGCONT redis");
    }
}

fn signal(child: &Child, name: &str) -> std::io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -{name} failed")))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-master Redis Cluster on loopback, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three `--cluster-enabled` servers, joins them with
    /// `redis-cli --cluster create` and waits for `cluster_state:ok`.
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut node = RedisServer::unstarted_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
            ]);
            node.launch().await;
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ok = true;
            for node in &cluster.nodes {
                let info: String = node.cmd(&["CLUSTER", "INFO"]).await;
                ok &= info.contains("cluster_state:ok");
            }
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster not ok within 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster
    }

    /// The seed URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Keys matching `pattern` on every node.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut all = Vec::new();
        for node in &self.nodes {
            all.extend(node.keys(pattern).await);
        }
        all
    }
}
