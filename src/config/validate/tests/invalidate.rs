//! `invalidate:` rules, `tags`, `purge_tags` and `cache.tags`.

use super::*;

#[test]
fn rejects_safe_methods_and_empty_purges_in_invalidate() {
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: GET /a }}\ninvalidate:\n  - {{ match: GET /a, purge: [GET /a] }}\n"
        ),
        "does not change anything",
    );
    rejected(
        &format!(
            "{MINIMAL}routes:\n  - {{ name: a, match: GET /a }}\ninvalidate:\n  - {{ match: PUT /a }}\n"
        ),
        "purge: required",
    );
}

#[test]
fn tags_name_captures_of_their_own_match() {
    let routes = "routes:\n  - { name: t, match: \"GET /t/{id}\", tags: [\"thread:{id}\"] }\n";
    let ok = format!(
        "{MINIMAL}{routes}invalidate:\n  - {{ match: \"POST /t/{{id}}/posts\", purge_tags: [\"thread:{{id}}\"] }}\n"
    );
    assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
    rejected(
        &format!("{MINIMAL}routes:\n  - {{ name: t, match: GET /t, tags: [\"t:{{id}}\"] }}\n"),
        "routes[0].tags: tag `t:{id}`: `{id}` is not a capture of the match (captures: none)",
    );
    rejected(
        &format!(
            "{MINIMAL}{routes}invalidate:\n  - {{ match: \"PUT /u/{{name}}\", purge_tags: [\"user:{{id}}\"] }}\n"
        ),
        "invalidate[0].purge_tags: tag `user:{id}`: `{id}` is not a capture of the match (captures: name)",
    );
    rejected(
        &format!("{MINIMAL}{routes}invalidate:\n  - {{ match: PUT /u, purge_tags: [\"a b\"] }}\n"),
        "cannot be in a tag",
    );
}

#[test]
fn cache_tags_are_checked() {
    rejected(
        &format!("{MINIMAL}cache:\n  tags: {{ headers: [\"bad header\"] }}\n"),
        "`bad header` is not a header name",
    );
    rejected(
        &format!("{MINIMAL}cache:\n  tags: {{ max_per_entry: 0 }}\n"),
        "cache.tags.max_per_entry: must be at least 1",
    );
    rejected(
        &format!("{MINIMAL}cache:\n  tags: {{ strip: maybe }}\n"),
        "cache.tags.strip",
    );
}
