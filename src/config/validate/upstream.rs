//! `upstream:` and `admin:`.

use std::time::Duration;

use http::Uri;

use super::tls::{TlsInput, upstream_tls};
use super::{address, nonzero};
use crate::config::file::{RawAdmin, RawTraces, RawUpgrade, RawUpstream};
use crate::config::yaml::Problems;
use crate::config::{
    AdminConfig, AdminToken, HttpVersion, TracesConfig, UpgradeConfig, UpstreamConfig, UpstreamTls,
};

/// Where cachecar listens for traffic unless told otherwise.
pub(super) const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Admin is loopback-only by default: metrics and purges are not for the world.
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// A sidecar's upstream is on the same host; a slow connect means it is down.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time to response headers; generous, since slow endpoints are why we cache.
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle upstream connections are closed after this: below the 5 s
/// keep-alive of uvicorn and Node, so cachecar closes first and never sends
/// on a connection the app is closing (the classic proxy 502).
const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// `upstream:`: the URL of the app (`http://`, or `https://` with
/// `upstream.tls`), the HTTP version, and its timeouts.
pub(super) fn upstream(
    r: &RawUpstream,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<UpstreamConfig> {
    let Some(url) = &r.url else {
        p.at_loc(
            None,
            "upstream.url",
            "required: the URL of the app, e.g. http://127.0.0.1:8000",
        );
        return None;
    };
    let uri = match checked_url(&url.value) {
        Ok(uri) => uri,
        Err(why) => {
            let message = format!("`{}` {why}", url.value);
            p.at_loc(Some(url.loc), "upstream.url", message);
            return None;
        }
    };
    let authority = uri.authority()?.clone();
    let http_version = r
        .http_version
        .as_ref()
        .map_or(HttpVersion::Auto, |v| v.value);
    let https = uri.scheme_str() == Some("https");
    let tls = tls(r, authority.host(), https, http_version, p, warnings)?;
    Some(UpstreamConfig {
        url: url.value.clone(),
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
        connect_timeout: nonzero(
            r.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
            "upstream.connect_timeout",
            p,
        ),
        timeout: nonzero(
            r.timeout.as_ref(),
            DEFAULT_UPSTREAM_TIMEOUT,
            "upstream.timeout",
            p,
        ),
        idle_timeout: nonzero(
            r.idle_timeout.as_ref(),
            DEFAULT_UPSTREAM_IDLE_TIMEOUT,
            "upstream.idle_timeout",
            p,
        ),
        tls,
        http_version,
    })
}

/// The TLS settings of an `https://` upstream (`Some(None)` for
/// `http://`); `None` when they cannot be used.
fn tls(
    r: &RawUpstream,
    host: &str,
    https: bool,
    version: HttpVersion,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Option<UpstreamTls>> {
    match (&r.tls, https) {
        (_, true) => {
            let input = TlsInput {
                raw: r.tls.as_ref(),
                host,
                version,
            };
            Some(Some(upstream_tls(&input, p, warnings)?))
        }
        (Some(tls), false) => {
            let message = "applies to an https:// upstream.url only";
            p.at_loc(Some(tls.loc), "upstream.tls", message);
            Some(None)
        }
        (None, false) => Some(None),
    }
}

/// `url` as an upstream: `http://` or `https://`, a host, no query string
/// or credentials; else why not.
fn checked_url(url: &str) -> Result<Uri, &'static str> {
    let uri = url.parse::<Uri>().map_err(|_| "is not a URL")?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://"),
    }
    let Some(authority) = uri.authority() else {
        return Err("has no host");
    };
    if uri.query().is_some() || authority.as_str().contains('@') {
        return Err("must not carry a query string or credentials");
    }
    Ok(uri)
}

/// `admin:`: where it listens, and the token `/admin/*` asks for.
pub(super) fn admin(raw: &RawAdmin, p: &mut Problems) -> Option<AdminConfig> {
    let listen = address(raw.listen.as_ref(), DEFAULT_ADMIN_LISTEN, "admin.listen", p)?;
    let token = raw
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(AdminToken::new);
    Some(AdminConfig { listen, token })
}

