//! `upgrade:`.

use super::*;

fn upgrade(yaml: &str) -> crate::config::UpgradeConfig {
    load_str(&format!("{MINIMAL}upgrade: {yaml}\n"), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
        .upgrade
}

#[test]
fn websocket_is_tunnelled_by_default_and_nothing_else() {
    let u = upgrade("{}");
    assert!(u.enabled);
    assert!(u.allows("websocket") && u.allows("WebSocket") && u.allows(" websocket/13 "));
    for refused in ["h2c", "websocket, h2c", "irc/6.9", "", " , "] {
        assert!(!u.allows(refused), "{refused:?}");
    }
    assert_eq!(u.idle_timeout, std::time::Duration::from_secs(300));
    assert_eq!(u.max_lifetime, None);
    assert_eq!(u.max_tunnels, 10_000);
}

#[test]
fn protocols_are_listed_or_any_but_h2c() {
    let u = upgrade("{ protocols: [WebSocket, irc], max_lifetime: 1h, max_tunnels: 5 }");
    assert!(u.allows("websocket") && u.allows("IRC/6.9") && u.allows("irc, websocket"));
    assert!(!u.allows("other"));
    assert_eq!(u.max_lifetime, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(u.max_tunnels, 5);
    let any = upgrade("{ protocols: [\"*\"] }");
    assert!(any.allows("anything/1") && any.allows("websocket"));
    assert!(!any.allows("h2c"));
}

#[test]
fn rejects_h2c_bad_names_and_zero_limits() {
    rejected(
        &format!("{MINIMAL}upgrade: {{ protocols: [h2c] }}\n"),
        "never tunnelled",
    );
    rejected(
        &format!("{MINIMAL}upgrade: {{ protocols: [\"a b\"] }}\n"),
        "not a protocol name",
    );
    rejected(
        &format!("{MINIMAL}upgrade: {{ idle_timeout: 0s }}\n"),
        "upgrade.idle_timeout",
    );
    rejected(
        &format!("{MINIMAL}upgrade: {{ max_tunnels: 0 }}\n"),
        "upgrade.max_tunnels",
    );
    rejected(&format!("{MINIMAL}upgrade: {{ idle: 1s }}\n"), "idle");
}
