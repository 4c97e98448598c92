//! The settings of each config section, as validated: what the proxy,
//! the stores and the listeners read from [`RuntimeConfig`](super::RuntimeConfig).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderName;

pub use crate::cache::redis::{RedisNodes, RedisSettings};
pub use upstream::{HttpVersion, TracesConfig, UpgradeConfig, UpstreamConfig, UpstreamTls};

mod upstream;

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
    /// `cache.tags`: the app's tag headers.
    pub tags: crate::rules::TagHeaders,
}

impl CacheConfig {
    /// The in-process store's byte bound: `memory.max_bytes`, the tiered
    /// store's `l1.max_bytes`, or 0 for `redis`, which has none.
    pub fn memory_bound(&self) -> u64 {
        match self.store {
            StoreKind::Memory => self.memory_max_bytes,
            StoreKind::Tiered => self.l1.max_bytes,
            StoreKind::Redis => 0,
        }
    }
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
    /// Time for a request's head to arrive, from its first byte; beyond:
    /// the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a connection may wait, idle, for its next request's head
    /// (the keep-alive idle timeout, also before the first request).
    pub idle_timeout: Duration,
    /// Request body bytes; beyond: 413.
    pub max_request_body_bytes: u64,
    /// Longest wait for the next piece of a request body; beyond: 408.
    pub request_body_timeout: Duration,
    /// Least request body bytes per second, averaged over each
    /// `request_body_rate_window`; below: 408. 0: no minimum.
    pub request_body_min_rate: u64,
    /// The window `request_body_min_rate` is averaged over.
    pub request_body_rate_window: Duration,
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
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_request_body_bytes: 16 << 20,
            request_body_timeout: Duration::from_secs(60),
            request_body_min_rate: 500,
            request_body_rate_window: Duration::from_secs(10),
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
    /// Believe every peer's `X-Forwarded-*`/`Forwarded`/`X-Real-IP`, as if
    /// each were in `trusted_proxies`.
    pub trust_forwarded: bool,
    /// Peers (CIDR blocks) whose `X-Forwarded-*`, `Forwarded` and
    /// `X-Real-IP` are believed: kept (and the scheme and host keyed); from
    /// any other peer they are dropped. `X-Forwarded-For` is appended to
    /// either way.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Merge runs of `/` in paths before matching, keying and forwarding.
    pub merge_slashes: bool,
    /// Keep client header names that contain `_`. Off, they are dropped at
    /// the door, as nginx does: CGI and many frameworks read `_` as `-`,
    /// so `X_Forwarded_Host` would reach the app as a header cachecar
    /// neither checked nor keyed.
    pub underscores_in_headers: bool,
}

impl SecurityConfig {
    /// Whether the forwarded headers of the peer at `ip` are believed.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.trust_forwarded || self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// `hosts`: the names the app answers to, all keyed and forwarded as one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostsConfig {
    /// The `Host` every alias becomes: in the key, in the request to the
    /// app, and for relative warmup targets. `None`: each `Host` is its own.
    pub canonical: Option<String>,
    /// Lower-cased names (with or without port) that become `canonical`.
    pub aliases: Vec<String>,
    /// Every `Host` becomes `canonical` (`aliases: "*"`): the app's content
    /// does not depend on the name it is reached by.
    pub any: bool,
}

impl HostsConfig {
    /// `host` as it is keyed and forwarded: `canonical` when it is an alias
    /// or `canonical` on another port (an entry without a port matches
    /// every port), or when there is none (an HTTP/1.0 request).
    pub fn canonicalize(&self, host: &mut Option<String>) {
        let Some(canonical) = &self.canonical else {
            return;
        };
        let alias = match host.as_deref() {
            None => true,
            Some(h) if h == canonical => return,
            Some(h) => {
                self.any
                    || host_matches(canonical, h)
                    || self.aliases.iter().any(|a| host_matches(a, h))
            }
        };
        if alias {
            *host = Some(canonical.clone());
        }
    }
}

/// Whether `host` (lower-cased, maybe with a port) is `entry`: the same,
/// or the same name with any port when `entry` has none.
pub fn host_matches(entry: &str, host: &str) -> bool {
    entry == host || entry == strip_port(host)
}

/// `host` without its `:port`, if it has one (`[v6]:port` too).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .rsplit_once("]:")
            .map_or(host, |(h, _)| &host[..=h.len()]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
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
    /// Log query strings; off, a query is logged as `?` only (they carry
    /// tokens and personal data more often than paths do).
    pub query: bool,
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
