//! Targeted cache-control fields (RFC 9213).

use super::*;

#[test]
fn targeted_fields_stand_in_for_cache_control() {
    let secs = |headers: &[(&str, &str)]| run("origin", false, 200, headers).map(fresh_secs);
    assert_eq!(
        secs(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600")
        ]),
        Ok(600)
    );
    assert_eq!(
        secs(&[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "no-store")
        ]),
        Err(NoCacheReason::NoStore)
    );
    assert_eq!(
        secs(&[
            ("cdn-cache-control", "max-age=600"),
            ("cachecar-cache-control", "max-age=60"),
        ]),
        Ok(60),
        "cachecar's own field wins"
    );
}

#[test]
fn invalid_targeted_fields_are_ignored_and_wrong_types_left_out() {
    let secs = |headers: &[(&str, &str)]| run("origin", false, 200, headers).map(fresh_secs);
    // Invalid dictionaries are ignored: `Cache-Control` decides.
    for invalid in ["max-age=600, &&&", "max-age =600", "MaX-aGe=600"] {
        assert_eq!(
            secs(&[
                ("cache-control", "max-age=5"),
                ("cdn-cache-control", invalid)
            ]),
            Ok(5),
            "{invalid}"
        );
    }
    // A directive of the wrong type is left out; the field still stands in.
    assert_eq!(
        secs(&[
            ("cache-control", "max-age=600"),
            ("cdn-cache-control", "max-age=\"60\"")
        ]),
        Err(NoCacheReason::Expired)
    );
    assert_eq!(
        secs(&[
            ("cdn-cache-control", "private"),
            ("cache-control", "max-age=600")
        ]),
        Err(NoCacheReason::Private)
    );
}

#[test]
fn targeted_directives_keep_their_meaning() {
    let f = run(
        "origin",
        false,
        200,
        &[(
            "cdn-cache-control",
            "max-age=60, stale-if-error=30, must-revalidate=?0",
        )],
    )
    .unwrap();
    assert!(!f.must_revalidate);
    assert_eq!(
        f.stale_if_error_until
            .duration_since(f.fresh_until)
            .unwrap(),
        Duration::from_secs(30)
    );
    let big = run(
        "origin",
        false,
        200,
        &[("cdn-cache-control", "max-age=99999999999")],
    )
    .unwrap();
    assert_eq!(fresh_secs(big), 1 << 31);
}
