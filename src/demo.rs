//! The demo API behind `cachecar demo` and `cachecar demo-api`: the
//! "existing app" of the seed story. Conversations and messages belong to
//! the user named by `Authorization: Bearer <user>`; documents are public.
//! Every request takes about `latency` (the seed's ~200 ms database query).
//! Each response carries `generated_at`, so a cached answer is visible.
//!
//! Endpoints: `GET /api/conversations`, `POST /api/conversations`,
//! `GET|PUT|DELETE /api/conversations/{id}`,
//! `GET|POST /api/conversations/{id}/messages`, `GET /api/documents/{*path}`,
//! `GET /healthz`.

use std::net::SocketAddr;

use crate::config::{ConfigError, RuntimeConfig};

mod api;

pub use api::DemoApi;

/// The config `cachecar demo` runs with; `${DEMO_UPSTREAM}`, `${DEMO_LISTEN}`
/// and `${DEMO_ADMIN}` are filled in by [`demo_config`].
pub const DEMO_CONFIG: &str = include_str!("demo/demo.yaml");

/// The admin token of the demo.
pub const DEMO_ADMIN_TOKEN: &str = "demo-token";

/// The demo config with the given addresses filled in.
///
/// # Errors
///
/// Only if the embedded config were invalid (a bug, caught by its test).
pub fn demo_config(
    upstream: SocketAddr,
    listen: SocketAddr,
    admin: SocketAddr,
) -> Result<RuntimeConfig, ConfigError> {
    let lookup = move |name: &str| match name {
        "DEMO_UPSTREAM" => Some(format!("http://{upstream}")),
        "DEMO_LISTEN" => Some(listen.to_string()),
        "DEMO_ADMIN" => Some(admin.to_string()),
        "DEMO_ADMIN_TOKEN" => Some(DEMO_ADMIN_TOKEN.to_string()),
        _ => None,
    };
    crate::config::load_str(DEMO_CONFIG, &lookup)
}

/// The curl lines `cachecar demo` prints.
pub fn instructions(upstream: SocketAddr, proxy: SocketAddr, admin: SocketAddr) -> String {
    let timing = "-s -o /dev/null -w 'x-cache=%header{x-cache}  time=%{time_total}s\\n'";
    let p = format!("http://{proxy}");
    let a = format!("http://{admin}");
    let t = DEMO_ADMIN_TOKEN;
    format!(
        r#"cachecar demo is running.
  demo API (the "existing app", ~200 ms per request): http://{upstream}
  cachecar in front of it:                           {p}
  admin (metrics, explain, purge):                   {a}   token: {t}

Try these in another terminal:

  # 1. First call goes to the app (~200 ms, MISS); the second is served from memory (HIT, well under 1 ms):
  curl {timing} -H 'Authorization: Bearer alice' {p}/api/conversations
  curl {timing} -H 'Authorization: Bearer alice' {p}/api/conversations

  # 2. Per-user caching: bob gets his own entry, never alice's data:
  curl -s -H 'Authorization: Bearer bob' {p}/api/conversations

  # 3. Public documents are shared by everyone:
  curl {timing} {p}/api/documents/index
  curl {timing} {p}/api/documents/index

  # 4. A PUT goes to the app and invalidates the conversation and the list, for all users:
  curl -s -X PUT -H 'Authorization: Bearer alice' -H 'content-type: application/json' -d '{{"title":"Renamed"}}' {p}/api/conversations/1
  curl {timing} -H 'Authorization: Bearer alice' {p}/api/conversations

  # 5. See the cache headers, metrics, and why a request is (not) cached:
  curl -si -H 'Authorization: Bearer alice' {p}/api/conversations/1 | grep -iE '^(x-cache|cache-status|age):'
  curl -s {a}/metrics | grep -E '^cachecar_(cache_hits|cache_misses|invalidations)_total'
  curl -s -H 'Authorization: Bearer {t}' '{a}/admin/explain?method=GET&url=/api/documents/index'
  curl -s -X POST -H 'Authorization: Bearer {t}' -d '{{"targets":["GET /api/documents/index"]}}' {a}/admin/purge

Press Ctrl-C to stop.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_config_is_valid() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let config = demo_config(addr, addr, addr).expect("demo config is valid");
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert!(config.admin.token.is_some());
    }
}
