//! `GET /status` and `POST /admin/reload`.

use serde_json::json;

use super::{Admin, json_response, text};
use crate::cache::Cache;
use crate::config::{RedisNodes, RuntimeConfig};
use crate::proxy::body::Body;
use crate::reload::{Reloaded, Reloader, Trigger};
use crate::rules::Mode;
use http::{Response, StatusCode};

impl Admin {
    pub(super) fn status(&self) -> Response<Body> {
        let config = self.inner.config.load();
        json_response(
            StatusCode::OK,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "state": self.inner.readiness.state().as_str(),
                "uptime_seconds": self.inner.started.elapsed().as_secs(),
                "config": {
                    "generation": config.source.generation,
                    "hash": config.source.hash,
                    "path": config.source.path.as_ref().map(|p| p.display().to_string()),
                    "routes": config.routes.len(),
                    "invalidation_rules": config.invalidations.rules().count(),
                    "warnings": config.warnings,
                    "reload": {
                        "from_file": self.inner.reloader.is_some(),
                        "watch": config.reload.watch,
                        "poll_interval_ms": config.reload.poll_interval.map(|d| d.as_millis() as u64),
                    },
                    "last_reload": self.inner.reloader.as_ref().and_then(Reloader::last),
                },
                "cache": {
                    "enabled": config.cache.enabled,
                    "store": store_status(&self.inner.cache, &config),
                },
                "shadow": shadow_status(&config),
            }),
        )
    }

    /// `POST /admin/reload`: 200 with the new generation (or "unchanged"),
    /// 422 with every error when the file is refused.
    pub(super) async fn reload(&self) -> Response<Body> {
        let Some(reloader) = &self.inner.reloader else {
            return text(
                StatusCode::CONFLICT,
                "this config did not come from a file; nothing to reload\n",
            );
        };
        match reloader.reload(Trigger::Admin).await {
            Reloaded::Applied {
                generation,
                hash,
                restart_required,
            } => json_response(
                StatusCode::OK,
                &json!({
                    "result": "applied",
                    "generation": generation,
                    "hash": hash,
                    "restart_required": restart_required,
                }),
            ),
            Reloaded::Unchanged { generation } => json_response(
                StatusCode::OK,
                &json!({ "result": "unchanged", "generation": generation }),
            ),
            Reloaded::Refused { errors } => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "result": "refused",
                    "generation": self.inner.config.load().source.generation,
                    "errors": errors,
                }),
            ),
        }
    }
}

/// Each route in `mode: shadow`: what the cache would have done with its
/// requests since the config was loaded, and how often it would have been
/// wrong (docs/invalidation.md, "Shadow mode").
fn shadow_status(config: &RuntimeConfig) -> serde_json::Value {
    let ratio = |part: u64, whole: u64| match whole {
        0 => serde_json::Value::Null,
        _ => json!(part as f64 / whole as f64),
    };
    let routes: Vec<serde_json::Value> = config
        .routes
        .values()
        .iter()
        .filter(|r| r.mode == Mode::Shadow)
        .map(|r| {
            let c = r.metrics.shadow_counts().unwrap_or_default();
            json!({
                "route": &*r.name,
                "requests": c.requests,
                "would_be_hits": c.would_hit,
                "mismatches": c.mismatches,
                "would_be_hit_ratio": ratio(c.would_hit, c.requests),
                "mismatch_ratio": ratio(c.mismatches, c.would_hit),
            })
        })
        .collect();
    json!(routes)
}

/// The store part of `/status`. No addresses: `/status` needs no token.
fn store_status(cache: &Cache, config: &RuntimeConfig) -> serde_json::Value {
    let health = cache.health();
    let mut status = json!({
        "backend": cache.backend(),
        "up": health.up,
        "circuit": health.circuit,
        "pending_writes": cache.pending_writes(),
        "pending_purges": health.pending_purges,
    });
    if let Some(subscribed) = health.subscribed {
        status["l1_in_use"] = json!(subscribed);
    }
    if let Some(redis) = &config.cache.redis {
        let (mode, nodes) = match &redis.nodes {
            RedisNodes::Single(_) => ("single", 1),
            RedisNodes::Cluster(urls) => ("cluster", urls.len()),
            RedisNodes::Sentinel { nodes, .. } => ("sentinel", nodes.len()),
        };
        status["redis"] = json!({
            "mode": mode,
            "cluster": mode == "cluster",
            "seed_nodes": nodes,
            "tls": redis.tls.is_some(),
            "key_prefix": redis.key_prefix,
            "timeout_ms": redis.timeout.as_millis() as u64,
        });
    }
    status
}
