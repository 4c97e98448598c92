//! The raw shape of the config file: what the operator wrote, typed, with the
//! location of every value that later validation may complain about.
//! Nothing is defaulted or cross-checked here (that is `validate.rs`); a
//! value that cannot be read is recorded as a problem and left out.
//!
//! Each section is declared once with `section!`: a field's name is its
//! key (`r#match` is `match`), and its reader turns the value into the
//! field's type. The macro writes the struct and its decoder, which reads
//! every key, reports unknown ones with a suggestion, and carries on, so
//! every problem of a file is reported at once.

use std::time::Duration;

use super::StoreKind;
use super::yaml::{self, Loc, MapReader, Node, Problems};
use crate::rules::{Mode, OriginCacheControl, Scope, StatusPattern};

#[macro_use]
mod section;

mod redis;
mod upstream;

pub(crate) use redis::{RawRedis, RawRedisTls, RawSentinel};
pub(crate) use section::Located;
use section::{at, choice, count, each, sections, sub, sub_at};
pub(crate) use upstream::{RawAdmin, RawTls, RawTraces, RawUpgrade, RawUpstream};

section! {
    /// The whole file.
    pub(crate) struct RawConfig {
        listen: Option<Located<String>> = at(yaml::scalar_text),
        upstream: RawUpstream = sub,
        admin: RawAdmin = sub,
        cache: RawCache = sub,
        defaults: RawPolicy = sub,
        identity: RawIdentity = sub,
        routes: Vec<RawRoute> = sections,
        invalidate: Vec<RawInvalidation> = sections,
        warmup: Vec<Located<String>> = strings,
        shutdown: RawShutdown = sub,
        log: RawLog = sub,
        reload: RawReload = sub,
        limits: RawLimits = sub,
        security: RawSecurity = sub,
        hosts: RawHosts = sub,
        upgrade: RawUpgrade = sub,
        traces: RawTraces = sub,
    }
}

section! {
    /// `hosts:`
    pub(crate) struct RawHosts {
        canonical: Option<Located<String>> = at(yaml::string),
        aliases: Option<Located<RawAliases>> = at(aliases),
    }
}

/// `hosts.aliases`: names, or `*` for every `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawAliases {
    /// Every `Host`.
    Any,
    /// These names.
    Listed(Vec<String>),
}

section! {
    /// `limits:`
    pub(crate) struct RawLimits {
        max_header_bytes: Option<Located<u64>> = at(yaml::byte_size),
        max_headers: Option<Located<u64>> = at(count(10_000)),
        max_uri_bytes: Option<Located<u64>> = at(yaml::byte_size),
        header_read_timeout: Option<Located<Duration>> = at(yaml::duration),
        idle_timeout: Option<Located<Duration>> = at(yaml::duration),
        max_request_body_bytes: Option<Located<u64>> = at(yaml::byte_size),
        request_body_timeout: Option<Located<Duration>> = at(yaml::duration),
        request_body_min_rate: Option<Located<u64>> = at(yaml::byte_size),
        request_body_rate_window: Option<Located<Duration>> = at(yaml::duration),
        max_connections: Option<Located<u64>> = at(count(1_000_000)),
        h2_max_concurrent_streams: Option<Located<u64>> = at(count(100_000)),
    }
}

section! {
    /// `security:`
    pub(crate) struct RawSecurity {
        allowed_hosts: Vec<Located<String>> = strings,
        trust_forwarded: Option<bool> = yaml::boolean,
        trusted_proxies: Vec<Located<String>> = strings,
        merge_slashes: Option<bool> = yaml::boolean,
        underscores_in_headers: Option<bool> = yaml::boolean,
    }
}

section! {
    /// `reload:`
    pub(crate) struct RawReload {
        watch: Option<bool> = yaml::boolean,
        poll_interval: Option<Duration> = yaml::duration,
    }
}

section! {
    /// `log:`
    pub(crate) struct RawLog {
        access_sample: Option<f64> = yaml::fraction,
        slow_request: Option<Duration> = yaml::duration,
        query: Option<bool> = yaml::boolean,
    }
}

