//! `RawConfig` -> `RuntimeConfig`: defaults applied, addresses and URLs
//! parsed, route templates and purge targets compiled, and every problem
//! collected before giving up (one test per rejection lives in `tests.rs`).
//!
//! A section per module: `upstream` (with `admin`), `cache` (with
//! `cache.redis` and `cache.l1`), `routes` (with `shadow`), `invalidate`,
//! and `settings` (identity, warmup, limits, security, log).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::file::{Located, RawConfig};
use super::yaml::Problems;
use super::{CacheConfig, ConfigSource, ReloadConfig, RuntimeConfig, ShutdownConfig, StoreKind};
use crate::rules::purge::Invalidations;
use crate::rules::{Route, RouteTable, Scope};

mod cache;
mod invalidate;
mod redis;
mod routes;
mod settings;
mod shadow;
mod tls;
mod upstream;

pub(crate) use redis::redact_url;
#[cfg(test)]
use settings::DEFAULT_SLOW_REQUEST;

/// Long enough for a Kubernetes endpoint update to reach kube-proxy and
/// ingress controllers after readiness turns 503.
const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// In-flight requests get this long; below Kubernetes' default 30 s grace.
const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(20);
/// The config file's content hash is checked this often, in case file
/// events are missed.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// A warning when `scope: user` routes store in Redis without
/// `identity.hash_key`: each process then hashes identities with a key of
/// its own, so replicas never share per-user entries and every restart
/// loses them.
fn unshared_user_keys(
    raw: &RawConfig,
    cache: Option<&CacheConfig>,
    routes: &RouteTable<Arc<Route>>,
) -> Option<String> {
    let shared = cache.is_some_and(|c| c.store != StoreKind::Memory);
    let user_routes: Vec<&str> = routes
        .values()
        .iter()
        .filter(|r| r.scope == Scope::User)
        .map(|r| &*r.name)
        .collect();
    if !shared || user_routes.is_empty() || raw.identity.hash_key.is_some() {
        return None;
    }
    Some(format!(
        "`scope: user` routes ({}) store in Redis without `identity.hash_key`: each replica hashes users with a key of its own, so their entries are never shared and are lost on restart; set `identity.hash_key: ${{CACHECAR_HASH_KEY}}` to one secret for every replica",
        user_routes.join(", ")
    ))
}

/// Validates `raw`, recording problems in `p`. Returns a config only when
/// the parts it needs could be built; callers also check `p.is_empty()`.
pub(crate) fn validate(raw: RawConfig, p: &mut Problems) -> Option<RuntimeConfig> {
    let listen = address(raw.listen.as_ref(), upstream::DEFAULT_LISTEN, "listen", p);
    // Said before the route table's warnings.
    let mut early_warnings = Vec::new();
    let upstream = upstream::upstream(&raw.upstream, p, &mut early_warnings);
    let admin = upstream::admin(&raw.admin, p);
    let cache = cache::cache(&raw.cache, p, &mut early_warnings);
    let identity = settings::identity(&raw.identity, p);
    let targeted = cache::targeted(&raw.cache, p);
    let routes = routes::routes(&raw.routes, &raw.defaults, &targeted, p);
    let (invalidations, plans) = invalidate::rules(&raw.invalidate, &routes, p);
    let (routes, mut warnings) = routes::table(routes, &plans, identity.as_ref(), p)?;
    warnings.extend(early_warnings);
    warnings.extend(unshared_user_keys(&raw, cache.as_ref(), &routes));
    let invalidations = Invalidations::new(invalidations)
        .map_err(|e| p.at_loc(None, "invalidate", e.0))
        .ok()?;
    let hosts = settings::hosts(&raw.hosts, p);
    let warmup = settings::warmup(&raw.warmup, upstream.as_ref(), &hosts, &routes, p);
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
        log: settings::log(&raw.log),
        limits: settings::limits(&raw.limits, p),
        security: settings::security(&raw.security, p),
        upgrade: upstream::upgrade(&raw.upgrade, p),
        traces: upstream::traces(&raw.traces, p),
        hosts,
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

/// A listen address, or `default` when none is given.
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

/// `value`, or `default` when absent; zero (of a size or a duration) is a
/// problem, and the default stands in for it.
fn nonzero<T: Copy + Default + PartialEq>(
    value: Option<&Located<T>>,
    default: T,
    path: &str,
    p: &mut Problems,
) -> T {
    match value {
        Some(v) if v.value == T::default() => {
            p.at_loc(Some(v.loc), path, "must be greater than zero");
            default
        }
        Some(v) => v.value,
        None => default,
    }
}

/// The header names of a list (`cache.tags.headers`, `shadow.headers`);
/// each that is not one is a problem at `path`.
fn header_names(list: &[Located<String>], path: &str, p: &mut Problems) -> Vec<http::HeaderName> {
    list.iter()
        .filter_map(|n| {
            http::HeaderName::from_bytes(n.value.trim().as_bytes())
                .map_err(|_| {
                    let why = format!("`{}` is not a header name", n.value);
                    p.at_loc(Some(n.loc), path, why);
                })
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests;
