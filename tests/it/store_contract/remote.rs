//! What only a Redis store can get wrong: corrupt and foreign values, lost counters, fill locks, and its round trips.

use super::*;

#[tokio::test]
async fn corrupt_and_foreign_values_are_misses_and_are_deleted() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let store = redis_store(RedisNodes::Single(redis.url()), &stop);
    let a = key(1);
    let entry_key = format!("t:e:docs:{}", a.hash.to_hex());

    // Bytes that are not the codec's.
    let _: () = redis.cmd(&["SET", &entry_key, "garbage"]).await;
    assert!(store.lookup(&a).await.unwrap().record.is_none());
    assert!(
        eventually(Duration::from_secs(2), || async {
            redis.cmd::<i64>(&["EXISTS", &entry_key]).await == 0
        })
        .await,
        "corrupt value deleted"
    );

    // A valid record of another key (a hash collision or a tampered key).
    let b = key(2);
    let foreign = codec::encode(&entry(&b, vec![1, 2, 3], "other", Duration::from_secs(60)));
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("SET")
        .arg(&entry_key)
        .arg(foreign)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(store.lookup(&a).await.unwrap().record.is_none());
    assert!(
        eventually(Duration::from_secs(2), || async {
            redis.cmd::<i64>(&["EXISTS", &entry_key]).await == 0
        })
        .await,
        "foreign value deleted"
    );

    // A counter that is not a number is treated as lost.
    let _: () = redis.cmd(&["SET", "t:g:r:docs", "not-a-number"]).await;
    let l = store.lookup(&a).await.unwrap();
    assert_eq!(l.generations.len(), 3);
    stop.cancel();
}

#[tokio::test]
async fn lost_counters_come_back_newer_so_old_entries_never_match() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let store = redis_store(RedisNodes::Single(redis.url()), &stop);
    let a = key(1);
    let g = store.lookup(&a).await.unwrap().generations;
    store
        .insert(&a, entry(&a, g.clone(), "old", Duration::from_secs(60)))
        .await
        .unwrap();
    // Evicted (allkeys-lru) or lost in a restart without persistence.
    let _: i64 = redis
        .cmd(&["DEL", "t:g:r:docs", "t:g:b:docs|id=7", "t:g:u:/docs/1"])
        .await;
    let after = store.lookup(&a).await.unwrap();
    for (old, new) in g.iter().zip(&after.generations) {
        assert!(new > old, "re-created counter {new} must exceed {old}");
    }
    let Some(Record::Response(e)) = after.record else {
        panic!("the old entry is still there")
    };
    assert_ne!(e.generations, after.generations, "and never matches again");

    // A bump of an evicted counter does not restart it at 1.
    let _: i64 = redis.cmd(&["DEL", "t:g:u:/docs/1"]).await;
    store.bump(&[Token::url("/docs/1")]).await.unwrap();
    let bumped: u64 = redis.cmd(&["GET", "t:g:u:/docs/1"]).await;
    assert!(bumped > after.generations[2], "{bumped}");
    stop.cancel();
}

#[tokio::test]
async fn fill_locks_are_exclusive_expire_and_mark_uncacheable() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let one = redis_store(RedisNodes::Single(redis.url()), &stop);
    let two = redis_store(RedisNodes::Single(redis.url()), &stop);
    let a = key(1);
    let ttl = Duration::from_millis(300);
    let FillLock::Acquired(token) = one.try_lock(&a, ttl).await.unwrap() else {
        panic!("first taker acquires");
    };
    assert_eq!(two.try_lock(&a, ttl).await.unwrap(), FillLock::Held);
    // Only the holder's token releases it.
    two.unlock(&a, token ^ 1, None).await.unwrap();
    assert_eq!(two.try_lock(&a, ttl).await.unwrap(), FillLock::Held);
    one.unlock(&a, token, None).await.unwrap();
    let FillLock::Acquired(_) = two.try_lock(&a, ttl).await.unwrap() else {
        panic!("released lock is free");
    };
    // A holder that dies: the lock expires and another instance takes it.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let FillLock::Acquired(_) = one.try_lock(&a, ttl).await.unwrap() else {
        panic!("expired lock is free");
    };
    // An uncacheable fill leaves a mark that others see.
    let b = key(2);
    let FillLock::Acquired(t3) = one.try_lock(&b, ttl).await.unwrap() else {
        panic!();
    };
    one.unlock(&b, t3, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(two.try_lock(&b, ttl).await.unwrap(), FillLock::Uncacheable);
    stop.cancel();
}

