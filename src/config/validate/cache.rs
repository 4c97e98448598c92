//! `cache:`, with `cache.redis` and `cache.l1`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, header};

use super::nonzero;
use crate::config::file::{Located, RawCache};
use crate::config::yaml::Problems;
use crate::config::{CacheConfig, CoalesceConfig, L1Config, RedisSettings, StoreKind};
use crate::rules::{TagHeaders, TagTemplate, Targeted};

/// Memory store bound.
const DEFAULT_MEMORY_MAX_BYTES: u64 = 256 << 20;
/// Larger responses stream through unstored, so one huge body cannot evict
/// the working set or pin that much memory per fill.
const DEFAULT_MAX_BODY_BYTES: u64 = 8 << 20;
/// Most variants stored per URL unless configured: enough for encodings and
/// languages, too few for a `Vary: User-Agent` to flood the store.
const DEFAULT_MAX_VARIANTS: usize = 16;
/// How long a coalesced request waits for the leader before going upstream.
const DEFAULT_COALESCE_WAIT: Duration = Duration::from_secs(5);
/// The targeted cache-control field (RFC 9213) only cachecar reads.
const DEFAULT_TARGETED_FIELD: &str = "cachecar-cache-control";
/// The targeted field of RFC 9213 §3, for CDNs: cachecar is one, as far as
/// the app is concerned.
const CDN_CACHE_CONTROL: &str = "cdn-cache-control";
/// L1 bound of the tiered store.
const DEFAULT_L1_MAX_BYTES: u64 = 64 << 20;
/// Longest L1 trusts what it learned without asking Redis.
const DEFAULT_L1_TTL: Duration = Duration::from_secs(5);

