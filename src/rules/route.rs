//! One compiled cache rule ([`Route`]) and the words of the config that
//! shape it: [`Scope`], [`OriginCacheControl`], [`KeySpec`], [`QueryKey`].
//! Built by `config::validate`; read by the proxy for every request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

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
    /// What besides the path selects an entry.
    pub key: KeySpec,
    /// `scope: user` only: store `Cache-Control: private` responses.
    pub store_private: bool,
    /// `scope: public` only: requests with credentials share the cache.
    pub share_authenticated: bool,
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
