//! `cache.redis:`, with its `sentinel:` and `tls:`.

use std::time::Duration;

use super::section::{self, Located, at, choice, count, sub_at};
use super::yaml::{self, Loc, MapReader, Problems};
use super::{plain_strings, strings};
use crate::cache::redis::OnPurgeFailure;

section! {
    /// `cache.redis:`
    pub(crate) struct RawRedis {
        url: Option<String> = yaml::string,
        cluster: Vec<String> = plain_strings,
        sentinel: Option<Located<RawSentinel>> = sub_at,
        username: Option<String> = yaml::scalar_text,
        password: Option<String> = yaml::scalar_text,
        password_file: Option<Located<String>> = at(yaml::string),
        tls: Option<Located<RawRedisTls>> = sub_at,
        pool_size: Option<u64> = count(10_000),
        timeout: Option<Duration> = yaml::duration,
        key_prefix: Option<String> = yaml::string,
        fence_after_outage: Option<bool> = yaml::boolean,
        on_purge_failure: Option<OnPurgeFailure> = choice(&ON_PURGE_FAILURE),
        purge_wait: Option<Duration> = yaml::duration,
    }
}

section! {
    /// `cache.redis.sentinel:`
    pub(crate) struct RawSentinel {
        master: Option<Located<String>> = at(yaml::string),
        nodes: Vec<Located<String>> = strings,
        db: Option<u64> = count(1_000_000),
    }
}

section! {
    /// `cache.redis.tls:`
    pub(crate) struct RawRedisTls {
        ca_file: Option<Located<String>> = at(yaml::string),
        cert_file: Option<Located<String>> = at(yaml::string),
        key_file: Option<Located<String>> = at(yaml::string),
        insecure_skip_verify: Option<bool> = yaml::boolean,
    }
}

const ON_PURGE_FAILURE: [(&str, OnPurgeFailure); 3] = [
    ("wait", OnPurgeFailure::Wait),
    ("answer", OnPurgeFailure::Answer),
    ("refuse", OnPurgeFailure::Refuse),
];
