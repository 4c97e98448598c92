//! One compiled cache rule ([`Route`]) and the words of the config that
//! shape it: [`Scope`], [`OriginCacheControl`], [`KeySpec`], [`QueryKey`].
//! Built by `config::validate`; read by the proxy for every request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::shadow::{Mode, ShadowSpec};
use super::tags::TagTemplate;
use super::template::Template;
use crate::cache::Token;
use crate::metrics::RouteMetrics;

/// One cache rule.
#[derive(Debug)]
pub struct Route {
    /// Name: metric label and log field.
    pub name: Arc<str>,
    /// Path template.
    pub template: Template,
    /// Shared by everyone, or per user.
    pub scope: Scope,
    /// Freshness when the origin gives none (`respect`), or always
    /// (`override`); `None`: origin headers only, as a plain shared cache.
    pub ttl: Option<Duration>,
    /// Stale-while-revalidate window when the origin gives none.
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window when the origin gives none.
    pub stale_if_error: Duration,
    /// Whose freshness wins.
    pub origin_cache_control: OriginCacheControl,
    /// Per-status `ttl`s (`status_ttl`), exact codes before classes. A
    /// listed status may be stored, with this `ttl` in place of the
    /// route's; a 4xx other than 404 and 410, or a 5xx, only if listed.
    pub status_ttl: Vec<(StatusPattern, Option<Duration>)>,
    /// How long an entry is kept once stale beyond its stale windows, to be
    /// revalidated or served under a request's `max-stale` or
    /// `stale-if-error`.
    pub keep_stale: Duration,
    /// The targeted cache-control fields (RFC 9213) this cache obeys;
    /// shared by every route.
    pub targeted: Arc<Targeted>,
    /// What besides the path selects an entry.
    pub key: KeySpec,
    /// `scope: user` only: store `Cache-Control: private` responses.
    pub store_private: bool,
    /// `scope: public` only: requests with credentials share the cache.
    pub share_authenticated: bool,
    /// `mode`: serve from the cache, or only shadow it.
    pub mode: Mode,
    /// `shadow`: what shadow mode compares.
    pub shadow: Arc<ShadowSpec>,
    /// `tags`: tags every entry of the route carries, from its captures;
    /// each adds a tag token to the route's keys.
    pub tags: Vec<TagTemplate>,
    /// Capture-name lists that purge targets bind on this route; each adds a
    /// binding token to the route's keys.
    pub binding_sets: Vec<Vec<Box<str>>>,
    /// Hash of everything that shapes this route's keys, mixed into every
    /// key, so entries stored under an earlier shape never match.
    pub fingerprint: [u8; 32],
    /// The route's metric series.
    pub metrics: RouteMetrics,
    /// The route's own token (`r:{name}`), built once: every key names it.
    pub token: Token,
}

/// The targeted cache-control fields (RFC 9213) cachecar obeys:
/// `cache.targeted_field` and, with `cache.cdn_cache_control`,
/// `CDN-Cache-Control`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targeted {
    /// In order of precedence: the first present and valid one is used.
    pub fields: Vec<HeaderName>,
    /// cachecar's own field, which no one downstream should see: removed
    /// from every response on a route.
    pub own: Option<HeaderName>,
}

/// A key of `status_ttl`: one status code, or a class (`4xx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusPattern {
    /// One status code.
    Code(u16),
    /// Every code of a class: `4` for `4xx`.
    Class(u16),
}

impl StatusPattern {
    /// Parses `404`, `4xx` or `4XX`; codes from 200 to 599.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 3 || !(b'2'..=b'5').contains(&b[0]) {
            return None;
        }
        if b[1..].eq_ignore_ascii_case(b"xx") {
            return Some(Self::Class(u16::from(b[0] - b'0')));
        }
        text.parse().ok().map(Self::Code)
    }
}

impl fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "{c}"),
            Self::Class(c) => write!(f, "{c}xx"),
        }
    }
}

// === impl Route ===

impl Route {
    /// The `status_ttl` entry for `status`: `Some(ttl)` when the status is
    /// listed (by code, else by class), `ttl` being `None` for `origin`.
    pub fn status_ttl(&self, status: u16) -> Option<Option<Duration>> {
        let find = |p: StatusPattern| self.status_ttl.iter().find(|(k, _)| *k == p);
        find(StatusPattern::Code(status))
            .or_else(|| find(StatusPattern::Class(status / 100)))
            .map(|(_, ttl)| *ttl)
    }
}

/// Route scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One entry for everyone.
    Public,
    /// One entry per identity.
    User,
}

/// `origin_cache_control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginCacheControl {
    /// Origin `Cache-Control`/`Expires` win; `ttl` is the fallback.
    Respect,
    /// The rule's `ttl` wins.
    Override,
}

/// `key:` of a route.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    /// Which query parameters are part of the key.
    pub query: QueryKey,
    /// Request headers (lower-case) whose values are part of the key.
    pub headers: Vec<HeaderName>,
}

/// `key.query`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QueryKey {
    /// Every parameter, sorted by name.
    All,
    /// None: every query string shares one entry.
    None,
    /// Only these parameters, sorted by name.
    Only(Vec<String>),
}

impl Scope {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::User => "user",
        }
    }
}

impl OriginCacheControl {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginCacheControl::Respect => "respect",
            OriginCacheControl::Override => "override",
        }
    }
}

impl fmt::Display for QueryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryKey::All => f.write_str("all"),
            QueryKey::None => f.write_str("none"),
            QueryKey::Only(names) => write!(f, "[{}]", names.join(", ")),
        }
    }
}
