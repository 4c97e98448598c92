use http::Request;

use super::*;
use crate::config::{RuntimeConfig, load_str};
use crate::rules::normalize;

const CONFIG: &str = r#"
upstream: { url: "http://127.0.0.1:1" }
identity: { hash_key: "0123456789abcdef-test" }
routes:
  - name: all
    match: GET /all/{id}
  - name: none
    match: GET /none
    key: { query: none }
  - name: only
    match: GET /only
    key: { query: [b, a], headers: [Accept-Language] }
  - name: mine
    match: GET /mine/{id}
    scope: user
invalidate:
  - match: PUT /all/{id}
    purge: ["GET /all/{id}"]
"#;

fn config() -> RuntimeConfig {
    load_str(CONFIG, &|_| None).expect("valid config")
}

fn key_of(cfg: &RuntimeConfig, target: &str, headers: &[(&str, &str)]) -> CacheKey {
    let mut req = Request::builder().uri(target).header("host", "api.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(()).unwrap();
    let norm = normalize::request(req.uri(), req.headers()).unwrap();
    let m = cfg.routes.find(&norm.path).expect("route");
    let id = identity(&cfg.identity, req.headers());
    for_request(m.value, &m.captures, &norm, req.headers(), id)
}

#[test]
fn equal_requests_share_a_key_and_equivalent_spellings_too() {
    let cfg = config();
    let a = key_of(&cfg, "/all/1?x=1&y=2", &[]);
    assert_eq!(a.hash, key_of(&cfg, "/all/1?x=1&y=2", &[]).hash);
    assert_eq!(
        a.hash,
        key_of(&cfg, "/all/1?y=2&x=1", &[]).hash,
        "query order"
    );
    assert_eq!(
        a.hash,
        key_of(&cfg, "/all/%31?x=1&y=2", &[]).hash,
        "escaped digit"
    );
    assert_eq!(
        a.hash,
        key_of(&cfg, "/x/../all/1?x=1&y=2", &[]).hash,
        "dot segments"
    );
    assert_ne!(a.hash, key_of(&cfg, "/all/1?x=1&y=3", &[]).hash);
    assert_ne!(a.hash, key_of(&cfg, "/all/2?x=1&y=2", &[]).hash);
}

#[test]
fn repeated_parameters_keep_their_order() {
    let cfg = config();
    assert_ne!(
        key_of(&cfg, "/all/1?a=1&a=2", &[]).hash,
        key_of(&cfg, "/all/1?a=2&a=1", &[]).hash
    );
    assert_eq!(
        keyed_query(&QueryKey::All, Some("b=1&a=2&b=0")),
        "a=2&b=1&b=0"
    );
}

#[test]
fn query_none_ignores_the_query_and_only_keeps_listed_names() {
    let cfg = config();
    assert_eq!(
        key_of(&cfg, "/none?a=1", &[]).hash,
        key_of(&cfg, "/none?a=2", &[]).hash
    );
    let k = |q| key_of(&cfg, q, &[]).hash;
    assert_eq!(k("/only?a=1&b=2&utm=x"), k("/only?b=2&a=1"));
    assert_ne!(k("/only?a=1"), k("/only?a=2"));
}

#[test]
fn keyed_headers_split_entries() {
    let cfg = config();
    let en = key_of(&cfg, "/only", &[("accept-language", "en")]);
    let fr = key_of(&cfg, "/only", &[("accept-language", "fr")]);
    let none = key_of(&cfg, "/only", &[]);
    let empty = key_of(&cfg, "/only", &[("accept-language", "")]);
    assert_ne!(en.hash, fr.hash);
    assert_ne!(en.hash, none.hash);
    assert_ne!(none.hash, empty.hash, "absent and empty differ");
}

#[test]
fn user_routes_key_by_identity_and_public_routes_do_not() {
    let cfg = config();
    let alice = key_of(&cfg, "/mine/1", &[("authorization", "Bearer alice")]);
    let bob = key_of(&cfg, "/mine/1", &[("authorization", "Bearer bob")]);
    assert_ne!(alice.hash, bob.hash);
    assert_eq!(
        key_of(&cfg, "/all/1", &[("authorization", "Bearer alice")]).hash,
        key_of(&cfg, "/all/1", &[("authorization", "Bearer bob")]).hash
    );
}

#[test]
fn identity_is_hashed_with_the_configured_key_and_read_from_cookies() {
    let cfg = config();
    let h: HeaderMap = [(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer alice"),
    )]
    .into_iter()
    .collect();
    let a = identity(&cfg.identity, &h).unwrap();
    assert_eq!(a, identity(&cfg.identity, &h).unwrap());
    assert_ne!(a.0.as_slice(), b"Bearer alice".as_slice());
    let cookie_cfg = IdentityConfig {
        source: IdentitySource::Cookie("sid".into()),
        hash_key: [7; 32],
    };
    let c: HeaderMap = [(
        header::COOKIE,
        HeaderValue::from_static("a=1; sid=xyz; b=2"),
    )]
    .into_iter()
    .collect();
    let d: HeaderMap = [(header::COOKIE, HeaderValue::from_static("sid=other"))]
        .into_iter()
        .collect();
    let e: HeaderMap = [(header::COOKIE, HeaderValue::from_static("sid=; x=1"))]
        .into_iter()
        .collect();
    assert!(identity(&cookie_cfg, &c).is_some());
    assert_ne!(identity(&cookie_cfg, &c), identity(&cookie_cfg, &d));
    assert!(
        identity(&cookie_cfg, &e).is_none(),
        "empty cookie is no identity"
    );
    assert!(identity(&cookie_cfg, &HeaderMap::new()).is_none());
}

#[test]
fn tokens_cover_route_bindings_and_url() {
    let cfg = config();
    let k = key_of(&cfg, "/all/7?q=1", &[]);
    assert_eq!(
        k.tokens,
        vec![
            Token::route("all"),
            Token::binding("all", [("id", "7")]),
            Token::url("/all/7"),
        ]
    );
    let k = key_of(&cfg, "/none", &[]);
    assert_eq!(k.tokens, vec![Token::route("none"), Token::url("/none")]);
}

#[test]
fn hosts_split_entries() {
    let cfg = config();
    let norm = |host: &str| {
        let req = Request::builder()
            .uri("/all/1")
            .header("host", host)
            .body(())
            .unwrap();
        normalize::request(req.uri(), req.headers()).unwrap()
    };
    let (a, b) = (norm("a.test"), norm("B.test"));
    let m = cfg.routes.find("/all/1").unwrap();
    let ka = for_request(m.value, &m.captures, &a, &HeaderMap::new(), None);
    let kb = for_request(m.value, &m.captures, &b, &HeaderMap::new(), None);
    let kb2 = for_request(
        m.value,
        &m.captures,
        &norm("b.TEST"),
        &HeaderMap::new(),
        None,
    );
    assert_ne!(ka.hash, kb.hash);
    assert_eq!(kb.hash, kb2.hash);
}

#[test]
fn variants_differ_by_the_varied_fields_only() {
    let primary = KeyHash([9; 32]);
    let names = [
        HeaderName::from_static("accept-language"),
        HeaderName::from_static("foo"),
    ];
    let h = |pairs: &[(&'static str, &'static str)]| -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    };
    let a = variant(
        &primary,
        &names,
        &h(&[("accept-language", "en"), ("foo", "1")]),
    );
    let b = variant(
        &primary,
        &names,
        &h(&[("accept-language", "en"), ("foo", "1"), ("other", "x")]),
    );
    let c = variant(&primary, &names, &h(&[("accept-language", "en")]));
    let d = variant(
        &primary,
        &names,
        &h(&[("accept-language", "en"), ("foo", " 1 ")]),
    );
    assert_eq!(a, b, "unlisted fields do not matter");
    assert_ne!(a, c, "absent differs from present");
    assert_eq!(a, d, "values are normalized");
    assert_ne!(a, primary);
}

