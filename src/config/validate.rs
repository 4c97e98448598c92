//! `RawConfig` -> `RuntimeConfig`: defaults applied, addresses and URLs
//! parsed, route templates and purge targets compiled, and every problem
//! collected before giving up (one test per rejection lives in `tests.rs`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, Method, Uri};

use super::file::{
    Located, RawConfig, RawIdentity, RawInvalidation, RawLimits, RawLog, RawPolicy, RawQuery,
    RawRoute, RawTtl,
};
use super::yaml::{Loc, Problems};
use super::{
    AdminConfig, AdminToken, CacheConfig, CoalesceConfig, ConfigSource, IdentityConfig,
    IdentitySource, L1Config, Limits, LogConfig, RedisNodes, RedisSettings, ReloadConfig,
    RuntimeConfig, SecurityConfig, ShutdownConfig, StoreKind, UpstreamConfig, WarmupTarget,
};
use crate::rules::purge::{InvalidationRule, Invalidations, PurgePlan, PurgeTarget};
use crate::rules::template::{Template, split_pattern};
use crate::rules::{KeySpec, OriginCacheControl, QueryKey, Route, RouteTable, Scope};

/// Where cachecar listens for traffic unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Admin is loopback-only by default: metrics and purges are not for the world.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// A sidecar's upstream is on the same host; a slow connect means it is down.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time to response headers; generous, since slow endpoints are why we cache.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle upstream connections are closed after this: below the 5 s
/// keep-alive of uvicorn and Node, so cachecar closes first and never sends
/// on a connection the app is closing (the classic proxy 502).
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Memory store bound.
pub const DEFAULT_MEMORY_MAX_BYTES: u64 = 256 << 20;
/// Larger responses stream through unstored, so one huge body cannot evict
/// the working set or pin that much memory per fill.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 << 20;
/// Most variants stored per URL unless configured: enough for encodings and
/// languages, too few for a `Vary: User-Agent` to flood the store.
pub const DEFAULT_MAX_VARIANTS: usize = 16;
/// How long a coalesced request waits for the leader before going upstream.
pub const DEFAULT_COALESCE_WAIT: Duration = Duration::from_secs(5);
/// Long enough for a Kubernetes endpoint update to reach kube-proxy and
/// ingress controllers after readiness turns 503.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// In-flight requests get this long; below Kubernetes' default 30 s grace.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(20);
/// Connections to Redis. Each is multiplexed, and fewer connections batch
/// more commands per write: with wrk here, 1-2 lanes gave ~37k hits/s and 8
/// gave ~29k (docs/redis.md). Two, so one slow socket is not everything.
pub const DEFAULT_REDIS_POOL_SIZE: usize = 2;
/// Redis is on the same network; longer than this and the upstream is the
/// faster way to answer.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// Prefix of every Redis key.
pub const DEFAULT_KEY_PREFIX: &str = "cachecar:";
/// L1 bound of the tiered store.
pub const DEFAULT_L1_MAX_BYTES: u64 = 64 << 20;
/// Longest L1 trusts what it learned without asking Redis.
pub const DEFAULT_L1_TTL: Duration = Duration::from_secs(5);
/// Requests slower than this log a warning unless `log.slow_request` says
/// otherwise (the seed's "SLOW QUERY" threshold).
pub const DEFAULT_SLOW_REQUEST: Duration = Duration::from_secs(1);
/// The config file's content hash is checked this often, in case file
/// events are missed.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// An identity hash key shorter than this is guessable.
const MIN_HASH_KEY_LEN: usize = 16;
/// Bumped when the key layout changes, so old entries never match new keys.
const KEY_FORMAT_VERSION: &[u8] = b"cachecar-key-v2";

