//! The raw shape of the config file: what the operator wrote, typed, with the
//! location of every value that later validation may complain about.
//! Nothing is defaulted or cross-checked here (that is `validate.rs`); a
//! value that cannot be read is recorded as a problem and left `None`.

use std::time::Duration;

use super::StoreKind;
use super::yaml::{self, Loc, MapReader, Node, Problems, loc_of};
use crate::rules::{OriginCacheControl, Scope};

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its place in the file.
    pub loc: Loc,
}

/// The whole file.
#[derive(Debug, Default)]
pub struct RawConfig {
    /// `listen`
    pub listen: Option<Located<String>>,
    /// `upstream`
    pub upstream: RawUpstream,
    /// `admin`
    pub admin: RawAdmin,
    /// `cache`
    pub cache: RawCache,
    /// `defaults`
    pub defaults: RawPolicy,
    /// `identity`
    pub identity: RawIdentity,
    /// `routes`
    pub routes: Vec<RawRoute>,
    /// `invalidate`
    pub invalidate: Vec<RawInvalidation>,
    /// `warmup`
    pub warmup: Vec<Located<String>>,
    /// `shutdown`
    pub shutdown: RawShutdown,
    /// `log`
    pub log: RawLog,
    /// `reload`
    pub reload: RawReload,
    /// `limits`
    pub limits: RawLimits,
    /// `security`
    pub security: RawSecurity,
}

/// `limits:`
#[derive(Debug, Default)]
pub struct RawLimits {
    /// `max_header_bytes`
    pub max_header_bytes: Option<Located<u64>>,
    /// `max_headers`
    pub max_headers: Option<Located<u64>>,
    /// `max_uri_bytes`
    pub max_uri_bytes: Option<Located<u64>>,
    /// `header_read_timeout`
    pub header_read_timeout: Option<Located<Duration>>,
    /// `max_request_body_bytes`
    pub max_request_body_bytes: Option<Located<u64>>,
    /// `request_body_timeout`
    pub request_body_timeout: Option<Located<Duration>>,
    /// `max_connections`
    pub max_connections: Option<Located<u64>>,
    /// `h2_max_concurrent_streams`
    pub h2_max_concurrent_streams: Option<Located<u64>>,
}

/// `security:`
#[derive(Debug, Default)]
pub struct RawSecurity {
    /// `allowed_hosts`
    pub allowed_hosts: Vec<Located<String>>,
    /// `trust_forwarded`
    pub trust_forwarded: Option<bool>,
    /// `merge_slashes`
    pub merge_slashes: Option<bool>,
}

/// `reload:`
#[derive(Debug, Default)]
pub struct RawReload {
    /// `watch`
    pub watch: Option<bool>,
    /// `poll_interval`
    pub poll_interval: Option<Duration>,
}

/// `log:`
#[derive(Debug, Default)]
pub struct RawLog {
    /// `access_sample`
    pub access_sample: Option<f64>,
    /// `slow_request`
    pub slow_request: Option<Duration>,
}

/// `upstream:`
#[derive(Debug, Default)]
pub struct RawUpstream {
    /// `url`
    pub url: Option<Located<String>>,
    /// `connect_timeout`
    pub connect_timeout: Option<Located<Duration>>,
    /// `timeout`
    pub timeout: Option<Located<Duration>>,
    /// `idle_timeout`
    pub idle_timeout: Option<Located<Duration>>,
}

/// `admin:`
#[derive(Debug, Default)]
pub struct RawAdmin {
    /// `listen`
    pub listen: Option<Located<String>>,
    /// `token`
    pub token: Option<String>,
}

/// `cache:`
#[derive(Debug, Default)]
pub struct RawCache {
    /// `enabled`
    pub enabled: Option<bool>,
    /// `store`
    pub store: Option<Located<StoreKind>>,
    /// `memory.max_bytes`
    pub memory_max_bytes: Option<Located<u64>>,
    /// `redis:` (parsed; not available in this build)
    pub redis: Option<Located<RawRedis>>,
    /// `l1:` (tiered only)
    pub l1: Option<Located<RawL1>>,
    /// `max_body_bytes`
    pub max_body_bytes: Option<Located<u64>>,
    /// `max_variants`
    pub max_variants: Option<Located<u64>>,
    /// `coalesce:`
    pub coalesce: Option<Located<RawCoalesce>>,
}

