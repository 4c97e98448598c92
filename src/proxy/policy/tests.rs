use std::sync::Arc;

use http::HeaderValue;

use super::*;
use crate::config::load_str;

const CONFIG: &str = r#"
upstream: { url: "http://127.0.0.1:1" }
defaults: { ttl: 60s }
routes:
  - name: public
    match: GET /public
  - name: shared
    match: GET /shared
    share_authenticated: true
  - name: forced
    match: GET /forced
    ttl: 10s
    origin_cache_control: override
  - name: mine
    match: GET /mine
    scope: user
  - name: mine-private
    match: GET /mine-private
    scope: user
    store_private: true
  - name: origin
    match: GET /origin
    ttl: origin
  - name: windows
    match: GET /windows
    stale_while_revalidate: 5s
    stale_if_error: 20s
  - name: errors
    match: GET /errors
    ttl: origin
    keep_stale: 30s
    status_ttl: { 400: origin, 404: 5s, 5xx: 10s, 503: 2s }
"#;

fn route(name: &str) -> Arc<Route> {
    let cfg = load_str(CONFIG, &|_| None).expect("valid config");
    cfg.routes
        .values()
        .iter()
        .find(|r| &*r.name == name)
        .cloned()
        .expect("route")
}

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn run(
    route_name: &str,
    credentials: bool,
    status: u16,
    headers: &[(&str, &str)],
) -> Result<Freshness, NoCacheReason> {
    run_with_request(route_name, credentials, status, headers, &[])
}

/// A header map of `pairs`, in order, repeated names appended.
fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

fn run_with_request(
    route_name: &str,
    credentials: bool,
    status: u16,
    headers: &[(&str, &str)],
    request: &[(&str, &str)],
) -> Result<Freshness, NoCacheReason> {
    let response = header_map(headers);
    let mut req = header_map(request);
    if credentials {
        req.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    }
    let uri: Uri = "/x".parse().unwrap();
    let directives = RequestDirectives::parse(&req);
    let ex = Exchange {
        method: &Method::GET,
        uri: &uri,
        request: &req,
        directives: &directives,
        credentials,
        sent_at: t0(),
        received_at: t0(),
    };
    decide(
        &route(route_name),
        &ex,
        StatusCode::from_u16(status).unwrap(),
        &response,
    )
}

fn fresh_secs(f: Freshness) -> u64 {
    f.fresh_until.duration_since(t0()).unwrap().as_secs()
}

#[test]
fn fallback_ttl_applies_without_origin_freshness() {
    assert_eq!(fresh_secs(run("public", false, 200, &[]).unwrap()), 60);
    assert_eq!(fresh_secs(run("public", false, 404, &[]).unwrap()), 60);
}

#[test]
fn origin_freshness_wins_under_respect() {
    let f = run("public", false, 200, &[("cache-control", "max-age=30")]).unwrap();
    assert_eq!(fresh_secs(f), 30);
    let f = run(
        "public",
        false,
        200,
        &[("cache-control", "max-age=30, s-maxage=90")],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 90, "s-maxage wins in a shared cache");
    let f = run(
        "public",
        false,
        200,
        &[("cache-control", "max-age=30"), ("age", "10")],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 20, "Age counts against freshness");
    assert_eq!(f.initial_age, Duration::from_secs(10));
    let date = httpdate::fmt_http_date(t0());
    let expires = httpdate::fmt_http_date(t0() + Duration::from_secs(45));
    let f = run(
        "public",
        false,
        200,
        &[("date", &date), ("expires", &expires)],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 45);
}

#[test]
fn already_stale_responses_are_not_stored() {
    assert_eq!(
        run("public", false, 200, &[("cache-control", "max-age=0")]),
        Err(NoCacheReason::Expired)
    );
    assert_eq!(
        run("public", false, 200, &[("expires", "0")]),
        Err(NoCacheReason::Expired)
    );
}

#[test]
fn override_ignores_origin_freshness_but_not_no_store() {
    let f = run("forced", false, 200, &[("cache-control", "max-age=3600")]).unwrap();
    assert_eq!(fresh_secs(f), 10);
    assert_eq!(
        run("forced", false, 200, &[("cache-control", "no-store")]),
        Err(NoCacheReason::NoStore)
    );
}

#[test]
fn never_stored_responses_give_their_reason() {
    type Case<'a> = (u16, &'a [(&'a str, &'a str)], NoCacheReason);
    let cases: &[Case<'_>] = &[
        (
            200,
            &[("cache-control", "no-store")],
            NoCacheReason::NoStore,
        ),
        (
            200,
            &[("cache-control", "private, max-age=60")],
            NoCacheReason::Private,
        ),
        (
            200,
            &[("cache-control", "no-cache")],
            NoCacheReason::NoCache,
        ),
        (200, &[("set-cookie", "a=1")], NoCacheReason::SetCookie),
        (200, &[("vary", "Accept, *")], NoCacheReason::VaryStar),
        (
            206,
            &[("cache-control", "max-age=60")],
            NoCacheReason::Partial,
        ),
        (500, &[], NoCacheReason::Status),
        (302, &[], NoCacheReason::Status),
        (
            500,
            &[("cache-control", "max-age=60")],
            NoCacheReason::Status,
        ),
        (
            400,
            &[("cache-control", "max-age=60")],
            NoCacheReason::Status,
        ),
    ];
    for (status, headers, reason) in cases {
        assert_eq!(
            run("public", false, *status, headers),
            Err(*reason),
            "{status} {headers:?}"
        );
    }
    assert_eq!(
        run_with_request("public", false, 200, &[], &[("cache-control", "no-store")]),
        Err(NoCacheReason::RequestNoStore)
    );
}

