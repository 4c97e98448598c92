//! The smaller sections: `identity:`, `warmup:`, `limits:`,
//! `security.allowed_hosts` and `log:`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, Uri};

use crate::config::file::{
    Located, RawAliases, RawHosts, RawIdentity, RawLimits, RawLog, RawSecurity,
};
use crate::config::yaml::Problems;
use crate::config::{
    HostsConfig, IdentityConfig, IdentitySource, Limits, LogConfig, SecurityConfig, UpstreamConfig,
    WarmupTarget,
};
use crate::rules::{Route, RouteTable, normalize};

/// Requests slower than this log a warning unless `log.slow_request` says
/// otherwise (the seed's "SLOW QUERY" threshold).
pub(super) const DEFAULT_SLOW_REQUEST: Duration = Duration::from_secs(1);
/// An identity hash key shorter than this is guessable.
const MIN_HASH_KEY_LEN: usize = 16;

/// `identity:`: a header or a cookie, and the key identities are hashed with.
pub(super) fn identity(raw: &RawIdentity, p: &mut Problems) -> Option<IdentityConfig> {
    let source = identity_source(raw, p)?;
    let hash_key = match &raw.hash_key {
        Some(k) if k.value.len() < MIN_HASH_KEY_LEN => {
            let problem = format!("must be at least {MIN_HASH_KEY_LEN} characters");
            p.at_loc(Some(k.loc), "identity.hash_key", problem);
            return None;
        }
        Some(k) => blake3::derive_key("cachecar identity hash key v1", k.value.as_bytes()),
        None => *process_hash_key(),
    };
    Some(IdentityConfig { source, hash_key })
}

/// `identity.header` or `identity.cookie`; `Authorization` by default.
fn identity_source(raw: &RawIdentity, p: &mut Problems) -> Option<IdentitySource> {
    match (&raw.header, &raw.cookie) {
        (Some(_), Some(c)) => {
            let problem = "set either `header` or `cookie`, not both";
            p.at_loc(Some(c.loc), "identity", problem);
            None
        }
        (Some(h), None) => match HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(name) => Some(IdentitySource::Header(name)),
            Err(_) => {
                let problem = format!("`{}` is not a header name", h.value);
                p.at_loc(Some(h.loc), "identity.header", problem);
                None
            }
        },
        (None, Some(c)) if is_cookie_name(&c.value) => {
            Some(IdentitySource::Cookie(c.value.clone()))
        }
        (None, Some(c)) => {
            let problem = format!("`{}` is not a cookie name", c.value);
            p.at_loc(Some(c.loc), "identity.cookie", problem);
            None
        }
        (None, None) => Some(IdentitySource::Header(http::header::AUTHORIZATION)),
    }
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

/// `warmup`: each entry a `GET` of a path some route caches, given as
/// `GET /path?query` (sent with the upstream's authority as `Host`) or
/// `GET http://host/path` (sent with that `Host`, for entries clients that
/// use that host will hit).
pub(super) fn warmup(
    raw: &[Located<String>],
    upstream: Option<&UpstreamConfig>,
    hosts: &HostsConfig,
    routes: &RouteTable<Arc<Route>>,
    p: &mut Problems,
) -> Vec<WarmupTarget> {
    let mut out: Vec<WarmupTarget> = Vec::new();
    for item in raw {
        let target = match warmup_target(item.value.trim(), upstream, hosts, routes) {
            Ok(Some(target)) => target,
            Ok(None) => continue,
            Err(problem) => {
                p.at_loc(Some(item.loc), "warmup", problem);
                continue;
            }
        };
        if out.contains(&target) {
            let problem = format!("`{}` is listed twice", target.text);
            p.at_loc(Some(item.loc), "warmup", problem);
            continue;
        }
        out.push(target);
    }
    out
}

