//! The config loader: any text gives a config or a list of problems, never
//! a panic; and a config it accepts renders in `check` without one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    if let Ok(config) = cachecar::config::load_str(text, &env) {
        let _ = cachecar::config::report::render(&config);
    }
});
