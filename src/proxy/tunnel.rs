//! `Upgrade` handshakes (RFC 9110 §7.8), WebSocket first (RFC 6455): the
//! request is forwarded on a connection of its own, and after the app's
//! `101 Switching Protocols` the client's connection and the app's are
//! spliced both ways until either side closes (`splice`). Nothing about a
//! handshake is cached; any other answer is passed back as it came and
//! opens no tunnel (docs/architecture.md, "Upgrade tunnels").
//!
//! A handshake is an HTTP/1.1 GET without a body whose `Connection` lists
//! `upgrade` and whose `Upgrade` protocols `upgrade.protocols` allows
//! (RFC 6455 §4.1 asks for GET; any other method with `Upgrade` is served
//! as usual, so a write can never slip past its invalidation as a
//! tunnel). Any other request has its `Upgrade` stripped like every
//! hop-by-hop field and is served as usual.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;

use super::body::Body;
use super::forward::empty_body;
use super::respond::{Answer, Outcome};
use super::upstream::{self, Peer, UpstreamBody, UpstreamRequest};
use super::{Core, ProxyError};
use crate::config::{RuntimeConfig, UpgradeConfig};
use crate::metrics::RouteMetrics;
use crate::outcome::{BypassReason, CacheOutcome};
use crate::rules::Route;
use crate::rules::normalize::Normalized;

mod splice;

pub(crate) use splice::Tunnels;

/// A handshake to forward.
pub(super) struct Tunnel {
    parts: http::request::Parts,
    target: Normalized,
    route: Option<Arc<Route>>,
    /// The client's `Upgrade`, as sent.
    protocol: HeaderValue,
    /// The client's connection, once hyper has written our `101`.
    client: OnUpgrade,
    /// An HTTP/2 extended `CONNECT` (RFC 8441), sent to the app as an
    /// HTTP/1.1 WebSocket handshake and answered `200`.
    h2: bool,
}

/// The `Upgrade` of a handshake `request` that `config` lets through, or
/// `None` for a request to serve as usual.
pub(super) fn requested<B: http_body::Body>(
    request: &Request<B>,
    config: &UpgradeConfig,
) -> Option<HeaderValue> {
    if !config.enabled {
        return None;
    }
    if request.version() == Version::HTTP_2 {
        return extended_connect(request, config);
    }
    if request.version() != Version::HTTP_11 || request.method() != Method::GET {
        return None;
    }
    let headers = request.headers();
    let protocol = headers.get(header::UPGRADE)?;
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    let allowed = protocol.to_str().is_ok_and(|p| config.allows(p));
    (connection_upgrade && allowed && request.body().is_end_stream()).then(|| protocol.clone())
}

/// RFC 8441 §4: an HTTP/2 `CONNECT` whose `:protocol` is `websocket`
/// (the one protocol it defines a mapping to HTTP/1.1 for).
fn extended_connect<B>(request: &Request<B>, config: &UpgradeConfig) -> Option<HeaderValue> {
    if request.method() != Method::CONNECT {
        return None;
    }
    let protocol = request.extensions().get::<hyper::ext::Protocol>()?.as_str();
    let websocket = protocol.eq_ignore_ascii_case("websocket") && config.allows(protocol);
    websocket.then(|| HeaderValue::from_static("websocket"))
}

impl Tunnel {
    /// The handshake `request` asking for `protocol`.
    pub(super) fn new<B>(
        mut request: Request<B>,
        target: Normalized,
        route: Option<Arc<Route>>,
        protocol: HeaderValue,
    ) -> Self {
        let client = hyper::upgrade::on(&mut request);
        // An extended CONNECT's body is the tunnel, which hyper keeps for
        // the upgrade; what is dropped here is empty.
        let (parts, _) = request.into_parts();
        Self {
            h2: parts.version == Version::HTTP_2,
            parts,
            target,
            route,
            protocol,
            client,
        }
    }
}

