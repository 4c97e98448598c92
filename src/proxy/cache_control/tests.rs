use std::borrow::Cow;

use http::{HeaderName, HeaderValue, header};

use super::*;

fn cc(lines: &[&str]) -> Directives {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(header::CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
    }
    Directives::parse(&h)
}

#[test]
fn directives_are_case_insensitive_and_values_unquoted() {
    let d = cc(&["No-StOrE, MaX-aGe=\"3600\", private=\"a, b\""]);
    assert!(d.has("no-store"));
    assert_eq!(d.seconds("max-age"), Some(3600));
    assert_eq!(d.field_list("private"), Some(vec!["a".into(), "b".into()]));
    assert!(!d.unqualified("private"));
}

#[test]
fn quoted_strings_hide_their_contents() {
    let d = cc(&["extension=\"max-age=100, no-store\", max-age=1"]);
    assert_eq!(d.seconds("max-age"), Some(1));
    assert!(!d.has("no-store"));
    let d = cc(&["max-age=1, extension=\"max-age=100\""]);
    assert_eq!(d.seconds("max-age"), Some(1));
}

#[test]
fn malformed_members_are_ignored() {
    for bad in [
        "max-age =100",
        "max-age= 100",
        "max-age=a100",
        "max-age=100a",
        "max-age=-1",
        "max-age='3600'",
        "max-age=3600.5",
    ] {
        assert_eq!(cc(&[bad]).seconds("max-age"), None, "{bad}");
    }
    let d = cc(&["max-age =100, no-cache"]);
    assert!(d.has("no-cache"), "a bad member does not spoil the rest");
}

#[test]
fn first_occurrence_wins_and_values_saturate() {
    assert_eq!(
        cc(&["max-age=1800", "max-age=1"]).seconds("max-age"),
        Some(1800)
    );
    assert_eq!(cc(&["max-age=003600"]).seconds("max-age"), Some(3600));
    assert_eq!(
        cc(&["max-age=99999999999"]).seconds("max-age"),
        Some(1 << 31)
    );
}

#[test]
fn http_dates_are_strict_but_case_tolerant() {
    let ok = |s: &str| http_date(&HeaderValue::from_str(s).unwrap()).is_some();
    assert!(ok("Thu, 18 Aug 2050 02:01:18 GMT"));
    assert!(ok("THU, 18 AUG 2050 02:01:18 gMT"));
    assert!(ok("Sunday, 06-Nov-94 08:49:37 GMT"));
    assert!(ok("Sun Nov  6 08:49:37 1994"));
    for bad in [
        "0",
        "Thu, 18 Aug 2050 02:01:18 UTC",
        "Thu, 18 Aug 50 02:01:18 GMT",
        "Thu 18 Aug 2050 02:01:18 GMT",
        "Thu, 18  Aug  2050 02:01:18 GMT",
        "Thu, 18-Aug-2050 02:01:18 GMT",
        "Thu, 18 Aug 2050 2:01:18 GMT",
    ] {
        assert!(!ok(bad), "{bad}");
    }
}

#[test]
fn canonical_view_rewrites_what_the_policy_reads() {
    let mut h = HeaderMap::new();
    h.append(
        header::CACHE_CONTROL,
        HeaderValue::from_static("MaX-AgE=10, max-age =99"),
    );
    h.append(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=20"),
    );
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Thu, 18 Aug 2050 02:01:18 UTC"),
    );
    h.insert(
        header::DATE,
        HeaderValue::from_static("thu, 18 aug 2050 01:01:18 gmt"),
    );
    h.insert("x-other", HeaderValue::from_static("kept"));
    let c = canonical(&h, &[]).headers;
    assert_eq!(c[header::CACHE_CONTROL], "max-age=10");
    assert_eq!(c[header::EXPIRES], "0");
    assert_eq!(c[header::DATE], "Thu, 18 Aug 2050 01:01:18 GMT");
    assert_eq!(c["x-other"], "kept");
}

#[test]
fn qualified_no_cache_and_private_leave_the_canonical_view() {
    let mut h = HeaderMap::new();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache=\"a\", private=\"b\", max-age=60"),
    );
    assert_eq!(
        canonical(&h, &[]).headers[header::CACHE_CONTROL],
        "max-age=60"
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=60"),
    );
    assert_eq!(
        canonical(&h, &[]).headers[header::CACHE_CONTROL],
        "no-cache, max-age=60"
    );
}

