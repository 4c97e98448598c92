//! What cachecar talks to upstream: the app's address, TLS and HTTP
//! version, and the `Upgrade` tunnels to it.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;

/// Where the upstream is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// The URL as configured, for `/status` and logs.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// A path prefix from the URL (`http://app/base` -> `/base`), or empty.
    pub base_path: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers.
    pub timeout: Duration,
    /// How long an idle pooled connection is kept for reuse.
    pub idle_timeout: Duration,
    /// `https://`: how the app's certificate is checked, and ours.
    pub tls: Option<UpstreamTls>,
    /// Which HTTP version is spoken to the app.
    pub http_version: HttpVersion,
}

impl UpstreamConfig {
    /// Whether connections made for `self` may serve `other`: the same
    /// address, TLS settings and version.
    pub fn same_connections(&self, other: &UpstreamConfig) -> bool {
        self.authority.as_str() == other.authority.as_str()
            && self.http_version == other.http_version
            && self.tls.as_ref().map(|t| t.fingerprint) == other.tls.as_ref().map(|t| t.fingerprint)
    }
}

/// `upstream.http_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// Over TLS, HTTP/2 when the app offers it (ALPN), else HTTP/1.1;
    /// without TLS, HTTP/1.1.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only: ALPN `h2` over TLS, prior knowledge (h2c) without.
    Http2,
}

/// TLS to the app, as validated: the rustls configs (one per ALPN offer)
/// built from `upstream.tls` at load, so a reload picks up rotated files.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// Offers what `http_version` allows.
    pub config: Arc<rustls::ClientConfig>,
    /// Offers HTTP/1.1 only: `Upgrade` handshakes.
    pub http1: Arc<rustls::ClientConfig>,
    /// SNI, and the name the certificate must carry.
    pub server_name: rustls_pki_types::ServerName<'static>,
    /// Digest of the settings and files: pooled connections are kept
    /// across a reload only while it is the same.
    pub fingerprint: [u8; 32],
}

/// `upgrade`: HTTP/1.1 `Upgrade` handshakes (WebSocket) forwarded, and
/// the connections spliced after the app's `101`.
#[derive(Clone, Debug)]
pub struct UpgradeConfig {
    /// `false`: `Upgrade` is stripped like any hop-by-hop field.
    pub enabled: bool,
    /// Lower-case protocol names that may be tunnelled; `None`: any but
    /// `h2c`.
    pub protocols: Option<Vec<String>>,
    /// A tunnel with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// A tunnel open this long is closed; `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// Tunnels open at once at most; handshakes past it are answered 503.
    pub max_tunnels: usize,
}

impl UpgradeConfig {
    /// Whether every protocol `Upgrade` lists (`websocket`,
    /// `foo/2`) may be tunnelled. `h2c` never is: an HTTP/2 client speaks
    /// it to cachecar with prior knowledge.
    pub fn allows(&self, upgrade: &str) -> bool {
        let mut names = upgrade
            .split(',')
            .map(|p| p.trim().split('/').next().unwrap_or_default().trim())
            .peekable();
        names.peek().is_some()
            && names.all(|name| {
                !name.is_empty()
                    && !name.eq_ignore_ascii_case("h2c")
                    && self
                        .protocols
                        .as_ref()
                        .is_none_or(|listed| listed.iter().any(|l| l.eq_ignore_ascii_case(name)))
            })
    }
}

/// `traces`: OpenTelemetry spans over OTLP/HTTP.
#[derive(Clone, Debug, PartialEq)]
pub struct TracesConfig {
    /// Off by default: no span is made.
    pub enabled: bool,
    /// The collector's OTLP/HTTP traces URL (`.../v1/traces`).
    pub endpoint: String,
    /// Share of new traces (no sampled parent) recorded; a client's
    /// sampling decision is followed.
    pub sample_ratio: f64,
    /// `service.name` of every span.
    pub service_name: String,
    /// Spans waiting for export at most; more are dropped and counted.
    pub max_queue: usize,
    /// Bound of one export request.
    pub timeout: Duration,
}
