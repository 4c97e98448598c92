//! `routes:`: each rule compiled into a [`Route`], then given the binding
//! sets its purge plans use and the fingerprint of its key shape, and put
//! in the route table (with a warning for each unreachable rule).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};

use crate::cache::Token;
use crate::config::file::{Located, RawPolicy, RawQuery, RawRoute, RawTtl};
use crate::config::yaml::{Loc, Problems};
use crate::config::{IdentityConfig, IdentitySource};
use crate::metrics::RouteMetrics;
use crate::rules::purge::PurgePlan;
use crate::rules::template::{Template, split_pattern};
use crate::rules::{
    KeySpec, OriginCacheControl, QueryKey, Route, RouteTable, Scope, StatusPattern, Targeted,
};

/// Bumped when the key layout changes, so old entries never match new keys.
const KEY_FORMAT_VERSION: &[u8] = b"cachecar-key-v2";

/// How long an entry is kept once stale, beyond its stale windows: long
/// enough to be revalidated with a 304 instead of fetched again, or served
/// to a request's `max-stale`.
const DEFAULT_KEEP_STALE: Duration = Duration::from_secs(300);

/// A route before its binding sets are known.
pub(super) struct PendingRoute {
    loc: Loc,
    pub(super) route: Route,
}

/// A route's freshness settings, its own or from `defaults:`.
struct Freshness {
    ttl: Option<Duration>,
    origin_cache_control: OriginCacheControl,
    stale_while_revalidate: Duration,
    stale_if_error: Duration,
    status_ttl: Vec<(StatusPattern, Option<Duration>)>,
    keep_stale: Duration,
}

/// Every valid route, in config order.
pub(super) fn routes(
    raw: &[RawRoute],
    defaults: &RawPolicy,
    targeted: &Arc<Targeted>,
    p: &mut Problems,
) -> Vec<PendingRoute> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(route) = route(r, &path, defaults, targeted, &mut names, p) {
            out.push(PendingRoute { loc: r.loc, route });
        }
    }
    out
}

fn route(
    r: &RawRoute,
    path: &str,
    defaults: &RawPolicy,
    targeted: &Arc<Targeted>,
    names: &mut HashSet<String>,
    p: &mut Problems,
) -> Option<Route> {
    let name = route_name(r, path, names, p);
    let template = route_template(r, path, p);
    let scope = r.scope.as_ref().map_or(Scope::Public, |s| s.value);
    let key = key_spec(r, path, p);
    let (store_private, share_authenticated) = sharing(r, path, scope, p);
    let freshness = freshness(r, path, defaults, p);
    let tags = match &template {
        Some(t) => {
            let captures: Vec<&str> = t.params().collect();
            super::cache::tag_templates(&r.tags, &captures, &format!("{path}.tags"), p)
        }
        None => Vec::new(),
    };
    let name: Arc<str> = name?.into();
    Some(Route {
        metrics: RouteMetrics::new(name.clone()),
        token: Token::route(&name),
        name,
        template: template?,
        scope,
        ttl: freshness.ttl,
        stale_while_revalidate: freshness.stale_while_revalidate,
        stale_if_error: freshness.stale_if_error,
        origin_cache_control: freshness.origin_cache_control,
        status_ttl: freshness.status_ttl,
        keep_stale: freshness.keep_stale,
        targeted: targeted.clone(),
        key: key?,
        store_private,
        share_authenticated,
        mode: r.policy.mode.or(defaults.mode).unwrap_or_default(),
        shadow: Arc::new(super::shadow::spec(r, path, defaults, p)),
        tags,
        binding_sets: Vec::new(),
        fingerprint: [0; 32],
    })
}

/// `name`: required, safe as a metric label, used once.
fn route_name(
    r: &RawRoute,
    path: &str,
    names: &mut HashSet<String>,
    p: &mut Problems,
) -> Option<String> {
    let at = format!("{path}.name");
    let Some(n) = &r.name else {
        let problem = "required: the route's label in metrics and logs";
        p.at_loc(Some(r.loc), &at, problem);
        return None;
    };
    if !is_metric_safe(&n.value) {
        let problem = format!(
            "`{}` must be 1-64 letters, digits, `-`, `_` or `.`",
            n.value
        );
        p.at_loc(Some(n.loc), &at, problem);
        return None;
    }
    if !names.insert(n.value.clone()) {
        let problem = format!("`{}` is used by an earlier route", n.value);
        p.at_loc(Some(n.loc), &at, problem);
        return None;
    }
    Some(n.value.clone())
}