/// Calls per command since `CONFIG RESETSTAT`, from `INFO commandstats`.
async fn command_calls(redis: &RedisServer) -> Vec<(String, u64)> {
    let info: String = redis.cmd(&["INFO", "commandstats"]).await;
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| {
            let command = name.split('|').next().unwrap_or_default();
            !matches!(command, "info" | "config" | "ping" | "hello" | "client")
        })
        .collect()
}

/// `(command, calls)` pairs as `command_calls` returns them.
fn calls(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

/// A store over a fresh server with `key(1)` stored.
async fn stored(redis: &RedisServer, stop: &CancellationToken) -> RedisStore {
    let store = redis_store(RedisNodes::Single(redis.url()), stop);
    let a = key(1);
    let g = store.lookup(&a).await.unwrap().generations;
    store
        .insert(&a, entry(&a, g, "x", Duration::from_secs(60)))
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn round_trips_are_what_the_docs_say_and_nothing_scans() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let store = stored(&redis, &stop).await;

    // A hit: one MGET.
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    for _ in 0..10 {
        assert!(store.lookup(&key(1)).await.unwrap().record.is_some());
    }
    assert_eq!(command_calls(&redis).await, calls(&[("mget", 10)]));

    // A miss of a new URL: the MGET, then one script call that creates the
    // new counter (a GET and a SET inside it); storing it: one SET.
    // (Scripts load on first use; a bump now loads the purge script before
    // the counting starts.)
    store.bump(&[Token::url("/elsewhere")]).await.unwrap();
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    let b = key(2);
    let gb = store.lookup(&b).await.unwrap().generations;
    store
        .insert(&b, entry(&b, gb, "y", Duration::from_secs(60)))
        .await
        .unwrap();
    let mut found = command_calls(&redis).await;
    found.sort();
    let expected = [("evalsha", 1), ("get", 1), ("mget", 1), ("set", 2)];
    assert_eq!(found, calls(&expected));

    // A purge of two tokens: one script call (GET, SET if lost, INCR) each,
    // one PUBLISH.
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    let purged = [Token::url("/docs/1"), Token::url("/docs/2")];
    store.bump(&purged).await.unwrap();
    let mut found = command_calls(&redis).await;
    found.sort();
    let expected = [("evalsha", 2), ("get", 2), ("incr", 2), ("publish", 1)];
    assert_eq!(found, calls(&expected));
    let info: String = redis.cmd(&["INFO", "commandstats"]).await;
    assert!(!info.contains("cmdstat_keys") && !info.contains("cmdstat_scan"));
    stop.cancel();
}

/// The tiered store answers a hot key from L1: no round trip. A fill goes
/// to Redis only; the first read that finds it there fills L1.
#[tokio::test]
async fn tiered_hits_on_hot_keys_cost_no_round_trip() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let tiered = tiered_store(RedisNodes::Single(redis.url()), &stop).await;
    assert!(tiered.lookup(&key(9)).await.unwrap().record.is_none());
    let g9 = tiered.lookup(&key(9)).await.unwrap().generations;
    tiered
        .insert(&key(9), entry(&key(9), g9, "z", Duration::from_secs(60)))
        .await
        .unwrap();
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    assert!(tiered.lookup(&key(9)).await.unwrap().record.is_some());
    assert_eq!(
        command_calls(&redis).await,
        calls(&[("mget", 1)]),
        "the read after a fill finds the entry in Redis, not in L1"
    );
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    for _ in 0..10 {
        assert!(tiered.lookup(&key(9)).await.unwrap().record.is_some());
    }
    assert_eq!(command_calls(&redis).await, vec![], "L1 hits cost nothing");
    let info: String = redis.cmd(&["INFO", "commandstats"]).await;
    assert!(!info.contains("cmdstat_keys") && !info.contains("cmdstat_scan"));
    stop.cancel();
}

/// A store's `timeout` is the only bound on a command: a Redis that
/// answers after 800 ms (frozen, then thawed) is waited for under a 3 s
/// timeout, where redis-rs' own default would give up at 500 ms.
#[tokio::test]
async fn a_slow_answer_within_the_configured_timeout_is_waited_for() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let settings = RedisSettings {
        timeout: Duration::from_secs(3),
        ..settings(RedisNodes::Single(redis.url()))
    };
    let store = RedisStore::new(settings, &metrics(), "redis", stop.child_token()).unwrap();
    let a = key(1);
    store.lookup(&a).await.expect("connected");
    redis.freeze();
    let started = std::time::Instant::now();
    let lookup = tokio::spawn({
        let store = store.clone();
        async move { store.lookup(&key(1)).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.thaw();
    let answered = lookup.await.unwrap();
    assert!(answered.is_ok(), "{answered:?}");
    assert!(started.elapsed() >= Duration::from_millis(800));
    stop.cancel();
}
