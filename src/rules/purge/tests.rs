use super::*;
use crate::rules::tags::TagTemplate;

fn routes(templates: &[&str]) -> Vec<(Template, Arc<str>)> {
    templates
        .iter()
        .enumerate()
        .map(|(i, t)| (Template::parse(t).unwrap(), Arc::from(format!("r{i}"))))
        .collect()
}

fn plans(target: &str, captures: Option<&[&str]>, templates: &[&str]) -> Vec<PurgePlan> {
    let rs = routes(templates);
    PurgeTarget::parse(target, captures)
        .unwrap()
        .plans(rs.iter().map(|(t, n)| (t, n)))
}

fn caps<'a>(pairs: &'a [(&'a str, &'a str)]) -> Captures<'a, 'a> {
    let table = RouteTable::new(vec![(
        Template::parse(&format!(
            "/{}",
            pairs
                .iter()
                .map(|(k, _)| format!("{{{k}}}"))
                .collect::<Vec<_>>()
                .join("/")
        ))
        .unwrap(),
        (),
    )])
    .unwrap();
    let path = format!(
        "/{}",
        pairs.iter().map(|(_, v)| *v).collect::<Vec<_>>().join("/")
    );
    let path: &'a str = Box::leak(path.into_boxed_str());
    let table: &'a RouteTable<()> = Box::leak(Box::new(table));
    table.find(path).unwrap().captures
}

#[test]
fn targets_must_be_gets_with_known_captures() {
    assert!(PurgeTarget::parse("GET /a/{id}", Some(&["id"])).is_ok());
    assert!(PurgeTarget::parse("PUT /a/{id}", Some(&["id"])).is_err());
    let err = PurgeTarget::parse("GET /a/{cid}", Some(&["id"])).unwrap_err();
    assert!(err.0.contains("not captured"), "{err}");
    assert!(PurgeTarget::parse("GET /a/*/b", None).is_err());
    assert!(
        PurgeTarget::parse("GET /a/{x}", None).is_ok(),
        "admin wildcard"
    );
}

#[test]
fn capture_aligned_with_a_route_param_binds_it() {
    let ps = plans(
        "GET /api/conversations/{id}",
        Some(&["id"]),
        &[
            "/api/conversations",
            "/api/conversations/{cid}",
            "/api/documents/{*p}",
        ],
    );
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].route, 1);
    assert_eq!(
        ps[0].bindings,
        vec![("cid".into(), ValueSrc::Capture("id".into()))]
    );
    let token = ps[0].token(&caps(&[("id", "42")])).unwrap();
    assert_eq!(token, Token::binding("r1", [("cid", "42")]));
}

#[test]
fn trailing_star_reaches_deeper_routes_only() {
    let ps = plans(
        "GET /api/conversations/{id}/*",
        Some(&["id"]),
        &[
            "/api/conversations/{id}",
            "/api/conversations/{id}/messages",
            "/api/conversations/{id}/messages/{mid}",
        ],
    );
    let routes: Vec<usize> = ps.iter().map(|p| p.route).collect();
    assert_eq!(routes, vec![1, 2]);
    // Both pin `id` only; `mid` stays free, so all messages of 42 go.
    assert!(ps.iter().all(|p| p.binding_set() == vec![Box::from("id")]));
}

#[test]
fn static_target_on_a_static_route_purges_the_whole_route() {
    let ps = plans(
        "GET /api/conversations",
        Some(&["id"]),
        &["/api/conversations"],
    );
    assert_eq!(ps.len(), 1);
    assert!(ps[0].bindings.is_empty());
    assert_eq!(ps[0].token(&caps(&[("id", "1")])), Some(Token::route("r0")));
}

#[test]
fn capture_against_literal_route_segment_is_a_condition() {
    let ps = plans(
        "GET /api/conversations/{id}",
        Some(&["id"]),
        &["/api/conversations/search"],
    );
    assert_eq!(ps.len(), 1);
    assert_eq!(
        ps[0].token(&caps(&[("id", "search")])),
        Some(Token::route("r0"))
    );
    assert_eq!(ps[0].token(&caps(&[("id", "42")])), None);
}

#[test]
fn route_catch_all_binds_the_joined_rest_or_nothing() {
    let ps = plans("GET /docs/{id}/raw", Some(&["id"]), &["/docs/{*path}"]);
    assert_eq!(
        ps[0].token(&caps(&[("id", "7")])),
        Some(Token::binding("r0", [("path", "7/raw")]))
    );
    let ps = plans("GET /docs/{id}/*", Some(&["id"]), &["/docs/{*path}"]);
    assert_eq!(ps[0].token(&caps(&[("id", "7")])), Some(Token::route("r0")));
}

#[test]
fn targets_that_match_no_route_have_no_plans() {
    assert!(plans("GET /nowhere", Some(&[]), &["/api/{x}"]).is_empty());
    assert!(plans("GET /api/a/b", Some(&[]), &["/api/{x}"]).is_empty());
}

#[test]
fn concrete_paths_are_recognized() {
    let t = PurgeTarget::parse("GET /api/conversations/42", None).unwrap();
    assert_eq!(t.concrete_path().as_deref(), Some("/api/conversations/42"));
    let t = PurgeTarget::parse("GET /api/conversations/*", None).unwrap();
    assert_eq!(t.concrete_path(), None);
}

#[test]
fn every_matching_rule_applies() {
    let rs = routes(&["/api/c/{id}", "/api/c"]);
    let rule = |label: &str, target: &str| {
        let template = Template::parse("/api/c/{id}").unwrap();
        let target = PurgeTarget::parse(target, Some(&["id"])).unwrap();
        let ps = target.plans(rs.iter().map(|(t, n)| (t, n)));
        Arc::new(InvalidationRule {
            label: label.into(),
            method: Method::PUT,
            template,
            targets: vec![(target.as_str().into(), ps)],
            tags: vec![TagTemplate::parse(&format!("{label}:{{id}}"), &["id"]).unwrap()],
        })
    };
    let inv = Invalidations::new(vec![
        rule("one", "GET /api/c/{id}"),
        rule("two", "GET /api/c"),
    ])
    .unwrap();
    let purge = inv.purge(&Method::PUT, "/api/c/9");
    assert_eq!(purge.rules, vec![Arc::from("one"), Arc::from("two")]);
    assert_eq!(
        purge.tokens,
        vec![
            Token::binding("r0", [("id", "9")]),
            Token::route("r1"),
            Token::tag("one:9"),
            Token::tag("two:9"),
        ]
    );
    assert!(inv.purge(&Method::DELETE, "/api/c/9").tokens.is_empty());
}