/// `cache:`. Settings a store does not use are warned about in `warnings`.
pub(super) fn cache(
    c: &RawCache,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<CacheConfig> {
    let store = c.store.as_ref().map_or(StoreKind::Memory, |s| s.value);
    let memory_max_bytes = nonzero(
        c.memory.max_bytes.as_ref(),
        DEFAULT_MEMORY_MAX_BYTES,
        "cache.memory.max_bytes",
        p,
    );
    let max_body_bytes = nonzero(
        c.max_body_bytes.as_ref(),
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
    Some(CacheConfig {
        enabled: c.enabled.unwrap_or(true),
        store,
        memory_max_bytes,
        max_body_bytes,
        max_variants,
        coalesce: coalesce(c, store, p),
        redis: redis(c, store, p, warnings),
        l1: l1(c, store, p, warnings),
        tags: tags(c, p),
    })
}

/// The tag headers read unless `cache.tags.headers` says otherwise: Fastly's
/// and Varnish xkey's `Surrogate-Key`, and Cloudflare's `Cache-Tag`.
const DEFAULT_TAG_HEADERS: [&str; 2] = ["surrogate-key", "cache-tag"];
/// Most tags kept per entry (Fastly allows about this many in 16 KB).
const DEFAULT_MAX_TAGS: usize = 64;
/// Longest tag kept, in bytes.
const DEFAULT_MAX_TAG_LENGTH: usize = 256;

/// `cache.tags`.
fn tags(c: &RawCache, p: &mut Problems) -> TagHeaders {
    let section = c.tags.as_ref().map(|l| &l.value);
    let names = match section.and_then(|s| s.headers.as_ref()) {
        None => DEFAULT_TAG_HEADERS
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect(),
        Some(list) => super::header_names(list, "cache.tags.headers", p),
    };
    let bound = |v: Option<&Located<u64>>, default: usize, key: &str, p: &mut Problems| match v {
        Some(l) if l.value == 0 => {
            p.at_loc(Some(l.loc), key, "must be at least 1");
            default
        }
        Some(l) => l.value as usize,
        None => default,
    };
    TagHeaders {
        names,
        strip: section.and_then(|s| s.strip).unwrap_or(true),
        max_per_entry: bound(
            section.and_then(|s| s.max_per_entry.as_ref()),
            DEFAULT_MAX_TAGS,
            "cache.tags.max_per_entry",
            p,
        ),
        max_length: bound(
            section.and_then(|s| s.max_length.as_ref()),
            DEFAULT_MAX_TAG_LENGTH,
            "cache.tags.max_length",
            p,
        ),
    }
}

/// `cache.coalesce`; across instances only with a shared store.
fn coalesce(c: &RawCache, store: StoreKind, p: &mut Problems) -> CoalesceConfig {
    let section = c.coalesce.as_ref().map(|l| &l.value);
    let loc = c.coalesce.as_ref().map(|l| l.loc);
    let wait_timeout = section
        .and_then(|c| c.wait_timeout)
        .unwrap_or(DEFAULT_COALESCE_WAIT);
    if wait_timeout.is_zero() {
        p.at_loc(
            loc,
            "cache.coalesce.wait_timeout",
            "must be greater than zero (set `enabled: false` to turn coalescing off)",
        );
    }
    let across_instances = section.and_then(|c| c.across_instances).unwrap_or(false);
    if across_instances && store == StoreKind::Memory {
        p.at_loc(
            loc,
            "cache.coalesce.across_instances",
            "needs a shared store: set cache.store to `redis` or `tiered`",
        );
    }
    CoalesceConfig {
        enabled: section.and_then(|c| c.enabled).unwrap_or(true),
        wait_timeout,
        across_instances,
    }
}

/// `cache.redis`: required by the `redis` and `tiered` stores, refused
/// otherwise (a section that does nothing is a mistake waiting to happen).
fn redis(
    c: &RawCache,
    store: StoreKind,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<RedisSettings> {
    let Some(section) = c.redis.as_ref() else {
        if store != StoreKind::Memory {
            p.at_loc(
                c.store.as_ref().map(|s| s.loc),
                "cache.redis",
                format!(
                    "required by `store: {}`: give `url: redis://host:6379/0` or `cluster: [...]`",
                    store.as_str()
                ),
            );
        }
        return None;
    };
    if store == StoreKind::Memory {
        // Kept so operators can switch stores by one line; said, not refused.
        warnings.push(format!(
            "cache.redis (line {}) is not used: cache.store is `memory`",
            section.loc.line
        ));
        return None;
    }
    super::redis::settings(section, p)
}

/// `cache.l1`: only the `tiered` store has one.
fn l1(c: &RawCache, store: StoreKind, p: &mut Problems, warnings: &mut Vec<String>) -> L1Config {
    let mut l1 = L1Config {
        max_bytes: DEFAULT_L1_MAX_BYTES,
        ttl: DEFAULT_L1_TTL,
    };
    let Some(section) = &c.l1 else {
        return l1;
    };
    if store != StoreKind::Tiered {
        warnings.push(format!(
            "cache.l1 (line {}) is not used: only `store: tiered` has an L1",
            section.loc.line
        ));
        return l1;
    }
    let (loc, r) = (Some(section.loc), &section.value);
    match r.max_bytes {
        Some(0) => p.at_loc(loc, "cache.l1.max_bytes", "must be greater than zero"),
        Some(n) => l1.max_bytes = n,
        None => {}
    }
    match r.ttl {
        Some(t) if t.is_zero() => p.at_loc(
            loc,
            "cache.l1.ttl",
            "must be greater than zero (use `store: redis` for no L1)",
        ),
        Some(t) => l1.ttl = t,
        None => {}
    }
    l1
}

/// `cache.targeted_field` (default `Cachecar-Cache-Control`; `""` for
/// none) and `cache.cdn_cache_control` (default on), in that precedence.
pub(super) fn targeted(c: &RawCache, p: &mut Problems) -> Arc<Targeted> {
    let own = match &c.targeted_field {
        None => Some(HeaderName::from_static(DEFAULT_TARGETED_FIELD)),
        Some(l) if l.value.is_empty() => None,
        Some(l) => match HeaderName::from_bytes(l.value.as_bytes()) {
            Ok(name) if name == header::CACHE_CONTROL || name == CDN_CACHE_CONTROL => {
                let problem = format!(
                    "`{}` is not a field of cachecar's own; name one such as `{DEFAULT_TARGETED_FIELD}`",
                    l.value
                );
                p.at_loc(Some(l.loc), "cache.targeted_field", problem);
                None
            }
            Ok(name) => Some(name),
            Err(_) => {
                let problem = format!("`{}` is not a header name", l.value);
                p.at_loc(Some(l.loc), "cache.targeted_field", problem);
                None
            }
        },
    };
    let mut fields: Vec<HeaderName> = own.iter().cloned().collect();
    if c.cdn_cache_control.unwrap_or(true) {
        fields.push(HeaderName::from_static(CDN_CACHE_CONTROL));
    }
    Arc::new(Targeted { fields, own })
}

/// `tags` of a route or `purge_tags` of a rule: each `{name}` one of
/// `captures`.
pub(super) fn tag_templates(
    raw: &[Located<String>],
    captures: &[&str],
    at: &str,
    p: &mut Problems,
) -> Vec<TagTemplate> {
    raw.iter()
        .filter_map(|t| {
            TagTemplate::parse(&t.value, captures)
                .map_err(|e| p.at_loc(Some(t.loc), at, e.0))
                .ok()
        })
        .collect()
}
