//! `hosts:` and `security.trusted_proxies`.

use super::*;

fn hosts(yaml: &str) -> crate::config::HostsConfig {
    load_str(&format!("{MINIMAL}hosts: {yaml}\n"), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
        .hosts
}

#[test]
fn aliases_become_the_canonical_host() {
    let h = hosts("{ canonical: api, aliases: [api.ns, \"api.ns.svc.cluster.local:80\"] }");
    let keyed = |host: Option<&str>| {
        let mut host = host.map(str::to_string);
        h.canonicalize(&mut host);
        host
    };
    for alias in [
        Some("api.ns"),
        Some("api.ns:8080"),
        Some("api.ns.svc.cluster.local:80"),
        Some("api:8080"),
        None,
    ] {
        assert_eq!(keyed(alias).as_deref(), Some("api"), "{alias:?}");
    }
    for other in ["api.ns.svc.cluster.local:81", "10.1.2.3", "evil.example"] {
        assert_eq!(keyed(Some(other)).as_deref(), Some(other));
    }
    let any = hosts("{ canonical: \"api:8080\", aliases: \"*\" }");
    let mut host = Some("10.1.2.3".to_string());
    any.canonicalize(&mut host);
    assert_eq!(host.as_deref(), Some("api:8080"));
    let none = hosts("{}");
    let mut host = Some("x".to_string());
    none.canonicalize(&mut host);
    assert_eq!(
        host.as_deref(),
        Some("x"),
        "without hosts, every Host is its own"
    );
}

#[test]
fn hosts_are_checked() {
    let problems = |yaml: &str| match load_str(&format!("{MINIMAL}hosts: {yaml}\n"), &|_| None) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    assert!(problems("{ aliases: [a] }").contains("needs `hosts.canonical`"));
    assert!(problems("{ canonical: \"a b\" }").contains("is not a host name"));
    assert!(problems("{ canonical: api, aliases: api.ns }").contains("hosts.aliases"));
    assert_eq!(problems("{ canonical: api, aliases: [api.ns] }"), "");
}
