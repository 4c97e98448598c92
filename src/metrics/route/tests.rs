use prometheus::Registry;

use super::*;

/// The kept series are the ones the labels name: every method and
/// cache status lands in its own `requests_total` series, hits and
/// misses in theirs.
#[test]
fn route_series_land_under_their_labels() {
    let m = Metrics::new(&Registry::new()).unwrap();
    let series = RouteMetrics::new(Arc::from("users"));
    for (i, status) in CACHE_STATUSES.into_iter().enumerate() {
        assert_eq!(status as usize, i, "CACHE_STATUSES is in enum order");
        for method in [
            Method::GET,
            Method::DELETE,
            Method::from_bytes(b"PURGE").unwrap(),
        ] {
            for _ in 0..=i {
                series.request(&m, &method, status, 0.001);
            }
        }
    }
    for (i, status) in CACHE_STATUSES.into_iter().enumerate() {
        for method in ["GET", "DELETE", "other"] {
            let n = m
                .requests_total
                .with_label_values(&["users", method, status.as_str()])
                .get();
            assert_eq!(n, i as u64 + 1, "{method} {status:?}");
        }
        let observed = m
            .request_duration_seconds
            .with_label_values(&["users", status.as_str()])
            .get_sample_count();
        assert_eq!(observed, 3 * (i as u64 + 1));
    }
    // hit 1 + stale 3, miss 2 + revalidated 4, per method.
    assert_eq!(m.cache_hits_total.with_label_values(&["users"]).get(), 12);
    assert_eq!(m.cache_misses_total.with_label_values(&["users"]).get(), 18);
}

/// Each upstream class lands in its own `upstream_requests_total` series,
/// and every exchange in the route's latency histogram.
#[test]
fn upstream_series_land_under_their_labels() {
    let m = Metrics::new(&Registry::new()).unwrap();
    let series = RouteMetrics::new(Arc::from("users"));
    let classes = [
        (UpstreamClass::Status(101), "1xx"),
        (UpstreamClass::Status(204), "2xx"),
        (UpstreamClass::Status(304), "3xx"),
        (UpstreamClass::Status(404), "4xx"),
        (UpstreamClass::Status(503), "5xx"),
        (UpstreamClass::Timeout, "timeout"),
        (UpstreamClass::Error, "error"),
    ];
    for (n, (class, label)) in classes.into_iter().enumerate() {
        for _ in 0..=n {
            series.upstream(&m, class, 0.01);
        }
        assert_eq!(class.as_str(), label);
        let got = m
            .upstream_requests_total
            .with_label_values(&["users", label])
            .get();
        assert_eq!(got, n as u64 + 1, "{label}");
    }
    let upstream = m.upstream_duration_seconds.with_label_values(&["users"]);
    assert_eq!(upstream.get_sample_count(), 28);
}

/// Every not-stored reason has its own kept series, and coalesced and
/// slow requests land under the route.
#[test]
fn not_stored_coalesced_and_slow_land_under_their_labels() {
    let m = Metrics::new(&Registry::new()).unwrap();
    let series = RouteMetrics::new(Arc::from("users"));
    let reasons = NoCacheReason::ALL;
    for (n, reason) in reasons.into_iter().enumerate() {
        // Also: every reason has a kept slot.
        assert_eq!(
            reason as usize, n,
            "{reason:?}: ALL is in declaration order"
        );
        for _ in 0..=n {
            series.not_stored(&m, reason);
        }
    }
    for (n, reason) in reasons.into_iter().enumerate() {
        let got = m
            .not_stored_total
            .with_label_values(&["users", reason.as_str()])
            .get();
        assert_eq!(got, n as u64 + 1, "{reason:?}");
    }
    series.coalesced(&m);
    series.coalesced(&m);
    series.slow(&m);
    let coalesced = m.coalesced_requests_total.with_label_values(&["users"]);
    assert_eq!(coalesced.get(), 2);
    assert_eq!(m.slow_requests_total.with_label_values(&["users"]).get(), 1);
}