/// Validates `raw`, recording problems in `p`. Returns a config only when
/// the parts it needs could be built; callers also check `p.is_empty()`.
pub fn validate(raw: RawConfig, p: &mut Problems) -> Option<RuntimeConfig> {
    let listen = address(raw.listen.as_ref(), DEFAULT_LISTEN, "listen", p);
    let upstream = upstream(&raw, p);
    let admin = admin(&raw, p);
    let mut cache_warnings = Vec::new();
    let cache = cache(&raw, p, &mut cache_warnings);
    let identity = identity(&raw.identity, p);
    let defaults = &raw.defaults;
    let routes = routes(&raw.routes, defaults, p);
    let (invalidations, plans) = invalidations(&raw.invalidate, &routes, p);
    let (routes, mut warnings) = route_table(routes, &plans, identity.as_ref(), p)?;
    warnings.extend(cache_warnings);
    let invalidations = Invalidations::new(invalidations)
        .map_err(|e| p.at_loc(None, "invalidate", e.0))
        .ok()?;
    let warmup = warmup(&raw.warmup, upstream.as_ref(), &routes, p);
    Some(RuntimeConfig {
        listen: listen?,
        upstream: upstream?,
        admin: admin?,
        cache: cache?,
        identity: identity?,
        routes,
        invalidations,
        shutdown: ShutdownConfig {
            drain_delay: raw.shutdown.drain_delay.unwrap_or(DEFAULT_DRAIN_DELAY),
            grace_period: raw.shutdown.grace_period.unwrap_or(DEFAULT_GRACE_PERIOD),
        },
        warmup,
        log: log(&raw.log),
        limits: limits(&raw.limits, p),
        security: SecurityConfig {
            allowed_hosts: allowed_hosts(&raw.security.allowed_hosts, p),
            trust_forwarded: raw.security.trust_forwarded.unwrap_or(false),
            merge_slashes: raw.security.merge_slashes.unwrap_or(false),
        },
        reload: ReloadConfig {
            watch: raw.reload.watch.unwrap_or(true),
            poll_interval: match raw.reload.poll_interval {
                Some(d) if d.is_zero() => None,
                Some(d) => Some(d),
                None => Some(DEFAULT_POLL_INTERVAL),
            },
        },
        source: ConfigSource::default(),
        warnings,
    })
}

fn address(
    value: Option<&Located<String>>,
    default: &str,
    path: &str,
    p: &mut Problems,
) -> Option<SocketAddr> {
    let Some(v) = value else {
        return default.parse().ok();
    };
    match v.value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.at_loc(
                Some(v.loc),
                path,
                format!(
                    "`{}` is not an address such as 0.0.0.0:8080 or [::]:8080",
                    v.value
                ),
            );
            None
        }
    }
}

fn upstream(raw: &RawConfig, p: &mut Problems) -> Option<UpstreamConfig> {
    let r = &raw.upstream;
    let Some(url) = &r.url else {
        p.at_loc(
            None,
            "upstream.url",
            "required: the URL of the app, e.g. http://127.0.0.1:8000",
        );
        return None;
    };
    let bad = |p: &mut Problems, why: &str| {
        p.at_loc(
            Some(url.loc),
            "upstream.url",
            format!("`{}` {why}", url.value),
        );
    };
    let Ok(uri) = url.value.parse::<Uri>() else {
        bad(p, "is not a URL");
        return None;
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            bad(
                p,
                "uses https: cachecar speaks plain HTTP to the app beside it",
            );
            return None;
        }
        _ => {
            bad(p, "must start with http://");
            return None;
        }
    }
    let Some(authority) = uri.authority().cloned() else {
        bad(p, "has no host");
        return None;
    };
    if uri.query().is_some() || authority.as_str().contains('@') {
        bad(p, "must not carry a query string or credentials");
        return None;
    }
    Some(UpstreamConfig {
        url: url.value.clone(),
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
        connect_timeout: positive(
            r.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
            "upstream.connect_timeout",
            p,
        ),
        timeout: positive(
            r.timeout.as_ref(),
            DEFAULT_UPSTREAM_TIMEOUT,
            "upstream.timeout",
            p,
        ),
        idle_timeout: positive(
            r.idle_timeout.as_ref(),
            DEFAULT_UPSTREAM_IDLE_TIMEOUT,
            "upstream.idle_timeout",
            p,
        ),
    })
}

fn positive(
    value: Option<&Located<Duration>>,
    default: Duration,
    path: &str,
    p: &mut Problems,
) -> Duration {
    match value {
        Some(d) if d.value.is_zero() => {
            p.at_loc(Some(d.loc), path, "must be greater than zero");
            default
        }
        Some(d) => d.value,
        None => default,
    }
}

fn admin(raw: &RawConfig, p: &mut Problems) -> Option<AdminConfig> {
    let listen = address(
        raw.admin.listen.as_ref(),
        DEFAULT_ADMIN_LISTEN,
        "admin.listen",
        p,
    )?;
    let token = raw
        .admin
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(AdminToken::new);
    Some(AdminConfig { listen, token })
}

