use super::super::{ConfigError, load_str};
use super::{DEFAULT_POLL_INTERVAL, DEFAULT_SLOW_REQUEST};

const MINIMAL: &str = "upstream: { url: \"http://127.0.0.1:8000\" }\n";

fn problems(yaml: &str) -> Vec<String> {
    match load_str(yaml, &|name| (name == "SET").then(|| "value".to_string())) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(|p| p.to_string()).collect()
        }
        Err(e) => vec![e.to_string()],
    }
}

fn rejected(yaml: &str, needle: &str) {
    let found = problems(yaml);
    assert!(
        found.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got {found:?}"
    );
}

#[test]
fn minimal_config_is_valid_with_defaults() {
    let config = load_str(MINIMAL, &|_| None).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9090");
    assert!(config.admin.token.is_none());
    assert!(config.cache.enabled);
    assert_eq!(config.cache.memory_max_bytes, 256 << 20);
    assert_eq!(config.cache.max_body_bytes, 8 << 20);
    assert_eq!(config.source.hash.len(), 16);
}

#[test]
fn shipped_reference_config_is_valid() {
    let text = include_str!("../../../config/cachecar.yaml");
    let config = load_str(text, &|_| None).expect("config/cachecar.yaml must be valid");
    assert!(config.routes.len() >= 3);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn rejects_missing_upstream() {
    rejected("listen: 0.0.0.0:8080\n", "upstream.url: required");
}

#[test]
fn rejects_tls_settings_without_https() {
    rejected(
        "upstream: { url: \"http://app\", tls: { server_name: app } }\n",
        "https:// upstream.url only",
    );
}

#[test]
fn rejects_upstream_without_scheme() {
    rejected(
        "upstream: { url: \"app:8000\" }\n",
        "must start with http://",
    );
}

#[test]
fn rejects_zero_timeouts() {
    rejected(
        "upstream: { url: \"http://a\", timeout: 0s }\n",
        "upstream.timeout: must be greater than zero",
    );
}

#[test]
fn rejects_bad_listen_address() {
    rejected(
        &format!("{MINIMAL}listen: nowhere\n"),
        "2:9: listen: `nowhere` is not an address",
    );
}

#[test]
fn rejects_unknown_keys_everywhere() {
    let found = problems(&format!(
        "{MINIMAL}cache:\n  enabeld: true\nroutes:\n  - name: a\n    match: GET /a\n    ttl: 1s\n    scpoe: user\n"
    ));
    assert!(
        found
            .iter()
            .any(|p| p.contains("unknown key `enabeld`; did you mean `enabled`?")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("routes[0].scpoe")),
        "{found:?}"
    );
}

#[test]
fn rejects_bad_durations_and_sizes() {
    rejected(
        &format!("{MINIMAL}defaults: {{ ttl: 60 }}\n"),
        "a duration needs a unit",
    );
    rejected(
        &format!("{MINIMAL}cache: {{ max_body_bytes: 8M }}\n"),
        "expected a size",
    );
    rejected(
        &format!("{MINIMAL}cache: {{ memory: {{ max_bytes: 0 }} }}\n"),
        "must be greater than zero",
    );
}

#[test]
fn rejects_unset_environment_variables() {
    rejected(
        &format!("{MINIMAL}admin: {{ token: ${{UNSET}} }}\n"),
        "`UNSET` is not set",
    );
    assert!(problems(&format!("{MINIMAL}admin: {{ token: ${{SET}} }}\n")).is_empty());
}

#[test]
fn rejects_route_without_name_or_match() {
    rejected(
        &format!("{MINIMAL}routes:\n  - match: GET /a\n"),
        "routes[0].name: required",
    );
    rejected(
        &format!("{MINIMAL}routes:\n  - name: a\n"),
        "routes[0].match: required",
    );
}

#[test]
fn rejects_duplicate_and_unsafe_route_names() {
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: GET /a }}\n  - {{ name: a, match: GET /b }}\n"
        ),
        "`a` is used by an earlier route",
    );
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: \"a b\", match: GET /a }}\n"),
        "must be 1-64 letters",
    );
}

