//! Request normalization: never panics, and is idempotent: a normalized
//! path normalizes to itself (applied once means applied for good).
#![no_main]

use cachecar::rules::normalize;
use http::{HeaderMap, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = Uri::try_from(data) else {
        return;
    };
    let Ok(first) = normalize::request(&uri, &HeaderMap::new()) else {
        return;
    };
    let again = normalize::normalize_path(&first.path).expect("a normalized path normalizes");
    assert_eq!(again, first.path, "normalization is idempotent");
    let mut merged = first.path.clone();
    normalize::merge_slashes(&mut merged);
    assert!(!merged.contains("//"));
});