fn cache(raw: &RawConfig, p: &mut Problems, warnings: &mut Vec<String>) -> Option<CacheConfig> {
    let c = &raw.cache;
    let store = c.store.as_ref().map_or(StoreKind::Memory, |s| s.value);
    let nonzero = |v: &Option<Located<u64>>, default: u64, path: &str, p: &mut Problems| match v {
        Some(l) if l.value == 0 => {
            p.at_loc(Some(l.loc), path, "must be greater than zero");
            default
        }
        Some(l) => l.value,
        None => default,
    };
    let memory_max_bytes = nonzero(
        &c.memory_max_bytes,
        DEFAULT_MEMORY_MAX_BYTES,
        "cache.memory.max_bytes",
        p,
    );
    let max_body_bytes = nonzero(
        &c.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES,
        "cache.max_body_bytes",
        p,
    );
    if max_body_bytes > memory_max_bytes
        && let Some(l) = &c.max_body_bytes
    {
        p.at_loc(
            Some(l.loc),
            "cache.max_body_bytes",
            "is larger than cache.memory.max_bytes, so such a response could never be kept",
        );
    }
    let max_variants = match &c.max_variants {
        Some(l) if l.value == 0 => {
            p.at_loc(Some(l.loc), "cache.max_variants", "must be at least 1");
            DEFAULT_MAX_VARIANTS
        }
        Some(l) => l.value as usize,
        None => DEFAULT_MAX_VARIANTS,
    };
    let coalesce = c.coalesce.as_ref().map(|l| &l.value);
    let wait_timeout = coalesce
        .and_then(|c| c.wait_timeout)
        .unwrap_or(DEFAULT_COALESCE_WAIT);
    if wait_timeout.is_zero() {
        p.at_loc(
            c.coalesce.as_ref().map(|l| l.loc),
            "cache.coalesce.wait_timeout",
            "must be greater than zero (set `enabled: false` to turn coalescing off)",
        );
    }
    let across_instances = coalesce.and_then(|c| c.across_instances).unwrap_or(false);
    if across_instances && store == StoreKind::Memory {
        p.at_loc(
            c.coalesce.as_ref().map(|l| l.loc),
            "cache.coalesce.across_instances",
            "needs a shared store: set cache.store to `redis` or `tiered`",
        );
    }
    let redis = redis(raw, store, p, warnings);
    let l1 = l1(raw, store, p, warnings);
    Some(CacheConfig {
        enabled: c.enabled.unwrap_or(true),
        store,
        memory_max_bytes,
        max_body_bytes,
        max_variants,
        coalesce: CoalesceConfig {
            enabled: coalesce.and_then(|c| c.enabled).unwrap_or(true),
            wait_timeout,
            across_instances,
        },
        redis,
        l1,
    })
}

/// `cache.redis`: required by the `redis` and `tiered` stores, refused
/// otherwise (a section that does nothing is a mistake waiting to happen).
fn redis(
    raw: &RawConfig,
    store: StoreKind,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<RedisSettings> {
    let section = raw.cache.redis.as_ref();
    let Some(section) = section else {
        if store != StoreKind::Memory {
            p.at_loc(
                raw.cache.store.as_ref().map(|s| s.loc),
                "cache.redis",
                format!(
                    "required by `store: {}`: give `url: redis://host:6379/0` or `cluster: [...]`",
                    store.as_str()
                ),
            );
        }
        return None;
    };
    let (loc, r) = (section.loc, &section.value);
    if store == StoreKind::Memory {
        // Kept so operators can switch stores by one line; said, not refused.
        warnings.push(format!(
            "cache.redis (line {}) is not used: cache.store is `memory`",
            loc.line
        ));
        return None;
    }
    let nodes = match (&r.url, r.cluster.as_slice()) {
        (Some(url), []) => {
            redis_url(url, "cache.redis.url", false, loc, p)?;
            RedisNodes::Single(url.clone())
        }
        (None, [_, ..]) => {
            let mut ok = true;
            for url in &r.cluster {
                ok &= redis_url(url, "cache.redis.cluster", true, loc, p).is_some();
            }
            if !ok {
                return None;
            }
            RedisNodes::Cluster(r.cluster.clone())
        }
        (Some(_), [_, ..]) => {
            p.at_loc(
                Some(loc),
                "cache.redis",
                "give either `url` (one server) or `cluster` (seed nodes), not both",
            );
            return None;
        }
        (None, []) => {
            p.at_loc(
                Some(loc),
                "cache.redis",
                "needs `url: redis://host:6379/0` or `cluster: [redis://host:7000, ...]`",
            );
            return None;
        }
    };
    let pool_size = match r.pool_size {
        Some(0) => {
            p.at_loc(Some(loc), "cache.redis.pool_size", "must be at least 1");
            return None;
        }
        Some(n) => n as usize,
        None => DEFAULT_REDIS_POOL_SIZE,
    };
    let timeout = match r.timeout {
        Some(t) if t.is_zero() => {
            p.at_loc(
                Some(loc),
                "cache.redis.timeout",
                "must be greater than zero",
            );
            return None;
        }
        Some(t) => t,
        None => DEFAULT_REDIS_TIMEOUT,
    };
    let key_prefix = r
        .key_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_string());
    if key_prefix.contains(|c: char| c.is_whitespace() || c.is_control()) {
        p.at_loc(
            Some(loc),
            "cache.redis.key_prefix",
            format!("`{key_prefix}` must not contain spaces or control characters"),
        );
        return None;
    }
    Some(RedisSettings {
        nodes,
        pool_size,
        timeout,
        key_prefix,
    })
}

