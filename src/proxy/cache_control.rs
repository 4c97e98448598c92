//! Strict parsing of the header fields caching decisions rest on:
//! `Cache-Control` (RFC 9111 §5.2) and HTTP-dates (RFC 9110 §5.6.7).
//!
//! `http-cache-semantics` makes the freshness and storability decisions, but
//! its own parsing is lenient in ways that matter for a shared cache: it
//! reads `max-age =100` as `max-age=100`, splits quoted strings at commas,
//! matches directive names case-sensitively, and accepts RFC 2822 dates that
//! are not HTTP-dates (`UTC`, doubled spaces). [`canonical`] therefore hands
//! it a view of the response in which every directive and date has been
//! parsed strictly here and written back in canonical form; anything
//! malformed is dropped (directives) or made "already expired" (dates), as
//! RFC 9111 §4.2.1 and §5.3 ask. The stored response keeps the origin's
//! headers as sent.
//!
//! Pure: no I/O.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// One parsed directive: lower-cased name and unquoted value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased directive name.
    pub name: String,
    /// The value, unquoted; `None` for a bare directive.
    pub value: Option<String>,
}

/// All `Cache-Control` directives of a message, first occurrence first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives(Vec<Directive>);

impl Directives {
    /// Parses every `Cache-Control` field line of `headers`. Malformed
    /// members (e.g. `max-age =1`, an unterminated quote) are skipped.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut out = Vec::new();
        for value in headers.get_all(header::CACHE_CONTROL) {
            parse_line(value.as_bytes(), &mut out);
        }
        Self(out)
    }

    /// Whether a directive is present (any value).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|d| d.name == name)
    }

    /// The value of the first occurrence of `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|d| d.name == name)
            .and_then(|d| d.value.as_deref())
    }

    /// The first occurrence of `name` as delta-seconds (`1*DIGIT`); values
    /// that are not plain digits are ignored. Overflow saturates, as
    /// RFC 9111 §1.2.2 asks.
    pub fn seconds(&self, name: &str) -> Option<u64> {
        let d = self.0.iter().find(|d| d.name == name)?;
        delta_seconds(d.value.as_deref()?)
    }

    /// For directives like `no-cache` and `private`: `Some(fields)` when
    /// present, where `fields` is empty for the unqualified form.
    pub fn field_list(&self, name: &str) -> Option<Vec<String>> {
        let d = self.0.iter().find(|d| d.name == name)?;
        Some(match &d.value {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty())
                .collect(),
        })
    }

    /// Whether a directive is present in its unqualified form.
    pub fn unqualified(&self, name: &str) -> bool {
        self.field_list(name).is_some_and(|f| f.is_empty())
    }

    /// The canonical `Cache-Control` value: first occurrences only,
    /// lower-case names, delta-seconds normalized, others quoted as needed.
    fn canonical(&self) -> String {
        let mut seen: Vec<&str> = Vec::new();
        let mut out = String::new();
        for d in &self.0 {
            if seen.contains(&d.name.as_str()) {
                continue;
            }
            // Qualified `no-cache="a"` / `private="a"` restrict the named
            // fields only; those are removed from the stored copy instead.
            if matches!(d.name.as_str(), "no-cache" | "private") && d.value.is_some() {
                continue;
            }
            seen.push(&d.name);
            let value = match (d.name.as_str(), &d.value) {
                ("max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error", Some(v)) => {
                    match delta_seconds(v) {
                        Some(n) => Some(n.to_string()),
                        None => continue,
                    }
                }
                (_, Some(v))
                    if v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    Some(v.clone())
                }
                (_, Some(v)) => Some(format!("\"{}\"", v.replace(['"', '\\'], ""))),
                (_, None) => None,
            };
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&d.name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(&v);
            }
        }
        out
    }
}