fn is_metric_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `match`: a GET template.
fn route_template(r: &RawRoute, path: &str, p: &mut Problems) -> Option<Template> {
    let at = format!("{path}.match");
    let Some(pattern) = &r.r#match else {
        p.at_loc(Some(r.loc), &at, "required, e.g. `GET /api/items/{id}`");
        return None;
    };
    let problem = |p: &mut Problems, msg: String| p.at_loc(Some(pattern.loc), &at, msg);
    let (method, template) = match split_pattern(&pattern.value) {
        Ok(x) => x,
        Err(e) => {
            problem(p, e.0);
            return None;
        }
    };
    if method != Method::GET {
        problem(
            p,
            format!(
                "routes cache GET requests (HEAD is served from them); `{method}` belongs in `invalidate`"
            ),
        );
        return None;
    }
    Template::parse(template).map_err(|e| problem(p, e.0)).ok()
}

/// `key`: the keyed query parameters and headers.
fn key_spec(r: &RawRoute, path: &str, p: &mut Problems) -> Option<KeySpec> {
    let query = match r.key.query.as_ref().map(|q| &q.value) {
        None | Some(RawQuery::All) => QueryKey::All,
        Some(RawQuery::None) => QueryKey::None,
        Some(RawQuery::Only(names)) => {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            QueryKey::Only(names)
        }
    };
    let mut headers = Vec::with_capacity(r.key.headers.len());
    let mut ok = true;
    let at = format!("{path}.key.headers");
    for h in &r.key.headers {
        match HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(name) if name == http::header::AUTHORIZATION || name == http::header::COOKIE => {
                let problem = format!(
                    "`{}` holds credentials: use `scope: user` to key by user",
                    h.value
                );
                p.at_loc(Some(h.loc), &at, problem);
                ok = false;
            }
            Ok(name) if !headers.contains(&name) => headers.push(name),
            Ok(_) => {}
            Err(_) => {
                let problem = format!("`{}` is not a header name", h.value);
                p.at_loc(Some(h.loc), &at, problem);
                ok = false;
            }
        }
    }
    headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ok.then_some(KeySpec { query, headers })
}

/// `store_private` (user routes only) and `share_authenticated` (public
/// routes only).
fn sharing(r: &RawRoute, path: &str, scope: Scope, p: &mut Problems) -> (bool, bool) {
    fn set(flag: &Option<Located<bool>>) -> Option<&Located<bool>> {
        flag.as_ref().filter(|f| f.value)
    }
    if let Some(f) = set(&r.store_private).filter(|_| scope != Scope::User) {
        let at = format!("{path}.store_private");
        p.at_loc(Some(f.loc), &at, "only applies to `scope: user` routes");
    }
    if let Some(f) = set(&r.share_authenticated).filter(|_| scope == Scope::User) {
        p.at_loc(
            Some(f.loc),
            &format!("{path}.share_authenticated"),
            "only applies to `scope: public` routes (user routes are keyed per identity)",
        );
    }
    (
        set(&r.store_private).is_some(),
        set(&r.share_authenticated).is_some(),
    )
}

/// The route's freshness settings, each its own or the default's.
fn freshness(r: &RawRoute, path: &str, defaults: &RawPolicy, p: &mut Problems) -> Freshness {
    let own = &r.policy;
    let ttl = match own.ttl.as_ref().or(defaults.ttl.as_ref()).map(|t| t.value) {
        Some(RawTtl::Fixed(d)) => Some(d),
        Some(RawTtl::Origin) | None => None,
    };
    let origin_cache_control = own
        .origin_cache_control
        .or(defaults.origin_cache_control)
        .unwrap_or(OriginCacheControl::Respect);
    if origin_cache_control == OriginCacheControl::Override && ttl.is_none() {
        p.at_loc(
            Some(r.loc),
            &format!("{path}.ttl"),
            "`origin_cache_control: override` needs a `ttl` (on the route or in `defaults`)",
        );
    }
    let window = |own: &Option<Located<Duration>>, default: &Option<Located<Duration>>| {
        own.as_ref()
            .or(default.as_ref())
            .map_or(Duration::ZERO, |d| d.value)
    };
    Freshness {
        ttl,
        origin_cache_control,
        stale_while_revalidate: window(
            &own.stale_while_revalidate,
            &defaults.stale_while_revalidate,
        ),
        stale_if_error: window(&own.stale_if_error, &defaults.stale_if_error),
        status_ttl: status_ttl(own, defaults),
        keep_stale: own
            .keep_stale
            .as_ref()
            .or(defaults.keep_stale.as_ref())
            .map_or(DEFAULT_KEEP_STALE, |d| d.value),
    }
}

