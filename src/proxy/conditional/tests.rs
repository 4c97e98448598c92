use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::cache::KeyHash;

fn entry(headers: &[(&str, &str)]) -> Arc<Entry> {
    let now = SystemTime::now();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut entry = Entry::fresh(
        KeyHash([0; 32]),
        Bytes::from_static(b"body"),
        now,
        Duration::from_secs(60),
        Vec::new(),
    );
    entry.headers = map;
    entry.freshness.stale_while_revalidate_until = now;
    entry.freshness.stale_if_error_until = now;
    Arc::new(entry)
}

fn cond(headers: &[(&str, &str)]) -> ClientConditions {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    ClientConditions::from_request(&map).expect("conditions")
}

#[test]
fn if_none_match_compares_weakly_and_handles_lists_and_star() {
    let e = entry(&[("etag", "W/\"abc\"")]);
    assert!(not_modified(&e, &cond(&[("if-none-match", "\"abc\"")])));
    assert!(not_modified(
        &e,
        &cond(&[("if-none-match", "\"x\", W/\"abc\"")])
    ));
    assert!(not_modified(&e, &cond(&[("if-none-match", "*")])));
    assert!(!not_modified(&e, &cond(&[("if-none-match", "\"abd\"")])));
    let bare = entry(&[("etag", "abc")]);
    assert!(not_modified(&bare, &cond(&[("if-none-match", "\"abc\"")])));
}

#[test]
fn if_modified_since_uses_last_modified() {
    let lm = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(100));
    let e = entry(&[("last-modified", &lm)]);
    let later = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(50));
    let earlier = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(500));
    assert!(not_modified(&e, &cond(&[("if-modified-since", &lm)])));
    assert!(not_modified(&e, &cond(&[("if-modified-since", &later)])));
    assert!(!not_modified(&e, &cond(&[("if-modified-since", &earlier)])));
    // If-None-Match wins: no ETag stored, so it cannot match.
    assert!(!not_modified(
        &e,
        &cond(&[("if-none-match", "\"x\""), ("if-modified-since", &later)])
    ));
}

#[test]
fn not_modified_carries_the_validator_headers_only() {
    let e = entry(&[
        ("etag", "\"a\""),
        ("cache-control", "max-age=9"),
        ("content-type", "text/plain"),
        ("x-app", "1"),
    ]);
    let r = not_modified_response(&e, SystemTime::now());
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], "\"a\"");
    assert_eq!(r.headers()["cache-control"], "max-age=9");
    assert!(r.headers().get("x-app").is_none());
    assert!(r.headers().get("age").is_some());
}

#[test]
fn revalidation_uses_stored_validators_verbatim() {
    let e = entry(&[
        ("etag", "abc"),
        ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ]);
    let v = validators(&e);
    assert_eq!(
        v[0],
        (header::IF_NONE_MATCH, HeaderValue::from_static("abc"))
    );
    assert_eq!(v[1].0, header::IF_MODIFIED_SINCE);
    let weak = entry(&[("etag", "W/\"abc\"")]);
    assert_eq!(validators(&weak)[0].1, "W/\"abc\"");
}

#[test]
fn single_byte_ranges_are_served_from_full_responses() {
    assert_eq!(ByteRange::parse("bytes=0-1"), Some(ByteRange::FromTo(0, 1)));
    assert_eq!(ByteRange::parse("bytes=1-"), Some(ByteRange::From(1)));
    assert_eq!(ByteRange::parse("bytes=-1"), Some(ByteRange::Suffix(1)));
    for ignored in [
        "bytes=0-1,3-4",
        "bytes=2-1",
        "items=0-1",
        "bytes=-",
        "bytes=a-b",
    ] {
        assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
    }
    let e = entry(&[("content-length", "4")]);
    let r = partial_response(&e, ByteRange::FromTo(1, 9), SystemTime::now()).unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1-3/4");
    assert_eq!(r.headers()["content-length"], "3");
    let r = partial_response(&e, ByteRange::Suffix(1), SystemTime::now()).unwrap();
    assert_eq!(r.headers()["content-range"], "bytes 3-3/4");
    let r = partial_response(&e, ByteRange::From(4), SystemTime::now()).unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */4");
}

#[test]
fn a_304_replaces_stored_fields_but_not_framing() {
    let mut stored = HeaderMap::new();
    stored.insert("x-a", HeaderValue::from_static("old"));
    stored.append("x-multi", HeaderValue::from_static("1"));
    stored.append("x-multi", HeaderValue::from_static("2"));
    stored.insert("content-length", HeaderValue::from_static("4"));
    stored.insert("x-keep", HeaderValue::from_static("kept"));
    let mut fresh = HeaderMap::new();
    fresh.insert("x-a", HeaderValue::from_static("new"));
    fresh.insert("x-multi", HeaderValue::from_static("3"));
    fresh.insert("content-length", HeaderValue::from_static("0"));
    let merged = merge_304(&stored, &fresh);
    assert_eq!(merged["x-a"], "new");
    assert_eq!(merged.get_all("x-multi").iter().count(), 1);
    assert_eq!(merged["content-length"], "4");
    assert_eq!(merged["x-keep"], "kept");
}
