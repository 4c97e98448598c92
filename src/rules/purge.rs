//! Mutation -> the generation tokens to bump (docs/architecture.md,
//! "Storage and invalidation").
//!
//! A purge target such as `GET /api/conversations/{id}/*` is resolved at
//! config time against every route it can match, into one [`PurgePlan`] per
//! route: which of the route's captures the target pins down (from the
//! mutation's captures or from literal text), and which conditions on the
//! mutation's captures must hold. At request time a plan yields one token:
//! `b:route|id=42` when it binds captures, or the route token when it binds
//! none (every entry of the route). Entries carry the same binding tokens
//! (`proxy/key.rs` adds one per binding set the plans use), so a bump reaches
//! exactly the entries whose requests the target can match: all query
//! strings, all users, all variants. Over-approximation (purging more) is
//! allowed; under-approximation never is.
//!
//! Pure: no I/O. The proxy bumps the tokens once the upstream answered 2xx/3xx.

use std::sync::Arc;

use http::Method;

use super::table::{Captures, RouteTable};
use super::tags::TagTemplate;
use super::template::{PatternError, Segment, Template, split_pattern};
use crate::cache::Token;

/// One segment of a purge target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSeg {
    /// Literal text.
    Static(Box<str>),
    /// `{name}` bound to the mutation's capture of that name.
    Capture(Box<str>),
    /// `{name}` in an admin purge: any one segment.
    Wildcard,
    /// A trailing `*`: one or more further segments.
    Rest,
}

/// A parsed purge target (always a GET pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeTarget {
    text: Box<str>,
    segs: Vec<TargetSeg>,
}

/// Where a bound capture's value comes from at request time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueSrc {
    /// Literal text from the target.
    Lit(Box<str>),
    /// The mutation's capture of this name.
    Capture(Box<str>),
    /// Several segments joined with `/`, for a route's catch-all.
    Join(Vec<ValueSrc>),
}

/// What one purge target does to one route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgePlan {
    /// Index of the route in config order.
    pub route: usize,
    /// The route's name.
    pub route_name: Arc<str>,
    /// The route captures the target pins down, in template order. Empty:
    /// every entry of the route.
    pub bindings: Vec<(Box<str>, ValueSrc)>,
    /// `(mutation capture, text)`: the plan applies only if they are equal.
    pub conditions: Vec<(Box<str>, Box<str>)>,
}

/// One `invalidate` rule, compiled.
#[derive(Debug)]
pub struct InvalidationRule {
    /// The `invalidations_total{rule}` label: the rule's `name`, or its `match`.
    pub label: Arc<str>,
    /// The mutation method.
    pub method: Method,
    /// The mutation path template.
    pub template: Template,
    /// Each purge target as written, with its plans.
    pub targets: Vec<(Box<str>, Vec<PurgePlan>)>,
    /// `purge_tags`: the tags this mutation purges.
    pub tags: Vec<TagTemplate>,
}

/// All invalidation rules, grouped by method.
#[derive(Debug, Default)]
pub struct Invalidations {
    by_method: Vec<(Method, RouteTable<Arc<InvalidationRule>>)>,
}

/// The tokens to bump for one mutation, with the labels of the rules applied.
#[derive(Debug, Default)]
pub struct Purge {
    /// Sorted, without duplicates.
    pub tokens: Vec<Token>,
    /// Rule labels, for `invalidations_total{rule}`.
    pub rules: Vec<Arc<str>>,
    /// Labels of the rules that purge tags, for `tag_purges_total{rule}`.
    pub tag_rules: Vec<Arc<str>>,
}

// === impl PurgeTarget ===