#[test]
fn rejects_non_get_routes() {
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: a, match: POST /a }}\n"),
        "belongs in `invalidate`",
    );
}

#[test]
fn rejects_bad_templates() {
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: a, match: \"GET /a/{{*r}}/b\" }}\n"),
        "must be the last segment",
    );
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: a, match: \"GET /a/x{{id}}\" }}\n"),
        "whole segment",
    );
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: a, match: GET a }}\n"),
        "must start with `/`",
    );
}

#[test]
fn rejects_credential_headers_in_the_key() {
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: GET /a, key: {{ headers: [Authorization] }} }}\n"
        ),
        "use `scope: user`",
    );
}

#[test]
fn rejects_bad_query_key() {
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: a, match: GET /a, key: {{ query: some }} }}\n"),
        "expected `all`, `none`",
    );
}

#[test]
fn rejects_flags_on_the_wrong_scope() {
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: a, match: GET /a, store_private: true }}\n"),
        "only applies to `scope: user`",
    );
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: GET /a, scope: user, share_authenticated: true }}\n"
        ),
        "only applies to `scope: public`",
    );
}

#[test]
fn rejects_both_identity_sources() {
    rejected(
        &format!("{MINIMAL}identity: {{ header: x-user, cookie: sid }}\n"),
        "either `header` or `cookie`",
    );
}

#[test]
fn rejects_short_identity_hash_key() {
    rejected(
        &format!("{MINIMAL}identity: {{ hash_key: short }}\n"),
        "at least 16 characters",
    );
}

#[test]
fn rejects_purge_target_that_matches_no_route() {
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: GET /a }}\ninvalidate:\n  - {{ match: PUT /a, purge: [GET /b] }}\n"
        ),
        "can match no route",
    );
}

#[test]
fn rejects_purge_target_with_unknown_capture() {
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: \"GET /a/{{id}}\" }}\ninvalidate:\n  - {{ match: \"PUT /a/{{x}}\", purge: [\"GET /a/{{id}}\"] }}\n"
        ),
        "is not captured by the rule's match",
    );
}

#[test]
fn contract_keys_are_all_accepted() {
    rejected(
        &format!("{MINIMAL}warmup: [GET /a]\n"),
        "`/a` matches no route",
    );
    let accepted = [
        "routes: [{ name: a, match: GET /a }]\nwarmup: [GET /a]\n",
        "defaults: { stale_if_error: 5s, stale_while_revalidate: 1m }\n",
        "cache: { coalesce: { enabled: false, wait_timeout: 1s }, max_variants: 4 }\n",
    ];
    for extra in accepted {
        assert!(problems(&format!("{MINIMAL}{extra}")).is_empty(), "{extra}");
    }
}

#[test]
fn rejects_override_without_a_ttl() {
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: GET /a, origin_cache_control: override }}\n"
        ),
        "needs a `ttl`",
    );
    rejected(
        &format!(
            "{MINIMAL}defaults: {{ ttl: 5s }}\nroutes:\n  - {{ name: a, match: GET /a, ttl: origin, origin_cache_control: override }}\n"
        ),
        "needs a `ttl`",
    );
}

#[test]
fn ttl_is_inherited_unless_the_route_says_origin() {
    let config = load_str(
        &format!(
            "{MINIMAL}defaults: {{ ttl: 5s, stale_if_error: 1m }}\nroutes:\n  - {{ name: a, match: GET /a }}\n  - {{ name: b, match: GET /b, ttl: origin, stale_if_error: 0s }}\n"
        ),
        &|_| None,
    )
    .unwrap();
    let r = config.routes.values();
    assert_eq!(r[0].ttl, Some(std::time::Duration::from_secs(5)));
    assert_eq!(r[0].stale_if_error, std::time::Duration::from_secs(60));
    assert_eq!(r[1].ttl, None);
    assert_eq!(r[1].stale_if_error, std::time::Duration::ZERO);
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let yaml = "upstream: { url: \"ftp://x\" }\nlisten: bad\ncache: { store: nowhere }\nroutes:\n  - { name: a, match: GET /a, ttl: forever }\n";
    let found = problems(yaml);
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found[0].starts_with("1:18: upstream.url"), "{found:?}");
    assert!(found[1].starts_with("2:9: listen"), "{found:?}");
    assert!(found[2].starts_with("3:17: cache.store"), "{found:?}");
    assert!(found[3].starts_with("5:36: routes[0].ttl"), "{found:?}");
}

