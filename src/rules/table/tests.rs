use http::Method;

use super::*;
use crate::rules::template::split_pattern;

fn t(path: &str) -> Template {
    Template::parse(path).expect("valid template")
}

fn table(paths: &[&str]) -> RouteTable<&'static str> {
    let rules = paths
        .iter()
        .map(|p| (t(p), &*Box::leak(p.to_string().into_boxed_str())))
        .collect();
    RouteTable::new(rules).expect("table")
}

fn hit(table: &RouteTable<&'static str>, path: &str) -> Option<(usize, Vec<(String, String)>)> {
    table.find(path).map(|m| {
        let caps = m
            .captures
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (m.index, caps)
    })
}

#[test]
fn patterns_split_into_method_and_path() {
    let (m, p) = split_pattern("GET /api/x").unwrap();
    assert_eq!((m, p), (Method::GET, "/api/x"));
    assert!(split_pattern("/api/x").is_err());
    assert!(split_pattern("get /api/x").is_err());
    assert!(split_pattern("GET api/x").is_err());
}

#[test]
fn templates_reject_what_cannot_match_cleanly() {
    assert!(Template::parse("/a/{id}/{*rest}").is_ok());
    for bad in [
        "a/b",
        "/a/{*rest}/b",
        "/a/x{id}",
        "/a/{id}/{id}",
        "/a/{1x}",
        "/a?b=1",
        "/a/*",
        "/a/%7e",
        "/a/../b",
    ] {
        assert!(Template::parse(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn captures_are_returned_by_name() {
    let tb = table(&["/api/conversations/{id}/messages/{mid}", "/docs/{*path}"]);
    assert_eq!(
        hit(&tb, "/api/conversations/42/messages/7"),
        Some((
            0,
            vec![("id".into(), "42".into()), ("mid".into(), "7".into())]
        ))
    );
    assert_eq!(
        hit(&tb, "/docs/a/b.md"),
        Some((1, vec![("path".into(), "a/b.md".into())]))
    );
    assert_eq!(hit(&tb, "/docs/"), None);
    assert_eq!(hit(&tb, "/api/conversations/42"), None);
}

#[test]
fn first_rule_wins_even_when_matchit_prefers_a_more_specific_one() {
    // matchit alone would pick the static `/a/b` for `/a/b`.
    let tb = table(&["/a/{x}", "/a/b", "/a/{*rest}"]);
    assert_eq!(hit(&tb, "/a/b").unwrap().0, 0);
    assert_eq!(hit(&tb, "/a/zz").unwrap().0, 0);
    assert_eq!(hit(&tb, "/a/b/c").unwrap().0, 2);
    let tb = table(&["/a/b", "/a/{x}"]);
    assert_eq!(hit(&tb, "/a/b").unwrap().0, 0);
    assert_eq!(hit(&tb, "/a/c").unwrap().0, 1);
}

#[test]
fn partially_overlapping_rules_keep_config_order() {
    let tb = table(&["/a/{x}/c", "/a/b/{y}"]);
    assert_eq!(hit(&tb, "/a/b/c").unwrap().0, 0);
    assert_eq!(hit(&tb, "/a/b/d").unwrap().0, 1);
    let tb = table(&["/a/b/{y}", "/a/{x}/c"]);
    assert_eq!(hit(&tb, "/a/b/c").unwrap().0, 0);
    assert_eq!(hit(&tb, "/a/z/c").unwrap().0, 1);
}

#[test]
fn find_all_returns_every_matching_rule_in_order() {
    let tb = table(&["/a/{x}", "/b", "/a/{*rest}"]);
    let all: Vec<usize> = tb.find_all("/a/q").map(|m| m.index).collect();
    assert_eq!(all, vec![0, 2]);
}

#[test]
fn overlap_and_cover_are_exact_for_whole_segment_templates() {
    let s = |p: &str| t(p).segments().to_vec();
    assert!(overlaps(&s("/a/{x}"), &s("/a/b")));
    assert!(overlaps(&s("/a/{*r}"), &s("/a/b/c")));
    assert!(!overlaps(&s("/a/{*r}"), &s("/a")));
    assert!(!overlaps(&s("/a/{x}"), &s("/a/b/c")));
    assert!(overlaps(&s("/a/{x}/c"), &s("/a/b/{y}")));
    assert!(covers(&s("/a/{x}"), &s("/a/b")));
    assert!(!covers(&s("/a/b"), &s("/a/{x}")));
    assert!(covers(&s("/{*all}"), &s("/a/{x}")));
    assert!(!covers(&s("/a/{x}/c"), &s("/a/b/{y}")));
}

#[test]
fn a_catch_all_takes_at_least_one_character() {
    let s = |p: &str| t(p).segments().to_vec();
    assert!(!covers(&s("/{*path}"), &s("/")));
    assert!(!overlaps(&s("/{*path}"), &s("/")));
    assert!(!overlaps(&s("/{x}"), &s("/")));
    assert!(!overlaps(&s("/a/{x}"), &s("/a/")));
    assert!(covers(&s("/{*path}"), &s("/a/")));
    assert!(covers(&s("/a/{*rest}"), &s("/a/b/")));
    assert!(!covers(&s("/a/{*rest}"), &s("/a/")));
    // What the analysis says holds for the router, path by path.
    let templates = [
        "/",
        "/{*path}",
        "/{x}",
        "/a/",
        "/a/{x}",
        "/a/{*rest}",
        "/a/b/",
    ];
    let paths = ["/", "/a", "/a/", "/a/b", "/a/b/", "/b/c"];
    for a in templates {
        for b in templates {
            let tb = table(&[a, b]);
            let both = paths.iter().filter(|p| tb.find_all(p).count() == 2).count();
            let only_b = paths.iter().filter(|p| {
                let all: Vec<usize> = tb.find_all(p).map(|m| m.index).collect();
                all == [1]
            });
            if !overlaps(&s(a), &s(b)) {
                assert_eq!(both, 0, "{a} and {b} overlap on a sample path");
            }
            if covers(&s(a), &s(b)) {
                assert_eq!(
                    only_b.count(),
                    0,
                    "{a} covers {b}, yet a path matches only {b}"
                );
            }
        }
    }
    let tb = table(&["/{*path}", "/"]);
    assert!(tb.shadowing().unreachable.is_empty());
    assert_eq!(tb.find("/").map(|m| m.index), Some(1));
}

#[test]
fn shadowing_reports_unreachable_and_overlapping_rules() {
    let tb = table(&["/a/{x}", "/a/b", "/b/{x}/c", "/b/z/{y}", "/c"]);
    let s = tb.shadowing();
    assert_eq!(s.unreachable, vec![(1, 0)]);
    assert_eq!(s.overlapping, vec![(3, 2)]);
}