/// A WebSocket with neither messages nor pings for this long is closed:
/// long enough for apps that ping every minute or so, short enough that
/// a vanished peer does not hold a connection for hours.
const DEFAULT_TUNNEL_IDLE: Duration = Duration::from_secs(300);
/// Tunnels open at once, unless told otherwise.
const DEFAULT_MAX_TUNNELS: usize = 10_000;

/// `upgrade:`: which `Upgrade` protocols are tunnelled, and for how long.
pub(super) fn upgrade(r: &RawUpgrade, p: &mut Problems) -> UpgradeConfig {
    let mut listed = Vec::with_capacity(r.protocols.len());
    let mut any = false;
    for name in &r.protocols {
        let value = name.value.trim();
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"/,;\"()<>@[]{}?=:".contains(&b));
        if value == "*" {
            any = true;
        } else if value.eq_ignore_ascii_case("h2c") {
            p.at_loc(
                Some(name.loc),
                "upgrade.protocols",
                "`h2c` is never tunnelled: HTTP/2 clients speak it to cachecar with prior knowledge",
            );
        } else if !valid {
            let message = format!("`{value}` is not a protocol name such as `websocket`");
            p.at_loc(Some(name.loc), "upgrade.protocols", message);
        } else {
            listed.push(value.to_ascii_lowercase());
        }
    }
    if r.protocols.is_empty() {
        listed.push("websocket".to_string());
    }
    UpgradeConfig {
        enabled: r.enabled.unwrap_or(true),
        protocols: (!any).then_some(listed),
        idle_timeout: nonzero(
            r.idle_timeout.as_ref(),
            DEFAULT_TUNNEL_IDLE,
            "upgrade.idle_timeout",
            p,
        ),
        max_lifetime: r.max_lifetime.filter(|d| !d.is_zero()),
        max_tunnels: usize::try_from(nonzero(
            r.max_tunnels.as_ref(),
            DEFAULT_MAX_TUNNELS as u64,
            "upgrade.max_tunnels",
            p,
        ))
        .unwrap_or(DEFAULT_MAX_TUNNELS),
    }
}

/// An OpenTelemetry Collector beside the pod (an agent or sidecar), its
/// OTLP/HTTP port.
const DEFAULT_TRACES_ENDPOINT: &str = "http://127.0.0.1:4318/v1/traces";
/// Spans waiting for export at most (the SDK's default).
const DEFAULT_TRACES_QUEUE: usize = 2048;
/// Bound of one export request.
const DEFAULT_TRACES_TIMEOUT: Duration = Duration::from_secs(10);

/// `traces:`: where spans go, and how many.
pub(super) fn traces(r: &RawTraces, p: &mut Problems) -> TracesConfig {
    let endpoint = match &r.endpoint {
        None => DEFAULT_TRACES_ENDPOINT.to_owned(),
        Some(e) => match e.value.parse::<Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {
                // A base URL gets the OTLP/HTTP traces path (as the
                // OTEL_EXPORTER_OTLP_ENDPOINT convention has it).
                if matches!(uri.path(), "" | "/") {
                    format!("{}/v1/traces", e.value.trim_end_matches('/'))
                } else {
                    e.value.clone()
                }
            }
            _ => {
                let message = format!(
                    "`{}` is not an http:// URL of a collector's OTLP/HTTP port, e.g. http://otel-collector:4318",
                    e.value
                );
                p.at_loc(Some(e.loc), "traces.endpoint", message);
                DEFAULT_TRACES_ENDPOINT.to_owned()
            }
        },
    };
    TracesConfig {
        enabled: r.enabled.unwrap_or(false),
        endpoint,
        sample_ratio: r.sample_ratio.unwrap_or(1.0),
        service_name: r
            .service_name
            .as_ref()
            .map_or_else(|| "cachecar".to_owned(), |n| n.value.clone()),
        max_queue: nonzero(
            r.max_queue.as_ref(),
            DEFAULT_TRACES_QUEUE as u64,
            "traces.max_queue",
            p,
        ) as usize,
        timeout: nonzero(
            r.timeout.as_ref(),
            DEFAULT_TRACES_TIMEOUT,
            "traces.timeout",
            p,
        ),
    }
}
