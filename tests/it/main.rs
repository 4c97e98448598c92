//! Integration tests: cachecar started in-process (or as the built binary)
//! on loopback ports, real TCP clients, a real upstream (wiremock or the
//! demo API). Upstream request counts prove hit vs miss independently of the
//! headers cachecar writes.

mod admin;
mod cache_flow;
mod certs;
mod cli;
mod coalescing;
mod consistency;
mod hostile;
mod invalidation;
mod metrics;
mod pool;
mod prometheus;
mod redis_connect;
mod redis_server;
mod redis_store;
mod reload;
mod semantics;
mod shadow;
mod shutdown;
mod store_contract;
mod support;
mod tags;
mod upgrade;
mod upstream;
mod upstream_tls;
