//! cachecar: a caching reverse proxy that runs beside an existing HTTP API.
//!
//! It caches GET responses by route rules from a YAML file, invalidates them
//! when matching mutations pass through, and exports Prometheus metrics. The
//! app behind it needs no change.
//!
//! # Request flow
//!
//! ```text
//! client ─▶ listener ─▶ normalize ─▶ route match ─┬─ no rule ───────────────▶ forward ─▶ client
//!                                                 ├─ mutating ─▶ forward ─▶ (2xx/3xx) bump generations
//!                                                 └─ cacheable GET/HEAD
//!                                                      key ─▶ lookup (entry + generations) ─┬─ fresh hit ─▶ respond
//!                                                                                           └─ miss ─▶ upstream ─▶ store? ─▶ respond
//! admin listener: /metrics /healthz /readyz /status /admin/*
//! ```
//!
//! # Layout, in the order a request travels
//!
//! - [`listener`]: accept loop, HTTP/1.1 + h2c, graceful drain.
//! - [`proxy`]: the service; `Proxy::handle` reads as the phase list.
//!   - [`proxy::normalize`]: one normalized view of the request target.
//!   - [`proxy::route`]: path -> first matching rule and its captures.
//!   - [`proxy::key`]: the cache key; identity hashing.
//!   - [`proxy::policy`]: storable? for how long?
//!   - [`proxy::invalidate`]: mutation -> generation tokens to bump.
//!   - [`proxy::upstream`]: pooled client, timeouts, header hygiene.
//!   - [`proxy::respond`]: `Cache-Status`, `X-Cache`, `Age`, answers from entries.
//!   - [`proxy::body`]: the response body type, bounded collection.
//! - [`cache`]: the `Store` trait, entries, tokens; [`cache::memory`] is moka.
//! - [`config`]: YAML -> validated `RuntimeConfig`, every problem at once.
//! - [`reload`]: the config file re-read on change, `SIGHUP` or the admin
//!   API, swapped in whole or refused whole; [`warmup`]: targets fetched
//!   at start and after reloads.
//! - [`metrics`], [`admin`], [`shutdown`], [`error`].
//! - [`app`]: wiring and lifecycle; [`demo`]: the embedded demo API.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod cache;
pub mod config;
pub mod demo;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod shutdown;
pub mod warmup;

pub use app::App;
