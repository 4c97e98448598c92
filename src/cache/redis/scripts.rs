//! The Lua scripts of the Redis store, each atomic on one key (so one
//! cluster slot). Loaded by `EVALSHA`, sent in full once per server.
//!
//! The counter scripts declare `allow-oom` (Redis 7 script flags): a Redis
//! out of memory under `noeviction` refuses every write, and a purge it
//! refused would leave other replicas serving what the purge ended. A
//! counter is a few bytes. Before Redis 7 a script cannot declare flags;
//! the first refusal switches to the same scripts without them.

use std::sync::atomic::{AtomicBool, Ordering};

use redis::Script;

/// Every script the store runs.
pub(super) struct Scripts {
    /// `lock:{hash}`: take it for `ARGV[2]` ms with the holder's token, or
    /// return what holds it (a token, or the uncacheable mark).
    pub lock: Script,
    /// `lock:{hash}`: if `ARGV[1]` holds it, delete it, or leave the mark
    /// `ARGV[2]` for `ARGV[3]` ms.
    pub unlock: Script,
    /// `g:{token}` -> its value, created as `ARGV[1]` if absent or not a
    /// number; with and without the `allow-oom` flag.
    ensure: [Script; 2],
    /// `g:{token}` += 1, starting from `ARGV[1]` if absent or not a number
    /// (so an evicted counter never comes back as 1); with and without the
    /// `allow-oom` flag.
    bump: [Script; 2],
    /// Redis refused script flags (before Redis 7): use the plain scripts.
    plain: AtomicBool,
}

/// The first line of a script that may write while Redis is out of memory.
const ALLOW_OOM: &str = "#!lua flags=allow-oom\n";

/// Lua: whether `v` is a counter value `INCR` can take (digits, below
/// 2^63 with room to spare).
const VALID_COUNTER: &str = "local function valid(v) \
     return v and string.find(v, '^%d+$') ~= nil \
       and (#v < 19 or (#v == 19 and v <= '9000000000000000000')) \
     end ";

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            lock: Script::new(
                "local v = redis.call('GET', KEYS[1]) \
                 if v then return v end \
                 redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
                 return false",
            ),
            unlock: Script::new(
                "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
                 if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end \
                 redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) \
                 return 1",
            ),
            ensure: both(&format!(
                "{VALID_COUNTER} \
                 local v = redis.call('GET', KEYS[1]) \
                 if valid(v) then return v end \
                 redis.call('SET', KEYS[1], ARGV[1]) \
                 return ARGV[1]"
            )),
            bump: both(&format!(
                "{VALID_COUNTER} \
                 if not valid(redis.call('GET', KEYS[1])) then \
                   redis.call('SET', KEYS[1], ARGV[1]) \
                 end \
                 redis.call('INCR', KEYS[1]) \
                 return 1"
            )),
            plain: AtomicBool::new(false),
        }
    }

    /// The counter-creating script.
    pub(super) fn ensure(&self) -> &Script {
        &self.ensure[usize::from(self.plain.load(Ordering::Relaxed))]
    }

    /// The counter-bumping script.
    pub(super) fn bump(&self) -> &Script {
        &self.bump[usize::from(self.plain.load(Ordering::Relaxed))]
    }

    /// Whether `error` is Redis refusing the flags line (a Lua syntax error
    /// before Redis 7); if so, the plain scripts are used from now on and
    /// the call is worth repeating.
    pub(super) fn refused_flags(&self, error: &str) -> bool {
        if !error.contains("compiling script") || self.plain.swap(true, Ordering::Relaxed) {
            return false;
        }
        tracing::warn!(
            "redis takes no script flags (before Redis 7): purges cannot be recorded \
             while redis is out of memory"
        );
        true
    }
}

/// `body` with the `allow-oom` flag, and without.
fn both(body: &str) -> [Script; 2] {
    [
        Script::new(&format!("{ALLOW_OOM}{body}")),
        Script::new(body),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_without_script_flags_gets_the_plain_scripts_from_then_on() {
        let scripts = Scripts::new();
        let flagged = scripts.bump().get_hash().to_string();
        assert!(!scripts.refused_flags("OOM command not allowed"));
        assert_eq!(scripts.bump().get_hash(), flagged);
        // What Redis 6 answers to a first line of `#!lua flags=...`.
        let refusal = "ERR Error compiling script (new function): user_script:1: \
                       unexpected symbol near '#'";
        assert!(scripts.refused_flags(refusal), "worth repeating once");
        assert!(!scripts.refused_flags(refusal), "and only once");
        assert_ne!(scripts.bump().get_hash(), flagged);
        assert_ne!(scripts.ensure().get_hash(), scripts.ensure[0].get_hash());
    }
}
