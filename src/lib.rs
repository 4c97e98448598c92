//! cachecar: a caching reverse proxy that runs beside an existing HTTP API.
//!
//! It caches `GET` responses per route rules read from a YAML file, in Redis
//! or in memory, invalidates them when matching `POST`/`PUT`/`PATCH`/`DELETE`
//! requests pass through, and exports Prometheus metrics. `docs/architecture.md`
//! is the long form of this map.
//!
//! # Layers
//!
//! A module imports only modules of its own layer or below
//! (`scripts/check-structure.py` checks it):
//!
//! ```text
//!  app admin listener reload warmup demo shutdown   process: wiring, lifecycle, edges,
//!  telemetry                                        trace export
//!  proxy                                            the request spine and its phases
//!  config                                           the YAML file -> RuntimeConfig
//!  rules                                            routes, normalization, purge plans
//!  cache                                            the Store contract, entries, keys, stores
//!  metrics                                          Prometheus families, per-route series
//!  outcome clock                                    the outcome vocabulary, the wall clock
//! ```
//!
//! # The request spine
//!
//! `Proxy::handle` (`src/proxy.rs`) is the whole path of a request, one call
//! per phase, each phase in a module of its own:
//!
//! 1. **guard**: framing, target length, `Host`, body size;
//! 2. **normalize**: one view of the target for matching, keying, forwarding;
//! 3. **route**: the first matching rule; otherwise pass-through, or a
//!    mutation that purges what it names;
//! 4. **key**: whether the cache may answer, and the key;
//! 5. **lookup**: the entry and its tokens' generations, in one store call;
//! 6. **serve**: answer from the stored response when RFC 9111 allows it;
//! 7. **fill**: coalesce, fetch or revalidate, decide, store;
//! 8. **respond**: `Cache-Status`, `X-Cache`, metrics, the access log.
//!
//! # Public surface
//!
//! Modules are `pub(crate)` unless the binary, the integration tests, the
//! benchmarks or the fuzz targets need them:
//!
//! - [`App`]: bind the listeners, then run until shut down ([`AppError`]);
//! - [`config`]: [`config::load_file`], [`config::load_str`],
//!   [`config::RuntimeConfig`], [`config::report`];
//! - [`cache`]: the [`cache::Store`] contract, its records and [`cache::codec`],
//!   and the three stores;
//! - [`rules::normalize`], [`rules::RouteTable`] and
//!   [`proxy::key`], for the hot-path benchmarks and fuzzing;
//! - [`clock::Clock`], [`metrics::Metrics`], [`outcome`], [`demo`],
//!   [`reload::Reloader`] and [`shutdown::signal`].

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub(crate) mod admin;
pub(crate) mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod demo;
pub(crate) mod listener;
pub mod metrics;
pub mod outcome;
pub mod proxy;
pub mod reload;
pub mod rules;
pub mod shutdown;
pub mod telemetry;
pub(crate) mod warmup;

pub use app::{App, AppError};
