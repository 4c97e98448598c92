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
        .or_else(|| any_weekday(&fix_case(text)))
}

/// A date whose only fault is its day name (RFC 9110 §5.6.7: recipients
/// should accept such dates): parsed with each day name in its place. The
/// day name is the leading word, short (`Sun,`, asctime's `Sun `) or long
/// (RFC 850's `Sunday,`).
fn any_weekday(text: &str) -> Option<SystemTime> {
    let word = text.len()
        - text
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .len();
    let (day, rest) = text.split_at(word);
    let names = match day.len() {
        3 => &SHORT_DAYS,
        6..=9 => &LONG_DAYS,
        _ => return None,
    };
    if !names.iter().any(|n| n.eq_ignore_ascii_case(day)) {
        return None; // not a day name at all
    }
    names
        .iter()
        .find_map(|name| httpdate::parse_http_date(&format!("{name}{rest}")).ok())
}

/// Day names as HTTP-dates write them (RFC 9110 §5.6.7).
const SHORT_DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// RFC 850's long day names.
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
/// Month names, and the zone.
const MONTHS_AND_ZONE: [&str; 13] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "GMT",
];

/// Canonical capitalization of day, month and zone names.
fn fix_case(text: &str) -> String {
    let words = || LONG_DAYS.iter().chain(&SHORT_DAYS).chain(&MONTHS_AND_ZONE);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match words().find(|w| w.eq_ignore_ascii_case(word)) {
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
    /// `headers`' `Age`, in seconds.
    pub age: Option<u64>,
}

/// The response headers as the policy should see them: canonical
/// `Cache-Control`, `Expires`/`Date`/`Last-Modified` rewritten as
/// IMF-fixdates, or (for an invalid `Expires`) as `0`, which every reader
/// treats as already expired, and `Age` as its first member, or removed
/// when that is not delta-seconds (RFC 9111 §5.1). Only the first
/// `Expires` counts.
///
/// `targeted` are the targeted fields (RFC 9213) this cache obeys, in
/// order of precedence: the first present and valid one takes the place of
/// `Cache-Control`, which is then ignored.
///
/// Most origins already send exactly that (one `Cache-Control` line in
/// canonical form, IMF-fixdates, a plain `Age`); their headers are then
/// used as they are, not copied.
pub(crate) fn canonical<'a>(response: &'a HeaderMap, targeted: &[HeaderName]) -> Canonical<'a> {
    let target = targeted
        .iter()
        .find_map(|name| targeted_directives(response, name));
    let from_target = target.is_some();
    let directives = target
        .unwrap_or_else(|| Directives::parse(response))
        .canonical();
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
    let age = AgeField::of(response);

    let as_sent = !from_target
        && only(response, &header::CACHE_CONTROL).is_some_and(|v| v == cc.as_ref())
        && [&expires, &date, &last_modified].iter().all(|f| f.as_sent)
        && age.as_sent;
    let date_value = date.value.flatten();
    if as_sent {
        return Canonical {
            headers: Cow::Borrowed(response),
            directives,
            date: date_value,
            age: age.value,
        };
    }

    let mut headers = rewritten(response, cc, expires, [date, last_modified]);
    match age.value {
        Some(seconds) => headers.insert(header::AGE, HeaderValue::from(seconds)),
        None => headers.remove(header::AGE),
    };
    Canonical {
        headers: Cow::Owned(headers),
        directives,
        date: date_value,
        age: age.value,
    }
}

/// The directives of the targeted field `name` (RFC 9213 §2.1), when it is
/// present and a valid Structured Fields dictionary (RFC 8941); an invalid
/// one is ignored as if absent. Directives keep their `Cache-Control`
/// meaning; one whose value has the wrong type is left out: delta-seconds
/// must be non-negative integers, `no-cache` and `private` are `true` or
/// name fields (a string or a list of strings or tokens); other directives
/// count only when `true`, and `?0` turns one off.
fn targeted_directives(response: &HeaderMap, name: &HeaderName) -> Option<Directives> {
    let mut lines = response.get_all(name).iter();
    let first = lines.next()?;
    let joined;
    let text: &[u8] = match lines.next() {
        None => first.as_bytes(),
        Some(_) => {
            let all: Vec<&[u8]> = response
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes())
                .collect();
            joined = all.join(&b", "[..]);
            &joined
        }
    };
    let dictionary = sfv::Parser::new(text).parse::<sfv::Dictionary>().ok()?;
    if dictionary.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(dictionary.len());
    for (key, member) in &dictionary {
        let name = key.as_str();
        let value = match member {
            sfv::ListEntry::Item(item) => targeted_value(name, &item.bare_item),
            sfv::ListEntry::InnerList(list) if matches!(name, "no-cache" | "private") => {
                let fields: Option<Vec<&str>> = list
                    .items
                    .iter()
                    .map(|i| field_name(&i.bare_item))
                    .collect();
                fields.map(|f| Some(f.join(", ")))
            }
            sfv::ListEntry::InnerList(_) => None,
        };
        if let Some(value) = value {
            out.push(super::Directive {
                name: name.to_string(),
                value,
            });
        }
    }
    Some(Directives(out))
}

/// A targeted directive's value as `Cache-Control` would carry it:
/// `Some(None)` for a bare directive, `None` to leave it out.
fn targeted_value(name: &str, item: &sfv::BareItem) -> Option<Option<String>> {
    const SECONDS: [&str; 4] = [
        "max-age",
        "s-maxage",
        "stale-while-revalidate",
        "stale-if-error",
    ];
    if SECONDS.contains(&name) {
        let n = i64::from(item.as_integer()?);
        return (n >= 0).then(|| Some(n.to_string()));
    }
    match item.as_boolean() {
        Some(true) => Some(None),
        Some(false) => None,
        None if matches!(name, "no-cache" | "private") => field_name(item).map(|f| Some(f.into())),
        None => None,
    }
}

/// A field name in a targeted `no-cache` or `private`.
fn field_name(item: &sfv::BareItem) -> Option<&str> {
    match item.as_string() {
        Some(s) => Some(s.as_str()),
        None => item.as_token().map(|t| t.as_str()),
    }
}

/// `Age`, as [`canonical`] reads it.
struct AgeField {
    /// The first member of the first field line, when delta-seconds.
    value: Option<u64>,
    /// Absent, or a single field line of plain delta-seconds.
    as_sent: bool,
}

impl AgeField {
    fn of(headers: &HeaderMap) -> Self {
        let Some(first) = headers.get(header::AGE) else {
            return Self {
                value: None,
                as_sent: true,
            };
        };
        let text = first.to_str().unwrap_or("");
        let member = text.split(',').next().unwrap_or("").trim();
        let value = super::delta_seconds(member);
        let single = headers.get_all(header::AGE).iter().nth(1).is_none();
        Self {
            value,
            // Rewritten unless it is exactly what `HeaderValue::from` writes.
            as_sent: single && value.is_some_and(|v| v.to_string() == text),
        }
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
