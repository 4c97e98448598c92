//! `cache.redis:`: where Redis is (one server, a Cluster's seed nodes, or
//! Sentinel), credentials, TLS, and the store's own settings.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::cache::redis::{OnPurgeFailure, RedisAuth, RedisTls};
use crate::config::file::{Located, RawRedis, RawRedisTls, RawSentinel};
use crate::config::yaml::{Loc, Problems};
use crate::config::{RedisNodes, RedisSettings};

/// Connections to Redis. Each is multiplexed, and fewer connections batch
/// more commands per write: with wrk here, 1-2 lanes gave ~37k hits/s and 8
/// gave ~29k (docs/redis.md). Two, so one slow socket is not everything.
const DEFAULT_REDIS_POOL_SIZE: usize = 2;
/// Redis is on the same network; longer than this and the upstream is the
/// faster way to answer.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a write waits for its purge to reach Redis by default: longer
/// than a blip (the breaker opens after three failed commands and the
/// prober replays within its first probe), short enough that a client
/// does not give up on the write.
const DEFAULT_PURGE_WAIT: Duration = Duration::from_secs(2);
/// Prefix of every Redis key.
const DEFAULT_KEY_PREFIX: &str = "cachecar:";

/// A `cache.redis` section that a store uses.
pub(super) fn settings(section: &Located<RawRedis>, p: &mut Problems) -> Option<RedisSettings> {
    let (loc, r) = (section.loc, &section.value);
    let nodes = redis_nodes(r, loc, p);
    let auth = auth(r, p);
    let tls = tls(r, nodes.as_ref(), p);
    let (nodes, auth, tls) = (nodes?, auth?, tls?);
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
            let problem = "must be greater than zero";
            p.at_loc(Some(loc), "cache.redis.timeout", problem);
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
        let problem = format!("`{key_prefix}` must not contain spaces or control characters");
        p.at_loc(Some(loc), "cache.redis.key_prefix", problem);
        return None;
    }
    Some(RedisSettings {
        nodes,
        auth,
        tls,
        pool_size,
        timeout,
        key_prefix,
        fence_after_outage: r.fence_after_outage.unwrap_or(true),
        on_purge_failure: r.on_purge_failure.unwrap_or(OnPurgeFailure::Wait),
        purge_wait: r.purge_wait.unwrap_or(DEFAULT_PURGE_WAIT),
    })
}

/// One server (`url`), a cluster's seed nodes (`cluster`) or the
/// sentinels of a master (`sentinel`): exactly one.
fn redis_nodes(r: &RawRedis, loc: Loc, p: &mut Problems) -> Option<RedisNodes> {
    let given = [r.url.is_some(), !r.cluster.is_empty(), r.sentinel.is_some()];
    match given.iter().filter(|g| **g).count() {
        0 => {
            let message = "needs `url: redis://host:6379/0`, `cluster: [redis://host:7000, ...]` or `sentinel: { master: name, nodes: [...] }`";
            p.at_loc(Some(loc), "cache.redis", message);
            return None;
        }
        1 => {}
        _ => {
            let message = "give one of `url` (one server), `cluster` (seed nodes) or `sentinel`";
            p.at_loc(Some(loc), "cache.redis", message);
            return None;
        }
    }
    if let Some(url) = &r.url {
        redis_url(url, "cache.redis.url", Nodes::Single, loc, p)?;
        return Some(RedisNodes::Single(url.clone()));
    }
    if let Some(sentinel) = &r.sentinel {
        return sentinel_nodes(sentinel, p);
    }
    let mut ok = true;
    for url in &r.cluster {
        ok &= redis_url(url, "cache.redis.cluster", Nodes::Cluster, loc, p).is_some();
    }
    ok.then(|| RedisNodes::Cluster(r.cluster.clone()))
}

/// `cache.redis.sentinel`: the master's name and the sentinels, all
/// `redis://` or all `rediss://`.
fn sentinel_nodes(s: &Located<RawSentinel>, p: &mut Problems) -> Option<RedisNodes> {
    let Some(master) = &s.value.master else {
        let message =
            "required: the name the sentinels know the master by (`sentinel monitor <name> ...`)";
        p.at_loc(Some(s.loc), "cache.redis.sentinel.master", message);
        return None;
    };
    if s.value.nodes.is_empty() {
        let message = "required: the sentinels, e.g. [redis://sentinel-0:26379, ...]";
        p.at_loc(Some(s.loc), "cache.redis.sentinel.nodes", message);
        return None;
    }
    let path = "cache.redis.sentinel.nodes";
    let mut ok = true;
    for node in &s.value.nodes {
        ok &= redis_url(&node.value, path, Nodes::Sentinel, node.loc, p).is_some();
    }
    let secure = |n: &Located<String>| n.value.starts_with("rediss://");
    if ok && s.value.nodes.iter().any(secure) != s.value.nodes.iter().all(secure) {
        p.at_loc(Some(s.loc), path, "all `redis://` or all `rediss://`");
        ok = false;
    }
    ok.then(|| RedisNodes::Sentinel {
        master: master.value.clone(),
        nodes: s.value.nodes.iter().map(|n| n.value.clone()).collect(),
        db: s.value.db.map_or(0, |d| d as i64),
    })
}

