use std::time::Duration;

use super::*;

fn problems_of(text: &str, read: impl FnOnce(&Node, &mut Problems)) -> Vec<String> {
    let tree = parse(text).expect("valid yaml");
    let mut p = Problems::default();
    read(&tree, &mut p);
    p.into_sorted().iter().map(ToString::to_string).collect()
}

#[test]
fn unknown_keys_are_reported_with_location_and_suggestion() {
    let out = problems_of("listen: a\nlisen: b\nzzz: c\n", |n, p| {
        let mut m = MapReader::new(n, "", p).unwrap();
        m.get("listen");
        m.finish(&["listen", "upstream"], p);
    });
    assert_eq!(
        out,
        vec![
            "2:1: lisen: unknown key `lisen`; did you mean `listen`?",
            "3:1: zzz: unknown key `zzz`; expected one of: listen, upstream",
        ]
    );
}

#[test]
fn syntax_errors_carry_a_location() {
    let err = parse("a: [1,\nb: 2\n").unwrap_err();
    assert_eq!(err.loc.map(|l| l.line), Some(1));
    assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
}

#[test]
fn unquoted_braces_in_flow_lists_get_a_hint() {
    let err = parse("purge: [GET /a/{id}, GET /b]\n").unwrap_err();
    assert!(
        err.message.contains("quote items"),
        "{:?} {}",
        err.loc,
        err.message
    );
}

#[test]
fn duplicate_keys_are_an_error() {
    let err = parse("a: 1\na: 2\n").unwrap_err();
    assert_eq!(err.loc.map(|l| l.line), Some(2));
    assert!(err.message.contains("duplicate"), "{}", err.message);
}

#[test]
fn sizes_and_durations_parse() {
    assert_eq!(parse_byte_size("256MiB"), Some(256 << 20));
    assert_eq!(parse_byte_size("8 KiB"), Some(8 << 10));
    assert_eq!(parse_byte_size("10MB"), Some(10_000_000));
    assert_eq!(parse_byte_size("12"), Some(12));
    assert_eq!(parse_byte_size("1.5MiB"), None);
    assert_eq!(parse_byte_size("5m"), None);
    let out = problems_of("a: 60\nb: 2x\nc: 250ms\n", |n, p| {
        let mut m = MapReader::new(n, "", p).unwrap();
        assert!(duration(m.get("a").unwrap(), "a", p).is_none());
        assert!(duration(m.get("b").unwrap(), "b", p).is_none());
        assert_eq!(
            duration(m.get("c").unwrap(), "c", p),
            Some(Duration::from_millis(250))
        );
    });
    assert_eq!(out.len(), 2);
    assert!(
        out[0].starts_with("1:4: a: a duration needs a unit"),
        "{out:?}"
    );
    assert!(
        out[1].starts_with("2:4: b: invalid duration `2x`"),
        "{out:?}"
    );
}
