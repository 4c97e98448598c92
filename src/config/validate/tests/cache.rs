//! `cache:`, `cache.redis`, `cache.l1` and `cache.coalesce`.

use super::super::super::{CacheConfig, RedisNodes, StoreKind};
use super::*;

fn cache_config(cache: &str) -> CacheConfig {
    load_str(&format!("{MINIMAL}cache:\n{cache}"), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
        .cache
}

#[test]
fn redis_store_takes_url_or_cluster_with_defaults() {
    let c = cache_config("  store: redis\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n");
    assert_eq!(c.store, StoreKind::Redis);
    let r = c.redis.unwrap();
    assert_eq!(
        r.nodes,
        RedisNodes::Single("redis://127.0.0.1:6379/0".into())
    );
    assert_eq!(r.pool_size, 2);
    assert_eq!(r.timeout, std::time::Duration::from_millis(50));
    assert_eq!(r.key_prefix, "cachecar:");
    let c = cache_config(
        "  store: tiered\n  redis:\n    cluster: [\"redis://a:7000\", \"redis://b:7001\"]\n    pool_size: 3\n    timeout: 20ms\n    key_prefix: \"x:\"\n  l1: { max_bytes: 1MiB, ttl: 2s }\n  coalesce: { across_instances: true }\n",
    );
    let r = c.redis.unwrap();
    assert_eq!(
        r.nodes,
        RedisNodes::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
    );
    assert_eq!((r.pool_size, r.key_prefix.as_str()), (3, "x:"));
    assert_eq!(c.l1.max_bytes, 1 << 20);
    assert_eq!(c.l1.ttl, std::time::Duration::from_secs(2));
    assert!(c.coalesce.across_instances);
}

#[test]
fn redis_takes_sentinel_tls_and_credentials() {
    let file = std::env::temp_dir().join(format!("cachecar-pw-{}", std::process::id()));
    std::fs::write(&file, "s3cret\n").unwrap();
    let c = cache_config(&format!(
        "  store: redis\n  redis:\n    sentinel: {{ master: main, nodes: [\"rediss://s1:26379\", \"rediss://s2:26379\"], db: 2 }}\n    username: app\n    password_file: {}\n    tls: {{ insecure_skip_verify: true }}\n",
        file.display()
    ));
    let _ = std::fs::remove_file(&file);
    let r = c.redis.unwrap();
    assert_eq!(
        r.nodes,
        RedisNodes::Sentinel {
            master: "main".into(),
            nodes: vec!["rediss://s1:26379".into(), "rediss://s2:26379".into()],
            db: 2
        }
    );
    assert_eq!(r.auth.username.as_deref(), Some("app"));
    assert_eq!(
        r.auth.password.as_deref(),
        Some("s3cret"),
        "the newline is not the password's"
    );
    assert!(r.tls.as_ref().is_some_and(|t| t.insecure));
    assert!(!format!("{r:?}").contains("s3cret"), "never printed");
    let plain = cache_config("  store: redis\n  redis: { url: \"rediss://a:6380/0\" }\n");
    assert_eq!(
        plain.redis.unwrap().tls,
        None,
        "system CAs without a tls section"
    );
}

#[test]
fn rejects_bad_redis_tls_and_credentials() {
    let cases = [
        (
            "url: \"redis://a\", tls: { insecure_skip_verify: true }",
            "applies to rediss:// URLs only",
        ),
        (
            "url: \"rediss://a\", tls: { ca_file: /nonexistent.pem }",
            "/nonexistent.pem",
        ),
        (
            "url: \"redis://a\", password: x, password_file: /p",
            "not both",
        ),
        (
            "url: \"redis://a\", password_file: /nonexistent",
            "password_file",
        ),
    ];
    for (redis, needle) in cases {
        rejected(
            &format!("{MINIMAL}cache:\n  store: redis\n  redis: {{ {redis} }}\n"),
            needle,
        );
    }
}

/// A store that needs Redis without it, or a Redis section it cannot use.
#[test]
fn rejects_missing_or_ambiguous_redis_sections() {
    let cases = [
        (
            "  store: redis\n",
            "cache.redis: required by `store: redis`",
        ),
        ("  store: tiered\n  redis: {}\n", "needs `url: redis://"),
        (
            "  store: redis\n  redis: { url: \"redis://a\", cluster: [\"redis://b\"] }\n",
            "give one of",
        ),
        (
            "  store: redis\n  redis: { sentinel: { nodes: [\"redis://s:26379\"] } }\n",
            "sentinel.master: required",
        ),
        (
            "  store: redis\n  redis: { sentinel: { master: m } }\n",
            "sentinel.nodes: required",
        ),
        (
            "  store: redis\n  redis: { sentinel: { master: m, nodes: [\"redis://a:1\", \"rediss://b:2\"] } }\n",
            "all `redis://` or all `rediss://`",
        ),
    ];
    for (cache, needle) in cases {
        rejected(&format!("{MINIMAL}cache:\n{cache}"), needle);
    }
}

/// URLs redis-rs cannot connect to without TLS, and values out of range.
#[test]
fn rejects_bad_redis_settings() {
    let cases = [
        (
            "  store: redis\n  redis: { url: \"http://a\" }\n",
            "must start with redis://",
        ),
        (
            "  store: redis\n  redis: { url: \"redis+sentinel://s:26379/mymaster\" }\n",
            "write `cache.redis.sentinel`",
        ),
        (
            "  store: redis\n  redis: { url: \"redis://a:notaport\" }\n",
            "is not a Redis URL",
        ),
        (
            "  store: redis\n  redis: { cluster: [\"unix:///s\"] }\n",
            "must start with redis://",
        ),
        (
            "  store: redis\n  redis: { url: \"redis://a\", pool_size: 0 }\n",
            "pool_size: must be at least 1",
        ),
        (
            "  store: redis\n  redis: { url: \"redis://a\", timeout: 0s }\n",
            "timeout: must be greater than zero",
        ),
        (
            "  store: redis\n  redis: { url: \"redis://a\", key_prefix: \"a b\" }\n",
            "key_prefix",
        ),
        (
            "  store: tiered\n  redis: { url: \"redis://a\" }\n  l1: { ttl: 0s }\n",
            "cache.l1.ttl",
        ),
        (
            "  coalesce: { across_instances: true }\n",
            "needs a shared store",
        ),
    ];
    for (cache, needle) in cases {
        rejected(&format!("{MINIMAL}cache:\n{cache}"), needle);
    }
}

#[test]
fn redis_password_is_not_echoed_in_problems() {
    let found = problems(&format!(
        "{MINIMAL}cache:\n  store: redis\n  redis: {{ url: \"http://user:hunter2@a:1\" }}\n"
    ));
    assert!(!found.is_empty());
    assert!(found.iter().all(|p| !p.contains("hunter2")), "{found:?}");
}

#[test]
fn unused_store_sections_are_warnings_not_errors() {
    let config = load_str(
        &format!("{MINIMAL}cache:\n  redis: {{ url: \"redis://a\" }}\n  l1: {{ ttl: 1s }}\n"),
        &|_| None,
    )
    .unwrap();
    assert!(config.cache.redis.is_none());
    assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
    assert!(config.warnings[0].contains("cache.redis"));
    assert!(config.warnings[1].contains("cache.l1"));
}

#[test]
fn rejects_zero_variants_and_zero_coalesce_wait() {
    rejected(
        &format!("{MINIMAL}cache: {{ max_variants: 0 }}\n"),
        "must be at least 1",
    );
    rejected(
        &format!("{MINIMAL}cache: {{ coalesce: {{ wait_timeout: 0s }} }}\n"),
        "must be greater than zero",
    );
}

#[test]
fn rejects_max_body_larger_than_memory() {
    rejected(
        &format!("{MINIMAL}cache: {{ memory: {{ max_bytes: 1MiB }}, max_body_bytes: 2MiB }}\n"),
        "larger than cache.memory.max_bytes",
    );
}

#[test]
fn user_routes_on_redis_without_a_hash_key_are_warned_of() {
    let route = "routes:\n  - { name: mine, match: GET /me, scope: user }\nidentity: { header: authorization";
    let warned = |store: &str, key: &str| {
        let config = load_str(
            &format!("{MINIMAL}cache: {{ store: {store}, redis: {{ url: \"redis://127.0.0.1:1\" }} }}\n{route}{key} }}\n"),
            &|_| None,
        )
        .unwrap();
        config
            .warnings
            .iter()
            .any(|w| w.contains("identity.hash_key"))
    };
    assert!(warned("redis", ""));
    assert!(warned("tiered", ""));
    assert!(!warned(
        "redis",
        ", hash_key: a-shared-secret-of-some-length"
    ));
    assert!(!warned("memory", ""));
}
