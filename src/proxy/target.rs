//! Phase 2, normalize: the one view of the request target that route
//! matching, the key and the request sent upstream all use, so what is
//! cached under a key is exactly what the app was asked for.
//!
//! Before anything reads the request, the client headers cachecar does
//! not pass on are dropped (`upstream::drop_untrusted`). The target is then
//! normalized (`rules::normalize`), its slashes merged if
//! `security.merge_slashes` says so, its host checked against
//! `security.allowed_hosts` and, if it is one of `hosts.aliases`, made
//! `hosts.canonical`. Pure: no I/O.

use http::Request;

use super::ProxyError;
use super::guard;
use super::upstream;
use crate::config::RuntimeConfig;
use crate::rules::normalize::{self, Normalized};

/// The request's normalized target.
///
/// # Errors
///
/// A target that cannot be normalized (400) or a host that is not served
/// (421).
pub(super) fn normalized<B>(
    request: &mut Request<B>,
    config: &RuntimeConfig,
    trusted: bool,
) -> Result<Normalized, ProxyError> {
    let security = &config.security;
    upstream::drop_untrusted(request.headers_mut(), security, trusted);
    let mut target = normalize::request(request.uri(), request.headers())?;
    if security.merge_slashes {
        normalize::merge_slashes(&mut target.path);
    }
    guard::host_allowed(config, target.host.as_deref()).map_err(ProxyError::Refused)?;
    // Aliases become the canonical name before anything keys or forwards:
    // the app gets the `Host` the entry is keyed by, no other.
    config.hosts.canonicalize(&mut target.host);
    Ok(target)
}
