//! Requests the cache does not answer: no rule matches, the method is one
//! the cache never serves, or the key phase bypassed it (a body, a
//! precondition, no identity, the kill switch). They are forwarded
//! untouched (header hygiene aside) and the answer streams back.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;

use super::body::Body;
use super::forward::guarded_body;
use super::respond::{Answer, Outcome};
use super::upstream::{BoxError, Peer, UpstreamBody, UpstreamRequest};
use super::{Core, ProxyError};
use crate::config::{Limits, RuntimeConfig};
use crate::outcome::{BypassReason, CacheOutcome};
use crate::rules::Route;
use crate::rules::normalize::Normalized;

/// A request to forward untouched, its body already held to the limits.
pub(super) struct Pass {
    parts: http::request::Parts,
    /// Taken when forwarded.
    body: Option<UpstreamBody>,
    target: Normalized,
    route: Option<Arc<Route>>,
    cache: CacheOutcome,
}

impl Pass {
    /// `request` to forward untouched, a bypass for `reason`.
    pub(super) fn new<B>(
        request: Request<B>,
        target: Normalized,
        route: Option<Arc<Route>>,
        reason: BypassReason,
        limits: &Limits,
    ) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        Self {
            parts,
            body: guarded_body(body, limits),
            target,
            route,
            cache: CacheOutcome::bypass(reason),
        }
    }
}

/// Forwards `pass` and streams the answer back. Borrows the request: this
/// future holds no copy of it.
pub(super) async fn forward(
    core: &Core,
    config: &RuntimeConfig,
    pass: &mut Pass,
    client: &Peer,
) -> Answer {
    let series = core.series(pass.route.as_deref());
    let request = UpstreamRequest {
        method: &pass.parts.method,
        uri: &pass.parts.uri,
        headers: &pass.parts.headers,
        target: &pass.target,
        client,
    };
    let body = pass.body.take();
    let (result, took) = core.forwarder.forward(config, request, body, series).await;
    let response = match result {
        Ok(response) => response.map(Body::Stream),
        Err(e) => ProxyError::from(e).into_response(series.name()),
    };
    let mut outcome = Outcome::new(pass.route.take(), pass.cache);
    outcome.upstream = Some(took);
    Answer::new(response, outcome)
}