/// `cache.redis:`
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawRedis {
    /// `url`
    pub url: Option<String>,
    /// `cluster`
    pub cluster: Vec<String>,
    /// `pool_size`
    pub pool_size: Option<u64>,
    /// `timeout`
    pub timeout: Option<Duration>,
    /// `key_prefix`
    pub key_prefix: Option<String>,
}

/// `cache.l1:`
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawL1 {
    /// `max_bytes`
    pub max_bytes: Option<u64>,
    /// `ttl`
    pub ttl: Option<Duration>,
}

/// `cache.coalesce:`
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawCoalesce {
    /// `enabled`
    pub enabled: Option<bool>,
    /// `wait_timeout`
    pub wait_timeout: Option<Duration>,
    /// `across_instances`
    pub across_instances: Option<bool>,
}

/// `ttl`: a duration, or `origin` for "origin headers only".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTtl {
    /// A fallback (or, with `override`, fixed) freshness lifetime.
    Fixed(Duration),
    /// No freshness of cachecar's own.
    Origin,
}

/// Freshness settings shared by `defaults:` and each route.
#[derive(Debug, Default, Clone)]
pub struct RawPolicy {
    /// `ttl`
    pub ttl: Option<Located<RawTtl>>,
    /// `stale_while_revalidate`
    pub stale_while_revalidate: Option<Located<Duration>>,
    /// `stale_if_error`
    pub stale_if_error: Option<Located<Duration>>,
    /// `origin_cache_control`
    pub origin_cache_control: Option<OriginCacheControl>,
}

/// `identity:`
#[derive(Debug, Default)]
pub struct RawIdentity {
    /// Where the section is, for "both header and cookie" problems.
    pub loc: Option<Loc>,
    /// `header`
    pub header: Option<Located<String>>,
    /// `cookie`
    pub cookie: Option<Located<String>>,
    /// `hash_key`
    pub hash_key: Option<Located<String>>,
}

/// One entry of `routes:`.
#[derive(Debug, Default)]
pub struct RawRoute {
    /// Where the entry starts.
    pub loc: Loc,
    /// `name`
    pub name: Option<Located<String>>,
    /// `match`
    pub pattern: Option<Located<String>>,
    /// `scope`
    pub scope: Option<Located<Scope>>,
    /// `ttl`, stale windows, `origin_cache_control`
    pub policy: RawPolicy,
    /// `key.query`
    pub query: Option<Located<RawQuery>>,
    /// `key.headers`
    pub headers: Vec<Located<String>>,
    /// `store_private`
    pub store_private: Option<Located<bool>>,
    /// `share_authenticated`
    pub share_authenticated: Option<Located<bool>>,
}

/// `key.query`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawQuery {
    /// `all`
    All,
    /// `none`
    None,
    /// `[a, b]`
    Only(Vec<String>),
}

/// One entry of `invalidate:`.
#[derive(Debug, Default)]
pub struct RawInvalidation {
    /// Where the entry starts.
    pub loc: Loc,
    /// `name` (defaults to the match text)
    pub name: Option<Located<String>>,
    /// `match`
    pub pattern: Option<Located<String>>,
    /// `purge`
    pub purge: Vec<Located<String>>,
}

/// `shutdown:`
#[derive(Debug, Default)]
pub struct RawShutdown {
    /// `drain_delay`
    pub drain_delay: Option<Duration>,
    /// `grace_period`
    pub grace_period: Option<Duration>,
}

const TOP_KEYS: &[&str] = &[
    "listen",
    "upstream",
    "admin",
    "cache",
    "defaults",
    "identity",
    "routes",
    "invalidate",
    "warmup",
    "shutdown",
    "log",
    "reload",
    "limits",
    "security",
];
const POLICY_KEYS: &[&str] = &[
    "ttl",
    "stale_while_revalidate",
    "stale_if_error",
    "origin_cache_control",
];
const ROUTE_KEYS: &[&str] = &[
    "name",
    "match",
    "scope",
    "ttl",
    "stale_while_revalidate",
    "stale_if_error",
    "origin_cache_control",
    "key",
    "store_private",
    "share_authenticated",
];

