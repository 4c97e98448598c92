//! What `cachecar check` prints for a valid config: the settings that matter,
//! the route table in match order, what each invalidation rule purges, and
//! warnings (unreachable routes). Plain text for humans; stable enough for
//! a CI log, not meant for parsing.

use std::fmt::Write as _;
use std::time::Duration;

use super::validate::redact_url;
use super::{RedisNodes, RuntimeConfig, StoreKind};
use crate::rules::purge::{PurgePlan, ValueSrc};
use crate::rules::{Mode, Route, Scope};

/// Renders the report.
pub fn render(config: &RuntimeConfig) -> String {
    let mut out = String::new();
    settings(config, &mut out);
    redis(config, &mut out);
    reload(config, &mut out);
    security(config, &mut out);
    routes(config, &mut out);
    invalidations(config, &mut out);
    if !config.warmup.is_empty() {
        let _ = writeln!(
            out,
            "\nWarmup (at start and after each reload, 4 at a time):"
        );
        for w in &config.warmup {
            let _ = writeln!(out, "  {}  (Host: {})", w.text, w.host);
        }
    }
    if !config.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &config.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

/// Where the config came from, the addresses, and the cache's settings.
fn settings(config: &RuntimeConfig, out: &mut String) {
    let name = config
        .source
        .path
        .as_ref()
        .map_or_else(|| "config".to_string(), |p| p.display().to_string());
    let _ = writeln!(out, "{name}: valid (hash {})", config.source.hash);
    let _ = writeln!(
        out,
        "listen {} -> upstream {} (connect {}, response {})",
        config.listen,
        config.upstream.url,
        human(config.upstream.connect_timeout),
        human(config.upstream.timeout)
    );
    let _ = writeln!(
        out,
        "admin {} ({}); cache {}, store {}, memory {}, bodies up to {}",
        config.admin.listen,
        if config.admin.token.is_some() {
            "token set"
        } else {
            "no token: /admin/* answers 403"
        },
        if config.cache.enabled {
            "enabled"
        } else {
            "DISABLED (pass-through)"
        },
        config.cache.store.as_str(),
        size(config.cache.memory_max_bytes),
        size(config.cache.max_body_bytes),
    );
}

/// Where Redis is, when a store uses it.
fn redis(config: &RuntimeConfig, out: &mut String) {
    let Some(redis) = &config.cache.redis else {
        return;
    };
    let target = match &redis.nodes {
        RedisNodes::Single(url) => redact_url(url),
        RedisNodes::Cluster(urls) => format!("cluster of {} seed nodes", urls.len()),
        RedisNodes::Sentinel { master, nodes, db } => {
            format!("master `{master}` (db {db}) of {} sentinels", nodes.len())
        }
    };
    let l1 = if config.cache.store == StoreKind::Tiered {
        format!(
            "; L1 {} trusted for {}",
            size(config.cache.l1.max_bytes),
            human(config.cache.l1.ttl)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "redis {target} (timeout {}, {} connections, prefix {:?}){l1}{}",
        human(redis.timeout),
        redis.pool_size,
        redis.key_prefix,
        if config.cache.coalesce.across_instances {
            "; fills coalesce across instances"
        } else {
            ""
        }
    );
}

/// What reloads the config, and what is logged.
fn reload(config: &RuntimeConfig, out: &mut String) {
    let _ = writeln!(
        out,
        "reload: {}{}, SIGHUP, POST /admin/reload; access log {}, slow requests {}",
        if config.reload.watch {
            "on file change, "
        } else {
            ""
        },
        config.reload.poll_interval.map_or_else(
            || "no poll".to_string(),
            |d| format!("poll every {}", human(d))
        ),
        if config.log.access_sample >= 1.0 {
            "every request".to_string()
        } else {
            format!(
                "{}% of requests (plus 5xx and slow)",
                config.log.access_sample * 100.0
            )
        },
        config.log.slow_request.map_or_else(
            || "not reported".to_string(),
            |d| format!("over {}", human(d))
        ),
    );
}

/// `hosts`: which names are keyed and forwarded as one.
fn hosts(config: &RuntimeConfig, out: &mut String) {
    let h = &config.hosts;
    if let Some(canonical) = &h.canonical {
        let from = if h.any {
            "every Host".to_string()
        } else {
            h.aliases.join(", ")
        };
        let _ = writeln!(out, "hosts: keyed and forwarded as {canonical}: {from}");
    }
}

/// The hosts served, the headers trusted, and the limits.
fn security(config: &RuntimeConfig, out: &mut String) {
    let (l, s) = (&config.limits, &config.security);
    let _ = writeln!(
        out,
        "security: hosts {}; X-Forwarded-* {}{}",
        if s.allowed_hosts.is_empty() {
            "any".to_string()
        } else {
            s.allowed_hosts.join(", ")
        },
        if s.trust_forwarded {
            "trusted from every peer (kept and keyed)".to_string()
        } else if s.trusted_proxies.is_empty() {
            "dropped (X-Forwarded-For appended to)".to_string()
        } else {
            let nets: Vec<String> = s.trusted_proxies.iter().map(|n| n.to_string()).collect();
            format!(
                "trusted from {} (kept and keyed), else dropped",
                nets.join(", ")
            )
        },
        if s.merge_slashes { "; // merged" } else { "" },
    );
    hosts(config, out);
    if s.underscores_in_headers {
        let _ = writeln!(out, "security: header names with _ are kept");
    }
    let _ = writeln!(
        out,
        "limits: headers {} / {} fields, target {}, header timeout {}, idle {}, body {} (pause {}, at least {}/s over {}), {} connections, {} h2 streams",
        size(l.max_header_bytes as u64),
        l.max_headers,
        size(l.max_uri_bytes as u64),
        human(l.header_read_timeout),
        human(l.idle_timeout),
        size(l.max_request_body_bytes),
        human(l.request_body_timeout),
        size(l.request_body_min_rate),
        human(l.request_body_rate_window),
        l.max_connections,
        l.h2_max_concurrent_streams,
    );
}

/// A route's key and per-status ttls, as the route table shows them.
fn route_key(r: &Route) -> String {
    let mut key = format!("query={}", r.key.query);
    if !r.key.headers.is_empty() {
        let names: Vec<&str> = r.key.headers.iter().map(|h| h.as_str()).collect();
        let _ = write!(key, " headers=[{}]", names.join(", "));
    }
    if !r.status_ttl.is_empty() {
        let listed: Vec<String> = r
            .status_ttl
            .iter()
            .map(|(status, ttl)| {
                format!(
                    "{status}={}",
                    ttl.map_or_else(|| "origin".to_string(), human)
                )
            })
            .collect();
        let _ = write!(key, " status_ttl=[{}]", listed.join(", "));
    }
    key
}

fn routes(config: &RuntimeConfig, out: &mut String) {
    let _ = writeln!(
        out,
        "\nRoutes (first match wins; HEAD is served from GET entries):"
    );
    if config.routes.is_empty() {
        let _ = writeln!(out, "  (none: every request is forwarded untouched)");
        return;
    }
    let rows: Vec<[String; 5]> = config
        .routes
        .values()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let key = route_key(r);
            let scope = match r.scope {
                Scope::User if r.store_private => "user+private".to_string(),
                Scope::Public if r.share_authenticated => "public+auth".to_string(),
                s => s.as_str().to_string(),
            };
            let name = match r.mode {
                Mode::Shadow => format!("{} (shadow)", r.name),
                Mode::Cache => r.name.to_string(),
            };
            [
                format!("{}", i + 1),
                name,
                format!("GET {}", r.template),
                scope,
                format!(
                    "{} ({})  {key}",
                    r.ttl.map_or_else(|| "origin".to_string(), human),
                    r.origin_cache_control.as_str()
                ),
            ]
        })
        .collect();
    table(&["#", "name", "match", "scope", "ttl  key"], &rows, out);
    for (later, earlier) in config.routes.shadowing().overlapping {
        let v = config.routes.values();
        let _ = writeln!(
            out,
            "  note: `{}` and `{}` overlap; requests matching both go to `{}`",
            v[earlier].name, v[later].name, v[earlier].name
        );
    }
}

