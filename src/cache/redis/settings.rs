//! `cache.redis`, validated: where Redis is, how to reach it, and what a
//! write gets when its purge cannot reach it.

use std::time::Duration;

use super::{RedisAuth, RedisTls};

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisNodes {
    /// One server (or a proxy in front of several).
    Single(String),
    /// Redis Cluster seed nodes.
    Cluster(Vec<String>),
    /// The master the sentinels at `nodes` know as `master`, database `db`.
    Sentinel {
        /// The master's name in the sentinels' configuration.
        master: String,
        /// The sentinels' URLs.
        nodes: Vec<String>,
        /// The database on the master.
        db: i64,
    },
}

/// `cache.redis`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// Server, cluster or sentinel nodes.
    pub nodes: RedisNodes,
    /// Credentials for the data nodes.
    pub auth: RedisAuth,
    /// CA and client certificate for `rediss://`.
    pub tls: Option<RedisTls>,
    /// Connections (lanes) to keep.
    pub pool_size: usize,
    /// Bound on every command, including getting a connection.
    pub timeout: Duration,
    /// Prefix of every key and of the channel.
    pub key_prefix: String,
    /// Once Redis is back after this instance found it unreachable, end
    /// every entry stored before (the fence): another instance's purges
    /// may have been lost meanwhile.
    pub fence_after_outage: bool,
    /// What a write whose purge cannot reach Redis gets.
    pub on_purge_failure: OnPurgeFailure,
    /// How long a write waits for its purge to be recorded (`wait` and
    /// `refuse`).
    pub purge_wait: Duration,
}

/// `cache.redis.on_purge_failure`: what a write that matches an
/// invalidation rule gets when its purge cannot reach Redis. The app has
/// already done the write by then; the question is when its client hears
/// of it, and what other replicas may serve meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnPurgeFailure {
    /// Answered at once; other replicas may serve what the purge ends until
    /// it is replayed.
    Answer,
    /// Answered once the purge is recorded (replayed), or after
    /// `purge_wait` as with `answer`.
    Wait,
    /// As `wait`, and while Redis is known to be unreachable (circuit open)
    /// such a write is refused with 503 before it reaches the app.
    Refuse,
}

impl OnPurgeFailure {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            OnPurgeFailure::Answer => "answer",
            OnPurgeFailure::Wait => "wait",
            OnPurgeFailure::Refuse => "refuse",
        }
    }
}
