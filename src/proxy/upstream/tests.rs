use super::*;

fn config(trust_forwarded: bool) -> RuntimeConfig {
    crate::config::load_str(
        &format!(
            "upstream: {{ url: \"http://app:8000/base\" }}\nsecurity: {{ trust_forwarded: {trust_forwarded} }}\n"
        ),
        &|_| None,
    )
    .unwrap()
}

fn build(headers: &[(&str, &str)]) -> Request<UpstreamBody> {
    build_with(headers, false)
}

fn build_with(headers: &[(&str, &str)], trust: bool) -> Request<UpstreamBody> {
    let mut req = Request::builder().method("GET").uri("/x?a=1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (mut parts, ()) = req.body(()).unwrap().into_parts();
    // As the proxy does at the door.
    drop_untrusted(&mut parts.headers, &config(trust).security, trust);
    let target = Normalized {
        path: "/x".into(),
        query: Some("a=1".into()),
        host: Some("api.example".into()),
    };
    forward(&parts, &target, &config(trust))
}

/// The upstream request for a client's request (without a body) whose
/// target normalized to `target`, from 10.0.0.9.
fn forward(
    parts: &http::request::Parts,
    target: &Normalized,
    config: &RuntimeConfig,
) -> Request<UpstreamBody> {
    let body = UnsyncBoxBody::new(http_body_util::Empty::new().map_err(|e| match e {}));
    request(
        &UpstreamRequest {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            target,
            client: &Peer::new("10.0.0.9:5555".parse().unwrap()).judged(&config.security),
        },
        config,
        body,
    )
}

use http_body_util::BodyExt;

#[test]
fn target_is_the_normalized_path_under_the_base_in_origin_form() {
    let req = build(&[]);
    assert_eq!(req.uri(), "/base/x?a=1");
    assert_eq!(req.uri().authority(), None);
    assert_eq!(req.version(), Version::HTTP_11);
    assert_eq!(req.headers()["host"], "api.example");
}

#[test]
fn target_is_the_clients_own_only_when_it_is_the_normalized_one() {
    let config =
        crate::config::load_str("upstream: { url: \"http://app:8000\" }\n", &|_| None).unwrap();
    let sent = |uri: &str, path: &str, query: Option<&str>| {
        let (parts, ()) = Request::get(uri).body(()).unwrap().into_parts();
        let target = Normalized {
            path: path.into(),
            query: query.map(Into::into),
            host: Some("api.example".into()),
        };
        let req = forward(&parts, &target, &config);
        // The client's own bytes, shared, or a target built anew.
        let own = req.uri().path_and_query().unwrap().as_str().as_ptr()
            == parts.uri.path_and_query().unwrap().as_str().as_ptr();
        (req.uri().to_string(), own)
    };
    assert_eq!(sent("/x?a=1", "/x", Some("a=1")), ("/x?a=1".into(), true));
    assert_eq!(sent("/x", "/x", None), ("/x".into(), true));
    // Normalized, merged, or keyed: the target that was keyed goes up.
    let built = |s: &str| (String::from(s), false);
    assert_eq!(sent("/a/../x?b=%7e", "/x", Some("b=~")), built("/x?b=~"));
    assert_eq!(sent("//x?a=1", "/x", Some("a=1")), built("/x?a=1"));
    assert_eq!(sent("/x?a=1&utm=2", "/x", Some("a=1")), built("/x?a=1"));
    assert_eq!(sent("/x?utm=2", "/x", None), built("/x"));
}

#[test]
fn host_is_the_normalized_one_or_the_upstreams() {
    // The client's, when it is already normalized: kept, not doubled.
    let req = build(&[("host", "api.example")]);
    let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
    assert_eq!(hosts, ["api.example"]);
    assert_eq!(req.headers()["x-forwarded-host"], "api.example");
    // Another spelling is replaced by the normalized one.
    let req = build(&[("host", "API.Example")]);
    let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
    assert_eq!(hosts, ["api.example"]);
    assert_eq!(req.headers()["x-forwarded-host"], "api.example");
    // None at all (HTTP/1.0): the upstream's authority, which HTTP/1.1
    // requires, and no X-Forwarded-Host.
    let (parts, ()) = Request::builder().uri("/x").body(()).unwrap().into_parts();
    let target = Normalized {
        path: "/x".into(),
        query: None,
        host: None,
    };
    let req = forward(&parts, &target, &config(false));
    assert_eq!(req.uri(), "/base/x");
    assert_eq!(req.headers()["host"], "app:8000");
    assert!(!req.headers().contains_key("x-forwarded-host"));
}

#[test]
fn hop_by_hop_headers_are_removed_and_forwarded_headers_set() {
    let req = build(&[
        ("connection", "keep-alive, x-secret"),
        ("x-secret", "1"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("accept", "application/json"),
    ]);
    let h = req.headers();
    for gone in ["connection", "x-secret", "te", "upgrade"] {
        assert!(!h.contains_key(gone), "{gone} should be removed");
    }
    assert_eq!(
        h["x-forwarded-for"], "1.2.3.4, 10.0.0.9",
        "the chain is appended to: its last hop is the real peer"
    );
    assert_eq!(h["x-real-ip"], "10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example");
    assert_eq!(h["via"], "1.1 cachecar");
    assert_eq!(h["accept"], "application/json");
}

#[test]
fn rewriting_and_client_claim_headers_are_dropped_unless_trusted() {
    let hostile = [
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("x-method-override", "DELETE"),
        ("forwarded", "for=1.1.1.1;host=evil"),
        ("x-real-ip", "1.1.1.1"),
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ];
    let req = build(&hostile);
    let h = req.headers();
    for gone in [
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "x-method-override",
        "forwarded",
    ] {
        assert!(!h.contains_key(gone), "{gone} must not reach the app");
    }
    assert_eq!(h["x-real-ip"], "10.0.0.9", "the peer, not the claim");
    let req = build_with(&hostile, true);
    let h = req.headers();
    assert!(
        !h.contains_key("x-original-url"),
        "rewrites are never trusted"
    );
    assert_eq!(h["forwarded"], "for=1.1.1.1;host=evil");
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "evil.example");
    assert_eq!(h["x-real-ip"], "1.1.1.1", "a trusted proxy's");
}

#[test]
fn trusted_proxies_are_believed_by_address() {
    let config = crate::config::load_str(
        "upstream: { url: \"http://app:8000\" }\nsecurity: { trusted_proxies: [10.0.0.0/8, \"192.168.1.7\"] }\n",
        &|_| None,
    )
    .unwrap();
    let s = &config.security;
    assert!(s.trusts("10.0.0.9".parse().unwrap()));
    assert!(s.trusts("192.168.1.7".parse().unwrap()));
    assert!(!s.trusts("192.168.1.8".parse().unwrap()));
    assert!(!s.trusts("11.0.0.1".parse().unwrap()));
    let bad = crate::config::load_str(
        "upstream: { url: \"http://app:8000\" }\nsecurity: { trusted_proxies: [10.0.0.0/33, ingress] }\n",
        &|_| None,
    );
    let problems = bad.unwrap_err().to_string();
    assert!(
        problems.contains("`10.0.0.0/33`") && problems.contains("`ingress`"),
        "{problems}"
    );
}

#[test]
fn made_request_ids_are_32_hex_digits() {
    let id = RequestId::Made([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
    assert_eq!(id.to_string(), "0123456789abcdeffedcba9876543210");
    assert_eq!(id.value(), "0123456789abcdeffedcba9876543210");
    let mut h = HeaderMap::new();
    h.insert("x-request-id", HeaderValue::from_static("abc-1"));
    assert_eq!(RequestId::of(&h).to_string(), "abc-1");
    h.insert("x-request-id", HeaderValue::from_static(""));
    assert!(
        matches!(RequestId::of(&h), RequestId::Made(_)),
        "an empty id is replaced"
    );
}
