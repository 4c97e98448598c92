use super::*;

fn config(extra: &str) -> RuntimeConfig {
    crate::config::load_str(
        &format!("upstream: {{ url: \"http://127.0.0.1:8000\" }}\n{extra}"),
        &|_| None,
    )
    .unwrap()
}

fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut r = Request::get(target);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap()
}

#[test]
fn ambiguous_framing_is_refused_and_closes() {
    let c = config("");
    for headers in [
        &[
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("content-length", "3"),
        ][..],
        &[("host", "a"), ("transfer-encoding", "xchunked")],
        &[("host", "a"), ("transfer-encoding", "chunked, identity")],
        &[
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ],
        &[
            ("host", "a"),
            ("content-length", "3"),
            ("content-length", "4"),
        ],
        &[("host", "a"), ("content-length", "3, 4")],
        &[("host", "a"), ("content-length", "+3")],
    ] {
        let r = screen(&req("/x", headers), &c).unwrap_err();
        assert_eq!(
            (r.status, r.close),
            (StatusCode::BAD_REQUEST, true),
            "{headers:?}"
        );
    }
    assert!(screen(&req("/x", &[("host", "a"), ("content-length", "3, 3")]), &c).is_ok());
    assert!(
        screen(
            &req("/x", &[("host", "a"), ("transfer-encoding", "Chunked")]),
            &c
        )
        .is_ok()
    );
}

#[test]
fn targets_and_hosts() {
    let c = config("limits: { max_uri_bytes: 64 }\n");
    let long = format!("/{}", "a".repeat(64));
    assert_eq!(
        screen(&req(&long, &[("host", "a")]), &c)
            .unwrap_err()
            .status,
        414
    );
    assert_eq!(
        screen(&req("/x", &[]), &c).unwrap_err().status,
        400,
        "no Host"
    );
    assert_eq!(
        screen(&req("/x", &[("host", "a"), ("host", "b")]), &c)
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        screen(&req("http://victim/x", &[("host", "evil")]), &c)
            .unwrap_err()
            .status,
        400
    );
    assert!(screen(&req("http://A/x", &[("host", "a")]), &c).is_ok());
}

#[test]
fn declared_bodies_over_the_limit_are_413() {
    let c = config("limits: { max_request_body_bytes: 10 }\n");
    let r = screen(&req("/x", &[("host", "a"), ("content-length", "11")]), &c);
    assert_eq!(r.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(screen(&req("/x", &[("host", "a"), ("content-length", "10")]), &c).is_ok());
}

#[test]
fn allowed_hosts_match_with_or_without_port() {
    let c = config("security: { allowed_hosts: [api.example, \"admin.example:8443\"] }\n");
    assert!(host_allowed(&c, Some("api.example")).is_ok());
    assert!(host_allowed(&c, Some("api.example:8080")).is_ok());
    assert!(host_allowed(&c, Some("admin.example:8443")).is_ok());
    assert!(host_allowed(&c, Some("admin.example:9999")).is_err());
    assert!(host_allowed(&c, Some("evil.example")).is_err());
    assert!(host_allowed(&c, None).is_err());
    assert!(host_allowed(&config(""), Some("anything")).is_ok());
}

#[test]
fn paths_that_apps_may_decode_differently_are_refused() {
    let t = |p: &str| Normalized {
        path: p.into(),
        query: None,
        host: None,
    };
    for bad in [
        "/a%2Fb",
        "/a%5Cb",
        "/a%00",
        "/a%23b",
        "/a%3Fb",
        "/a\\b",
        "/api/me;x.css",
        "/a%C0%AFb",
        "/a%252Fb",
        "/a%252fb",
        "/a%252E%252E/b",
    ] {
        assert!(path(&t(bad)).is_err(), "{bad}");
    }
    assert!(path(&t("/api/me/x.css")).is_ok());
    assert!(path(&t("/a%20b")).is_ok());
    assert!(path(&t("/100%25")).is_ok(), "a literal % is fine");
    assert!(path(&t("/caf%C3%A9")).is_ok(), "valid UTF-8 is fine");
}