/// Decodes the located tree, recording every problem in `p`.
pub fn decode(root: &Node, p: &mut Problems) -> RawConfig {
    let Some(mut m) = MapReader::new(root, "", p) else {
        return RawConfig::default();
    };
    let raw = RawConfig {
        listen: m
            .get("listen")
            .and_then(|n| located(n, yaml::scalar_text(n, "listen", p))),
        upstream: m
            .get("upstream")
            .map(|n| upstream(n, p))
            .unwrap_or_default(),
        admin: m.get("admin").map(|n| admin(n, p)).unwrap_or_default(),
        cache: m.get("cache").map(|n| cache(n, p)).unwrap_or_default(),
        defaults: m
            .get("defaults")
            .and_then(|n| {
                let mut d = MapReader::new(n, "defaults", p)?;
                let policy = policy(&mut d, p);
                d.finish(POLICY_KEYS, p);
                Some(policy)
            })
            .unwrap_or_default(),
        identity: m
            .get("identity")
            .map(|n| identity(n, p))
            .unwrap_or_default(),
        routes: m
            .get("routes")
            .map(|n| each(n, "routes", p, route))
            .unwrap_or_default(),
        invalidate: m
            .get("invalidate")
            .map(|n| each(n, "invalidate", p, invalidation))
            .unwrap_or_default(),
        warmup: m
            .get("warmup")
            .map(|n| strings(n, "warmup", p))
            .unwrap_or_default(),
        shutdown: m
            .get("shutdown")
            .map(|n| shutdown(n, p))
            .unwrap_or_default(),
        log: m.get("log").map(|n| log(n, p)).unwrap_or_default(),
        reload: m.get("reload").map(|n| reload(n, p)).unwrap_or_default(),
        limits: m.get("limits").map(|n| limits(n, p)).unwrap_or_default(),
        security: m
            .get("security")
            .map(|n| security(n, p))
            .unwrap_or_default(),
    };
    m.finish(TOP_KEYS, p);
    raw
}

fn located<T>(node: &Node, value: Option<T>) -> Option<Located<T>> {
    value.map(|value| Located {
        value,
        loc: loc_of(node),
    })
}

/// Reads a list whose items are decoded by `item`.
fn each<T>(
    node: &Node,
    path: &str,
    p: &mut Problems,
    item: fn(&Node, &str, &mut Problems) -> Option<T>,
) -> Vec<T> {
    let Some(items) = yaml::list(node, path, p) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, n)| item(n, &format!("{path}[{i}]"), p))
        .collect()
}

fn strings(node: &Node, path: &str, p: &mut Problems) -> Vec<Located<String>> {
    each(node, path, p, |n, path, p| {
        located(n, yaml::string(n, path, p))
    })
}

fn upstream(node: &Node, p: &mut Problems) -> RawUpstream {
    let Some(mut m) = MapReader::new(node, "upstream", p) else {
        return RawUpstream::default();
    };
    let raw = RawUpstream {
        url: m
            .get("url")
            .and_then(|n| located(n, yaml::string(n, "upstream.url", p))),
        connect_timeout: m
            .get("connect_timeout")
            .and_then(|n| located(n, yaml::duration(n, "upstream.connect_timeout", p))),
        timeout: m
            .get("timeout")
            .and_then(|n| located(n, yaml::duration(n, "upstream.timeout", p))),
        idle_timeout: m
            .get("idle_timeout")
            .and_then(|n| located(n, yaml::duration(n, "upstream.idle_timeout", p))),
    };
    m.finish(&["url", "connect_timeout", "timeout", "idle_timeout"], p);
    raw
}

fn admin(node: &Node, p: &mut Problems) -> RawAdmin {
    let Some(mut m) = MapReader::new(node, "admin", p) else {
        return RawAdmin::default();
    };
    let raw = RawAdmin {
        listen: m
            .get("listen")
            .and_then(|n| located(n, yaml::scalar_text(n, "admin.listen", p))),
        token: m
            .get("token")
            .and_then(|n| yaml::scalar_text(n, "admin.token", p)),
    };
    m.finish(&["listen", "token"], p);
    raw
}

