use super::*;

#[test]
fn spelled_out_bypass_members_are_the_rendered_ones() {
    for reason in BypassReason::ALL {
        let outcome = CacheOutcome::bypass(reason);
        let spelled = outcome.spelled_out();
        assert_eq!(
            spelled.as_ref().map(HeaderValue::as_bytes),
            Some(outcome.cache_status().as_bytes())
        );
        let upstream_said = outcome.with_fwd_status(200);
        assert_eq!(upstream_said.spelled_out(), None, "rendered when it varies");
    }
    assert_eq!(CacheOutcome::miss(Fwd::Miss).spelled_out(), None);
}

#[test]
fn x_cache_values_are_the_spelled_ones() {
    use CacheStatus as S;
    for status in [S::Hit, S::Miss, S::Stale, S::Revalidated, S::Bypass] {
        assert_eq!(x_cache_value(status), status.x_cache());
    }
}

#[test]
fn cache_status_renders_rfc_9211_members() {
    assert_eq!(
        CacheOutcome::hit(42).cache_status(),
        "cachecar; hit; ttl=42"
    );
    assert_eq!(
        CacheOutcome::miss(Fwd::Miss).stored().cache_status(),
        "cachecar; fwd=miss; stored"
    );
    assert_eq!(
        CacheOutcome::miss(Fwd::Miss)
            .not_stored(NoCacheReason::NoStore)
            .cache_status(),
        "cachecar; fwd=miss; detail=no-store"
    );
    assert_eq!(
        CacheOutcome::bypass(BypassReason::NoRoute).cache_status(),
        "cachecar; fwd=bypass; detail=no-route"
    );
    assert_eq!(
        CacheOutcome::hit(-3).cache_status(),
        "cachecar; hit; ttl=-3"
    );
    assert_eq!(
        CacheOutcome::revalidated(Fwd::Stale)
            .stored()
            .cache_status(),
        "cachecar; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(
        CacheOutcome::revalidated(Fwd::Request).cache_status(),
        "cachecar; fwd=request; fwd-status=304"
    );
    assert_eq!(
        CacheOutcome::stale(-5, StaleReason::IfError)
            .with_fwd_status(503)
            .cache_status(),
        "cachecar; fwd=stale; fwd-status=503; ttl=-5; detail=stale-if-error"
    );
    assert_eq!(
        CacheOutcome::stale(-2, StaleReason::WhileRevalidate).cache_status(),
        "cachecar; hit; ttl=-2; detail=stale-while-revalidate"
    );
    assert_eq!(
        CacheOutcome::miss(Fwd::Miss).collapsed().cache_status(),
        "cachecar; fwd=miss; collapsed"
    );
}

#[test]
fn decorate_appends_to_upstream_cache_status() {
    let mut response = Response::new(());
    response
        .headers_mut()
        .insert("cache-status", HeaderValue::from_static("origin-cdn; hit"));
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static("HIT from elsewhere"));
    CacheOutcome::miss(Fwd::Miss)
        .stored()
        .decorate(&mut response);
    let all: Vec<_> = response.headers().get_all("cache-status").iter().collect();
    assert_eq!(all, vec!["origin-cdn; hit", "cachecar; fwd=miss; stored"]);
    assert_eq!(response.headers()["x-cache"], "MISS");
}