/// What a URL names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nodes {
    Single,
    Cluster,
    Sentinel,
}

/// `username`, and the password from `password` or `password_file`.
fn auth(r: &RawRedis, p: &mut Problems) -> Option<RedisAuth> {
    let password = match (&r.password, &r.password_file) {
        (Some(_), Some(file)) => {
            let message = "give `password` or `password_file`, not both";
            p.at_loc(Some(file.loc), "cache.redis.password_file", message);
            return None;
        }
        (Some(password), None) => Some(password.clone()),
        (None, Some(file)) => match std::fs::read_to_string(&file.value) {
            // A mounted Secret often ends with a newline.
            Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
            Err(e) => {
                let message = format!("`{}`: {e}", file.value);
                p.at_loc(Some(file.loc), "cache.redis.password_file", message);
                return None;
            }
        },
        (None, None) => None,
    };
    Some(RedisAuth {
        username: r.username.clone().filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()),
    })
}

/// `cache.redis.tls`, for `rediss://` URLs only: `Some(None)` without it.
fn tls(r: &RawRedis, nodes: Option<&RedisNodes>, p: &mut Problems) -> Option<Option<RedisTls>> {
    let Some(section) = &r.tls else {
        return Some(None);
    };
    let urls: Vec<&String> = match nodes {
        Some(RedisNodes::Single(url)) => vec![url],
        Some(RedisNodes::Cluster(urls)) => urls.iter().collect(),
        Some(RedisNodes::Sentinel { nodes, .. }) => nodes.iter().collect(),
        None => return None,
    };
    if !urls
        .iter()
        .all(|u| u.starts_with("rediss://") || u.starts_with("valkeys://"))
    {
        let message = "applies to rediss:// URLs only: use rediss:// for TLS";
        p.at_loc(Some(section.loc), "cache.redis.tls", message);
        return None;
    }
    let t: &RawRedisTls = &section.value;
    let ca = match &t.ca_file {
        Some(file) => Some(pem(file, "cache.redis.tls.ca_file", Pem::Certificates, p)?),
        None => None,
    };
    let client = match (&t.cert_file, &t.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert = pem(cert, "cache.redis.tls.cert_file", Pem::Certificates, p);
            let key = pem(key, "cache.redis.tls.key_file", Pem::Key, p);
            Some((cert?, key?))
        }
        _ => {
            let message =
                "`cert_file` and `key_file` go together: the client certificate and its key";
            p.at_loc(Some(section.loc), "cache.redis.tls", message);
            return None;
        }
    };
    Some(Some(RedisTls {
        ca,
        client,
        insecure: t.insecure_skip_verify.unwrap_or(false),
    }))
}

/// What a PEM file must hold.
enum Pem {
    Certificates,
    Key,
}

/// The bytes of the PEM file `file`, once they are known to hold `what`.
fn pem(file: &Located<String>, path: &str, what: Pem, p: &mut Problems) -> Option<Vec<u8>> {
    let checked = std::fs::read(&file.value)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let ok = match what {
                Pem::Certificates => CertificateDer::pem_slice_iter(&bytes)
                    .next()
                    .is_some_and(|c| c.is_ok()),
                Pem::Key => PrivateKeyDer::from_pem_slice(&bytes).is_ok(),
            };
            match (ok, what) {
                (true, _) => Ok(bytes),
                (false, Pem::Certificates) => Err("holds no PEM certificate".to_owned()),
                (false, Pem::Key) => Err("holds no PEM private key".to_owned()),
            }
        });
    checked
        .map_err(|e| p.at_loc(Some(file.loc), path, format!("`{}`: {e}", file.value)))
        .ok()
}

/// Checks that `url` is one redis-rs can connect to, for `nodes`.
fn redis_url(url: &str, path: &str, nodes: Nodes, loc: Loc, p: &mut Problems) -> Option<()> {
    use redis::IntoConnectionInfo;
    let shown = redact_url(url);
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let why = match (scheme, nodes) {
        ("redis" | "valkey" | "rediss" | "valkeys", _) => None,
        ("unix" | "redis+unix", Nodes::Single) => None,
        ("redis+sentinel" | "rediss+sentinel" | "sentinel", _) => Some(
            "a Sentinel URL: write `cache.redis.sentinel` {master, nodes} instead (docs/redis.md, \"Sentinel\")"
                .to_string(),
        ),
        (_, Nodes::Single) => {
            Some("must start with redis://, rediss:// (TLS) or unix:// (a socket)".to_string())
        }
        _ => Some("must start with redis:// or rediss:// (TLS)".to_string()),
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
pub(crate) fn redact_url(url: &str) -> String {
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