fn cache(node: &Node, p: &mut Problems) -> RawCache {
    let Some(mut m) = MapReader::new(node, "cache", p) else {
        return RawCache::default();
    };
    let stores = [
        ("memory", StoreKind::Memory),
        ("redis", StoreKind::Redis),
        ("tiered", StoreKind::Tiered),
    ];
    let raw = RawCache {
        enabled: m
            .get("enabled")
            .and_then(|n| yaml::boolean(n, "cache.enabled", p)),
        store: m
            .get("store")
            .and_then(|n| located(n, yaml::one_of(n, "cache.store", &stores, p))),
        memory_max_bytes: m.get("memory").and_then(|n| {
            let mut mm = MapReader::new(n, "cache.memory", p)?;
            let v = mm
                .get("max_bytes")
                .and_then(|n| located(n, yaml::byte_size(n, "cache.memory.max_bytes", p)));
            mm.finish(&["max_bytes"], p);
            v
        }),
        redis: m.get("redis").and_then(|n| located(n, redis(n, p))),
        l1: m.get("l1").and_then(|n| located(n, l1(n, p))),
        max_body_bytes: m
            .get("max_body_bytes")
            .and_then(|n| located(n, yaml::byte_size(n, "cache.max_body_bytes", p))),
        max_variants: m
            .get("max_variants")
            .and_then(|n| located(n, yaml::integer(n, "cache.max_variants", 1024, p))),
        coalesce: m.get("coalesce").and_then(|n| located(n, coalesce(n, p))),
    };
    m.finish(
        &[
            "enabled",
            "store",
            "memory",
            "redis",
            "l1",
            "max_body_bytes",
            "coalesce",
        ],
        p,
    );
    raw
}

fn redis(node: &Node, p: &mut Problems) -> Option<RawRedis> {
    let mut m = MapReader::new(node, "cache.redis", p)?;
    let raw = RawRedis {
        url: m
            .get("url")
            .and_then(|n| yaml::string(n, "cache.redis.url", p)),
        cluster: m
            .get("cluster")
            .map(|n| {
                strings(n, "cache.redis.cluster", p)
                    .into_iter()
                    .map(|s| s.value)
                    .collect()
            })
            .unwrap_or_default(),
        pool_size: m
            .get("pool_size")
            .and_then(|n| yaml::integer(n, "cache.redis.pool_size", 10_000, p)),
        timeout: m
            .get("timeout")
            .and_then(|n| yaml::duration(n, "cache.redis.timeout", p)),
        key_prefix: m
            .get("key_prefix")
            .and_then(|n| yaml::string(n, "cache.redis.key_prefix", p)),
    };
    m.finish(&["url", "cluster", "pool_size", "timeout", "key_prefix"], p);
    Some(raw)
}

fn l1(node: &Node, p: &mut Problems) -> Option<RawL1> {
    let mut m = MapReader::new(node, "cache.l1", p)?;
    let raw = RawL1 {
        max_bytes: m
            .get("max_bytes")
            .and_then(|n| yaml::byte_size(n, "cache.l1.max_bytes", p)),
        ttl: m
            .get("ttl")
            .and_then(|n| yaml::duration(n, "cache.l1.ttl", p)),
    };
    m.finish(&["max_bytes", "ttl"], p);
    Some(raw)
}

fn coalesce(node: &Node, p: &mut Problems) -> Option<RawCoalesce> {
    let mut m = MapReader::new(node, "cache.coalesce", p)?;
    let raw = RawCoalesce {
        enabled: m
            .get("enabled")
            .and_then(|n| yaml::boolean(n, "cache.coalesce.enabled", p)),
        wait_timeout: m
            .get("wait_timeout")
            .and_then(|n| yaml::duration(n, "cache.coalesce.wait_timeout", p)),
        across_instances: m
            .get("across_instances")
            .and_then(|n| yaml::boolean(n, "cache.coalesce.across_instances", p)),
    };
    m.finish(&["enabled", "wait_timeout", "across_instances"], p);
    Some(raw)
}

/// Reads the freshness keys from a `defaults:` or route mapping.
fn policy(m: &mut MapReader<'_>, p: &mut Problems) -> RawPolicy {
    let modes = [
        ("respect", OriginCacheControl::Respect),
        ("override", OriginCacheControl::Override),
    ];
    let ttl_path = m.child("ttl");
    let ttl = m.get("ttl").and_then(|n| match &n.value {
        yaml::Value::Str(s) if s == "origin" => located(n, Some(RawTtl::Origin)),
        _ => located(n, yaml::duration(n, &ttl_path, p).map(RawTtl::Fixed)),
    });
    let mut dur = |key: &str| {
        let path = m.child(key);
        m.get(key)
            .and_then(|n| located(n, yaml::duration(n, &path, p)))
    };
    let stale_while_revalidate = dur("stale_while_revalidate");
    let stale_if_error = dur("stale_if_error");
    let path = m.child("origin_cache_control");
    RawPolicy {
        ttl,
        stale_while_revalidate,
        stale_if_error,
        origin_cache_control: m
            .get("origin_cache_control")
            .and_then(|n| yaml::one_of(n, &path, &modes, p)),
    }
}

