//! Ages, per-status lifetimes, `s-maxage` and how long stale entries are
//! kept.

use super::*;

#[test]
fn explicit_freshness_makes_other_statuses_storable_but_not_errors() {
    for status in [302, 299, 404, 410] {
        let f = run("origin", false, status, &[("cache-control", "max-age=5")]).unwrap();
        assert_eq!(fresh_secs(f), 5, "{status}");
    }
    for status in [400, 401, 403, 405, 414, 499, 500, 501, 503, 599] {
        assert_eq!(
            run("origin", false, status, &[("cache-control", "max-age=5")]),
            Err(NoCacheReason::Status),
            "{status} is not listed in status_ttl"
        );
    }
}

#[test]
fn status_ttl_lists_statuses_by_code_before_class() {
    let explicit = [("cache-control", "max-age=30")];
    // `400: origin`: stored with the origin's freshness, none of its own.
    assert_eq!(
        fresh_secs(run("errors", false, 400, &explicit).unwrap()),
        30
    );
    assert_eq!(run("errors", false, 400, &[]), Err(NoCacheReason::Status));
    // 404 has a ttl of its own; the origin's still wins under `respect`.
    assert_eq!(fresh_secs(run("errors", false, 404, &[]).unwrap()), 5);
    assert_eq!(
        fresh_secs(run("errors", false, 404, &explicit).unwrap()),
        30
    );
    // `5xx: 10s`, and `503: 2s` before it.
    assert_eq!(fresh_secs(run("errors", false, 500, &[]).unwrap()), 10);
    assert_eq!(fresh_secs(run("errors", false, 503, &[]).unwrap()), 2);
    assert_eq!(
        fresh_secs(run("errors", false, 502, &explicit).unwrap()),
        30
    );
    // Unlisted 4xx stay out.
    assert_eq!(
        run("errors", false, 403, &explicit),
        Err(NoCacheReason::Status)
    );
}

#[test]
fn the_apparent_age_from_date_counts_against_the_origin_lifetime() {
    let two_hours_ago = httpdate::fmt_http_date(t0() - Duration::from_secs(7200));
    let old = [("cache-control", "max-age=3600"), ("date", &two_hours_ago)];
    assert_eq!(run("origin", false, 200, &old), Err(NoCacheReason::Expired));
    let half_an_hour_ago = httpdate::fmt_http_date(t0() - Duration::from_secs(1800));
    let f = run(
        "origin",
        false,
        200,
        &[
            ("cache-control", "max-age=3600"),
            ("date", &half_an_hour_ago),
        ],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 1800);
    assert_eq!(f.initial_age, Duration::from_secs(1800));
    // `Expires` is counted from `Date` by the library; the age still counts.
    let expires = httpdate::fmt_http_date(t0() + Duration::from_secs(1800));
    let f = run(
        "origin",
        false,
        200,
        &[("expires", &expires), ("date", &half_an_hour_ago)],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 1800);
    // With a validator it is stored, stale, to be revalidated.
    let f = run(
        "origin",
        false,
        200,
        &[
            ("cache-control", "max-age=3600"),
            ("date", &two_hours_ago),
            ("etag", "\"a\""),
        ],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 0);
    // A route's own ttl counts from arrival.
    let f = run("public", false, 200, &[("date", &two_hours_ago)]).unwrap();
    assert_eq!(fresh_secs(f), 60);
}

#[test]
fn age_is_read_as_its_first_member() {
    for age in ["7200, 0", "7200,1", "7200 , x"] {
        assert_eq!(
            run(
                "origin",
                false,
                200,
                &[("cache-control", "max-age=3600"), ("age", age)]
            ),
            Err(NoCacheReason::Expired),
            "Age: {age}"
        );
    }
    let f = run(
        "origin",
        false,
        200,
        &[("cache-control", "max-age=3600"), ("age", "x, 7200")],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 3600, "an invalid Age is ignored");
}

#[test]
fn s_maxage_forbids_serving_stale_in_a_shared_cache() {
    let f = run(
        "windows",
        false,
        200,
        &[("cache-control", "s-maxage=10"), ("etag", "\"a\"")],
    )
    .unwrap();
    assert!(f.must_revalidate);
    assert_eq!(f.stale_if_error_until, f.fresh_until);
    assert_eq!(f.stale_while_revalidate_until, f.fresh_until);
    let f = run("windows", false, 200, &[("cache-control", "max-age=10")]).unwrap();
    assert!(!f.must_revalidate);
    assert_eq!(
        f.stale_if_error_until
            .duration_since(f.fresh_until)
            .unwrap(),
        Duration::from_secs(20)
    );
}

#[test]
fn stale_entries_are_kept_for_keep_stale_unless_unusable() {
    let kept = |f: Freshness| f.keep_until.duration_since(f.fresh_until).unwrap();
    let plain = [("cache-control", "max-age=10")];
    assert_eq!(
        kept(run("errors", false, 200, &plain).unwrap()),
        Duration::from_secs(30)
    );
    assert_eq!(
        kept(run("origin", false, 200, &plain).unwrap()),
        Duration::from_secs(300)
    );
    let f = run(
        "origin",
        false,
        200,
        &[("cache-control", "max-age=10, must-revalidate")],
    )
    .unwrap();
    assert_eq!(
        kept(f),
        Duration::ZERO,
        "never usable stale, nothing to revalidate with"
    );
    let f = run(
        "origin",
        false,
        200,
        &[
            ("cache-control", "max-age=10, must-revalidate"),
            ("etag", "\"a\""),
        ],
    )
    .unwrap();
    assert_eq!(kept(f), Duration::from_secs(300));
}
