//! Configuration: the YAML file (docs/configuration.md) turned into the
//! validated [`RuntimeConfig`] the proxy runs on.
//!
//! Loading is: read -> `${VAR}` substitution (`env.rs`) -> YAML into a located
//! tree (`yaml.rs`) -> `RawConfig`, what the file says
//! (`file.rs`) -> `RuntimeConfig`, what the proxy uses (`validate.rs`). Every
//! step collects all of its problems before giving up, so an operator sees
//! every mistake in one pass, each with line and column.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use http::uri::Authority;

pub use crate::cache::redis::{RedisNodes, RedisSettings};
use crate::rules::purge::Invalidations;
use crate::rules::{Route, RouteTable};

mod env;
mod file;
pub mod report;
mod validate;
mod yaml;

pub use yaml::{Loc, Problem};

/// The validated configuration. Immutable; a reload builds a new one.
#[derive(Debug)]
pub struct RuntimeConfig {
    /// Data-plane listen address (restart to change).
    pub listen: SocketAddr,
    /// The app behind cachecar.
    pub upstream: UpstreamConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// Store and size settings.
    pub cache: CacheConfig,
    /// Who "the user" is for `scope: user`.
    pub identity: IdentityConfig,
    /// Cache rules, first match wins.
    pub routes: RouteTable<Arc<Route>>,
    /// Invalidation rules.
    pub invalidations: Invalidations,
    /// Draining on SIGTERM.
    pub shutdown: ShutdownConfig,
    /// Requests fetched and stored at start and after reloads that add them.
    pub warmup: Vec<WarmupTarget>,
    /// Access log and slow-request warnings.
    pub log: LogConfig,
    /// What reloads the config file besides `SIGHUP` and the admin API.
    pub reload: ReloadConfig,
    /// Bounds on what a client may send (restart to change).
    pub limits: Limits,
    /// Which hosts are served and which client headers are trusted.
    pub security: SecurityConfig,
    /// Where the config came from and its content hash.
    pub source: ConfigSource,
    /// Things that are allowed but probably not meant (e.g. unreachable routes).
    pub warnings: Vec<String>,
}

/// Where the upstream is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The URL as configured, for `/status` and logs.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// A path prefix from the URL (`http://app/base` -> `/base`), or empty.
    pub base_path: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers.
    pub timeout: Duration,
    /// How long an idle pooled connection is kept for reuse.
    pub idle_timeout: Duration,
}

/// The admin listener.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// Listen address; loopback by default.
    pub listen: SocketAddr,
    /// Bearer token for `/admin/*`; `None` makes them answer 403.
    pub token: Option<AdminToken>,
}

/// The admin bearer token. Compared in constant time; never printed.
#[derive(Clone)]
pub struct AdminToken(blake3::Hash);

/// Cache-wide settings.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// `false`: pure pass-through.
    pub enabled: bool,
    /// Which backend.
    pub store: StoreKind,
    /// Byte bound of the memory store.
    pub memory_max_bytes: u64,
    /// Larger responses stream through unstored.
    pub max_body_bytes: u64,
    /// Most variants (`Vary`) stored per URL.
    pub max_variants: usize,
    /// Request coalescing.
    pub coalesce: CoalesceConfig,
    /// `cache.redis`, for the `redis` and `tiered` stores.
    pub redis: Option<RedisSettings>,
    /// `cache.l1`, for the `tiered` store.
    pub l1: L1Config,
}

/// `cache.l1`: the in-process tier of the `tiered` store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Config {
    /// Byte bound of the L1.
    pub max_bytes: u64,
    /// Longest an L1 entry or a learned generation is trusted without
    /// asking Redis, whatever the invalidation channel says.
    pub ttl: Duration,
}

/// `cache.coalesce`.
#[derive(Clone, Copy, Debug)]
pub struct CoalesceConfig {
    /// Concurrent misses for one key make one upstream request.
    pub enabled: bool,
    /// How long a waiting request waits before going upstream itself.
    pub wait_timeout: Duration,
    /// Coalesce through a Redis lock across every instance, too.
    pub across_instances: bool,
}

/// Cache backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// In-process moka store.
    Memory,
    /// Redis (shared by replicas).
    Redis,
    /// Memory L1 over Redis.
    Tiered,
}

/// Where the user's identity is read from.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The header or cookie.
    pub source: IdentitySource,
    /// Key for hashing identities into cache keys. Configured
    /// (`identity.hash_key`) so replicas agree, or random per process.
    pub hash_key: [u8; 32],
}

/// Header or cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySource {
    /// The whole value of this header.
    Header(HeaderName),
    /// The value of this cookie.
    Cookie(String),
}

/// Shutdown timing.
#[derive(Clone, Debug)]
pub struct ShutdownConfig {
    /// After SIGTERM, keep serving (readiness 503) this long so load
    /// balancers stop sending traffic before the listener closes.
    pub drain_delay: Duration,
    /// Then wait at most this long for in-flight requests.
    pub grace_period: Duration,
}

/// One `warmup` entry: a GET that a route caches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmupTarget {
    /// As written (`GET /api/documents/index`), for logs.
    pub text: String,
    /// The `Host` it is sent with: the URL's, or the upstream's authority.
    pub host: String,
    /// Path and query, normalized.
    pub path_and_query: String,
}

