//! Route matching over a fixed table: never panics, and a match's
//! captures are whole segments of the path.
#![no_main]

use std::sync::OnceLock;

use cachecar::config::RuntimeConfig;
use libfuzzer_sys::fuzz_target;

const RULES: &str = "upstream: { url: \"http://127.0.0.1:8000\" }
routes:
  - { name: list, match: GET /api/conversations }
  - { name: one, match: \"GET /api/conversations/{id}\" }
  - { name: messages, match: \"GET /api/conversations/{id}/messages\" }
  - { name: docs, match: \"GET /api/documents/{*path}\" }
  - { name: root, match: GET / }
invalidate:
  - match: \"PUT /api/conversations/{id}\"
    purge: [\"GET /api/conversations/{id}\", \"GET /api/conversations/{id}/*\", GET /api/conversations]
";

fn config() -> &'static RuntimeConfig {
    static CONFIG: OnceLock<RuntimeConfig> = OnceLock::new();
    CONFIG.get_or_init(|| cachecar::config::load_str(RULES, &|_| None).expect("valid rules"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let config = config();
    if let Some(m) = config.routes.find(path) {
        for (_, value) in m.captures.iter() {
            assert!(path.contains(value), "a capture is part of the path");
        }
    }
    let _ = config.invalidations.purge(&http::Method::PUT, path);
});
