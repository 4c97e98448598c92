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
    let c = canonical(&h);
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
    assert_eq!(canonical(&h)[header::CACHE_CONTROL], "max-age=60");
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, max-age=60"),
    );
    assert_eq!(canonical(&h)[header::CACHE_CONTROL], "no-cache, max-age=60");
}
