//! Strict parsing of the header fields caching decisions rest on:
//! `Cache-Control` (RFC 9111 §5.2) and HTTP-dates (RFC 9110 §5.6.7).
//!
//! `http-cache-semantics` makes the freshness and storability decisions, but
//! its own parsing is lenient in ways that matter for a shared cache: it
//! reads `max-age =100` as `max-age=100`, splits quoted strings at commas,
//! matches directive names case-sensitively, and accepts RFC 2822 dates that
//! are not HTTP-dates (`UTC`, doubled spaces). [`canonical`] therefore hands
//! it a view of the response in which every directive and date has been
//! parsed strictly here and written back in canonical form (`canonical.rs`); anything
//! malformed is dropped (directives) or made "already expired" (dates), as
//! RFC 9111 §4.2.1 and §5.3 ask. The stored response keeps the origin's
//! headers as sent.
//!
//! Pure: no I/O.

use http::{HeaderMap, header};

mod canonical;

pub(crate) use canonical::{Canonical, canonical, http_date};

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

    /// Whether every directive is one of `names`.
    pub fn all_in(&self, names: &[&str]) -> bool {
        self.0.iter().all(|d| names.contains(&d.name.as_str()))
    }

    /// Whether a directive is present in its unqualified form.
    pub fn unqualified(&self, name: &str) -> bool {
        self.field_list(name).is_some_and(|f| f.is_empty())
    }

    /// The canonical directives: first occurrences only, malformed
    /// delta-seconds dropped and the rest normalized, qualified `no-cache`
    /// and `private` left out (they restrict the named fields only, which
    /// are removed from the stored copy instead). They read as
    /// [`Self::render`] parsed again.
    fn canonical(&self) -> Self {
        let mut out: Vec<Directive> = Vec::with_capacity(self.0.len());
        for d in &self.0 {
            if out.iter().any(|o| o.name == d.name) {
                continue;
            }
            if matches!(d.name.as_str(), "no-cache" | "private") && d.value.is_some() {
                continue;
            }
            let value = match (d.name.as_str(), &d.value) {
                ("max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error", Some(v)) => {
                    match delta_seconds(v) {
                        Some(n) => Some(n.to_string()),
                        None => continue,
                    }
                }
                (_, Some(v)) if is_bare(v) => Some(v.clone()),
                (_, Some(v)) => Some(v.replace(['"', '\\'], "")),
                (_, None) => None,
            };
            out.push(Directive {
                name: d.name.clone(),
                value,
            });
        }
        Self(out)
    }

    /// The `Cache-Control` value of canonical directives: lower-case names,
    /// values quoted unless they are plain tokens.
    fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.0 {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&d.name);
            match &d.value {
                Some(v) if is_bare(v) => {
                    out.push('=');
                    out.push_str(v);
                }
                Some(v) => {
                    out.push_str("=\"");
                    out.push_str(v);
                    out.push('"');
                }
                None => {}
            }
        }
        out
    }
}

/// Whether a directive value is written without quotes.
fn is_bare(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
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
        // tchars are ASCII.
        let name: String = line[start..i]
            .iter()
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
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
    let value: String = line[start..i].iter().map(|&b| char::from(b)).collect();
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

#[cfg(test)]
mod tests;
