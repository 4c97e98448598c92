use super::*;

fn norm(target: &str) -> Result<(String, Option<String>), NormalizeError> {
    let uri: Uri = target.parse().expect("valid uri");
    request(&uri, &HeaderMap::new()).map(|n| (n.path, n.query))
}

#[test]
fn plain_paths_are_unchanged() {
    assert_eq!(
        norm("/api/x?a=1").unwrap(),
        ("/api/x".into(), Some("a=1".into()))
    );
    assert_eq!(norm("/").unwrap(), ("/".into(), None));
    assert_eq!(norm("/a//b/").unwrap().0, "/a//b/");
}

#[test]
fn unreserved_escapes_are_decoded_and_others_upper_cased() {
    assert_eq!(norm("/%61pi/%7euser").unwrap().0, "/api/~user");
    assert_eq!(norm("/a%2fb").unwrap().0, "/a%2Fb");
    assert_eq!(norm("/x?q=%41%2c").unwrap().1.unwrap(), "q=A%2C");
}

#[test]
fn dot_segments_are_removed_once() {
    assert_eq!(norm("/a/./b/../c").unwrap().0, "/a/c");
    assert_eq!(norm("/a/b/..").unwrap().0, "/a/");
    assert_eq!(norm("/../../x").unwrap().0, "/x");
    assert_eq!(norm("/a/%2e%2e/b").unwrap().0, "/b");
    assert_eq!(norm("/a/.").unwrap().0, "/a/");
    // Encoded slashes are not path separators, so nothing is resolved.
    assert_eq!(norm("/a/..%2Fb").unwrap().0, "/a/..%2Fb");
}

#[test]
fn dot_segments_are_found_as_a_split_on_slashes_finds_them() {
    let by_split = |p: &str| p.split('/').any(|s| s == "." || s == "..");
    // Every string of up to 8 characters over `/`, `.` and `a`.
    let mut paths = vec![String::new()];
    let mut last = paths.clone();
    for _ in 0..8 {
        last = last
            .iter()
            .flat_map(|p| ["/", ".", "a"].map(|c| format!("{p}{c}")))
            .collect();
        paths.extend(last.iter().cloned());
    }
    assert_eq!(paths.len(), (0..=8).map(|n| 3usize.pow(n)).sum::<usize>());
    for p in &paths {
        assert_eq!(has_dot_segment(p), by_split(p), "{p:?}");
    }
}

#[test]
fn slashes_merge_only_when_asked() {
    let mut p = "//a///b/".to_string();
    merge_slashes(&mut p);
    assert_eq!(p, "/a/b/");
    let mut p = "/a/b".to_string();
    merge_slashes(&mut p);
    assert_eq!(p, "/a/b");
}

#[test]
fn invalid_escapes_are_refused() {
    assert_eq!(norm("/a%zz"), Err(NormalizeError::BadPercentEncoding));
    assert_eq!(norm("/a%4"), Err(NormalizeError::BadPercentEncoding));
    assert_eq!(norm("/a?b=%"), Err(NormalizeError::BadPercentEncoding));
}

#[test]
fn host_comes_from_authority_or_header_lower_cased() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, "API.Example:8080".parse().unwrap());
    let n = request(&"/x".parse().unwrap(), &headers).unwrap();
    assert_eq!(n.host.as_deref(), Some("api.example:8080"));
    let n = request(&"http://Other/x".parse().unwrap(), &headers).unwrap();
    assert_eq!(n.host.as_deref(), Some("other"));
}

#[test]
fn accept_encoding_is_reduced_to_one_coding() {
    let reduce = |v: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, http::HeaderValue::from_static(v));
        accept_encoding(&mut h);
        h.get(header::ACCEPT_ENCODING)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(reduce("gzip, deflate, br").as_deref(), Some("gzip"));
    assert_eq!(reduce("br;q=1.0, gzip;q=0.5").as_deref(), Some("gzip"));
    assert_eq!(reduce("br").as_deref(), Some("br"));
    assert_eq!(reduce("gzip;q=0, br").as_deref(), Some("br"));
    assert_eq!(reduce("identity").as_deref(), None);
    assert_eq!(reduce("*").as_deref(), Some("gzip"));
}

#[test]
fn template_segments_must_be_plain() {
    assert_eq!(segment("abc").unwrap(), "abc");
    assert_eq!(segment("%7e").unwrap(), "~");
    assert!(segment("..").is_err());
    assert!(segment("%zz").is_err());
}
