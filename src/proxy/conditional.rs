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
pub(crate) struct ClientConditions {
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
pub(crate) enum ByteRange {
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
    pub(crate) fn from_request(headers: &HeaderMap) -> Option<Self> {
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
    pub(crate) fn parse(value: &str) -> Option<Self> {
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
    pub(crate) fn resolve(self, len: u64) -> Option<(u64, u64)> {
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
pub(crate) fn partial_response(
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
pub(crate) fn not_modified(entry: &Entry, conditions: &ClientConditions) -> bool {
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
pub(crate) fn not_modified_response(entry: &Entry, now: SystemTime) -> Response<Body> {
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
pub(crate) fn validators(entry: &Entry) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(2);
    if let Some(etag) = entry.etag() {
        out.push((header::IF_NONE_MATCH, etag.clone()));
    }
    if let Some(lm) = entry.last_modified() {
        out.push((header::IF_MODIFIED_SINCE, lm.clone()));
    }
    out
}

/// Whether a 200 to a HEAD describes the same representation as `entry`
/// (RFC 9111 §4.3.5): the same strong entity tag, or, without tags, the
/// same `Last-Modified`. Anything less leaves the entry as it was.
pub(crate) fn same_validators(entry: &Entry, response: &HeaderMap) -> bool {
    match (entry.etag(), response.get(header::ETAG)) {
        (Some(stored), Some(now)) => stored == now && !now.as_bytes().starts_with(b"W/"),
        (None, None) => entry
            .last_modified()
            .is_some_and(|lm| response.get(header::LAST_MODIFIED) == Some(lm)),
        _ => false,
    }
}

/// Removes the client's own preconditions from a request being sent to
/// fill the cache.
pub(crate) fn strip_client_conditions(headers: &mut HeaderMap) {
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
}

/// The stored header fields updated by a 304's (RFC 9111 §3.2): every field
/// the 304 carries replaces all stored values of that name, except framing.
pub(crate) fn merge_304(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
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
mod tests;
