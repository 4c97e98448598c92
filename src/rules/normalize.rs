//! One normalized view of a request, used for route matching, for the cache
//! key and for the request sent upstream, so that what is cached under a key
//! is exactly what the app was asked for.
//!
//! Normalization (RFC 3986 §6.2.2), applied once:
//! - percent-encoded unreserved characters (`%41` -> `A`, `%7E` -> `~`) are
//!   decoded and other percent-encodings are written in upper case
//!   (`%2f` -> `%2F`); an invalid percent-encoding is an error;
//! - dot segments are removed (`/a/./b/../c` -> `/a/c`);
//! - the host is lower-cased.
//!
//! Reserved characters stay as they are: `%2F` is not `/`, so it is never
//! decoded. Pure: no I/O.

use std::fmt;

use http::{HeaderMap, Uri, header};

/// The normalized parts of a request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalized {
    /// Absolute path, normalized.
    pub path: String,
    /// Query string without `?`, percent-normalized; `None` when absent.
    pub query: Option<String>,
    /// Lower-cased `Host` (or HTTP/2 `:authority`), if the request had one.
    pub host: Option<String>,
}

/// Why a request target was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NormalizeError {
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// Not an origin-form or absolute-form target (e.g. `*`), or a host
    /// header that is not valid text.
    BadTarget,
}

/// Normalizes the target of a request.
///
/// # Errors
///
/// [`NormalizeError`] when the target cannot be normalized; the proxy answers
/// 400 rather than guessing.
pub fn request(uri: &Uri, headers: &HeaderMap) -> Result<Normalized, NormalizeError> {
    let raw_path = uri.path();
    if !raw_path.starts_with('/') {
        return Err(NormalizeError::BadTarget);
    }
    let path = normalize_path(raw_path)?;
    let query = match uri.query() {
        Some(q) => Some(percent_normalize(q)?),
        None => None,
    };
    let host = match uri.authority() {
        Some(a) => Some(a.as_str().to_ascii_lowercase()),
        None => match headers.get(header::HOST) {
            Some(h) => Some(
                h.to_str()
                    .map_err(|_| NormalizeError::BadTarget)?
                    .to_ascii_lowercase(),
            ),
            None => None,
        },
    };
    Ok(Normalized { path, query, host })
}

/// Reduces `Accept-Encoding` to the one coding cachecar asks the upstream
/// for: `gzip` if the client accepts it, else `br`, else none (identity).
/// Applied to cacheable requests only, so a response varying on
/// `Accept-Encoding` has at most three variants instead of one per client
/// spelling; the upstream sees the same reduced header, so what is stored
/// under a variant is exactly what was asked for.
pub fn accept_encoding(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::ACCEPT_ENCODING) else {
        return;
    };
    let accepted = |coding: &str| {
        value
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|member| {
                let mut parts = member.split(';');
                let name = parts.next()?.trim().to_ascii_lowercase();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((name, q))
            })
            .any(|(name, q)| (name == coding || name == "*") && q > 0.0)
    };
    let chosen = if accepted("gzip") {
        Some("gzip")
    } else if accepted("br") {
        Some("br")
    } else {
        None
    };
    match chosen {
        Some(c) => {
            headers.insert(header::ACCEPT_ENCODING, http::HeaderValue::from_static(c));
        }
        None => {
            headers.remove(header::ACCEPT_ENCODING);
        }
    }
}

/// Merges runs of `/` into one (`security.merge_slashes`).
pub fn merge_slashes(path: &mut String) {
    if path.contains("//") {
        let mut out = String::with_capacity(path.len());
        for c in path.chars() {
            if !(c == '/' && out.ends_with('/')) {
                out.push(c);
            }
        }
        *path = out;
    }
}

/// Normalizes one literal path segment of a template. `.` and `..` are refused
/// because a normalized request path never contains them.
///
/// # Errors
///
/// A message for the operator.
pub fn segment(seg: &str) -> Result<String, String> {
    let out = percent_normalize(seg).map_err(|_| format!("`{seg}` has an invalid `%` escape"))?;
    if out == "." || out == ".." {
        return Err(format!("`{seg}` is a dot segment"));
    }
    Ok(out)
}

/// Normalizes a path: percent-encoding first, then dot-segment removal.
pub fn normalize_path(path: &str) -> Result<String, NormalizeError> {
    let decoded = percent_normalize(path)?;
    if !has_dot_segment(&decoded) {
        return Ok(decoded);
    }
    Ok(remove_dot_segments(&decoded))
}

/// Whether a segment of `path` is `.` or `..`: a `.` that starts a segment
/// and is followed by the segment's end, or by one more `.` and its end.
/// One pass over the bytes; this runs for every request.
fn has_dot_segment(path: &str) -> bool {
    let b = path.as_bytes();
    let ends = |i: usize| b.get(i).is_none_or(|&c| c == b'/');
    b.iter().enumerate().any(|(i, &c)| {
        c == b'.'
            && (i == 0 || b[i - 1] == b'/')
            && (ends(i + 1) || (b[i + 1] == b'.' && ends(i + 2)))
    })
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut joined = String::with_capacity(path.len());
    for seg in out {
        joined.push('/');
        joined.push_str(seg);
    }
    if joined.is_empty() {
        joined.push('/');
    }
    joined
}

/// Decodes `%XX` for unreserved characters and upper-cases the rest.
fn percent_normalize(s: &str) -> Result<String, NormalizeError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            let next = s[i..].find('%').map_or(s.len(), |n| i + n);
            out.push_str(&s[i..next]);
            i = next;
            continue;
        }
        let (Some(h), Some(l)) = (
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) else {
            return Err(NormalizeError::BadPercentEncoding);
        };
        let byte = h << 4 | l;
        if is_unreserved(byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX_UPPER[usize::from(h)] as char);
            out.push(HEX_UPPER[usize::from(l)] as char);
        }
        i += 3;
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NormalizeError::BadPercentEncoding => "invalid percent-encoding in the request target",
            NormalizeError::BadTarget => "unsupported request target",
        })
    }
}

impl std::error::Error for NormalizeError {}

#[cfg(test)]
mod tests;