/// Keys are shared through Redis by every instance and kept across
/// upgrades: the digest of a request must not change with the code that
/// computes it. These values were computed by the field-by-field hasher
/// of cachecar 0.1.0 (before the key material was gathered and hashed in
/// one call).
#[test]
fn key_digests_are_stable_across_versions() {
    let cfg = config();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 4] = [
        (
            "/all/1?y=2&x=1",
            &[],
            "bf6c20577465d6319204ceda2084c9187639f44d1c4da1bc2a5da6e9b03da000",
        ),
        (
            "/only?a=1&b=2&c=3",
            &[("accept-language", "de")],
            "054f7e77bfb917eea241f1a970668901ff4492680a0dc6ac7c98aaecc618d48e",
        ),
        (
            "/mine/7",
            &[("authorization", "Bearer abc")],
            "3c74b19f64104ccdf77d947e26b8e54839aab2623701a29da939dbb43352f413",
        ),
        (
            "/none?q=1",
            &[("x-forwarded-proto", "https")],
            "108ba95784c7023a0c068c672270b9c3da4052ba0bdc94e2cc2da5b80cc38839",
        ),
    ];
    let primary = key_of(&cfg, "/all/1", &[]).hash;
    let mut headers = http::HeaderMap::new();
    headers.insert("accept-language", http::HeaderValue::from_static("en"));
    let names = [http::header::ACCEPT_LANGUAGE];
    let variant = variant(&primary, &names, &headers);
    let mut got: Vec<String> = cases
        .iter()
        .map(|(target, headers, _)| key_of(&cfg, target, headers).hash.to_hex())
        .collect();
    got.push(variant.to_hex());
    let mut want: Vec<&str> = cases.iter().map(|c| c.2).collect();
    want.push("2061866d87187dcd9870b92ad4d6960e74d130688855adde4443491af2ec54e3");
    assert_eq!(got, want);
}