fn invalidations(config: &RuntimeConfig, out: &mut String) {
    let _ = writeln!(out, "\nInvalidation (on a 2xx/3xx answer):");
    let rules: Vec<_> = config.invalidations.rules().collect();
    if rules.is_empty() {
        let _ = writeln!(out, "  (no rules)");
    }
    for rule in rules {
        let matched = format!("{} {}", rule.method, rule.template);
        if *rule.label == *matched {
            let _ = writeln!(out, "  {matched}");
        } else {
            let _ = writeln!(out, "  {matched}  [{}]", rule.label);
        }
        for (target, plans) in &rule.targets {
            let _ = writeln!(out, "    {target}");
            for plan in plans {
                let _ = writeln!(out, "      -> {}", describe(plan));
            }
        }
        for tag in &rule.tags {
            let _ = writeln!(out, "    tag {}  -> every entry tagged so", tag.as_str());
        }
    }
    let _ = writeln!(
        out,
        "  Every successful POST/PUT/PATCH/DELETE also purges its own URL (RFC 9111 §4.4)."
    );
}

fn describe(plan: &PurgePlan) -> String {
    let mut s = format!("route `{}`: ", plan.route_name);
    if plan.bindings.is_empty() {
        s.push_str("all entries");
    } else {
        let parts: Vec<String> = plan
            .bindings
            .iter()
            .map(|(name, src)| format!("{name}={}", value(src)))
            .collect();
        let _ = write!(s, "entries with {}", parts.join(", "));
    }
    if !plan.conditions.is_empty() {
        let conds: Vec<String> = plan
            .conditions
            .iter()
            .map(|(c, v)| format!("{{{c}}} is `{v}`"))
            .collect();
        let _ = write!(s, ", when {}", conds.join(" and "));
    }
    s
}

fn value(src: &ValueSrc) -> String {
    match src {
        ValueSrc::Lit(s) => s.to_string(),
        ValueSrc::Capture(c) => format!("{{{c}}}"),
        ValueSrc::Join(parts) => parts.iter().map(value).collect::<Vec<_>>().join("/"),
    }
}

fn table(header: &[&str], rows: &[[String; 5]], out: &mut String) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::from(" ");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(l, " {cell:<w$}");
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(header.to_vec(), out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), out);
    }
}

/// `256 MiB`, `100 KiB`, `1000 B`.
pub fn size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} B")
}

/// `2h`, `1m`, `1h30m`, `250ms`, `0s`: in the units config files take,
/// so what `check` prints can be pasted back.
pub fn human(d: Duration) -> String {
    const UNITS: [(&str, u128); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}