/// One `warmup` entry; `None` when there is no host to send it with (the
/// upstream is invalid, which is reported on its own).
fn warmup_target(
    text: &str,
    upstream: Option<&UpstreamConfig>,
    hosts: &HostsConfig,
    routes: &RouteTable<Arc<Route>>,
) -> Result<Option<WarmupTarget>, String> {
    let Some((method, target)) = text.split_once(' ') else {
        return Err("expected `GET /path` or `GET http://host/path`".into());
    };
    if method != "GET" {
        return Err(format!("`{method}`: only GET requests can warm the cache"));
    }
    let uri = match target.trim().parse::<Uri>() {
        Ok(u) if u.scheme().is_none_or(|s| s.as_str() == "http") && u.path().starts_with('/') => u,
        _ => {
            return Err(format!(
                "`{}` is not a path or an http:// URL",
                target.trim()
            ));
        }
    };
    let mut target =
        normalize::request(&uri, &http::HeaderMap::new()).map_err(|e| format!("`{uri}`: {e}"))?;
    // A relative target, or an alias, warms what clients reach by any of
    // the app's names.
    hosts.canonicalize(&mut target.host);
    if routes.find(&target.path).is_none() {
        let path = &target.path;
        return Err(format!(
            "`{path}` matches no route, so nothing would be stored"
        ));
    }
    let authority = || upstream.map(|u| u.authority.as_str().to_ascii_lowercase());
    let Some(host) = target.host.or_else(authority) else {
        return Ok(None);
    };
    let path_and_query = match &target.query {
        Some(q) => format!("{}?{q}", target.path),
        None => target.path,
    };
    Ok(Some(WarmupTarget {
        text: text.to_string(),
        host,
        path_and_query,
    }))
}

/// `limits`, with the defaults of [`Limits::default`].
pub(super) fn limits(raw: &RawLimits, p: &mut Problems) -> Limits {
    let mut l = Limits::default();
    let mut at_least = |v: &Option<Located<u64>>, min: u64, key: &str| -> Option<u64> {
        let v = v.as_ref()?;
        if v.value < min {
            let problem = format!("must be at least {min}");
            p.at_loc(Some(v.loc), &format!("limits.{key}"), problem);
            return None;
        }
        Some(v.value)
    };
    // hyper needs at least 8 KiB of read buffer.
    if let Some(n) = at_least(&raw.max_header_bytes, 8192, "max_header_bytes") {
        l.max_header_bytes = n as usize;
    }
    if let Some(n) = at_least(&raw.max_headers, 1, "max_headers") {
        l.max_headers = n as usize;
    }
    if let Some(n) = at_least(&raw.max_uri_bytes, 64, "max_uri_bytes") {
        l.max_uri_bytes = n as usize;
    }
    if let Some(n) = at_least(&raw.max_request_body_bytes, 0, "max_request_body_bytes") {
        l.max_request_body_bytes = n;
    }
    if let Some(n) = at_least(&raw.max_connections, 1, "max_connections") {
        l.max_connections = n as usize;
    }
    if let Some(n) = at_least(
        &raw.h2_max_concurrent_streams,
        1,
        "h2_max_concurrent_streams",
    ) {
        l.h2_max_concurrent_streams = n as u32;
    }
    if let Some(rate) = &raw.request_body_min_rate {
        l.request_body_min_rate = rate.value;
    }
    timeouts(&mut l, raw, p);
    l
}

/// The `limits` durations, none of which may be zero.
fn timeouts(l: &mut Limits, raw: &RawLimits, p: &mut Problems) {
    let mut time = |v: &Option<Located<Duration>>, default: Duration, key: &str| {
        super::nonzero(v.as_ref(), default, &format!("limits.{key}"), p)
    };
    l.header_read_timeout = time(
        &raw.header_read_timeout,
        l.header_read_timeout,
        "header_read_timeout",
    );
    l.idle_timeout = time(&raw.idle_timeout, l.idle_timeout, "idle_timeout");
    l.request_body_timeout = time(
        &raw.request_body_timeout,
        l.request_body_timeout,
        "request_body_timeout",
    );
    l.request_body_rate_window = time(
        &raw.request_body_rate_window,
        l.request_body_rate_window,
        "request_body_rate_window",
    );
}

