//! `mode` and `shadow`, on routes and in `defaults`.

use super::*;

#[test]
fn shadow_settings_are_checked() {
    let route = "routes:\n  - { name: a, match: GET /a";
    assert!(problems(&format!("{MINIMAL}{route}, mode: shadow }}\n")).is_empty());
    assert!(
        problems(&format!(
            "{MINIMAL}defaults: {{ mode: shadow }}\n{route} }}\n"
        ))
        .is_empty()
    );
    rejected(
        &format!("{MINIMAL}{route}, mode: dry-run }}\n"),
        "routes[0].mode",
    );
    rejected(
        &format!("{MINIMAL}{route}, shadow: {{ headers: [\"a b\"] }} }}\n"),
        "routes[0].shadow.headers: `a b` is not a header name",
    );
    rejected(
        &format!(
            "{MINIMAL}defaults: {{ shadow: {{ ignore_json_fields: [\"a..b\"] }} }}\n{route} }}\n"
        ),
        "defaults.shadow.ignore_json_fields: `a..b` is not a field path",
    );
}