fn parse_line(line: &[u8], out: &mut Vec<Directive>) {
    let mut i = 0;
    while i < line.len() {
        // Skip separators and whitespace before a member.
        while i < line.len() && (line[i] == b',' || line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        let start = i;
        while i < line.len() && is_tchar(line[i]) {
            i += 1;
        }
        let name = String::from_utf8_lossy(&line[start..i]).to_ascii_lowercase();
        let (value, valid, next) = member_value(line, i);
        i = next;
        if !name.is_empty() && valid {
            out.push(Directive { name, value });
        }
        // Skip the rest of a malformed member up to the next comma.
        while i < line.len() && line[i] != b',' {
            i += 1;
        }
    }
}

/// Reads `[ "=" ( token / quoted-string ) ]` at `i`, then optional
/// whitespace. Returns (value, whether the member is well formed, next index).
fn member_value(line: &[u8], mut i: usize) -> (Option<String>, bool, usize) {
    if i >= line.len() || line[i] != b'=' {
        let rest_ok = line[i..]
            .iter()
            .take_while(|b| **b != b',')
            .all(|b| *b == b' ' || *b == b'\t');
        return (None, rest_ok, i);
    }
    i += 1;
    if i < line.len() && line[i] == b'"' {
        let mut value = Vec::new();
        i += 1;
        while i < line.len() {
            match line[i] {
                b'\\' if i + 1 < line.len() => {
                    value.push(line[i + 1]);
                    i += 2;
                }
                b'"' => {
                    let rest_ok = line[i + 1..]
                        .iter()
                        .take_while(|b| **b != b',')
                        .all(|b| *b == b' ' || *b == b'\t');
                    return (
                        Some(String::from_utf8_lossy(&value).into_owned()),
                        rest_ok,
                        i + 1,
                    );
                }
                b => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        return (None, false, i);
    }
    let start = i;
    while i < line.len() && is_tchar(line[i]) {
        i += 1;
    }
    let value = String::from_utf8_lossy(&line[start..i]).into_owned();
    let rest_ok = line[i..]
        .iter()
        .take_while(|b| **b != b',')
        .all(|b| *b == b' ' || *b == b'\t');
    (Some(value), start < i && rest_ok, i)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `1*DIGIT`, saturating at 2^31 (RFC 9111 §1.2.2).
pub fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = text.trim_start_matches('0');
    if digits.len() > 10 {
        return Some(1 << 31);
    }
    Some(digits.parse::<u64>().unwrap_or(0).min(1 << 31))
}

/// Parses an HTTP-date strictly: IMF-fixdate, RFC 850 or asctime, with
/// day and month names matched case-insensitively (a common origin bug)
/// but no other leniency.
pub fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    let text = value.to_str().ok()?.trim();
    // Almost every origin capitalizes correctly: parse as sent first, and
    // only fix the case of a date that did not parse.
    httpdate::parse_http_date(text)
        .or_else(|_| httpdate::parse_http_date(&fix_case(text)))
        .ok()
}

/// Canonical capitalization of day, month and zone names.
fn fix_case(text: &str) -> String {
    const WORDS: [&str; 27] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
        "Sat",
        "Sun",
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "May",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Oct",
        "Nov",
        "Dec",
        "GMT",
    ];
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match WORDS.iter().find(|w| w.eq_ignore_ascii_case(word)) {
            Some(w) => out.push_str(w),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The response headers as the policy should see them: canonical
/// `Cache-Control`, and `Expires`/`Date`/`Last-Modified` rewritten as
/// IMF-fixdates, or (for an invalid `Expires`) as `0`, which every reader
/// treats as already expired. Only the first `Expires` counts.
pub fn canonical(response: &HeaderMap) -> HeaderMap {
    let mut out = response.clone();
    let cc = Directives::parse(response);
    out.remove(header::CACHE_CONTROL);
    let text = cc.canonical();
    if !text.is_empty()
        && let Ok(v) = HeaderValue::from_str(&text)
    {
        out.insert(header::CACHE_CONTROL, v);
    }
    if let Some(expires) = response.get(header::EXPIRES) {
        let v = http_date(expires).map_or(HeaderValue::from_static("0"), imf);
        out.insert(header::EXPIRES, v);
    }
    for name in [header::DATE, header::LAST_MODIFIED] {
        canonical_date(response, &mut out, name);
    }
    out
}

fn canonical_date(response: &HeaderMap, out: &mut HeaderMap, name: HeaderName) {
    if let Some(v) = response.get(&name) {
        match http_date(v) {
            Some(t) => out.insert(name, imf(t)),
            None => out.remove(name),
        };
    }
}

fn imf(t: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests;
