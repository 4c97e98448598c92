//! The sections about what cachecar talks to: `upstream:` (with its
//! `tls:`), `admin:`, `upgrade:` and `traces:` (the trace collector).

use std::time::Duration;

use super::section::{self, Located, at, choice, count, sub_at};
use super::strings;
use super::yaml::{self, Loc, MapReader, Problems};
pub(crate) use crate::config::HttpVersion;

section! {
    /// `upstream:`
    pub(crate) struct RawUpstream {
        url: Option<Located<String>> = at(yaml::string),
        connect_timeout: Option<Located<Duration>> = at(yaml::duration),
        timeout: Option<Located<Duration>> = at(yaml::duration),
        idle_timeout: Option<Located<Duration>> = at(yaml::duration),
        http_version: Option<Located<HttpVersion>> = at(choice(&HTTP_VERSIONS)),
        tls: Option<Located<RawTls>> = sub_at,
    }
}

section! {
    /// `upstream.tls:`
    pub(crate) struct RawTls {
        ca_file: Option<Located<String>> = at(yaml::string),
        cert_file: Option<Located<String>> = at(yaml::string),
        key_file: Option<Located<String>> = at(yaml::string),
        server_name: Option<Located<String>> = at(yaml::string),
        insecure_skip_verify: Option<Located<bool>> = at(yaml::boolean),
    }
}

section! {
    /// `admin:`
    pub(crate) struct RawAdmin {
        listen: Option<Located<String>> = at(yaml::scalar_text),
        token: Option<String> = yaml::scalar_text,
    }
}

section! {
    /// `upgrade:`
    pub(crate) struct RawUpgrade {
        enabled: Option<bool> = yaml::boolean,
        protocols: Vec<Located<String>> = strings,
        idle_timeout: Option<Located<Duration>> = at(yaml::duration),
        max_lifetime: Option<Duration> = yaml::duration,
        max_tunnels: Option<Located<u64>> = at(count(1_000_000)),
    }
}

section! {
    /// `traces:`
    pub(crate) struct RawTraces {
        enabled: Option<bool> = yaml::boolean,
        endpoint: Option<Located<String>> = at(yaml::string),
        sample_ratio: Option<f64> = yaml::fraction,
        service_name: Option<Located<String>> = at(yaml::string),
        max_queue: Option<Located<u64>> = at(count(1_000_000)),
        timeout: Option<Located<Duration>> = at(yaml::duration),
    }
}

const HTTP_VERSIONS: [(&str, HttpVersion); 3] = [
    ("auto", HttpVersion::Auto),
    ("http1", HttpVersion::Http1),
    ("http2", HttpVersion::Http2),
];
