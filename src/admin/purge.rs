//! `POST /admin/purge` with `{"targets": ["GET /path", ...]}` and/or
//! `{"tags": ["user:7", ...]}`: bumps the generations the targets and tags
//! name, across users, query strings and variants. A concrete target drops
//! that URL; `{name}` matches any one segment and a final `*` the rest of
//! the path; a tag drops every entry carrying it.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, json_response, text};
use crate::cache::Token;
use crate::config::RuntimeConfig;
use crate::proxy::body::Body;
use crate::proxy::upstream::BoxError;
use crate::rules::purge::PurgeTarget;
use crate::rules::tags;

/// Largest `/admin/purge` body accepted.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Most targets in one purge, so one request cannot bump without bound.
const MAX_PURGE_TARGETS: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// The tokens of a purge, what each target reaches, or why one cannot.
struct Plan {
    tokens: Vec<Token>,
    report: Vec<Value>,
    errors: Vec<Value>,
}

impl Admin {
    pub(super) async fn purge<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let asked = match read(request).await {
            Ok(asked) => asked,
            Err(refused) => return refused,
        };
        let plan = plan(&self.inner.config.load(), &asked);
        if !plan.errors.is_empty() {
            let errors = json!({ "errors": plan.errors });
            return json_response(StatusCode::UNPROCESSABLE_ENTITY, &errors);
        }
        let proxy = &self.inner.proxy;
        let admin: [Arc<str>; 1] = [Arc::from("admin")];
        let tag_rules: &[Arc<str>] = if asked.tags.is_empty() { &[] } else { &admin };
        if proxy
            .invalidate(plan.tokens, &admin, tag_rules)
            .await
            .is_err()
        {
            let queued = self.inner.cache.health().pending_purges > 0;
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                if queued {
                    "the cache store is unreachable; the purge is queued and is applied before the store is used again\n"
                } else {
                    "the cache store failed; nothing was purged\n"
                },
            );
        }
        tracing::info!(
            targets = asked.targets.len(),
            tags = asked.tags.len(),
            "admin purge"
        );
        json_response(StatusCode::OK, &json!({ "purged": plan.report }))
    }
}

/// The request's targets and tags, or the 400 that answers it.
async fn read<B>(request: Request<B>) -> Result<PurgeRequest, Response<Body>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limited = Limited::new(request.into_body(), MAX_ADMIN_BODY);
    let body = match limited.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            let message = format!("cannot read the body: {e}\n");
            return Err(text(StatusCode::BAD_REQUEST, &message));
        }
    };
    let parsed: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            let message = format!(
                "expected {{\"targets\": [\"GET /path\", ...], \"tags\": [\"tag\", ...]}}: {e}\n"
            );
            return Err(text(StatusCode::BAD_REQUEST, &message));
        }
    };
    let asked = parsed.targets.len() + parsed.tags.len();
    if asked == 0 || asked > MAX_PURGE_TARGETS {
        let message = format!("give between 1 and {MAX_PURGE_TARGETS} targets and tags\n");
        return Err(text(StatusCode::BAD_REQUEST, &message));
    }
    Ok(parsed)
}

/// What the targets and tags of `asked` purge under `config`'s routes.
fn plan(config: &RuntimeConfig, asked: &PurgeRequest) -> Plan {
    let routes = || {
        config
            .routes
            .values()
            .iter()
            .map(|r| (&r.template, &r.name))
    };
    let mut plan = Plan {
        tokens: Vec::new(),
        report: Vec::new(),
        errors: Vec::new(),
    };
    for tag in &asked.tags {
        match tags::check(tag) {
            Ok(()) => {
                plan.tokens.push(Token::tag(tag));
                plan.report.push(json!({ "tag": tag }));
            }
            Err(e) => plan.errors.push(json!({ "tag": tag, "error": e })),
        }
    }
    for text in &asked.targets {
        let target = match PurgeTarget::parse(text, None) {
            Ok(t) => t,
            Err(e) => {
                plan.errors.push(json!({ "target": text, "error": e.0 }));
                continue;
            }
        };
        let plans = target.plans(routes());
        if plans.is_empty() {
            let error = json!({ "target": text, "error": "matches no route" });
            plan.errors.push(error);
            continue;
        }
        let routes_hit: Vec<&str> = plans.iter().map(|p| &*p.route_name).collect();
        plan.report
            .push(json!({ "target": text, "routes": routes_hit }));
        match target.concrete_path() {
            Some(path) => plan.tokens.push(Token::url(&path)),
            None => plan
                .tokens
                .extend(plans.iter().filter_map(|p| p.token(&Default::default()))),
        }
    }
    plan
}
