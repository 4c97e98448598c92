//! The hygiene of what crosses the proxy (docs/security.md): hop-by-hop
//! headers removed both ways (RFC 9110 §7.6.1), client headers the key does
//! not cover dropped at the door, and `X-Forwarded-*` and `Via` set on the
//! way up. Each runs for every forwarded request, so each makes one pass
//! over the (few) names present. Pure: no I/O.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::Peer;
use crate::config::SecurityConfig;
use crate::proxy::policy::listed_names;

/// Hop-by-hop headers (RFC 9110 §7.6.1), plus the proxy-auth pair meant for
/// us and the obsolete `Proxy-Connection`; `Connection` first.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as names, made at compile time: removing by a string
/// would parse it again on every request.
static HOP_BY_HOP_NAMES: [HeaderName; HOP_BY_HOP.len()] = [
    HeaderName::from_static(HOP_BY_HOP[0]),
    HeaderName::from_static(HOP_BY_HOP[1]),
    HeaderName::from_static(HOP_BY_HOP[2]),
    HeaderName::from_static(HOP_BY_HOP[3]),
    HeaderName::from_static(HOP_BY_HOP[4]),
    HeaderName::from_static(HOP_BY_HOP[5]),
    HeaderName::from_static(HOP_BY_HOP[6]),
    HeaderName::from_static(HOP_BY_HOP[7]),
    HeaderName::from_static(HOP_BY_HOP[8]),
];

/// `name`'s place in [`HOP_BY_HOP`] as a bit (`Connection` is bit 0), or 0
/// for an end-to-end header. Compared as strings, which is cheaper than
/// comparing `HeaderName`s, for every header of every request.
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    let name = name.as_str();
    HOP_BY_HOP
        .iter()
        .position(|h| *h == name)
        .map_or(0, |i| 1 << i)
}

/// `Transfer-Encoding`'s bit in [`hop_by_hop_bit`].
const TRANSFER_ENCODING_BIT: u16 = 1 << 7;

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static VIA_VALUE: HeaderValue = HeaderValue::from_static("1.1 cachecar");

/// Client headers that an app (or a framework in it) may act on but the
/// cache key does not cover: they could make the app answer for another
/// URL, method or client than the one cachecar keyed. Never forwarded.
const REWRITING: [&str; 9] = [
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
];

/// Who-is-the-client headers: overwritten from the connection unless
/// `security.trust_forwarded` says a trusted proxy set them.
const CLIENT_CLAIMS: [&str; 14] = [
    "forwarded",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-url-scheme",
    "front-end-https",
    "x-host",
    "x-original-host",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
];

/// Removes the client headers cachecar does not pass on: `REWRITING`
/// always; `CLIENT_CLAIMS` and `X-Forwarded-Proto`/`-Host` unless
/// `trust_forwarded` (then the key covers the latter two, see `key`); and
/// names with `_` unless `underscores_in_headers`, and even then those that
/// read as a removed, forwarded or hop-by-hop header with `_` as `-`.
/// Done before routing and keying, so nothing downstream sees them.
pub(crate) fn drop_untrusted(headers: &mut HeaderMap, security: &SecurityConfig, trust: bool) {
    // One pass over the (few) names present instead of a lookup per listed
    // name: this runs for every request.
    let untrusted = |name: &HeaderName| {
        let name = name.as_str();
        if name.as_bytes().contains(&b'_') {
            return !security.underscores_in_headers || {
                let dashed = name.replace('_', "-");
                is_untrusted(&dashed, trust)
                    || HOP_BY_HOP.contains(&dashed.as_str())
                    || FRAMING_AND_FORWARDED.contains(&dashed.as_str())
            };
        }
        is_untrusted(name, trust)
    };
    if !headers.keys().any(untrusted) {
        return;
    }
    let drop: Vec<HeaderName> = headers.keys().filter(|n| untrusted(n)).cloned().collect();
    for name in drop {
        headers.remove(name);
    }
}

/// Headers that decide how a message is framed or who sent it; with `_` in
/// place of `-` they are never passed on.
const FRAMING_AND_FORWARDED: [&str; 5] = [
    "content-length",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Whether a client header `name` is never passed on as sent.
fn is_untrusted(name: &str, trust_forwarded: bool) -> bool {
    REWRITING.contains(&name)
        || (!trust_forwarded
            && (CLIENT_CLAIMS.contains(&name)
                || name == X_FORWARDED_PROTO.as_str()
                || name == X_FORWARDED_HOST.as_str()))
}

/// The forwarding headers the app gets (`host` is the request's
/// normalized `Host`): the peer's address appended to `X-Forwarded-For`, as
/// nginx's `$proxy_add_x_forwarded_for` and Envoy do, so the app sees the
/// whole chain and its last hop is always the real peer; `X-Real-IP` the
/// peer's unless a trusted proxy set it; `X-Forwarded-Proto`/`-Host` as a
/// trusted proxy set them, else this hop's; and `Via`.
pub(super) fn forwarded_headers(
    headers: &mut HeaderMap,
    host: Option<&HeaderValue>,
    client: &Peer,
) {
    let trust = client.trusted();
    let prior = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|prior| !prior.trim().is_empty());
    let xff = match prior {
        Some(prior) => {
            let ip = client.ip.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{prior}, {ip}")).ok()
        }
        None => Some(client.ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    // Untrusted, a client's own `X-Real-IP` is gone (`drop_untrusted`).
    if !trust || !headers.contains_key(&X_REAL_IP) {
        headers.insert(X_REAL_IP.clone(), client.ip.clone());
    }
    if !trust || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !trust || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    headers.append(header::VIA, VIA_VALUE.clone());
}

/// Removes hop-by-hop headers, including those named in `Connection`.
///
/// One pass over the names present (a handful) notes which hop-by-hop ones
/// are there; only those are then removed. This runs twice for every
/// forwarded request, and nearly every response has one: the usual case, a
/// `Connection: keep-alive` or `close` that names no other field, is
/// handled without splitting the value or allocating.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers
        .keys()
        .fold(0, |bits, name| bits | hop_by_hop_bit(name));
    if present == 0 {
        return;
    }
    if present & TRANSFER_ENCODING_BIT != 0 {
        // Transfer-Encoding overrides Content-Length, which a proxy must
        // then remove (RFC 9112 §6.3): hyper has decoded the chunks, and
        // the message is framed again when it is sent on.
        headers.remove(header::CONTENT_LENGTH);
    }
    if present & 1 != 0 && connection_names_fields(headers) {
        let listed: Vec<String> = listed_names(headers, header::CONNECTION).collect();
        let drop: Vec<HeaderName> = headers
            .keys()
            .filter(|name| hop_by_hop_bit(name) != 0 || listed.iter().any(|t| t == name.as_str()))
            .cloned()
            .collect();
        for name in drop {
            headers.remove(name);
        }
        return;
    }
    for (bit, name) in HOP_BY_HOP_NAMES.iter().enumerate() {
        if present & (1 << bit) != 0 {
            headers.remove(name);
        }
    }
}

/// Whether `Connection` lists a field name, not only the two options that
/// name none (`close`) or one removed anyway (`keep-alive`).
fn connection_names_fields(headers: &HeaderMap) -> bool {
    let option = |t: &[u8]| {
        t.is_empty() || t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive")
    };
    headers.get_all(header::CONNECTION).iter().any(|value| {
        let value = value.as_bytes();
        !option(value) && value.split(|&b| b == b',').any(|t| !option(t.trim_ascii()))
    })
}

#[cfg(test)]
mod tests;