fn identity(node: &Node, p: &mut Problems) -> RawIdentity {
    let Some(mut m) = MapReader::new(node, "identity", p) else {
        return RawIdentity::default();
    };
    let raw = RawIdentity {
        loc: Some(loc_of(node)),
        header: m
            .get("header")
            .and_then(|n| located(n, yaml::string(n, "identity.header", p))),
        cookie: m
            .get("cookie")
            .and_then(|n| located(n, yaml::string(n, "identity.cookie", p))),
        hash_key: m
            .get("hash_key")
            .and_then(|n| located(n, yaml::string(n, "identity.hash_key", p))),
    };
    m.finish(&["header", "cookie", "hash_key"], p);
    raw
}

fn route(node: &Node, path: &str, p: &mut Problems) -> Option<RawRoute> {
    let mut m = MapReader::new(node, path, p)?;
    let scopes = [("public", Scope::Public), ("user", Scope::User)];
    let name = m
        .get("name")
        .and_then(|n| located(n, yaml::string(n, &format!("{path}.name"), p)));
    let pattern = m
        .get("match")
        .and_then(|n| located(n, yaml::string(n, &format!("{path}.match"), p)));
    let scope = m
        .get("scope")
        .and_then(|n| located(n, yaml::one_of(n, &format!("{path}.scope"), &scopes, p)));
    let policy = policy(&mut m, p);
    let (query, headers) = m
        .get("key")
        .map(|n| route_key(n, &format!("{path}.key"), p))
        .unwrap_or_default();
    let flag = |m: &mut MapReader<'_>, key: &str, p: &mut Problems| {
        let path = m.child(key);
        m.get(key)
            .and_then(|n| located(n, yaml::boolean(n, &path, p)))
    };
    let store_private = flag(&mut m, "store_private", p);
    let share_authenticated = flag(&mut m, "share_authenticated", p);
    m.finish(ROUTE_KEYS, p);
    Some(RawRoute {
        loc: loc_of(node),
        name,
        pattern,
        scope,
        policy,
        query,
        headers,
        store_private,
        share_authenticated,
    })
}

fn route_key(
    node: &Node,
    path: &str,
    p: &mut Problems,
) -> (Option<Located<RawQuery>>, Vec<Located<String>>) {
    let Some(mut m) = MapReader::new(node, path, p) else {
        return (None, Vec::new());
    };
    let query = m.get("query").and_then(|n| {
        let q = match &n.value {
            yaml::Value::Str(s) if s == "all" => Some(RawQuery::All),
            yaml::Value::Str(s) if s == "none" => Some(RawQuery::None),
            yaml::Value::Seq(_) => Some(RawQuery::Only(
                strings(n, &format!("{path}.query"), p)
                    .into_iter()
                    .map(|s| s.value)
                    .collect(),
            )),
            _ => {
                p.at(
                    Some(n),
                    &format!("{path}.query"),
                    "expected `all`, `none` or a list of parameter names",
                );
                None
            }
        };
        located(n, q)
    });
    let headers = m
        .get("headers")
        .map(|n| strings(n, &format!("{path}.headers"), p))
        .unwrap_or_default();
    m.finish(&["query", "headers"], p);
    (query, headers)
}

fn invalidation(node: &Node, path: &str, p: &mut Problems) -> Option<RawInvalidation> {
    let mut m = MapReader::new(node, path, p)?;
    let raw = RawInvalidation {
        loc: loc_of(node),
        name: m
            .get("name")
            .and_then(|n| located(n, yaml::string(n, &format!("{path}.name"), p))),
        pattern: m
            .get("match")
            .and_then(|n| located(n, yaml::string(n, &format!("{path}.match"), p))),
        purge: m
            .get("purge")
            .map(|n| strings(n, &format!("{path}.purge"), p))
            .unwrap_or_default(),
    };
    m.finish(&["name", "match", "purge"], p);
    Some(raw)
}

