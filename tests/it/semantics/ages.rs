//! How old a response is on arrival (RFC 9111 §4.2.3, §5.1): a `Date` in
//! the past and an `Age` list both count against the origin's lifetime.

use super::*;

/// An origin whose clock runs two hours behind (or that buffered the
/// response): `max-age=3600` with a `Date` two hours old is already stale,
/// so the next request goes upstream again, and `Age` says how old it is.
#[tokio::test]
async fn an_old_date_is_not_served_as_fresh() {
    trace_init();
    let two_hours_ago =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(7200));
    let old = [
        ("cache-control", "max-age=3600"),
        ("date", two_hours_ago.as_str()),
    ];
    let (upstream, proxy) = plain(vec![respond(200, &old, "old")]).await;
    let first = get(&proxy.url("/x"), &[]).await;
    assert_eq!(first.x_cache(), "MISS");
    let second = get(&proxy.url("/x"), &[]).await;
    assert_eq!(second.x_cache(), "MISS", "{second:?}");
    assert_eq!(upstream.count().await, 2);

    // Half an hour old: fresh for the half hour left, and no longer.
    let half_hour_ago =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(1800));
    let recent = [
        ("cache-control", "max-age=3600"),
        ("date", half_hour_ago.as_str()),
    ];
    let (upstream, proxy) = plain(vec![respond(200, &recent, "recent")]).await;
    get(&proxy.url("/y"), &[]).await;
    let hit = get(&proxy.url("/y"), &[]).await;
    assert_eq!(hit.x_cache(), "HIT");
    let age: u64 = hit.header("age").parse().unwrap();
    assert!((1800..=1802).contains(&age), "age {age}");
    proxy.clock.advance(Duration::from_secs(1805));
    assert_eq!(get(&proxy.url("/y"), &[]).await.x_cache(), "MISS");
    assert_eq!(upstream.count().await, 2);
}

/// `Age: 7200, 0` is a list: its first member counts (RFC 9111 §5.1).
#[tokio::test]
async fn an_age_list_counts_its_first_member() {
    trace_init();
    let (upstream, proxy) = plain(vec![respond(
        200,
        &[("cache-control", "max-age=3600"), ("age", "7200, 0")],
        "old",
    )])
    .await;
    get(&proxy.url("/x"), &[]).await;
    let second = get(&proxy.url("/x"), &[]).await;
    assert_eq!(second.x_cache(), "MISS", "{second:?}");
    assert_eq!(upstream.count().await, 2);
}
