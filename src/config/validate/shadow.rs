//! `shadow:` of `defaults` and routes: what shadow mode compares.

use crate::config::file::{RawPolicy, RawRoute};
use crate::config::yaml::Problems;
use crate::rules::shadow::{DEFAULT_SHADOW_HEADERS, ShadowSpec, json_path};

/// `shadow`: the route's, else the defaults' (a whole block replaces the
/// other, as `status_ttl` does).
pub(super) fn spec(r: &RawRoute, path: &str, defaults: &RawPolicy, p: &mut Problems) -> ShadowSpec {
    let (section, at) = match (&r.policy.shadow, &defaults.shadow) {
        (Some(own), _) => (&own.value, format!("{path}.shadow")),
        (None, Some(d)) => (&d.value, "defaults.shadow".to_string()),
        (None, None) => return ShadowSpec::default(),
    };
    let headers = match &section.headers {
        None => DEFAULT_SHADOW_HEADERS.to_vec(),
        Some(list) => super::header_names(list, &format!("{at}.headers"), p),
    };
    let ignore_json_fields = section
        .ignore_json_fields
        .iter()
        .filter_map(|f| {
            json_path(&f.value)
                .map_err(|e| p.at_loc(Some(f.loc), &format!("{at}.ignore_json_fields"), e))
                .ok()
        })
        .collect();
    ShadowSpec {
        headers,
        ignore_json_fields,
    }
}