#[test]
fn without_a_ttl_only_origin_freshness_or_heuristics_count() {
    assert_eq!(run("origin", false, 200, &[]), Err(NoCacheReason::Expired));
    let date = httpdate::fmt_http_date(t0());
    let lm = httpdate::fmt_http_date(t0() - Duration::from_secs(1000));
    let f = run(
        "origin",
        false,
        200,
        &[("date", &date), ("last-modified", &lm)],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 100, "10% of the time since Last-Modified");
    assert_eq!(
        run(
            "origin",
            false,
            201,
            &[("date", &date), ("last-modified", &lm)]
        ),
        Err(NoCacheReason::Status)
    );
}

#[test]
fn stale_windows_come_from_the_response_or_the_route() {
    let f = run(
        "origin",
        false,
        200,
        &[(
            "cache-control",
            "max-age=10, stale-while-revalidate=30, stale-if-error=60",
        )],
    )
    .unwrap();
    let secs = |t: SystemTime| t.duration_since(t0()).unwrap().as_secs();
    assert_eq!(secs(f.stale_while_revalidate_until), 40);
    assert_eq!(secs(f.stale_if_error_until), 70);
    let f = run("windows", false, 200, &[("cache-control", "max-age=10")]).unwrap();
    assert_eq!(secs(f.stale_while_revalidate_until), 15);
    assert_eq!(secs(f.stale_if_error_until), 30);
    let f = run(
        "windows",
        false,
        200,
        &[("cache-control", "max-age=10, must-revalidate")],
    )
    .unwrap();
    assert!(f.must_revalidate);
    assert_eq!(
        secs(f.stale_if_error_until),
        10,
        "must-revalidate forbids stale serving"
    );
}

#[test]
fn stale_responses_with_validators_or_stale_windows_are_kept() {
    let f = run(
        "origin",
        false,
        200,
        &[("cache-control", "max-age=0"), ("etag", "\"x\"")],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 0);
    assert!(f.keep_until > f.fresh_until);
    let f = run(
        "origin",
        false,
        200,
        &[("cache-control", "no-cache, max-age=60"), ("etag", "\"x\"")],
    )
    .unwrap();
    assert_eq!(
        fresh_secs(f),
        0,
        "no-cache: stored, but revalidated every time"
    );
    assert!(f.must_revalidate);
    assert!(
        run(
            "origin",
            false,
            200,
            &[("cache-control", "max-age=0, stale-if-error=60")]
        )
        .is_ok()
    );
}

#[test]
fn credentials_on_public_routes_need_the_response_or_the_rule_to_allow_sharing() {
    assert_eq!(
        run("public", true, 200, &[]),
        Err(NoCacheReason::Authorization)
    );
    let f = run(
        "public",
        true,
        200,
        &[("cache-control", "public, max-age=9")],
    )
    .unwrap();
    assert!(f.shareable_with_auth);
    let f = run("public", true, 200, &[("cache-control", "s-maxage=9")]).unwrap();
    assert!(f.shareable_with_auth);
    let f = run("shared", true, 200, &[]).unwrap();
    assert!(f.shareable_with_auth);
    let f = run("public", false, 200, &[]).unwrap();
    assert!(
        !f.shareable_with_auth,
        "anonymous fills are not for credentialed requests"
    );
}

#[test]
fn user_routes_store_per_user_and_private_only_when_allowed() {
    let f = run("mine", true, 200, &[("cache-control", "max-age=30")]).unwrap();
    assert_eq!(fresh_secs(f), 30);
    assert!(!f.shareable_with_auth);
    assert_eq!(
        run(
            "mine",
            true,
            200,
            &[("cache-control", "private, max-age=30")]
        ),
        Err(NoCacheReason::Private)
    );
    let f = run(
        "mine-private",
        true,
        200,
        &[("cache-control", "private, max-age=30")],
    )
    .unwrap();
    assert_eq!(fresh_secs(f), 30);
}

#[test]
fn vary_values_are_taken_from_the_request() {
    let response: HeaderMap = [(
        header::VARY,
        HeaderValue::from_static("Accept-Language, X-Tenant"),
    )]
    .into_iter()
    .collect();
    let request: HeaderMap = [(
        HeaderName::from_static("accept-language"),
        HeaderValue::from_static("fr"),
    )]
    .into_iter()
    .collect();
    let names = vary_fields(&response);
    assert_eq!(
        names,
        vec![
            HeaderName::from_static("accept-language"),
            HeaderName::from_static("x-tenant")
        ]
    );
    let values = vary_values(&names, &request);
    assert_eq!(values.len(), 2);
    assert_eq!(values[0].1.as_ref().unwrap(), "fr");
    assert!(values[1].1.is_none());
}

mod freshness;
mod library;
mod targeted;
