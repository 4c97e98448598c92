//! `GET /admin/explain?method=GET&url=/path[&header=Name: value]...`: what
//! cachecar would do with a request, using the same functions the proxy
//! uses (normalize, route, precheck, key, lookup, usable), so the answer
//! cannot drift from the behaviour. The identity is shown only as
//! present/absent; no raw credential is echoed.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use serde_json::{Value, json};

use super::{json_response, text};
use crate::cache::{Cache, CacheKey, Token};
use crate::clock::Clock;
use crate::config::RuntimeConfig;
use crate::proxy::body::Body;
use crate::proxy::key::{self, IdentityHash, has_credentials};
use crate::proxy::lookup::{self, Found, NotUsable, Usable};
use crate::proxy::policy::{self, RequestDirectives, Verdict};
use crate::rules::normalize::{self, Normalized};
use crate::rules::table::Captures;
use crate::rules::{Route, Scope};

/// Answers an explain request.
pub(super) async fn explain(
    config: &RuntimeConfig,
    cache: &Cache,
    clock: &Clock,
    uri: &Uri,
) -> Response<Body> {
    let request = match request_from_query(uri.query().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    };
    let target = match normalize::request(request.uri(), request.headers()) {
        Ok(mut t) => {
            // As the proxy keys it (`hosts`).
            config.hosts.canonicalize(&mut t.host);
            t
        }
        Err(e) => {
            return json_response(
                StatusCode::OK,
                &json!({ "cacheable": false, "reason": e.to_string() }),
            );
        }
    };
    let method = request.method();
    let mut out = json!({
        "method": method.as_str(),
        "normalized": { "host": target.host, "path": target.path, "query": target.query },
    });
    let found = config.routes.find(&target.path);
    out["route"] = found.as_ref().map_or(Value::Null, |m| {
        route_json(config, m.index, m.value, m.captures.iter())
    });
    if *method != Method::GET && *method != Method::HEAD {
        out["cacheable"] = json!(false);
        if method.is_safe() {
            out["reason"] = json!("method");
        } else {
            out["mutation"] = mutation_json(config, method, &target, found.is_some());
        }
        return json_response(StatusCode::OK, &out);
    }
    let Some(m) = found else {
        out["cacheable"] = json!(false);
        out["reason"] = json!("no-route");
        return json_response(StatusCode::OK, &out);
    };
    let looked = Looked {
        config,
        cache,
        route: m.value,
        captures: &m.captures,
        target: &target,
    };
    looked.explain(request, out, clock).await
}

/// A GET or HEAD that a route matched.
struct Looked<'a> {
    config: &'a RuntimeConfig,
    cache: &'a Cache,
    route: &'a Route,
    captures: &'a Captures<'a, 'a>,
    target: &'a Normalized,
}

impl Looked<'_> {
    /// Whether the cache may answer it, its key, and what the store holds.
    async fn explain(
        &self,
        mut request: Request<()>,
        mut out: Value,
        clock: &Clock,
    ) -> Response<Body> {
        normalize::accept_encoding(request.headers_mut());
        let headers = request.headers();
        let identity = match key::precheck(self.config, self.route, headers, false) {
            Ok(identity) => identity,
            Err(reason) => {
                out["cacheable"] = json!(false);
                out["reason"] = json!(reason.as_str());
                return json_response(StatusCode::OK, &out);
            }
        };
        out["cacheable"] = json!(true);
        if self.target.host.is_none() {
            out["note"] = json!(
                "no Host given: the key covers the host, so add header=Host:<the host clients use> \
                 (or an absolute url) to see the entry they get"
            );
        }
        let k = key::for_request(self.route, self.captures, self.target, headers, identity);
        out["key"] = key_json(self.route, self.target, headers, identity, &k);
        let Some(found) = lookup::find(self.cache, &k, headers).await else {
            out["entry"] = json!({ "error": "the cache store failed" });
            return json_response(StatusCode::OK, &out);
        };
        out["tokens"] = json!(
            k.tokens
                .iter()
                .zip(&found.generations)
                .map(|(t, g)| json!({ "token": t.as_str(), "generation": g }))
                .collect::<Vec<_>>()
        );
        if let Some(index) = &found.index {
            out["variants"] = json!({
                "vary": index.names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
                "stored": index.known.len(),
                "max": self.config.cache.max_variants,
            });
        }
        let credentials = self.route.scope == Scope::Public && has_credentials(headers);
        out["entry"] = entry_json(&found, headers, credentials, clock.now());
        json_response(StatusCode::OK, &out)
    }
}

/// What a mutation would bump once the upstream answers 2xx/3xx.
fn mutation_json(
    config: &RuntimeConfig,
    method: &Method,
    target: &Normalized,
    routed: bool,
) -> Value {
    let purge = config.invalidations.purge(method, &target.path);
    let mut tokens = purge.tokens;
    if routed {
        tokens.push(Token::url(&target.path));
    }
    json!({
        "rules": purge.rules.iter().map(|r| &**r).collect::<Vec<_>>(),
        "tokens_bumped_on_success": tokens.iter().map(Token::as_str).collect::<Vec<_>>(),
    })
}