#[test]
fn unreachable_routes_are_warnings_not_errors() {
    let config = load_str(
        &format!("{MINIMAL}routes:\n  - {{ name: any, match: \"GET /a/{{x}}\" }}\n  - {{ name: b, match: GET /a/b }}\n"),
        &|_| None,
    )
    .unwrap();
    assert_eq!(config.warnings.len(), 1);
    assert!(
        config.warnings[0].contains("route `b`"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn binding_sets_follow_the_purge_targets() {
    let config = load_str(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: c, match: \"GET /c/{{id}}\" }}\n  - {{ name: l, match: GET /c }}\ninvalidate:\n  - {{ match: \"PUT /c/{{id}}\", purge: [\"GET /c/{{id}}\", GET /c] }}\n"
        ),
        &|_| None,
    )
    .unwrap();
    let routes = config.routes.values();
    assert_eq!(routes[0].binding_sets, vec![vec![Box::from("id")]]);
    assert!(routes[1].binding_sets.is_empty());
    assert_ne!(routes[0].fingerprint, routes[1].fingerprint);
}

#[test]
fn log_and_reload_settings_have_defaults_and_bounds() {
    let config = load_str(MINIMAL, &|_| None).unwrap();
    assert_eq!(config.log.access_sample, 1.0);
    assert_eq!(config.log.slow_request, Some(DEFAULT_SLOW_REQUEST));
    assert!(config.reload.watch);
    assert_eq!(config.reload.poll_interval, Some(DEFAULT_POLL_INTERVAL));
    let text = format!(
        "{MINIMAL}log: {{ access_sample: 0.25, slow_request: 0s }}\nreload: {{ watch: false, poll_interval: 0s }}\n"
    );
    let config = load_str(&text, &|_| None).unwrap();
    assert_eq!(config.log.access_sample, 0.25);
    assert_eq!(config.log.slow_request, None, "0s turns the warning off");
    assert!(!config.reload.watch);
    assert_eq!(config.reload.poll_interval, None);
    rejected(
        &format!("{MINIMAL}log: {{ access_sample: 1.5 }}\n"),
        "log.access_sample: expected a number from 0 to 1",
    );
    rejected(
        &format!("{MINIMAL}log: {{ access_sampel: 1 }}\n"),
        "access_sampel",
    );
    rejected(
        &format!("{MINIMAL}reload: {{ watch: sometimes }}\n"),
        "reload.watch",
    );
}

#[test]
fn fingerprints_change_with_sharing_rules_and_identity_source() {
    let with = |extra: &str, identity: &str| {
        let text = format!(
            "{MINIMAL}identity: {{ {identity} }}\nroutes:\n  - name: a\n    match: GET /a\n    scope: user\n{extra}"
        );
        load_str(&text, &|_| None).unwrap().routes.values()[0].fingerprint
    };
    let base = with("", "header: authorization");
    assert_eq!(base, with("", "header: authorization"), "stable");
    assert_ne!(
        base,
        with("    store_private: true\n", "header: authorization")
    );
    assert_ne!(base, with("", "cookie: session"));
    assert_eq!(
        base,
        with("    ttl: 5m\n", "header: authorization"),
        "freshness is not part of the key"
    );
}

mod cache;
mod hosts;
mod invalidate;
mod shadow;
mod upgrade;