/// Responses as origins send them, canonical or not.
const RESPONSES: &[&[(&str, &str)]] = &[
    &[],
    &[("cache-control", "max-age=3600")],
    &[
        ("cache-control", "public, max-age=60, s-maxage=120"),
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("last-modified", "Sat, 05 Nov 1994 08:49:37 GMT"),
        ("expires", "Mon, 07 Nov 1994 08:49:37 GMT"),
    ],
    &[("cache-control", "Max-Age=60")],
    &[("cache-control", "max-age=060")],
    &[("cache-control", "max-age=abc, max-age=5")],
    &[
        ("cache-control", "max-age=1"),
        ("cache-control", "no-cache"),
    ],
    &[("cache-control", "no-cache=\"set-cookie\", private=\"x\"")],
    &[("cache-control", "no-cache=\"set-cookie\", max-age=9")],
    &[("cache-control", "community=\"UCI\", foo=\"a\\\"b\"")],
    &[("cache-control", "foo=\"\"")],
    &[("cache-control", "max-age =1, no-store")],
    &[("cache-control", "private, max-age=9, private")],
    &[("date", "Sunday, 06-Nov-94 08:49:37 GMT")],
    &[("date", "Sun Nov  6 08:49:37 1994")],
    &[("date", "sun, 06 nov 1994 08:49:37 gmt")],
    &[("date", "Mon, 06 Nov 1994 08:49:37 GMT")], // wrong weekday
    &[("date", "nonsense")],
    &[("expires", "0")],
    &[
        ("expires", "Mon, 07 Nov 1994 08:49:37 GMT"),
        ("expires", "Tue, 08 Nov 1994 08:49:37 GMT"),
    ],
    &[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("date", "Sun, 06 Nov 1994 08:49:38 GMT"),
    ],
    &[("last-modified", "Sun, 06 Nov 1994 08:49:37 UTC")],
];

/// [`RESPONSES`], each with one more field that is left alone.
fn responses() -> Vec<HeaderMap> {
    RESPONSES
        .iter()
        .map(|fields| {
            let mut h = HeaderMap::new();
            for (n, v) in *fields {
                h.append(
                    HeaderName::from_static(n),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h.insert("x-other", HeaderValue::from_static("kept"));
            h
        })
        .collect()
}

#[test]
fn canonical_directives_read_as_the_canonical_headers_parse() {
    for h in responses() {
        let c = canonical(&h, &[]);
        assert_eq!(c.directives, Directives::parse(&c.headers), "{h:?}");
        let date = c.headers.get(header::DATE).and_then(http_date);
        assert_eq!(c.date, date, "{h:?}");
    }
}

#[test]
fn canonical_headers_are_borrowed_exactly_when_already_canonical() {
    let mut borrowed = Vec::new();
    for (i, h) in responses().into_iter().enumerate() {
        let c = canonical(&h, &[]);
        // Canonical output is canonical: taken as it is, never rewritten.
        let again = canonical(&c.headers, &[]);
        assert!(matches!(again.headers, Cow::Borrowed(_)), "{h:?}");
        assert_eq!(*again.headers, *c.headers, "{h:?}");
        if let Cow::Borrowed(b) = c.headers {
            assert_eq!(*b, h);
            borrowed.push(i);
        } else {
            assert_ne!(*c.headers, h, "copied although nothing changed: {h:?}");
        }
    }
    // The first three, `foo=""` and `Expires: 0` are canonical as sent.
    assert_eq!(borrowed, [0, 1, 2, 10, 18]);
}

#[test]
fn dates_with_a_wrong_weekday_are_read() {
    let right = http_date(&HeaderValue::from_static("Thu, 18 Aug 2050 02:01:18 GMT")).unwrap();
    for wrong in [
        "Mon, 18 Aug 2050 02:01:18 GMT",
        "mon, 18 aug 2050 02:01:18 gmt",
        "Monday, 18-Aug-50 02:01:18 GMT",
        "Mon Aug 18 02:01:18 2050",
    ] {
        assert_eq!(
            http_date(&HeaderValue::from_static(wrong)),
            Some(right),
            "{wrong}"
        );
    }
    for invalid in [
        "Xyz, 18 Aug 2050 02:01:18 GMT",
        "Mon, 32 Aug 2050 02:01:18 GMT",
        "18 Aug 2050",
    ] {
        assert_eq!(
            http_date(&HeaderValue::from_static(invalid)),
            None,
            "{invalid}"
        );
    }
}
