//! The Lua scripts of the Redis store, each atomic on one key (so one
//! cluster slot). Loaded by `EVALSHA`, sent in full once per server.

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
    /// number.
    pub ensure: Script,
    /// `g:{token}` += 1, starting from `ARGV[1]` if absent or not a number
    /// (so an evicted counter never comes back as 1).
    pub bump: Script,
}

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
            ensure: Script::new(&format!(
                "{VALID_COUNTER} \
                 local v = redis.call('GET', KEYS[1]) \
                 if valid(v) then return v end \
                 redis.call('SET', KEYS[1], ARGV[1]) \
                 return ARGV[1]"
            )),
            bump: Script::new(&format!(
                "{VALID_COUNTER} \
                 if not valid(redis.call('GET', KEYS[1])) then \
                   redis.call('SET', KEYS[1], ARGV[1]) \
                 end \
                 redis.call('INCR', KEYS[1]) \
                 return 1"
            )),
        }
    }
}