/// What went into the key; the identity only as present or absent.
fn key_json(
    route: &Route,
    target: &Normalized,
    headers: &HeaderMap,
    identity: Option<IdentityHash>,
    k: &CacheKey,
) -> Value {
    let parts = key::parts(route, target, headers, identity);
    json!({
        "hash": k.hash.to_hex(),
        "host": parts.host,
        "path": parts.path,
        "query": parts.query,
        "headers": parts.headers.iter().map(|(n, v)| {
            (n.as_str().to_string(), json!(v.and_then(|v| v.to_str().ok())))
        }).collect::<serde_json::Map<_, _>>(),
        "identity": match (route.scope, parts.identity) {
            (Scope::Public, _) => "not-used",
            (Scope::User, true) => "present",
            (Scope::User, false) => "absent",
        },
    })
}

/// The stored entry, and what the proxy would do with it at `now`.
fn entry_json(found: &Found, headers: &HeaderMap, credentials: bool, now: SystemTime) -> Value {
    let directives = RequestDirectives::parse(headers);
    let would_serve = match lookup::usable(found, headers, credentials, now) {
        Usable::Yes(e) => match policy::judge(&e, &directives, now) {
            Verdict::Fresh => "hit",
            Verdict::StaleAccepted => "stale (the request accepts it)",
            Verdict::StaleWhileRevalidate => "stale, refreshing in the background",
            Verdict::Revalidate => "revalidate with the upstream first",
        },
        Usable::VaryMiss => "vary-miss",
        Usable::No(why) => why.as_str(),
    };
    let Some(e) = &found.entry else {
        return json!({ "stored": false, "would_serve": NotUsable::Absent.as_str() });
    };
    let f = &e.freshness;
    json!({
        "stored": true,
        "would_serve": would_serve,
        "status": e.status.as_u16(),
        "age_seconds": e.age(now).as_secs(),
        "ttl_seconds": e.ttl_secs(now),
        "stale_while_revalidate_seconds": secs_until(f.stale_while_revalidate_until, now),
        "stale_if_error_seconds": secs_until(f.stale_if_error_until, now),
        "must_revalidate": f.must_revalidate,
        "validators": { "etag": e.etag().is_some(), "last_modified": e.last_modified().is_some() },
        "body_bytes": e.body.len(),
        "filled_under_generations": e.generations,
        "tags": e.tags.names().zip(&e.tags.generations).zip(&found.tag_generations)
            .map(|((tag, filled), now)| json!({ "tag": tag, "filled_under": filled, "generation": now }))
            .collect::<Vec<_>>(),
        "vary": e.vary.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "shareable_with_credentials": f.shareable_with_auth,
    })
}

/// Seconds from `now` until `t`; 0 once passed.
fn secs_until(t: SystemTime, now: SystemTime) -> u64 {
    t.duration_since(now).map_or(0, |d| d.as_secs())
}

fn route_json<'a>(
    config: &RuntimeConfig,
    index: usize,
    route: &Route,
    captures: impl Iterator<Item = (&'a str, &'a str)>,
) -> Value {
    let purged_by: Vec<Value> = config
        .invalidations
        .rules()
        .flat_map(|rule| {
            rule.targets
                .iter()
                .filter(move |(_, plans)| plans.iter().any(|p| p.route == index))
                .map(move |(target, _)| json!({ "rule": &*rule.label, "target": &**target }))
        })
        .collect();
    json!({
        "name": &*route.name,
        "position": index + 1,
        "match": format!("GET {}", route.template),
        "captures": captures.map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "scope": route.scope.as_str(),
        "ttl_seconds": route.ttl.map(|t| t.as_secs()),
        "stale_while_revalidate_seconds": route.stale_while_revalidate.as_secs(),
        "stale_if_error_seconds": route.stale_if_error.as_secs(),
        "origin_cache_control": route.origin_cache_control.as_str(),
        "key": {
            "query": route.key.query.to_string(),
            "headers": route.key.headers.iter().map(HeaderName::as_str).collect::<Vec<_>>(),
        },
        "store_private": route.store_private,
        "share_authenticated": route.share_authenticated,
        "purged_by": purged_by,
    })
}

/// Builds the request to explain from `method`, `url` and `header` params.
fn request_from_query(query: &str) -> Result<Request<()>, String> {
    let mut method = Method::GET;
    let mut url = None;
    let mut headers = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "method" => {
                method = Method::from_bytes(value.as_bytes())
                    .map_err(|_| format!("`{value}` is not an HTTP method"))?;
            }
            "url" => url = Some(value.into_owned()),
            "header" => {
                let (n, v) = value
                    .split_once(':')
                    .ok_or_else(|| format!("header `{value}` must be `Name: value`"))?;
                let n = HeaderName::from_bytes(n.trim().as_bytes())
                    .map_err(|_| format!("`{n}` is not a header name"))?;
                let v = HeaderValue::from_str(v.trim())
                    .map_err(|_| format!("the value of `{n}` is not a valid header value"))?;
                headers.push((n, v));
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}` (use method, url, header)"
                ));
            }
        }
    }
    let url = url.ok_or("the `url` parameter is required, e.g. url=/api/items/1")?;
    let uri: Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a request target"))?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    for (n, v) in headers {
        request.headers_mut().append(n, v);
    }
    Ok(request)
}