/// Checks that `url` is one redis-rs can connect to without TLS.
fn redis_url(url: &str, path: &str, cluster: bool, loc: Loc, p: &mut Problems) -> Option<()> {
    use redis::IntoConnectionInfo;
    let shown = redact_url(url);
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let why = match scheme {
        "rediss" | "valkeys" => {
            Some("uses TLS, which this build of cachecar does not speak".to_string())
        }
        "redis" | "valkey" => None,
        "unix" | "redis+unix" if !cluster => None,
        _ if cluster => Some("must start with redis://".to_string()),
        _ => Some("must start with redis:// (or unix:// for a socket)".to_string()),
    };
    let why = why.or_else(|| {
        url.into_connection_info()
            .err()
            .map(|e| format!("is not a Redis URL: {}", e.detail().unwrap_or("invalid")))
    });
    match why {
        Some(why) => {
            p.at_loc(Some(loc), path, format!("`{shown}` {why}"));
            None
        }
        None => Some(()),
    }
}

/// `url` with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() => {
            let host = &url[at + 1..];
            let user = rest[..at - scheme.len() - 3]
                .split(':')
                .next()
                .unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// `cache.l1`: only the `tiered` store has one.
fn l1(raw: &RawConfig, store: StoreKind, p: &mut Problems, warnings: &mut Vec<String>) -> L1Config {
    let default = L1Config {
        max_bytes: DEFAULT_L1_MAX_BYTES,
        ttl: DEFAULT_L1_TTL,
    };
    let Some(section) = &raw.cache.l1 else {
        return default;
    };
    if store != StoreKind::Tiered {
        warnings.push(format!(
            "cache.l1 (line {}) is not used: only `store: tiered` has an L1",
            section.loc.line
        ));
        return default;
    }
    let r = &section.value;
    let mut l1 = default;
    match r.max_bytes {
        Some(0) => p.at_loc(
            Some(section.loc),
            "cache.l1.max_bytes",
            "must be greater than zero",
        ),
        Some(n) => l1.max_bytes = n,
        None => {}
    }
    match r.ttl {
        Some(t) if t.is_zero() => p.at_loc(
            Some(section.loc),
            "cache.l1.ttl",
            "must be greater than zero (use `store: redis` for no L1)",
        ),
        Some(t) => l1.ttl = t,
        None => {}
    }
    l1
}

/// `warmup`: each entry a `GET` of a path some route caches, given as
/// `GET /path?query` (sent with the upstream's authority as `Host`) or
/// `GET http://host/path` (sent with that `Host`, for entries clients that
/// use that host will hit).
fn warmup(
    raw: &[Located<String>],
    upstream: Option<&UpstreamConfig>,
    routes: &RouteTable<Arc<Route>>,
    p: &mut Problems,
) -> Vec<WarmupTarget> {
    let mut out: Vec<WarmupTarget> = Vec::new();
    for item in raw {
        let loc = Some(item.loc);
        let text = item.value.trim();
        let Some((method, target)) = text.split_once(' ') else {
            p.at_loc(
                loc,
                "warmup",
                "expected `GET /path` or `GET http://host/path`",
            );
            continue;
        };
        if method != "GET" {
            p.at_loc(
                loc,
                "warmup",
                format!("`{method}`: only GET requests can warm the cache"),
            );
            continue;
        }
        let uri = match target.trim().parse::<Uri>() {
            Ok(u)
                if u.scheme().is_none_or(|s| s.as_str() == "http") && u.path().starts_with('/') =>
            {
                u
            }
            _ => {
                p.at_loc(
                    loc,
                    "warmup",
                    format!("`{}` is not a path or an http:// URL", target.trim()),
                );
                continue;
            }
        };
        let target = match crate::rules::normalize::request(&uri, &http::HeaderMap::new()) {
            Ok(t) => t,
            Err(e) => {
                p.at_loc(loc, "warmup", format!("`{uri}`: {e}"));
                continue;
            }
        };
        if routes.find(&target.path).is_none() {
            p.at_loc(
                loc,
                "warmup",
                format!(
                    "`{}` matches no route, so nothing would be stored",
                    target.path
                ),
            );
            continue;
        }
        let Some(host) = target
            .host
            .or_else(|| upstream.map(|u| u.authority.as_str().to_ascii_lowercase()))
        else {
            continue;
        };
        let path_and_query = match &target.query {
            Some(q) => format!("{}?{q}", target.path),
            None => target.path,
        };
        let t = WarmupTarget {
            text: text.to_string(),
            host,
            path_and_query,
        };
        if out.contains(&t) {
            p.at_loc(loc, "warmup", format!("`{text}` is listed twice"));
            continue;
        }
        out.push(t);
    }
    out
}

