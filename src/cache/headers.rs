//! Header maps as entries keep them: owning their bytes, with room for the
//! headers added when served, and request fields compared as `Vary` does.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// A request header field as `Vary` and route keys compare it: all lines
/// combined, list members trimmed and joined with `,` (so `1,2`, ` 1, 2 `
/// and two lines `1` and `2` are the same). `Accept-Language` is read for
/// what it means ([`language_preferences`]). `None` when absent.
pub fn normalized_field(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    if name == http::header::ACCEPT_LANGUAGE {
        return Some(language_preferences(values));
    }
    let mut out = Vec::new();
    for value in values {
        for member in value.as_bytes().split(|b| *b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
        }
    }
    Some(out)
}

/// `Accept-Language` (RFC 9110 §12.5.4) as a list of preferences: ranges
/// lower-cased, weights written as three-place decimals (`q=1` when
/// absent, left out then), other parameters dropped, and the members
/// sorted by weight, then by range, since equal weights state no order.
/// So `en, de`, `De, EN` and `de;q=1.0 , en` are one variant. A member
/// that does not parse is kept as written, lower-cased.
fn language_preferences<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<u8> {
    // (weight, range; a weight of `None` did not parse)
    let mut members: Vec<(Option<u16>, Vec<u8>)> = Vec::new();
    for value in values {
        for member in value.as_bytes().split(|b| *b == b',') {
            let mut parts = member.split(|b| *b == b';');
            let range = parts.next().unwrap_or_default().trim_ascii();
            if range.is_empty() {
                continue;
            }
            let q = parts
                .filter_map(|p| {
                    let p = p.trim_ascii();
                    let v = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))?;
                    Some(qvalue(v))
                })
                .next()
                .unwrap_or(Some(1000));
            let mut text = range.to_ascii_lowercase();
            if q.is_none() {
                // Not a weight: marked, so the variant is still this request's own.
                text.extend_from_slice(b";?");
            }
            members.push((q, text));
        }
    }
    members.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    members.dedup();
    let mut out = Vec::new();
    for (q, range) in members {
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(&range);
        if let Some(q) = q.filter(|q| *q != 1000) {
            out.extend_from_slice(format!(";q={}.{:03}", q / 1000, q % 1000).as_bytes());
        }
    }
    out
}

