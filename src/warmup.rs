//! Warmup: the `warmup` requests, fetched and stored at start (before
//! readiness turns 200) and again after every applied reload.
//!
//! Each target goes through the proxy's own request path, so it is keyed,
//! stored, coalesced and counted exactly as a client's request would be:
//! a target that is already fresh is a hit and costs the upstream nothing,
//! which is what makes re-running the whole list after a reload cheap (only
//! new targets and targets of changed routes reach the app).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Request, header};
use http_body_util::Empty;

use crate::config::{RuntimeConfig, WarmupTarget};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::upstream::Peer;

/// At most this many warmup requests at once: warming must not become the
/// stampede it is meant to prevent.
pub const CONCURRENCY: usize = 4;

/// What happened to one warmup request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmResult {
    /// Fetched and stored.
    Stored,
    /// Already fresh in the cache; the upstream was not asked.
    Fresh,
    /// Answered, but not stored (the `Cache-Status` detail says why).
    NotStored,
    /// The upstream failed (5xx, connect failure, timeout).
    Failed,
}

impl WarmResult {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            WarmResult::Stored => "stored",
            WarmResult::Fresh => "fresh",
            WarmResult::NotStored => "not_stored",
            WarmResult::Failed => "failed",
        }
    }
}

/// Counts of one warmup run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Stored now.
    pub stored: usize,
    /// Already fresh.
    pub fresh: usize,
    /// Not storable.
    pub not_stored: usize,
    /// Failed.
    pub failed: usize,
}

/// Runs `config.warmup` through `proxy`, [`CONCURRENCY`] at a time, each
/// bounded by the upstream timeout like any request. Logs each result and
/// a summary.
pub async fn run(proxy: &Proxy, config: &Arc<RuntimeConfig>, metrics: &Metrics) -> Report {
    let mut report = Report::default();
    if config.warmup.is_empty() {
        return report;
    }
    let started = std::time::Instant::now();
    let mut results = futures_util::stream::iter(config.warmup.iter().cloned())
        .map(|target| {
            let proxy = proxy.clone();
            async move {
                let result = one(&proxy, &target).await;
                (target, result)
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some((target, (result, status, detail))) = results.next().await {
        metrics
            .warmup_total
            .with_label_values(&[result.as_str()])
            .inc();
        match result {
            WarmResult::Stored => report.stored += 1,
            WarmResult::Fresh => report.fresh += 1,
            WarmResult::NotStored => report.not_stored += 1,
            WarmResult::Failed => report.failed += 1,
        }
        if matches!(result, WarmResult::Stored | WarmResult::Fresh) {
            tracing::debug!(target = %target.text, status, result = result.as_str(), "warmup");
        } else {
            tracing::warn!(
                target = %target.text,
                status,
                result = result.as_str(),
                cache_status = %detail,
                "warmup did not store this target"
            );
        }
    }
    tracing::info!(
        targets = config.warmup.len(),
        stored = report.stored,
        fresh = report.fresh,
        not_stored = report.not_stored,
        failed = report.failed,
        took_ms = started.elapsed().as_millis() as u64,
        "warmup done"
    );
    report
}

/// One warmup request: result, status and the `Cache-Status` it got.
async fn one(proxy: &Proxy, target: &WarmupTarget) -> (WarmResult, u16, String) {
    let request = Request::get(target.path_and_query.as_str())
        .header(header::USER_AGENT, "cachecar-warmup")
        .header(
            header::HOST,
            HeaderValue::from_str(&target.host).unwrap_or(HeaderValue::from_static("localhost")),
        )
        .body(Empty::<Bytes>::new());
    let Ok(request) = request else {
        return (WarmResult::Failed, 0, "invalid request".into());
    };
    let peer = Peer::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    let Ok(response) = proxy.clone().handle(request, peer).await;
    let status = response.status();
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // The body is not needed: a stored response was collected before it
    // was answered, and dropping a streamed one closes it.
    drop(response);
    let result = classify(status.as_u16(), &cache_status);
    (result, status.as_u16(), cache_status)
}

/// Reads the outcome from the status and `Cache-Status` (RFC 9211).
fn classify(status: u16, cache_status: &str) -> WarmResult {
    let params = cache_status
        .split(';')
        .skip(1)
        .map(str::trim)
        .collect::<Vec<_>>();
    if params.contains(&"hit") {
        WarmResult::Fresh
    } else if params.contains(&"stored") {
        WarmResult::Stored
    } else if status >= 500 {
        WarmResult::Failed
    } else {
        WarmResult::NotStored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_decides_the_result() {
        assert_eq!(classify(200, "cachecar; hit; ttl=42"), WarmResult::Fresh);
        assert_eq!(
            classify(200, "cachecar; fwd=miss; stored"),
            WarmResult::Stored
        );
        assert_eq!(
            classify(200, "cachecar; fwd=miss; detail=no-store"),
            WarmResult::NotStored
        );
        assert_eq!(classify(502, "cachecar; fwd=miss"), WarmResult::Failed);
        assert_eq!(classify(200, ""), WarmResult::NotStored);
    }
}