/// `limits`, with the defaults of [`Limits::default`].
fn limits(raw: &RawLimits, p: &mut Problems) -> Limits {
    let d = Limits::default();
    let at_least =
        |v: &Option<Located<u64>>, min: u64, default: u64, key: &str, p: &mut Problems| match v {
            Some(v) if v.value < min => {
                p.at_loc(
                    Some(v.loc),
                    &format!("limits.{key}"),
                    format!("must be at least {min}"),
                );
                default
            }
            Some(v) => v.value,
            None => default,
        };
    let positive =
        |v: &Option<Located<Duration>>, default: Duration, key: &str, p: &mut Problems| match v {
            Some(v) if v.value.is_zero() => {
                p.at_loc(
                    Some(v.loc),
                    &format!("limits.{key}"),
                    "must be greater than zero",
                );
                default
            }
            Some(v) => v.value,
            None => default,
        };
    Limits {
        // hyper needs at least 8 KiB of read buffer.
        max_header_bytes: at_least(
            &raw.max_header_bytes,
            8192,
            d.max_header_bytes as u64,
            "max_header_bytes",
            p,
        ) as usize,
        max_headers: at_least(&raw.max_headers, 1, d.max_headers as u64, "max_headers", p) as usize,
        max_uri_bytes: at_least(
            &raw.max_uri_bytes,
            64,
            d.max_uri_bytes as u64,
            "max_uri_bytes",
            p,
        ) as usize,
        header_read_timeout: positive(
            &raw.header_read_timeout,
            d.header_read_timeout,
            "header_read_timeout",
            p,
        ),
        max_request_body_bytes: at_least(
            &raw.max_request_body_bytes,
            0,
            d.max_request_body_bytes,
            "max_request_body_bytes",
            p,
        ),
        request_body_timeout: positive(
            &raw.request_body_timeout,
            d.request_body_timeout,
            "request_body_timeout",
            p,
        ),
        max_connections: at_least(
            &raw.max_connections,
            1,
            d.max_connections as u64,
            "max_connections",
            p,
        ) as usize,
        h2_max_concurrent_streams: at_least(
            &raw.h2_max_concurrent_streams,
            1,
            u64::from(d.h2_max_concurrent_streams),
            "h2_max_concurrent_streams",
            p,
        ) as u32,
    }
}

/// `security.allowed_hosts`: host names, optionally with a port.
fn allowed_hosts(raw: &[Located<String>], p: &mut Problems) -> Vec<String> {
    raw.iter()
        .filter_map(|h| {
            let host = h.value.trim().to_ascii_lowercase();
            match host.parse::<http::uri::Authority>() {
                Ok(a) if a.as_str() == host && !host.contains('@') => Some(host),
                _ => {
                    p.at_loc(
                        Some(h.loc),
                        "security.allowed_hosts",
                        format!("`{}` is not a host or host:port", h.value),
                    );
                    None
                }
            }
        })
        .collect()
}

/// `log`: defaults log every request and warn above one second.
fn log(raw: &RawLog) -> LogConfig {
    LogConfig {
        access_sample: raw.access_sample.unwrap_or(1.0),
        slow_request: match raw.slow_request {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(DEFAULT_SLOW_REQUEST),
        },
    }
}