/// Forwards `tunnel`'s handshake and answers with the app's response; a
/// `101` opens the tunnel once hyper has written it.
pub(super) async fn forward(
    core: &Core,
    config: &RuntimeConfig,
    tunnel: Tunnel,
    client: &Peer,
) -> Answer {
    let series = core.series(tunnel.route.as_deref());
    let mut outcome = Outcome::new(
        tunnel.route.clone(),
        CacheOutcome::bypass(BypassReason::Upgrade),
    );
    let Some(slot) = core.tunnels.reserve(config.upgrade.max_tunnels) else {
        count(core, series, "over_limit");
        let response = ProxyError::TooManyTunnels.into_response(series.name());
        return Answer::new(response, outcome);
    };
    let handshake = handshake(&tunnel, config, client);
    let (result, took) = core.forwarder.upgrade(config, handshake, series).await;
    outcome.upstream = Some(took);
    let response = match result {
        Err(e) => {
            count(core, series, "failed");
            ProxyError::from(e).into_response(series.name())
        }
        Ok(response) if response.status() != StatusCode::SWITCHING_PROTOCOLS => {
            count(core, series, "refused");
            response.map(Body::Stream)
        }
        Ok(response) => match switched(response, &tunnel.protocol, tunnel.h2) {
            Ok((response, app)) => {
                count(core, series, "tunnelled");
                core.tunnels
                    .open(slot, tunnel.client, app, &config.upgrade, series.name());
                response
            }
            Err(e) => {
                count(core, series, "failed");
                e.into_response(series.name())
            }
        },
    };
    Answer::new(response, outcome)
}

/// The handshake the app gets: the client's, with `Upgrade` and
/// `Connection: upgrade` (hop-by-hop, so removed as the request was
/// cleaned) put back; from HTTP/2, as HTTP/1.1's `GET` with a key.
fn handshake(tunnel: &Tunnel, config: &RuntimeConfig, client: &Peer) -> Request<UpstreamBody> {
    let method = if tunnel.h2 {
        &Method::GET
    } else {
        &tunnel.parts.method
    };
    let request = UpstreamRequest {
        method,
        uri: &tunnel.parts.uri,
        headers: &tunnel.parts.headers,
        target: &tunnel.target,
        client,
    };
    let mut handshake = upstream::request(&request, config, empty_body());
    let headers = handshake.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, tunnel.protocol.clone());
    if tunnel.h2 {
        // RFC 8441 §5: the key and its accept belong to HTTP/1.1 alone.
        headers.insert(header::SEC_WEBSOCKET_KEY, websocket_key());
    }
    handshake
}

/// The app's `101` as the client gets it (`Connection: upgrade` and the
/// protocol it switched to; over HTTP/2, a `200` without either), and the
/// app's side of the tunnel; or why the switch cannot be passed on.
fn switched(
    mut response: Response<super::upstream::ResponseBody>,
    asked: &HeaderValue,
    h2: bool,
) -> Result<(Response<Body>, OnUpgrade), ProxyError> {
    let Some(protocol) = response.headers().get(header::UPGRADE) else {
        return Err(ProxyError::BadSwitch("101 without Upgrade"));
    };
    // The app must switch to one of the protocols asked for (§7.8).
    let name = |p: &[u8]| p.trim_ascii().to_ascii_lowercase();
    let chosen = name(protocol.as_bytes());
    if !asked
        .as_bytes()
        .split(|&b| b == b',')
        .any(|p| name(p) == chosen)
    {
        return Err(ProxyError::BadSwitch("101 to a protocol not asked for"));
    }
    let app = hyper::upgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    if h2 {
        parts.status = StatusCode::OK;
        parts.headers.remove(header::UPGRADE);
        parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
    } else {
        let upgrade = HeaderValue::from_static("upgrade");
        parts.headers.insert(header::CONNECTION, upgrade);
    }
    Ok((Response::from_parts(parts, Body::Empty), app))
}

/// A `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
fn websocket_key() -> HeaderValue {
    use base64::Engine;
    let key: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

/// Counts one handshake of `series`'s route by `result`.
fn count(core: &Core, series: &RouteMetrics, result: &str) {
    core.metrics
        .upgrades_total
        .with_label_values(&[series.name(), result])
        .inc();
}
