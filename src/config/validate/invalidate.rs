//! `invalidate:`: each rule's mutation pattern, and its purge targets
//! compiled into plans against the routes they can match.

use std::collections::HashSet;
use std::sync::Arc;

use http::Method;

use super::routes::PendingRoute;
use crate::config::file::{Located, RawInvalidation};
use crate::config::yaml::Problems;
use crate::rules::purge::{InvalidationRule, PurgePlan, PurgeTarget};
use crate::rules::template::{Template, split_pattern};

/// Every valid rule, and all of their plans.
pub(super) fn rules(
    raw: &[RawInvalidation],
    routes: &[PendingRoute],
    p: &mut Problems,
) -> (Vec<Arc<InvalidationRule>>, Vec<PurgePlan>) {
    let mut rules = Vec::with_capacity(raw.len());
    let mut all_plans = Vec::new();
    let mut labels = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("invalidate[{i}]");
        if let Some(rule) = rule(r, &path, routes, &mut labels, p) {
            all_plans.extend(rule.targets.iter().flat_map(|(_, ps)| ps.iter().cloned()));
            rules.push(Arc::new(rule));
        }
    }
    (rules, all_plans)
}

fn rule(
    r: &RawInvalidation,
    path: &str,
    routes: &[PendingRoute],
    labels: &mut HashSet<String>,
    p: &mut Problems,
) -> Option<InvalidationRule> {
    let Some(pattern) = &r.r#match else {
        p.at_loc(
            Some(r.loc),
            &format!("{path}.match"),
            "required, e.g. `PUT /api/items/{id}`",
        );
        return None;
    };
    let (method, template) = mutation(pattern, &format!("{path}.match"), p)?;
    let label = r
        .name
        .as_ref()
        .map_or_else(|| pattern.value.trim().to_string(), |n| n.value.clone());
    if !labels.insert(label.clone()) {
        let loc = r.name.as_ref().map_or(pattern.loc, |n| n.loc);
        let problem = format!("`{label}` is used by an earlier rule");
        p.at_loc(Some(loc), &format!("{path}.name"), problem);
    }
    if r.purge.is_empty() && r.purge_tags.is_empty() {
        p.at_loc(
            Some(r.loc),
            &format!("{path}.purge"),
            "required (or `purge_tags`): the GET requests this mutation makes stale",
        );
    }
    let targets = targets(r, &format!("{path}.purge"), &template, routes, p);
    let captures: Vec<&str> = template.params().collect();
    let tags =
        super::cache::tag_templates(&r.purge_tags, &captures, &format!("{path}.purge_tags"), p);
    Some(InvalidationRule {
        label: label.into(),
        method,
        template,
        targets,
        tags,
    })
}

/// `match`: an unsafe method and a template.
fn mutation(pattern: &Located<String>, at: &str, p: &mut Problems) -> Option<(Method, Template)> {
    match split_pattern(&pattern.value) {
        Ok((m, _)) if m.is_safe() => {
            let problem =
                format!("`{m}` does not change anything; invalidate on POST, PUT, PATCH or DELETE");
            p.at_loc(Some(pattern.loc), at, problem);
            None
        }
        Ok((m, t)) => {
            let template = Template::parse(t).map_err(|e| p.at_loc(Some(pattern.loc), at, e.0));
            Some((m, template.ok()?))
        }
        Err(e) => {
            p.at_loc(Some(pattern.loc), at, e.0);
            None
        }
    }
}

/// `purge`: each target with its plans; one that can match no route is
/// a problem.
fn targets(
    r: &RawInvalidation,
    at: &str,
    template: &Template,
    routes: &[PendingRoute],
    p: &mut Problems,
) -> Vec<(Box<str>, Vec<PurgePlan>)> {
    let captures: Vec<&str> = template.params().collect();
    let mut targets = Vec::with_capacity(r.purge.len());
    for t in &r.purge {
        let target = match PurgeTarget::parse(&t.value, Some(&captures)) {
            Ok(target) => target,
            Err(e) => {
                p.at_loc(Some(t.loc), at, e.0);
                continue;
            }
        };
        let plans = target.plans(routes.iter().map(|r| (&r.route.template, &r.route.name)));
        if plans.is_empty() {
            let problem = format!(
                "`{}` can match no route, so it would purge nothing",
                t.value
            );
            p.at_loc(Some(t.loc), at, problem);
            continue;
        }
        targets.push((target.as_str().into(), plans));
    }
    targets
}