fn identity(raw: &RawIdentity, p: &mut Problems) -> Option<IdentityConfig> {
    let source = match (&raw.header, &raw.cookie) {
        (Some(_), Some(c)) => {
            p.at_loc(
                Some(c.loc),
                "identity",
                "set either `header` or `cookie`, not both",
            );
            return None;
        }
        (Some(h), None) => match HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(name) => IdentitySource::Header(name),
            Err(_) => {
                p.at_loc(
                    Some(h.loc),
                    "identity.header",
                    format!("`{}` is not a header name", h.value),
                );
                return None;
            }
        },
        (None, Some(c)) if is_cookie_name(&c.value) => IdentitySource::Cookie(c.value.clone()),
        (None, Some(c)) => {
            p.at_loc(
                Some(c.loc),
                "identity.cookie",
                format!("`{}` is not a cookie name", c.value),
            );
            return None;
        }
        (None, None) => IdentitySource::Header(http::header::AUTHORIZATION),
    };
    let hash_key = match &raw.hash_key {
        Some(k) if k.value.len() < MIN_HASH_KEY_LEN => {
            p.at_loc(
                Some(k.loc),
                "identity.hash_key",
                format!("must be at least {MIN_HASH_KEY_LEN} characters"),
            );
            return None;
        }
        Some(k) => blake3::derive_key("cachecar identity hash key v1", k.value.as_bytes()),
        None => *process_hash_key(),
    };
    Some(IdentityConfig { source, hash_key })
}

/// A random key per process, for when `identity.hash_key` is not set: user
/// entries then are not shared with other processes, which is right for the
/// memory store.
fn process_hash_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        // Without OS randomness, fall back to a key derived from time and pid:
        // still never the raw identity, just less secret.
        if getrandom::fill(&mut key).is_err() {
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            key = blake3::derive_key("cachecar fallback identity key", seed.as_bytes());
        }
        key
    })
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

fn is_metric_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A route before its binding sets are known.
struct PendingRoute {
    loc: Loc,
    route: Route,
}

fn routes(raw: &[RawRoute], defaults: &RawPolicy, p: &mut Problems) -> Vec<PendingRoute> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(route) = route(r, &path, defaults, &mut names, p) {
            out.push(PendingRoute { loc: r.loc, route });
        }
    }
    out
}

fn route(
    r: &RawRoute,
    path: &str,
    defaults: &RawPolicy,
    names: &mut HashSet<String>,
    p: &mut Problems,
) -> Option<Route> {
    let name = match &r.name {
        None => {
            p.at_loc(
                Some(r.loc),
                &format!("{path}.name"),
                "required: the route's label in metrics and logs",
            );
            None
        }
        Some(n) if !is_metric_safe(&n.value) => {
            p.at_loc(
                Some(n.loc),
                &format!("{path}.name"),
                format!(
                    "`{}` must be 1-64 letters, digits, `-`, `_` or `.`",
                    n.value
                ),
            );
            None
        }
        Some(n) if !names.insert(n.value.clone()) => {
            p.at_loc(
                Some(n.loc),
                &format!("{path}.name"),
                format!("`{}` is used by an earlier route", n.value),
            );
            None
        }
        Some(n) => Some(n.value.clone()),
    };
    let template = route_template(r, path, p);
    let scope = r.scope.as_ref().map_or(Scope::Public, |s| s.value);
    let key = key_spec(r, path, p);
    let store_private = r.store_private.as_ref().is_some_and(|f| f.value);
    let share_authenticated = r.share_authenticated.as_ref().is_some_and(|f| f.value);
    if let Some(f) = r
        .store_private
        .as_ref()
        .filter(|f| f.value && scope != Scope::User)
    {
        p.at_loc(
            Some(f.loc),
            &format!("{path}.store_private"),
            "only applies to `scope: user` routes",
        );
    }
    if let Some(f) = r
        .share_authenticated
        .as_ref()
        .filter(|f| f.value && scope == Scope::User)
    {
        p.at_loc(
            Some(f.loc),
            &format!("{path}.share_authenticated"),
            "only applies to `scope: public` routes (user routes are keyed per identity)",
        );
    }
    let ttl = match r
        .policy
        .ttl
        .as_ref()
        .or(defaults.ttl.as_ref())
        .map(|t| t.value)
    {
        Some(RawTtl::Fixed(d)) => Some(d),
        Some(RawTtl::Origin) | None => None,
    };
    let origin_cache_control = r
        .policy
        .origin_cache_control
        .or(defaults.origin_cache_control)
        .unwrap_or(OriginCacheControl::Respect);
    if origin_cache_control == OriginCacheControl::Override && ttl.is_none() {
        p.at_loc(
            Some(r.loc),
            &format!("{path}.ttl"),
            "`origin_cache_control: override` needs a `ttl` (on the route or in `defaults`)",
        );
    }
    let window = |route: &Option<Located<Duration>>, default: &Option<Located<Duration>>| {
        route
            .as_ref()
            .or(default.as_ref())
            .map_or(Duration::ZERO, |d| d.value)
    };
    let name: Arc<str> = name?.into();
    Some(Route {
        metrics: crate::metrics::RouteMetrics::new(name.clone()),
        token: crate::cache::Token::route(&name),
        name,
        template: template?,
        scope,
        ttl,
        stale_while_revalidate: window(
            &r.policy.stale_while_revalidate,
            &defaults.stale_while_revalidate,
        ),
        stale_if_error: window(&r.policy.stale_if_error, &defaults.stale_if_error),
        origin_cache_control,
        key: key?,
        store_private,
        share_authenticated,
        binding_sets: Vec::new(),
        fingerprint: [0; 32],
    })
}

