use super::*;

#[test]
fn each_hop_by_hop_header_is_stripped_alone_and_with_the_others() {
    for name in HOP_BY_HOP {
        let mut h = HeaderMap::new();
        h.append(name, HeaderValue::from_static("close"));
        h.append("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-keep"], "{name} was not stripped");
    }
    let mut h = HeaderMap::new();
    for name in HOP_BY_HOP {
        h.append(name, HeaderValue::from_static("close"));
    }
    strip_hop_by_hop(&mut h);
    assert!(h.is_empty(), "left: {:?}", h.keys().collect::<Vec<_>>());
}

#[test]
fn connection_options_alone_are_stripped_with_the_rest_kept() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("connection", "Keep-Alive"),
        ("connection", "close"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("te", "trailers"),
        ("proxy-connection", "keep-alive"),
        ("content-type", "text/plain"),
        ("x-keep", "1"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    strip_hop_by_hop(&mut h);
    let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["content-type", "x-keep"]);
    // Named fields go too, matched without regard to case.
    let mut h = HeaderMap::new();
    h.append("connection", HeaderValue::from_static("close, X-Trace"));
    h.append("x-trace", HeaderValue::from_static("1"));
    h.append("x-keep", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["x-keep"]);
}

#[test]
fn content_length_goes_with_transfer_encoding() {
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and a
    // proxy must remove the length; hyper has decoded the chunks, so the
    // message is framed again on the way out.
    let mut h = HeaderMap::new();
    h.append("content-length", HeaderValue::from_static("190"));
    h.append("transfer-encoding", HeaderValue::from_static("chunked"));
    h.append("x-keep", HeaderValue::from_static("1"));
    strip_hop_by_hop(&mut h);
    let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["x-keep"]);
    // Alone, a length is end-to-end and stays.
    let mut h = HeaderMap::new();
    h.append("content-length", HeaderValue::from_static("190"));
    strip_hop_by_hop(&mut h);
    assert_eq!(h["content-length"], "190");
}

fn security(underscores: bool) -> SecurityConfig {
    SecurityConfig {
        allowed_hosts: Vec::new(),
        trust_forwarded: false,
        trusted_proxies: Vec::new(),
        merge_slashes: false,
        underscores_in_headers: underscores,
    }
}

fn after_the_door(names: &[&str], underscores: bool) -> Vec<String> {
    let mut h = HeaderMap::new();
    for name in names {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    drop_untrusted(&mut h, &security(underscores), false);
    let mut left: Vec<String> = h.keys().map(|n| n.as_str().to_string()).collect();
    left.sort_unstable();
    left
}

#[test]
fn header_names_with_underscores_are_dropped_unless_kept() {
    let sent = [
        "transfer_encoding",
        "x_forwarded_host",
        "x_original_url",
        "x_http_method_override",
        "content_length",
        "api_key",
        "x-keep",
    ];
    assert_eq!(after_the_door(&sent, false), ["x-keep"]);
    // Kept on request, but never those that read as a header cachecar
    // removes, frames by or sets.
    assert_eq!(after_the_door(&sent, true), ["api_key", "x-keep"]);
}
