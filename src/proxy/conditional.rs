//! Conditional requests (RFC 9110 §13, RFC 9111 §4.3).
//!
//! - A client's `If-None-Match` / `If-Modified-Since` is answered from a
//!   usable stored response: 304 when it matches ([`not_modified`]).
//!   Fills never forward them: the upstream must send a full response to
//!   store, and the client's conditions are then evaluated against it.
//! - A stale response is revalidated with its own validators
//!   ([`validators`]); a 304 updates the stored header fields
//!   ([`merge_304`], RFC 9111 §3.2) and the stored body is reused.
//!
//! Entity-tags are compared weakly and leniently about quoting (origins
//! that send `abc` for `"abc"` are common); a mismatch can only cost a full
//! response, never serve the wrong one, because the stored body is what the
//! tag describes.
//!
//! Pure: no I/O.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::Body;
use super::cache_control;
use crate::cache::Entry;

/// What a client asks of a stored response beyond the response itself: its
/// preconditions, and one byte range (RFC 9110 §13, §14).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientConditions {
    /// `If-None-Match` members (`*` kept as is).
    pub if_none_match: Option<Vec<String>>,
    /// `If-Modified-Since`, when a valid HTTP-date.
    pub if_modified_since: Option<SystemTime>,
    /// A single `Range: bytes=...`; other forms are ignored (a full 200 is
    /// always a valid answer to a range request).
    pub range: Option<ByteRange>,
}

/// One byte range of a `Range` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last`
    FromTo(u64, u64),
    /// `bytes=first-`
    From(u64),
    /// `bytes=-length`
    Suffix(u64),
}

/// Headers a 304 carries from the stored response (RFC 9110 §15.4.5).
const NOT_MODIFIED_HEADERS: [HeaderName; 7] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::VARY,
];

/// Header fields a 304 never updates in the stored response (RFC 9111
/// §3.2): the framing and encoding of the stored body.
const NOT_UPDATED: [HeaderName; 4] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::TRANSFER_ENCODING,
];

impl ClientConditions {
    /// The request's conditions, or `None` when it has neither header.
    pub fn from_request(headers: &HeaderMap) -> Option<Self> {
        let inm: Vec<String> = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let ims = headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(cache_control::http_date);
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(ByteRange::parse);
        if inm.is_empty() && ims.is_none() && range.is_none() {
            return None;
        }
        Some(Self {
            if_none_match: (!inm.is_empty()).then_some(inm),
            if_modified_since: ims,
            range,
        })
    }
}

impl ByteRange {
    /// Parses a single-range `bytes=` value; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let num = |s: &str| cache_control::delta_seconds(s.trim());
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, false) => Some(ByteRange::Suffix(num(last)?)),
            (false, true) => Some(ByteRange::From(num(first)?)),
            (false, false) => {
                let (a, b) = (num(first)?, num(last)?);
                (a <= b).then_some(ByteRange::FromTo(a, b))
            }
            (true, true) => None,
        }
    }

    /// The inclusive byte positions within a body of `len` bytes, or `None`
    /// when the range is unsatisfiable.
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::FromTo(a, b) if a < len => Some((a, b.min(len - 1))),
            ByteRange::From(a) if a < len => Some((a, len - 1)),
            ByteRange::Suffix(n) if n > 0 && len > 0 => Some((len - n.min(len), len - 1)),
            _ => None,
        }
    }
}

/// The answer to a range request from a stored full (200) response: a 206
/// with the slice (no copy), or a 416 when the range does not fit. `None`:
/// answer in full.
pub fn partial_response(
    entry: &Entry,
    range: ByteRange,
    now: SystemTime,
) -> Option<Response<Body>> {
    if entry.status != StatusCode::OK {
        return None;
    }
    let len = entry.body.len() as u64;
    let mut response = Response::new(Body::Empty);
    let headers = response.headers_mut();
    *headers = entry.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    match range.resolve(len) {
        Some((first, last)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(last - first + 1));
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {first}-{last}/{len}")).ok()?,
            );
            *response.body_mut() = Body::full(entry.body.slice(first as usize..=last as usize));
        }
        None => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).ok()?,
            );
        }
    }
    Some(response)
}

/// Whether `entry` satisfies the client's conditions, so a 304 answers.
/// Only successful (200) responses are answered this way.
pub fn not_modified(entry: &Entry, conditions: &ClientConditions) -> bool {
    if entry.status != StatusCode::OK {
        return false;
    }
    // If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.2.2).
    if let Some(tags) = &conditions.if_none_match {
        let Some(etag) = entry.etag().and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let ours = opaque(etag);
        return tags.iter().any(|t| t == "*" || opaque(t) == ours);
    }
    let Some(since) = conditions.if_modified_since else {
        return false;
    };
    let modified = entry
        .last_modified()
        .or_else(|| entry.headers.get(header::DATE))
        .and_then(cache_control::http_date);
    modified.is_some_and(|m| m <= since)
}

/// The opaque part of an entity-tag, for weak comparison.
fn opaque(tag: &str) -> &str {
    let tag = tag.trim();
    let tag = tag
        .strip_prefix("W/")
        .or_else(|| tag.strip_prefix("w/"))
        .unwrap_or(tag);
    tag.trim_matches('"')
}

/// A 304 for `entry`, with `Age` for `now`.
pub fn not_modified_response(entry: &Entry, now: SystemTime) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    let headers = response.headers_mut();
    for name in NOT_MODIFIED_HEADERS {
        for value in entry.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    response
}

/// The conditional headers that revalidate `entry`: its `ETag` exactly as
/// the origin sent it (origins compare against their own spelling, quoted
/// or not) and its `Last-Modified`.
pub fn validators(entry: &Entry) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(2);
    if let Some(etag) = entry.etag() {
        out.push((header::IF_NONE_MATCH, etag.clone()));
    }
    if let Some(lm) = entry.last_modified() {
        out.push((header::IF_MODIFIED_SINCE, lm.clone()));
    }
    out
}

/// Removes the client's own preconditions from a request being sent to
/// fill the cache.
pub fn strip_client_conditions(headers: &mut HeaderMap) {
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
}

/// The stored header fields updated by a 304's (RFC 9111 §3.2): every field
/// the 304 carries replaces all stored values of that name, except framing.
pub fn merge_304(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in not_modified {
        if NOT_UPDATED.contains(name) {
            continue;
        }
        if !replaced.contains(&name) {
            merged.remove(name);
            replaced.push(name);
        }
        merged.append(name.clone(), value.clone());
    }
    merged
}

#[cfg(test)]
mod tests {
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
        Arc::new(Entry {
            key: KeyHash([0; 32]),
            status: StatusCode::OK,
            headers: map,
            body: Bytes::from_static(b"body"),
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + Duration::from_secs(60),
            stale_while_revalidate_until: now,
            stale_if_error_until: now,
            must_revalidate: false,
            keep_until: now + Duration::from_secs(60),
            vary: Vec::new(),
            generations: Vec::new(),
            shareable_with_auth: false,
        })
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
}
