//! The view of a response that http-cache-semantics is given: its
//! `Cache-Control` canonical, its dates as IMF-fixdates (RFC 9110 §5.6.7),
//! anything malformed dropped or made "already expired" (RFC 9111 §4.2.1,
//! §5.3). Most origins already send exactly that; their headers are then
//! used as they are, not copied. Pure: no I/O.

use std::borrow::Cow;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::Directives;

/// Parses an HTTP-date strictly: IMF-fixdate, RFC 850 or asctime, with
/// day and month names matched case-insensitively (a common origin bug)
/// but no other leniency.
pub(crate) fn http_date(value: &HeaderValue) -> Option<SystemTime> {
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

/// A response's headers as the policy should see them ([`canonical`]).
#[derive(Debug)]
pub(crate) struct Canonical<'a> {
    /// Canonical `Cache-Control`, and `Expires`/`Date`/`Last-Modified`
    /// as IMF-fixdates (an invalid `Expires` as `0`; an invalid `Date` or
    /// `Last-Modified` removed). Borrowed when the response already reads so.
    pub headers: Cow<'a, HeaderMap>,
    /// The directives of `headers`' `Cache-Control`.
    pub directives: Directives,
    /// `headers`' `Date`.
    pub date: Option<SystemTime>,
}

/// The response headers as the policy should see them: canonical
/// `Cache-Control`, and `Expires`/`Date`/`Last-Modified` rewritten as
/// IMF-fixdates, or (for an invalid `Expires`) as `0`, which every reader
/// treats as already expired. Only the first `Expires` counts.
///
/// Most origins already send exactly that (one `Cache-Control` line in
/// canonical form, IMF-fixdates); their headers are then used as they are,
/// not copied.
pub(crate) fn canonical(response: &HeaderMap) -> Canonical<'_> {
    let directives = Directives::parse(response).canonical();
    let text = directives.render();
    let cc = match text.as_str() {
        "" => None,
        text => HeaderValue::from_str(text).ok(),
    };
    let directives = if cc.is_some() {
        directives
    } else {
        Directives::default()
    };
    let expires = DateField::of(response, header::EXPIRES);
    let date = DateField::of(response, header::DATE);
    let last_modified = DateField::of(response, header::LAST_MODIFIED);

    let as_sent = only(response, &header::CACHE_CONTROL).is_some_and(|v| v == cc.as_ref())
        && [&expires, &date, &last_modified].iter().all(|f| f.as_sent);
    let date_value = date.value.flatten();
    if as_sent {
        return Canonical {
            headers: Cow::Borrowed(response),
            directives,
            date: date_value,
        };
    }

    Canonical {
        headers: Cow::Owned(rewritten(response, cc, expires, [date, last_modified])),
        directives,
        date: date_value,
    }
}

/// A copy of `response` with its `Cache-Control` (`cc`) and date fields
/// written canonically.
fn rewritten(
    response: &HeaderMap,
    cc: Option<HeaderValue>,
    expires: DateField,
    dates: [DateField; 2],
) -> HeaderMap {
    let mut out = response.clone();
    match cc {
        Some(v) => out.insert(header::CACHE_CONTROL, v),
        None => out.remove(header::CACHE_CONTROL),
    };
    if let Some(t) = expires.value {
        out.insert(
            header::EXPIRES,
            t.map_or(HeaderValue::from_static("0"), imf),
        );
    }
    for field in dates {
        match field.value {
            Some(Some(t)) => out.insert(field.name, imf(t)),
            Some(None) => out.remove(field.name),
            None => None,
        };
    }
    out
}

/// A date field of a response, as [`canonical`] reads it.
struct DateField {
    name: HeaderName,
    /// `None` when absent, `Some(None)` when not a date; only the first
    /// field line counts.
    value: Option<Option<SystemTime>>,
    /// Absent, or a single IMF-fixdate that [`imf`] writes the same.
    as_sent: bool,
}

impl DateField {
    fn of(headers: &HeaderMap, name: HeaderName) -> Self {
        let Some(first) = only(headers, &name) else {
            return Self {
                value: headers.get(&name).map(http_date),
                name,
                as_sent: false,
            };
        };
        let Some(v) = first else {
            return Self {
                name,
                value: None,
                as_sent: true,
            };
        };
        // An IMF-fixdate that parses as sent formats back to itself: the
        // parser only accepts dates that do, weekday included.
        let b = v.as_bytes();
        let imf_shaped = b.len() == 29 && b[3] == b',' && b.ends_with(b" GMT");
        match v.to_str().ok().map(|s| httpdate::parse_http_date(s.trim())) {
            Some(Ok(t)) => Self {
                name,
                value: Some(Some(t)),
                as_sent: imf_shaped,
            },
            _ => {
                let value = http_date(v);
                Self {
                    // `Expires: 0` is how an invalid `Expires` is written.
                    as_sent: value.is_none() && name == header::EXPIRES && v == "0",
                    name,
                    value: Some(value),
                }
            }
        }
    }
}

/// The single value of `name`: `Some(None)` when absent, `None` when it
/// has several field lines.
fn only<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Option<&'a HeaderValue>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    values.next().is_none().then_some(first)
}

fn imf(t: SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap_or(HeaderValue::from_static("0"))
}
