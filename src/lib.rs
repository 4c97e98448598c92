//! cachecar: a caching reverse proxy that runs beside an existing HTTP API.
//! (Map to be written.)

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod demo;
pub mod listener;
pub mod metrics;
pub mod outcome;
pub mod proxy;
pub mod reload;
pub mod rules;
pub mod shutdown;
pub mod warmup;

pub use app::App;