/// `security.allowed_hosts`: host names, optionally with a port.
/// `hosts:`: `canonical` is a host name (with a port if clients send one);
/// `aliases` need it.
pub(super) fn hosts(raw: &RawHosts, p: &mut Problems) -> HostsConfig {
    let name = |text: &str, loc, at: &str, p: &mut Problems| {
        let host = text.trim().to_ascii_lowercase();
        match host.parse::<http::uri::Authority>() {
            Ok(a) if a.as_str() == host && !host.contains('@') => Some(host),
            _ => {
                p.at_loc(
                    Some(loc),
                    at,
                    format!("`{text}` is not a host name such as `api.example.com` or `api:8080`"),
                );
                None
            }
        }
    };
    let canonical = raw
        .canonical
        .as_ref()
        .and_then(|c| name(&c.value, c.loc, "hosts.canonical", p));
    let mut out = HostsConfig {
        canonical,
        ..HostsConfig::default()
    };
    match raw.aliases.as_ref() {
        None => {}
        Some(l) if raw.canonical.is_none() => {
            p.at_loc(
                Some(l.loc),
                "hosts.aliases",
                "needs `hosts.canonical`: the one name they all become",
            );
        }
        Some(l) => match &l.value {
            RawAliases::Any => out.any = true,
            RawAliases::Listed(names) => {
                out.aliases = names
                    .iter()
                    .filter_map(|n| name(n, l.loc, "hosts.aliases", p))
                    .collect();
            }
        },
    }
    out
}

/// `security:`.
pub(super) fn security(raw: &RawSecurity, p: &mut Problems) -> SecurityConfig {
    SecurityConfig {
        allowed_hosts: allowed_hosts(&raw.allowed_hosts, p),
        trust_forwarded: raw.trust_forwarded.unwrap_or(false),
        trusted_proxies: trusted_proxies(&raw.trusted_proxies, p),
        merge_slashes: raw.merge_slashes.unwrap_or(false),
        underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
    }
}

/// `security.trusted_proxies`: CIDR blocks (`10.0.0.0/8`) or single
/// addresses.
pub(super) fn trusted_proxies(raw: &[Located<String>], p: &mut Problems) -> Vec<ipnet::IpNet> {
    raw.iter()
        .filter_map(|l| {
            let text = l.value.trim();
            let parsed = text.parse::<ipnet::IpNet>().ok().or_else(|| {
                text.parse::<std::net::IpAddr>()
                    .ok()
                    .map(ipnet::IpNet::from)
            });
            if parsed.is_none() {
                let problem =
                    format!("`{text}` is not an address or a CIDR block such as `10.0.0.0/8`");
                p.at_loc(Some(l.loc), "security.trusted_proxies", problem);
            }
            parsed.map(|n| n.trunc())
        })
        .collect()
}

pub(super) fn allowed_hosts(raw: &[Located<String>], p: &mut Problems) -> Vec<String> {
    raw.iter()
        .filter_map(|h| {
            let host = h.value.trim().to_ascii_lowercase();
            match host.parse::<http::uri::Authority>() {
                Ok(a) if a.as_str() == host && !host.contains('@') => Some(host),
                _ => {
                    let problem = format!("`{}` is not a host or host:port", h.value);
                    p.at_loc(Some(h.loc), "security.allowed_hosts", problem);
                    None
                }
            }
        })
        .collect()
}

/// `log`: defaults log every request and warn above one second.
pub(super) fn log(raw: &RawLog) -> LogConfig {
    LogConfig {
        access_sample: raw.access_sample.unwrap_or(1.0),
        slow_request: match raw.slow_request {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(DEFAULT_SLOW_REQUEST),
        },
        query: raw.query.unwrap_or(false),
    }
}
