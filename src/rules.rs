//! The rules: what the config compiles into and the proxy reads on every
//! request. Pure data and pure functions, no I/O.
//!
//! - [`normalize`]: one normalized view of a request target, used for
//!   matching, keying and forwarding alike.
//! - `template`: `METHOD /path/{capture}/{*rest}` patterns, parsed, and
//!   the exact overlap analysis `cachecar check` reports with.
//! - `table`: normalized path -> the first matching rule and its
//!   captures ([`RouteTable`]).
//! - `route`: a compiled cache rule ([`Route`]).
//! - `purge`: purge targets compiled into per-route plans, which turn a
//!   mutation into the generation tokens it bumps.
//! - `shadow`: a route's `mode`, and how shadow mode compares what the
//!   cache would have served with what the app answered.
//! - `tags`: tag templates (`conversation:{id}`) and the reading of the
//!   app's tag headers.
//!
//! Below the proxy and the config, above the stores: a rule names tokens
//! (`cache::Token`) and carries its metric series (`metrics::RouteMetrics`).

pub mod normalize;
pub(crate) mod purge;
pub(crate) mod route;
pub(crate) mod shadow;
pub(crate) mod table;
pub(crate) mod tags;
pub(crate) mod template;

pub use route::Route;
pub(crate) use route::{KeySpec, OriginCacheControl, QueryKey, Scope, StatusPattern, Targeted};
pub(crate) use shadow::Mode;
pub use table::RouteTable;
pub(crate) use tags::{TagHeaders, TagTemplate};