fn shutdown(node: &Node, p: &mut Problems) -> RawShutdown {
    let Some(mut m) = MapReader::new(node, "shutdown", p) else {
        return RawShutdown::default();
    };
    let raw = RawShutdown {
        drain_delay: m
            .get("drain_delay")
            .and_then(|n| yaml::duration(n, "shutdown.drain_delay", p)),
        grace_period: m
            .get("grace_period")
            .and_then(|n| yaml::duration(n, "shutdown.grace_period", p)),
    };
    m.finish(&["drain_delay", "grace_period"], p);
    raw
}

fn log(node: &Node, p: &mut Problems) -> RawLog {
    let Some(mut m) = MapReader::new(node, "log", p) else {
        return RawLog::default();
    };
    let raw = RawLog {
        access_sample: m
            .get("access_sample")
            .and_then(|n| yaml::fraction(n, "log.access_sample", p)),
        slow_request: m
            .get("slow_request")
            .and_then(|n| yaml::duration(n, "log.slow_request", p)),
    };
    m.finish(&["access_sample", "slow_request"], p);
    raw
}

fn reload(node: &Node, p: &mut Problems) -> RawReload {
    let Some(mut m) = MapReader::new(node, "reload", p) else {
        return RawReload::default();
    };
    let raw = RawReload {
        watch: m
            .get("watch")
            .and_then(|n| yaml::boolean(n, "reload.watch", p)),
        poll_interval: m
            .get("poll_interval")
            .and_then(|n| yaml::duration(n, "reload.poll_interval", p)),
    };
    m.finish(&["watch", "poll_interval"], p);
    raw
}

fn limits(node: &Node, p: &mut Problems) -> RawLimits {
    let Some(mut m) = MapReader::new(node, "limits", p) else {
        return RawLimits::default();
    };
    let mut size = |key: &str, p: &mut Problems| {
        m.get(key)
            .and_then(|n| located(n, yaml::byte_size(n, &format!("limits.{key}"), p)))
    };
    let max_header_bytes = size("max_header_bytes", p);
    let max_uri_bytes = size("max_uri_bytes", p);
    let max_request_body_bytes = size("max_request_body_bytes", p);
    let mut count = |key: &str, max: u64, p: &mut Problems| {
        m.get(key)
            .and_then(|n| located(n, yaml::integer(n, &format!("limits.{key}"), max, p)))
    };
    let max_headers = count("max_headers", 10_000, p);
    let max_connections = count("max_connections", 1_000_000, p);
    let h2_max_concurrent_streams = count("h2_max_concurrent_streams", 100_000, p);
    let mut duration = |key: &str, p: &mut Problems| {
        m.get(key)
            .and_then(|n| located(n, yaml::duration(n, &format!("limits.{key}"), p)))
    };
    let header_read_timeout = duration("header_read_timeout", p);
    let request_body_timeout = duration("request_body_timeout", p);
    m.finish(
        &[
            "max_header_bytes",
            "max_headers",
            "max_uri_bytes",
            "header_read_timeout",
            "max_request_body_bytes",
            "request_body_timeout",
            "max_connections",
            "h2_max_concurrent_streams",
        ],
        p,
    );
    RawLimits {
        max_header_bytes,
        max_headers,
        max_uri_bytes,
        header_read_timeout,
        max_request_body_bytes,
        request_body_timeout,
        max_connections,
        h2_max_concurrent_streams,
    }
}

fn security(node: &Node, p: &mut Problems) -> RawSecurity {
    let Some(mut m) = MapReader::new(node, "security", p) else {
        return RawSecurity::default();
    };
    let raw = RawSecurity {
        allowed_hosts: m
            .get("allowed_hosts")
            .map(|n| strings(n, "security.allowed_hosts", p))
            .unwrap_or_default(),
        trust_forwarded: m
            .get("trust_forwarded")
            .and_then(|n| yaml::boolean(n, "security.trust_forwarded", p)),
        merge_slashes: m
            .get("merge_slashes")
            .and_then(|n| yaml::boolean(n, "security.merge_slashes", p)),
    };
    m.finish(&["allowed_hosts", "trust_forwarded", "merge_slashes"], p);
    raw
}