fn route_template(r: &RawRoute, path: &str, p: &mut Problems) -> Option<Template> {
    let Some(pattern) = &r.pattern else {
        p.at_loc(
            Some(r.loc),
            &format!("{path}.match"),
            "required, e.g. `GET /api/items/{id}`",
        );
        return None;
    };
    let at =
        |p: &mut Problems, msg: String| p.at_loc(Some(pattern.loc), &format!("{path}.match"), msg);
    let (method, template) = match split_pattern(&pattern.value) {
        Ok(x) => x,
        Err(e) => {
            at(p, e.0);
            return None;
        }
    };
    if method != Method::GET {
        at(
            p,
            format!(
                "routes cache GET requests (HEAD is served from them); `{method}` belongs in `invalidate`"
            ),
        );
        return None;
    }
    Template::parse(template).map_err(|e| at(p, e.0)).ok()
}

fn key_spec(r: &RawRoute, path: &str, p: &mut Problems) -> Option<KeySpec> {
    let query = match r.query.as_ref().map(|q| &q.value) {
        None | Some(RawQuery::All) => QueryKey::All,
        Some(RawQuery::None) => QueryKey::None,
        Some(RawQuery::Only(names)) => {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            QueryKey::Only(names)
        }
    };
    let mut headers = Vec::with_capacity(r.headers.len());
    let mut ok = true;
    for h in &r.headers {
        let at = format!("{path}.key.headers");
        match HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(name) if name == http::header::AUTHORIZATION || name == http::header::COOKIE => {
                p.at_loc(
                    Some(h.loc),
                    &at,
                    format!(
                        "`{}` holds credentials: use `scope: user` to key by user",
                        h.value
                    ),
                );
                ok = false;
            }
            Ok(name) if !headers.contains(&name) => headers.push(name),
            Ok(_) => {}
            Err(_) => {
                p.at_loc(
                    Some(h.loc),
                    &at,
                    format!("`{}` is not a header name", h.value),
                );
                ok = false;
            }
        }
    }
    headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ok.then_some(KeySpec { query, headers })
}

fn invalidations(
    raw: &[RawInvalidation],
    routes: &[PendingRoute],
    p: &mut Problems,
) -> (Vec<Arc<InvalidationRule>>, Vec<PurgePlan>) {
    let mut rules = Vec::with_capacity(raw.len());
    let mut all_plans = Vec::new();
    let mut labels = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("invalidate[{i}]");
        if let Some(rule) = invalidation(r, &path, routes, &mut labels, p) {
            all_plans.extend(rule.targets.iter().flat_map(|(_, ps)| ps.iter().cloned()));
            rules.push(Arc::new(rule));
        }
    }
    (rules, all_plans)
}