impl PurgeTarget {
    /// Parses a purge target. In a rule, `captures` lists the mutation's
    /// capture names and `{name}` must be one of them; in an admin purge
    /// (`captures` is `None`) `{name}` matches any one segment.
    ///
    /// # Errors
    ///
    /// A method other than GET, a malformed segment, a `{name}` the mutation
    /// does not capture, or `*` anywhere but at the end.
    pub fn parse(text: &str, captures: Option<&[&str]>) -> Result<Self, PatternError> {
        let (method, path) = split_pattern(text)?;
        if method != Method::GET {
            return Err(PatternError(format!(
                "`{text}`: purge targets name cached requests, so they start with GET"
            )));
        }
        let raw: Vec<&str> = path[1..].split('/').collect();
        let mut segs = Vec::with_capacity(raw.len());
        for (i, seg) in raw.iter().enumerate() {
            segs.push(target_segment(text, seg, i + 1 == raw.len(), captures)?);
        }
        Ok(Self {
            text: text.trim().into(),
            segs,
        })
    }

    /// The target as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the target names one concrete path (no captures or wildcards).
    pub fn concrete_path(&self) -> Option<String> {
        let mut path = String::new();
        for seg in &self.segs {
            let TargetSeg::Static(s) = seg else {
                return None;
            };
            path.push('/');
            path.push_str(s);
        }
        Some(path)
    }

    /// One plan per route (given in config order) this target can match.
    pub fn plans<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a Template, &'a Arc<str>)>,
    ) -> Vec<PurgePlan> {
        routes
            .into_iter()
            .enumerate()
            .filter_map(|(index, (template, name))| {
                let mut plan = PurgePlan {
                    route: index,
                    route_name: name.clone(),
                    bindings: Vec::new(),
                    conditions: Vec::new(),
                };
                align(&self.segs, template.segments(), &mut plan).then_some(plan)
            })
            .collect()
    }
}

fn target_segment(
    text: &str,
    seg: &str,
    last: bool,
    captures: Option<&[&str]>,
) -> Result<TargetSeg, PatternError> {
    if seg == "*" {
        if !last {
            return Err(PatternError(format!(
                "`{text}`: `*` must be the last segment"
            )));
        }
        return Ok(TargetSeg::Rest);
    }
    if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        return match captures {
            None if super::template::is_capture_name(name) => Ok(TargetSeg::Wildcard),
            Some(names) if names.contains(&name) => Ok(TargetSeg::Capture(name.into())),
            Some(names) => Err(PatternError(format!(
                "`{text}`: `{seg}` is not captured by the rule's match (it captures: {})",
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            ))),
            None => Err(PatternError(format!(
                "`{text}`: `{seg}` is not a valid capture"
            ))),
        };
    }
    // A literal segment: validated like a route template's.
    match Template::parse(&format!("/{seg}")) {
        Ok(t) if matches!(t.segments(), [Segment::Static(_)]) => Ok(TargetSeg::Static(seg.into())),
        Ok(_) => Err(PatternError(format!(
            "`{text}`: `{seg}` is not a valid segment"
        ))),
        Err(e) => Err(PatternError(format!("`{text}`: {e}"))),
    }
}

/// Walks a target against a route template, filling in the plan. Returns
/// whether some request can match both.
fn align(t: &[TargetSeg], r: &[Segment], plan: &mut PurgePlan) -> bool {
    match (t.split_first(), r.split_first()) {
        (None, None) => true,
        (Some((TargetSeg::Rest, _)), _) => !r.is_empty(),
        (_, Some((Segment::CatchAll(name), _))) => {
            if t.is_empty() {
                return false;
            }
            if let Some(parts) = t.iter().map(concrete_value).collect::<Option<Vec<_>>>() {
                plan.bindings.push((name.clone(), ValueSrc::Join(parts)));
            }
            true
        }
        (None, Some(_)) | (Some(_), None) => false,
        (Some((ts, trest)), Some((rs, rrest))) => {
            let ok = match (ts, rs) {
                (TargetSeg::Static(a), Segment::Static(b)) => a == b,
                (TargetSeg::Static(a), Segment::Param(p)) => {
                    plan.bindings.push((p.clone(), ValueSrc::Lit(a.clone())));
                    true
                }
                (TargetSeg::Capture(c), Segment::Static(b)) => {
                    plan.conditions.push((c.clone(), b.clone()));
                    true
                }
                (TargetSeg::Capture(c), Segment::Param(p)) => {
                    plan.bindings
                        .push((p.clone(), ValueSrc::Capture(c.clone())));
                    true
                }
                (TargetSeg::Wildcard, _) => true,
                (TargetSeg::Rest, _) | (_, Segment::CatchAll(_)) => unreachable!("handled above"),
            };
            ok && align(trest, rrest, plan)
        }
    }
}