section! {
    /// `cache:`
    pub(crate) struct RawCache {
        enabled: Option<bool> = yaml::boolean,
        store: Option<Located<StoreKind>> = at(choice(&STORES)),
        memory: RawMemory = sub,
        redis: Option<Located<RawRedis>> = sub_at,
        l1: Option<Located<RawL1>> = sub_at,
        max_body_bytes: Option<Located<u64>> = at(yaml::byte_size),
        max_variants: Option<Located<u64>> = at(count(1024)),
        coalesce: Option<Located<RawCoalesce>> = sub_at,
        targeted_field: Option<Located<String>> = at(yaml::scalar_text),
        cdn_cache_control: Option<bool> = yaml::boolean,
        tags: Option<Located<RawTags>> = sub_at,
    }
}

section! {
    /// `cache.tags:`
    pub(crate) struct RawTags {
        headers: Option<Vec<Located<String>>> = optional_strings,
        strip: Option<bool> = yaml::boolean,
        max_per_entry: Option<Located<u64>> = at(count(10_000)),
        max_length: Option<Located<u64>> = at(count(65_536)),
    }
}

section! {
    /// `cache.memory:`
    pub(crate) struct RawMemory {
        max_bytes: Option<Located<u64>> = at(yaml::byte_size),
    }
}

section! {
    /// `cache.l1:`
    pub(crate) struct RawL1 {
        max_bytes: Option<u64> = yaml::byte_size,
        ttl: Option<Duration> = yaml::duration,
    }
}

section! {
    /// `cache.coalesce:`
    pub(crate) struct RawCoalesce {
        enabled: Option<bool> = yaml::boolean,
        wait_timeout: Option<Duration> = yaml::duration,
        across_instances: Option<bool> = yaml::boolean,
    }
}

section! {
    /// Freshness settings: `defaults:`, and each route's own.
    pub(crate) struct RawPolicy {
        ttl: Option<Located<RawTtl>> = at(ttl),
        stale_while_revalidate: Option<Located<Duration>> = at(yaml::duration),
        stale_if_error: Option<Located<Duration>> = at(yaml::duration),
        origin_cache_control: Option<OriginCacheControl> = choice(&ORIGIN_MODES),
        status_ttl: Option<Located<Vec<(StatusPattern, RawTtl)>>> = at(status_ttls),
        keep_stale: Option<Located<Duration>> = at(yaml::duration),
        mode: Option<Mode> = choice(&MODES),
        shadow: Option<Located<RawShadow>> = sub_at,
    }
}

section! {
    /// `shadow:` of `defaults` or a route.
    pub(crate) struct RawShadow {
        headers: Option<Vec<Located<String>>> = optional_strings,
        ignore_json_fields: Vec<Located<String>> = strings,
    }
}

section! {
    /// `identity:`
    pub(crate) struct RawIdentity {
        header: Option<Located<String>> = at(yaml::string),
        cookie: Option<Located<String>> = at(yaml::string),
        hash_key: Option<Located<String>> = at(yaml::string),
    }
}

section! {
    /// One entry of `routes:`; the freshness keys are its `policy`.
    pub(crate) struct RawRoute {
        name: Option<Located<String>> = at(yaml::string),
        r#match: Option<Located<String>> = at(yaml::string),
        scope: Option<Located<Scope>> = at(choice(&SCOPES)),
        key: RawKey = sub,
        store_private: Option<Located<bool>> = at(yaml::boolean),
        share_authenticated: Option<Located<bool>> = at(yaml::boolean),
        tags: Vec<Located<String>> = strings,
    }
    with policy: RawPolicy
}

section! {
    /// A route's `key:`.
    pub(crate) struct RawKey {
        query: Option<Located<RawQuery>> = at(query),
        headers: Vec<Located<String>> = strings,
    }
}

section! {
    /// One entry of `invalidate:`.
    pub(crate) struct RawInvalidation {
        /// Defaults to the match text.
        name: Option<Located<String>> = at(yaml::string),
        r#match: Option<Located<String>> = at(yaml::string),
        purge: Vec<Located<String>> = strings,
        purge_tags: Vec<Located<String>> = strings,
    }
}

section! {
    /// `shutdown:`
    pub(crate) struct RawShutdown {
        drain_delay: Option<Duration> = yaml::duration,
        grace_period: Option<Duration> = yaml::duration,
    }
}

/// `ttl`: a duration, or `origin` for "origin headers only".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawTtl {
    /// A fallback (or, with `override`, fixed) freshness lifetime.
    Fixed(Duration),
    /// No freshness of cachecar's own.
    Origin,
}

/// `key.query`
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawQuery {
    /// `all`
    All,
    /// `none`
    None,
    /// `[a, b]`
    Only(Vec<String>),
}