fn invalidation(
    r: &RawInvalidation,
    path: &str,
    routes: &[PendingRoute],
    labels: &mut HashSet<String>,
    p: &mut Problems,
) -> Option<InvalidationRule> {
    let Some(pattern) = &r.pattern else {
        p.at_loc(
            Some(r.loc),
            &format!("{path}.match"),
            "required, e.g. `PUT /api/items/{id}`",
        );
        return None;
    };
    let at = format!("{path}.match");
    let (method, template) = match split_pattern(&pattern.value) {
        Ok((m, t)) if m.is_safe() => {
            p.at_loc(
                Some(pattern.loc),
                &at,
                format!("`{m}` does not change anything; invalidate on POST, PUT, PATCH or DELETE"),
            );
            let _ = t;
            return None;
        }
        Ok((m, t)) => (
            m,
            Template::parse(t)
                .map_err(|e| p.at_loc(Some(pattern.loc), &at, e.0))
                .ok()?,
        ),
        Err(e) => {
            p.at_loc(Some(pattern.loc), &at, e.0);
            return None;
        }
    };
    let label = r
        .name
        .as_ref()
        .map_or_else(|| pattern.value.trim().to_string(), |n| n.value.clone());
    if !labels.insert(label.clone()) {
        let loc = r.name.as_ref().map_or(pattern.loc, |n| n.loc);
        p.at_loc(
            Some(loc),
            &format!("{path}.name"),
            format!("`{label}` is used by an earlier rule"),
        );
    }
    if r.purge.is_empty() {
        p.at_loc(
            Some(r.loc),
            &format!("{path}.purge"),
            "required: the GET requests this mutation makes stale",
        );
    }
    let captures: Vec<&str> = template.params().collect();
    let mut targets = Vec::with_capacity(r.purge.len());
    for t in &r.purge {
        let at = format!("{path}.purge");
        let target = match PurgeTarget::parse(&t.value, Some(&captures)) {
            Ok(target) => target,
            Err(e) => {
                p.at_loc(Some(t.loc), &at, e.0);
                continue;
            }
        };
        let plans = target.plans(routes.iter().map(|r| (&r.route.template, &r.route.name)));
        if plans.is_empty() {
            p.at_loc(
                Some(t.loc),
                &at,
                format!(
                    "`{}` can match no route, so it would purge nothing",
                    t.value
                ),
            );
            continue;
        }
        targets.push((target.as_str().into(), plans));
    }
    Some(InvalidationRule {
        label: label.into(),
        method,
        template,
        targets,
    })
}

/// Gives each route its binding sets and fingerprint and builds the table.
fn route_table(
    pending: Vec<PendingRoute>,
    plans: &[PurgePlan],
    identity: Option<&IdentityConfig>,
    p: &mut Problems,
) -> Option<(RouteTable<Arc<Route>>, Vec<String>)> {
    let locs: Vec<Loc> = pending.iter().map(|r| r.loc).collect();
    let rules = pending
        .into_iter()
        .enumerate()
        .map(|(i, PendingRoute { mut route, .. })| {
            let mut sets: Vec<Vec<Box<str>>> = plans
                .iter()
                .filter(|plan| plan.route == i && !plan.bindings.is_empty())
                .map(PurgePlan::binding_set)
                .collect();
            sets.sort();
            sets.dedup();
            route.binding_sets = sets;
            route.fingerprint = fingerprint(&route, identity);
            (route.template.clone(), Arc::new(route))
        })
        .collect();
    let table = RouteTable::new(rules)
        .map_err(|e| p.at_loc(None, "routes", e.0))
        .ok()?;
    let warnings = table
        .shadowing()
        .unreachable
        .into_iter()
        .map(|(i, j)| {
            let (r, e) = (&table.values()[i], &table.values()[j]);
            format!(
                "line {}: route `{}` ({}) is unreachable: route `{}` ({}, line {}) above it matches all its requests",
                locs[i].line, r.name, r.template, e.name, e.template, locs[j].line
            )
        })
        .collect();
    Some((table, warnings))
}

/// Everything about a route that decides which entry a request may read:
/// a reload that changes any of it gives the route new keys, so entries
/// stored under the old rules are never served under the new ones, while
/// unchanged routes keep theirs. Freshness settings are not part of it:
/// each entry carries its own deadlines.
fn fingerprint(route: &Route, identity: Option<&IdentityConfig>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(KEY_FORMAT_VERSION);
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(route.name.as_bytes());
    field(route.template.as_str().as_bytes());
    field(route.scope.as_str().as_bytes());
    field(route.key.query.to_string().as_bytes());
    for name in &route.key.headers {
        field(name.as_str().as_bytes());
    }
    for set in &route.binding_sets {
        field(set.join(",").as_bytes());
    }
    // Who may share an entry: turning these off must not leave entries
    // stored under the looser rule readable.
    field(&[
        u8::from(route.store_private),
        u8::from(route.share_authenticated),
    ]);
    if route.scope == Scope::User
        && let Some(identity) = identity
    {
        match &identity.source {
            IdentitySource::Header(name) => field(format!("header:{name}").as_bytes()),
            IdentitySource::Cookie(name) => field(format!("cookie:{name}").as_bytes()),
        }
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests;