/// `status_ttl`: a route's map replaces the defaults' whole, as a route's
/// `ttl` replaces theirs.
fn status_ttl(own: &RawPolicy, defaults: &RawPolicy) -> Vec<(StatusPattern, Option<Duration>)> {
    let Some(map) = own.status_ttl.as_ref().or(defaults.status_ttl.as_ref()) else {
        return Vec::new();
    };
    map.value
        .iter()
        .map(|(status, ttl)| match ttl {
            RawTtl::Fixed(d) => (*status, Some(*d)),
            RawTtl::Origin => (*status, None),
        })
        .collect()
}

/// Gives each route its binding sets and fingerprint and builds the table.
pub(super) fn table(
    pending: Vec<PendingRoute>,
    plans: &[PurgePlan],
    identity: Option<&IdentityConfig>,
    p: &mut Problems,
) -> Option<(RouteTable<Arc<Route>>, Vec<String>)> {
    let locs: Vec<Loc> = pending.iter().map(|r| r.loc).collect();
    let rules = pending
        .into_iter()
        .enumerate()
        .map(|(i, PendingRoute { mut route, .. })| {
            let mut sets: Vec<Vec<Box<str>>> = plans
                .iter()
                .filter(|plan| plan.route == i && !plan.bindings.is_empty())
                .map(PurgePlan::binding_set)
                .collect();
            sets.sort();
            sets.dedup();
            route.binding_sets = sets;
            route.fingerprint = fingerprint(&route, identity);
            (route.template.clone(), Arc::new(route))
        })
        .collect();
    let table = RouteTable::new(rules)
        .map_err(|e| p.at_loc(None, "routes", e.0))
        .ok()?;
    let warnings = unreachable(&table, &locs);
    Some((table, warnings))
}

/// A warning for each route an earlier one makes unreachable.
fn unreachable(table: &RouteTable<Arc<Route>>, locs: &[Loc]) -> Vec<String> {
    table
        .shadowing()
        .unreachable
        .into_iter()
        .map(|(i, j)| {
            let (r, e) = (&table.values()[i], &table.values()[j]);
            format!(
                "line {}: route `{}` ({}) is unreachable: route `{}` ({}, line {}) above it matches all its requests",
                locs[i].line, r.name, r.template, e.name, e.template, locs[j].line
            )
        })
        .collect()
}

/// Everything about a route that decides which entry a request may read:
/// a reload that changes any of it gives the route new keys, so entries
/// stored under the old rules are never served under the new ones, while
/// unchanged routes keep theirs. Freshness settings are not part of it:
/// each entry carries its own deadlines.
fn fingerprint(route: &Route, identity: Option<&IdentityConfig>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(KEY_FORMAT_VERSION);
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(route.name.as_bytes());
    field(route.template.as_str().as_bytes());
    field(route.scope.as_str().as_bytes());
    field(route.key.query.to_string().as_bytes());
    for name in &route.key.headers {
        field(name.as_str().as_bytes());
    }
    for set in &route.binding_sets {
        field(set.join(",").as_bytes());
    }
    for tag in &route.tags {
        field(format!("tag:{}", tag.as_str()).as_bytes());
    }
    // Who may share an entry: turning these off must not leave entries
    // stored under the looser rule readable.
    field(&[
        u8::from(route.store_private),
        u8::from(route.share_authenticated),
    ]);
    if route.scope == Scope::User
        && let Some(identity) = identity
    {
        match &identity.source {
            IdentitySource::Header(name) => field(format!("header:{name}").as_bytes()),
            IdentitySource::Cookie(name) => field(format!("cookie:{name}").as_bytes()),
        }
    }
    *h.finalize().as_bytes()
}