/// `limits`: what one client may send and hold. Built into the listener,
/// so a restart applies changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the request line plus headers (HTTP/1.1), or of the header
    /// list (HTTP/2); beyond: 431.
    pub max_header_bytes: usize,
    /// Header fields per request; beyond: 431.
    pub max_headers: usize,
    /// Bytes of the request target; beyond: 414.
    pub max_uri_bytes: usize,
    /// Time for a request's headers to arrive, counted from when the
    /// connection is idle: also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Request body bytes; beyond: 413.
    pub max_request_body_bytes: u64,
    /// Longest wait for the next piece of a request body; beyond: 408.
    pub request_body_timeout: Duration,
    /// Client connections open at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
}

impl Default for Limits {
    /// Generous for an API, tight enough that one client cannot hold much:
    /// close to nginx's defaults.
    fn default() -> Self {
        Self {
            max_header_bytes: 32 << 10,
            max_headers: 100,
            max_uri_bytes: 8 << 10,
            header_read_timeout: Duration::from_secs(60),
            max_request_body_bytes: 16 << 20,
            request_body_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            h2_max_concurrent_streams: 128,
        }
    }
}

/// `security`: the hosts cachecar answers for and the headers it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Lower-cased `Host` values (with or without port) that are served;
    /// empty: any. Others get 421.
    pub allowed_hosts: Vec<String>,
    /// Keep the client's `X-Forwarded-*`/`Forwarded` (appending to
    /// `X-Forwarded-For`), for when a trusted proxy sits in front; else
    /// they are overwritten from the connection.
    pub trust_forwarded: bool,
    /// Merge runs of `/` in paths before matching, keying and forwarding.
    pub merge_slashes: bool,
}

/// `reload`: automatic reloads of the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadConfig {
    /// Reload when the file's directory changes (notify).
    pub watch: bool,
    /// Also compare the file's content hash this often; `None`: never.
    pub poll_interval: Option<Duration>,
}

/// `log`: what the access log records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogConfig {
    /// Fraction of requests that get an access-log event; errors (5xx) and
    /// slow requests always do.
    pub access_sample: f64,
    /// Requests slower than this log a warning naming where the time went;
    /// `None`: never.
    pub slow_request: Option<Duration>,
}

/// Provenance of a config.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// The file, if loaded from one.
    pub path: Option<PathBuf>,
    /// 1 for the config loaded at start, +1 for each applied reload.
    pub generation: u64,
    /// First 16 hex digits of the BLAKE3 hash of the substituted text.
    pub hash: String,
}

/// The one place the running config lives: a single `ArcSwap`,
/// loaded once per request, so a request never sees half of two configs.
#[derive(Debug)]
pub struct ConfigHandle {
    current: ArcSwap<RuntimeConfig>,
}

impl ConfigHandle {
    /// Holds `config` as generation 1.
    pub fn new(mut config: RuntimeConfig) -> Self {
        config.source.generation = 1;
        Self {
            current: ArcSwap::from_pointee(config),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<RuntimeConfig> {
        self.current.load_full()
    }

    /// Makes `config` the running config; requests already holding the old
    /// snapshot finish with it.
    pub fn store(&self, config: RuntimeConfig) {
        self.current.store(Arc::new(config));
    }
}

/// Loading failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("{}", render_problems(.path.as_deref(), .problems))]
    Invalid {
        /// The file, if any.
        path: Option<PathBuf>,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },
}

/// Looks environment variables up for `${VAR}` substitution.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`load_file`] and [`load_str`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and validates a config file.
///
/// # Errors
///
/// [`ConfigError::Io`] if the file cannot be read; [`ConfigError::Invalid`]
/// with every problem otherwise.
pub fn load_file(path: &Path, env: EnvLookup<'_>) -> Result<RuntimeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, env)
        .map(|mut c| {
            c.source.path = Some(path.to_path_buf());
            c
        })
        .map_err(|e| match e {
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid {
                path: Some(path.to_path_buf()),
                problems,
            },
            other => other,
        })
}

/// Loads and validates config text.
///
/// # Errors
///
/// [`ConfigError::Invalid`] with every problem.
pub fn load_str(text: &str, env: EnvLookup<'_>) -> Result<RuntimeConfig, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: None,
        problems,
    };
    let substituted = env::substitute(text, env).map_err(invalid)?;
    let remap = |mut p: Problem| {
        p.loc = p.loc.map(|l| substituted.columns.original(l));
        p
    };
    let tree = yaml::parse(&substituted.text).map_err(|p| invalid(vec![remap(p)]))?;
    let mut problems = yaml::Problems::default();
    let raw = file::decode(&tree, &mut problems);
    let config = validate::validate(raw, &mut problems);
    match config {
        Some(mut config) if problems.is_empty() => {
            config.source.hash =
                blake3::hash(substituted.text.as_bytes()).to_hex()[..16].to_string();
            Ok(config)
        }
        _ => Err(invalid(
            problems.into_sorted().into_iter().map(remap).collect(),
        )),
    }
}

fn render_problems(path: Option<&Path>, problems: &[Problem]) -> String {
    let name = path.map_or_else(|| "config".to_string(), |p| p.display().to_string());
    let mut out = format!(
        "{name}: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        let sep = if p.loc.is_some_and(|l| l.line > 0) {
            ":"
        } else {
            ": "
        };
        out.push_str(&format!("\n  {name}{sep}{p}"));
    }
    out
}

// === impl AdminToken ===

impl AdminToken {
    /// Wraps a configured token.
    pub fn new(token: &str) -> Self {
        Self(blake3::hash(token.as_bytes()))
    }

    /// Constant-time comparison (`blake3::Hash` equality is constant-time,
    /// and hashing first hides the token's length).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0 == blake3::hash(presented)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

// === impl enums ===

impl StoreKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
            StoreKind::Tiered => "tiered",
        }
    }
}