fn concrete_value(seg: &TargetSeg) -> Option<ValueSrc> {
    match seg {
        TargetSeg::Static(s) => Some(ValueSrc::Lit(s.clone())),
        TargetSeg::Capture(c) => Some(ValueSrc::Capture(c.clone())),
        TargetSeg::Wildcard | TargetSeg::Rest => None,
    }
}

// === impl PurgePlan ===

impl PurgePlan {
    /// The token this plan bumps for a mutation with `captures`, or `None`
    /// when a condition does not hold.
    pub fn token(&self, captures: &Captures<'_, '_>) -> Option<Token> {
        for (capture, text) in &self.conditions {
            if captures.get(capture)? != &**text {
                return None;
            }
        }
        if self.bindings.is_empty() {
            return Some(Token::route(&self.route_name));
        }
        let values: Vec<String> = self
            .bindings
            .iter()
            .map(|(_, src)| src.eval(captures))
            .collect::<Option<_>>()?;
        Some(Token::binding(
            &self.route_name,
            self.bindings
                .iter()
                .zip(&values)
                .map(|((name, _), v)| (&**name, v.as_str())),
        ))
    }

    /// The names of the route captures this plan binds, in template order.
    pub fn binding_set(&self) -> Vec<Box<str>> {
        self.bindings.iter().map(|(n, _)| n.clone()).collect()
    }
}

impl ValueSrc {
    fn eval(&self, captures: &Captures<'_, '_>) -> Option<String> {
        match self {
            ValueSrc::Lit(s) => Some(s.to_string()),
            ValueSrc::Capture(c) => captures.get(c).map(str::to_string),
            ValueSrc::Join(parts) => {
                let parts: Vec<String> = parts
                    .iter()
                    .map(|p| p.eval(captures))
                    .collect::<Option<_>>()?;
                Some(parts.join("/"))
            }
        }
    }
}

// === impl Invalidations ===

impl Invalidations {
    /// Groups compiled rules by method, keeping config order within each.
    ///
    /// # Errors
    ///
    /// As [`RouteTable::new`].
    pub fn new(rules: Vec<Arc<InvalidationRule>>) -> Result<Self, PatternError> {
        let mut methods: Vec<Method> = Vec::new();
        for rule in &rules {
            if !methods.contains(&rule.method) {
                methods.push(rule.method.clone());
            }
        }
        let by_method = methods
            .into_iter()
            .map(|m| {
                let of_method = rules
                    .iter()
                    .filter(|r| r.method == m)
                    .map(|r| (r.template.clone(), r.clone()))
                    .collect();
                Ok((m, RouteTable::new(of_method)?))
            })
            .collect::<Result<_, PatternError>>()?;
        Ok(Self { by_method })
    }

    /// Every rule, in config order within each method.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<InvalidationRule>> {
        self.by_method.iter().flat_map(|(_, t)| t.values())
    }

    /// The tokens a successful `method path` mutation bumps under the rules
    /// (every matching rule applies, not just the first).
    pub fn purge(&self, method: &Method, path: &str) -> Purge {
        let mut purge = Purge::default();
        let Some((_, table)) = self.by_method.iter().find(|(m, _)| m == method) else {
            return purge;
        };
        for m in table.find_all(path) {
            purge.rules.push(m.value.label.clone());
            for (_, plans) in &m.value.targets {
                purge
                    .tokens
                    .extend(plans.iter().filter_map(|p| p.token(&m.captures)));
            }
            if !m.value.tags.is_empty() {
                let tags = m
                    .value
                    .tags
                    .iter()
                    .map(|t| Token::tag(&t.render(&m.captures)));
                purge.tokens.extend(tags);
                purge.tag_rules.push(m.value.label.clone());
            }
        }
        purge.tokens.sort();
        purge.tokens.dedup();
        purge
    }
}

#[cfg(test)]
mod tests;