const STORES: [(&str, StoreKind); 3] = [
    ("memory", StoreKind::Memory),
    ("redis", StoreKind::Redis),
    ("tiered", StoreKind::Tiered),
];
const MODES: [(&str, Mode); 2] = [("cache", Mode::Cache), ("shadow", Mode::Shadow)];
const ORIGIN_MODES: [(&str, OriginCacheControl); 2] = [
    ("respect", OriginCacheControl::Respect),
    ("override", OriginCacheControl::Override),
];
const SCOPES: [(&str, Scope); 2] = [("public", Scope::Public), ("user", Scope::User)];
/// Decodes the located tree, recording every problem in `p`.
pub(crate) fn decode(root: &Node, p: &mut Problems) -> RawConfig {
    sub(root, "", p)
}

/// A list of strings, each with its place.
fn strings(node: &Node, path: &str, p: &mut Problems) -> Vec<Located<String>> {
    each(at(yaml::string))(node, path, p)
}

/// A list of strings that may be given empty: `Some([])` turns a default
/// list off, where an absent key keeps it.
fn optional_strings(node: &Node, path: &str, p: &mut Problems) -> Option<Vec<Located<String>>> {
    Some(strings(node, path, p))
}

/// A list of strings.
fn plain_strings(node: &Node, path: &str, p: &mut Problems) -> Vec<String> {
    strings(node, path, p)
        .into_iter()
        .map(|s| s.value)
        .collect()
}

/// `ttl`: `origin`, or a duration.
fn ttl(node: &Node, path: &str, p: &mut Problems) -> Option<RawTtl> {
    match &node.value {
        yaml::Value::Str(s) if s == "origin" => Some(RawTtl::Origin),
        _ => yaml::duration(node, path, p).map(RawTtl::Fixed),
    }
}

/// `hosts.aliases`: `"*"` or a list of names.
fn aliases(node: &Node, path: &str, p: &mut Problems) -> Option<RawAliases> {
    match &node.value {
        yaml::Value::Str(s) if s == "*" => Some(RawAliases::Any),
        yaml::Value::Seq(_) => Some(RawAliases::Listed(plain_strings(node, path, p))),
        _ => {
            p.at(
                Some(node),
                path,
                "expected `\"*\"` (every Host) or a list of host names",
            );
            None
        }
    }
}

/// `key.query`: `all`, `none` or a list of parameter names.
fn query(node: &Node, path: &str, p: &mut Problems) -> Option<RawQuery> {
    match &node.value {
        yaml::Value::Str(s) if s == "all" => Some(RawQuery::All),
        yaml::Value::Str(s) if s == "none" => Some(RawQuery::None),
        yaml::Value::Seq(_) => Some(RawQuery::Only(plain_strings(node, path, p))),
        _ => {
            p.at(
                Some(node),
                path,
                "expected `all`, `none` or a list of parameter names",
            );
            None
        }
    }
}

/// `status_ttl`: a mapping from status codes (`404`) or classes (`4xx`)
/// to a `ttl` (a duration or `origin`).
fn status_ttls(node: &Node, path: &str, p: &mut Problems) -> Option<Vec<(StatusPattern, RawTtl)>> {
    let yaml::Value::Map(entries) = &node.value else {
        let found = node.value.kind();
        p.at(
            Some(node),
            path,
            format!("expected a mapping of statuses to ttls, found {found}"),
        );
        return None;
    };
    let mut out: Vec<(StatusPattern, RawTtl)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let text = match &key.value {
            yaml::Value::Int(n) => n.to_string(),
            yaml::Value::Str(s) => s.clone(),
            other => {
                p.at(
                    Some(key),
                    path,
                    format!(
                        "expected a status such as `404` or `5xx`, found {}",
                        other.kind()
                    ),
                );
                continue;
            }
        };
        let at = format!("{path}.{text}");
        let Some(pattern) = StatusPattern::parse(&text) else {
            p.at(
                Some(key),
                &at,
                "expected a status from 200 to 599 (`404`) or a class (`4xx`)",
            );
            continue;
        };
        if out.iter().any(|(k, _)| *k == pattern) {
            p.at(Some(key), &at, "is listed twice");
            continue;
        }
        if let Some(t) = ttl(value, &at, p) {
            out.push((pattern, t));
        }
    }
    Some(out)
}