/// A `qvalue` (RFC 9110 §12.4.2) in thousandths: `0`, `0.5`, `1.000`.
fn qvalue(text: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(text).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().unwrap_or(0);
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Headers added to an entry's own when it is served (`Age`,
/// `Cache-Status`, `X-Cache`). Stored maps have room for them in their hash
/// table (see [`compact`]), so that a hit's copy of the map does not rehash
/// it as they go in.
pub const SERVED_EXTRA: usize = 3;

/// `headers`, built with room for [`SERVED_EXTRA`] more, as it is stored: a
/// clone keeps the hash table's size (4 bytes a slot) but gives the entries
/// exactly their length, where the original holds spare ones (100 bytes
/// each, 7 for a typical response: 70 MB over 100k entries).
pub fn compact(headers: &HeaderMap) -> HeaderMap {
    headers.clone()
}

/// A copy of `headers` that owns its bytes. Header values parsed by hyper
/// are slices of the connection's read buffer; storing them as they are
/// would keep that whole buffer alive as long as the entry.
///
/// The values are copied into one buffer and each is a slice of it: two
/// allocations for the lot rather than two for each value (its bytes, and
/// the shared count made when the map is compacted or a hit clones it).
pub fn detached_headers(headers: &HeaderMap) -> HeaderMap {
    let mut bytes = Vec::with_capacity(headers.iter().map(|(_, v)| v.len()).sum());
    for (_, value) in headers {
        bytes.extend_from_slice(value.as_bytes());
    }
    let bytes = Bytes::from(bytes);
    let mut out = HeaderMap::with_capacity(headers.len() + SERVED_EXTRA);
    let mut at = 0;
    for (name, value) in headers {
        let end = at + value.len();
        let copy = HeaderValue::from_maybe_shared(bytes.slice(at..end))
            .map(|mut copy| {
                copy.set_sensitive(value.is_sensitive());
                copy
            })
            // The bytes came from a valid HeaderValue, so they are valid again.
            .unwrap_or_else(|_| value.clone());
        out.append(name.clone(), copy);
        at = end;
    }
    compact(&out)
}

/// A copy of one header value that owns its bytes.
pub fn detached_value(value: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value.as_bytes()))
        // The bytes came from a valid HeaderValue, so they are valid again.
        .unwrap_or_else(|_| value.clone());
    copy.set_sensitive(value.is_sensitive());
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_headers_own_their_bytes_in_order_with_room_to_serve() {
        // As hyper parses them: slices of the connection's read buffer.
        let wire = Bytes::from(b"text/plainmax-age=60onetwosecret".to_vec());
        let slice =
            |r: std::ops::Range<usize>| HeaderValue::from_maybe_shared(wire.slice(r)).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(http::header::CONTENT_TYPE, slice(0..10));
        headers.append(http::header::CACHE_CONTROL, slice(10..20));
        headers.append("x-multi", slice(20..23));
        headers.append("x-multi", slice(23..26));
        headers.append("x-empty", HeaderValue::from_static(""));
        let mut secret = slice(26..32);
        secret.set_sensitive(true);
        headers.append(http::header::AUTHORIZATION, secret);

        let out = detached_headers(&headers);
        let pairs = |h: &HeaderMap| -> Vec<(String, Vec<u8>, bool)> {
            h.iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec(), v.is_sensitive()))
                .collect()
        };
        assert_eq!(pairs(&out), pairs(&headers));
        let wire_range = wire.as_ptr_range();
        for (name, value) in &out {
            assert!(
                !wire_range.contains(&value.as_bytes().as_ptr()),
                "{name} still points into the read buffer"
            );
        }
        assert!(out.capacity() >= headers.len() + SERVED_EXTRA);
    }

    #[test]
    fn vary_fields_are_normalized_before_comparing() {
        let name = HeaderName::from_static("foo");
        let mut a = HeaderMap::new();
        a.insert(&name, HeaderValue::from_static("1,2"));
        let mut b = HeaderMap::new();
        b.insert(&name, HeaderValue::from_static(" 1, 2 "));
        let mut c = HeaderMap::new();
        c.append(&name, HeaderValue::from_static("1"));
        c.append(&name, HeaderValue::from_static("2"));
        let n = normalized_field(&a, &name);
        assert_eq!(n.as_deref(), Some(&b"1,2"[..]));
        assert_eq!(n, normalized_field(&b, &name));
        assert_eq!(n, normalized_field(&c, &name));
        assert_eq!(normalized_field(&HeaderMap::new(), &name), None);
    }
}

#[cfg(test)]
mod language_tests {
    use super::*;

    fn normalized(lines: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(
                http::header::ACCEPT_LANGUAGE,
                HeaderValue::from_str(l).unwrap(),
            );
        }
        String::from_utf8(normalized_field(&h, &http::header::ACCEPT_LANGUAGE).unwrap()).unwrap()
    }

    #[test]
    fn accept_language_is_read_for_its_preferences() {
        let same = [
            "en, de",
            "de, en",
            "eN, De",
            " en ,   de",
            "de;q=1.0, en",
            "de;Q=1, en;q=1.000",
        ];
        for v in same {
            assert_eq!(normalized(&[v]), "de,en", "{v}");
        }
        assert_eq!(normalized(&["de", "en"]), "de,en");
        assert_eq!(normalized(&["fr;q=0.5, de;q=1.0"]), "de,fr;q=0.500");
        assert_eq!(
            normalized(&["en-US;q=0.8, en;q=0.80, *;q=0"]),
            "en;q=0.800,en-us;q=0.800,*;q=0.000"
        );
        assert_ne!(normalized(&["en, de;q=0.5"]), normalized(&["de, en;q=0.5"]));
        // Not a qvalue: kept apart from every well-formed request.
        assert_eq!(normalized(&["en;q=2"]), "en;?");
        assert_eq!(normalized(&["en;level=1"]), "en");
    }
}
