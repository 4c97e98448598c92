//! The `Store` contract, run against every backend: memory, redis (one
//! server and a cluster) and tiered. Then what only the Redis-backed stores
//! promise: corrupt and foreign values are misses and are deleted, lost
//! counters come back newer, fill locks expire, no scans, and the round
//! trips the docs state.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cachecar::cache::memory::MemoryStore;
use cachecar::cache::redis::{RedisNodes, RedisSettings, RedisStore};
use cachecar::cache::tiered::TieredStore;
use cachecar::cache::{CacheKey, Entry, FillLock, KeyHash, Record, Store, Token, Variants, codec};
use cachecar::metrics::Metrics;
use http::HeaderName;
use tokio_util::sync::CancellationToken;

use crate::redis_server::{RedisCluster, RedisServer};
use crate::support::eventually;

const PREFIX: &str = "t:";

fn key(n: u8) -> CacheKey {
    CacheKey {
        route: "docs".into(),
        hash: KeyHash([n; 32]),
        tokens: vec![
            Token::route("docs"),
            Token::binding("docs", [("id", "7")]),
            Token::url(&format!("/docs/{n}")),
        ],
    }
}

fn entry(key: &CacheKey, generations: Vec<u64>, body: &str, keep: Duration) -> Record {
    let body = Bytes::from(body.to_string());
    let mut entry = Entry::fresh(key.hash, body, SystemTime::now(), keep, generations);
    entry
        .headers
        .insert("content-type", "text/plain".parse().unwrap());
    Record::Response(Arc::new(entry))
}

fn body_of(record: &Option<Record>) -> Option<Bytes> {
    match record {
        Some(Record::Response(e)) => Some(e.body.clone()),
        _ => None,
    }
}

fn settings(nodes: RedisNodes) -> RedisSettings {
    RedisSettings {
        nodes,
        pool_size: 2,
        timeout: Duration::from_millis(500),
        key_prefix: PREFIX.into(),
    }
}

fn metrics() -> Metrics {
    Metrics::new(&prometheus::Registry::new()).unwrap()
}

fn redis_store(nodes: RedisNodes, stop: &CancellationToken) -> RedisStore {
    RedisStore::new(settings(nodes), &metrics(), "redis", stop.child_token()).unwrap()
}

async fn tiered_store(nodes: RedisNodes, stop: &CancellationToken) -> TieredStore {
    let store = TieredStore::new(
        redis_store(nodes, stop),
        1 << 20,
        Duration::from_secs(30),
        stop.child_token(),
    );
    assert!(
        eventually(Duration::from_secs(5), || async { store.subscribed() }).await,
        "tiered store subscribes to invalidations"
    );
    store
}

/// Everything every store must do. `keys` are distinct per run.
async fn contract(store: &dyn Store) {
    // An unknown key: no record, one generation per token, stable.
    let a = key(1);
    let first = store.lookup(&a).await.unwrap();
    assert!(first.record.is_none(), "{}: empty store", store.backend());
    assert_eq!(first.generations.len(), a.tokens.len());
    let again = store.lookup(&a).await.unwrap();
    assert_eq!(
        first.generations, again.generations,
        "generations are stable"
    );

    // Insert, then read back exactly what was stored.
    let g = first.generations.clone();
    store
        .insert(&a, entry(&a, g.clone(), "alpha", Duration::from_secs(60)))
        .await
        .unwrap();
    let hit = store.lookup(&a).await.unwrap();
    assert_eq!(body_of(&hit.record).as_deref(), Some(&b"alpha"[..]));
    let Some(Record::Response(e)) = &hit.record else {
        unreachable!()
    };
    assert_eq!(
        e.generations, hit.generations,
        "a hit matches its generations"
    );
    assert_eq!(e.key, a.hash);
    assert_eq!(e.headers["content-type"], "text/plain");

    // Other keys are untouched; replacing a record replaces it.
    let b = key(2);
    let gb = store.lookup(&b).await.unwrap();
    assert!(gb.record.is_none());
    store
        .insert(&a, entry(&a, g.clone(), "beta", Duration::from_secs(60)))
        .await
        .unwrap();
    let hit = store.lookup(&a).await.unwrap();
    assert_eq!(body_of(&hit.record).as_deref(), Some(&b"beta"[..]));

    // A bump changes exactly the named tokens; the entry stops matching.
    store.bump(&[Token::url("/docs/1")]).await.unwrap();
    let after = store.lookup(&a).await.unwrap();
    assert_eq!(after.generations[0], g[0], "route token untouched");
    assert_eq!(after.generations[1], g[1], "binding token untouched");
    assert_ne!(after.generations[2], g[2], "url token bumped");
    match &after.record {
        Some(Record::Response(e)) => assert_ne!(e.generations, after.generations),
        Some(Record::Variants(_)) => panic!("a response was stored"),
        None => {}
    }
    let b_after = store.lookup(&b).await.unwrap();
    assert_eq!(gb.generations, b_after.generations, "other urls untouched");

    // A shared token (the binding) ends both keys at once.
    store
        .bump(&[Token::binding("docs", [("id", "7")])])
        .await
        .unwrap();
    let b_bumped = store.lookup(&b).await.unwrap();
    assert_ne!(gb.generations[1], b_bumped.generations[1]);

    // Variant indexes round-trip.
    let c = key(3);
    assert!(store.lookup(&c).await.unwrap().record.is_none());
    let index = Variants {
        key: c.hash,
        names: vec![HeaderName::from_static("accept-language")],
        known: vec![KeyHash([9; 32])],
        keep_until: SystemTime::now() + Duration::from_secs(60),
    };
    store
        .insert(&c, Record::Variants(Arc::new(index.clone())))
        .await
        .unwrap();
    match store.lookup(&c).await.unwrap().record {
        Some(Record::Variants(v)) => {
            assert_eq!(
                (&v.key, &v.names, &v.known),
                (&index.key, &index.names, &index.known)
            );
            let drift = index
                .keep_until
                .duration_since(v.keep_until)
                .unwrap_or_default();
            assert!(
                drift < Duration::from_millis(2),
                "keep_until kept to the ms"
            );
        }
        other => panic!("variants expected, got {other:?}"),
    }

    // Records are kept until `keep_until` and no longer.
    let d = key(4);
    let gd = store.lookup(&d).await.unwrap().generations;
    store
        .insert(&d, entry(&d, gd, "short", Duration::from_millis(150)))
        .await
        .unwrap();
    assert!(store.lookup(&d).await.unwrap().record.is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.lookup(&d).await.unwrap().record.is_none(),
        "{}: expired record is gone",
        store.backend()
    );
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::new(1 << 20, None)).await;
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let store = redis_store(RedisNodes::Single(redis.url()), &stop);
    contract(&store).await;
    // The layout of DESIGN.md §7, under the prefix.
    let keys = redis.keys("t:*").await;
    assert!(keys.iter().any(|k| k.starts_with("t:e:docs:")), "{keys:?}");
    assert!(keys.iter().any(|k| k == "t:g:r:docs"), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(PREFIX)), "{keys:?}");
    let ttl: i64 = redis
        .cmd(&["PTTL", &format!("t:e:docs:{}", KeyHash([1; 32]).to_hex())])
        .await;
    assert!(
        (50_000..=60_000).contains(&ttl),
        "PX = keep time, got {ttl}"
    );
    stop.cancel();
}

#[tokio::test]
async fn tiered_store_keeps_the_contract() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let store = tiered_store(RedisNodes::Single(redis.url()), &stop).await;
    contract(&store).await;
    stop.cancel();
}

#[tokio::test]
async fn cluster_stores_keep_the_contract() {
    let cluster = RedisCluster::start().await;
    let stop = CancellationToken::new();
    let store = redis_store(RedisNodes::Cluster(cluster.urls()), &stop);
    contract(&store).await;
    let keys = cluster.keys("t:*").await;
    assert!(keys.iter().any(|k| k.starts_with("t:e:docs:")), "{keys:?}");
    // Entries and counters land on several nodes: lookups cross slots.
    let mut holding = 0;
    for node in &cluster.nodes {
        holding += usize::from(!node.keys("t:*").await.is_empty());
    }
    assert!(holding >= 2, "keys spread over the cluster");
    // Fill locks (scripts, loaded per node on first use) work across slots.
    let other = redis_store(RedisNodes::Cluster(cluster.urls()), &stop);
    for n in 10..16 {
        let k = key(n);
        let ttl = Duration::from_secs(5);
        let FillLock::Acquired(token) = store.try_lock(&k, ttl).await.unwrap() else {
            panic!("lock {n}");
        };
        assert_eq!(other.try_lock(&k, ttl).await.unwrap(), FillLock::Held);
        store.unlock(&k, token, None).await.unwrap();
        assert!(matches!(
            other.try_lock(&k, ttl).await.unwrap(),
            FillLock::Acquired(_)
        ));
    }

    // The tiered store over the cluster, with a different prefix's keys
    // isolated by distinct hashes.
    let tiered = tiered_store(RedisNodes::Cluster(cluster.urls()), &stop).await;
    let k = key(50);
    let g = tiered.lookup(&k).await.unwrap().generations;
    tiered
        .insert(&k, entry(&k, g, "tier", Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        body_of(&tiered.lookup(&k).await.unwrap().record).as_deref(),
        Some(&b"tier"[..])
    );
    // A bump through the plain store reaches the tiered one's L1 through
    // the cluster-wide channel.
    store.bump(&[Token::url("/docs/50")]).await.unwrap();
    let seen = eventually(Duration::from_secs(2), || async {
        let l = tiered.lookup(&k).await.unwrap();
        matches!(&l.record, Some(Record::Response(e)) if e.generations != l.generations)
    })
    .await;
    assert!(seen, "the bump is seen through the tiered store");
    stop.cancel();
}

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

#[tokio::test]
async fn round_trips_are_what_the_docs_say_and_nothing_scans() {
    let redis = RedisServer::start().await;
    let stop = CancellationToken::new();
    let store = redis_store(RedisNodes::Single(redis.url()), &stop);
    let a = key(1);
    let g = store.lookup(&a).await.unwrap().generations;
    store
        .insert(&a, entry(&a, g, "x", Duration::from_secs(60)))
        .await
        .unwrap();

    // A hit: one MGET.
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    for _ in 0..10 {
        assert!(store.lookup(&a).await.unwrap().record.is_some());
    }
    assert_eq!(command_calls(&redis).await, vec![("mget".to_string(), 10)]);

    // A miss of a new URL: the MGET, then one script call that creates the
    // new counter; storing it: one SET. (Scripts load on first use; a bump
    // now loads the purge script before the counting starts.)
    store.bump(&[Token::url("/elsewhere")]).await.unwrap();
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    let b = key(2);
    let gb = store.lookup(&b).await.unwrap().generations;
    store
        .insert(&b, entry(&b, gb, "y", Duration::from_secs(60)))
        .await
        .unwrap();
    let mut calls = command_calls(&redis).await;
    calls.sort();
    assert_eq!(
        calls,
        vec![
            ("evalsha".to_string(), 1),
            ("get".to_string(), 1), // inside the script
            ("mget".to_string(), 1),
            ("set".to_string(), 2) // one inside the script
        ]
    );

    // A purge of two tokens: one script call (GET, SET if lost, INCR) each,
    // one PUBLISH.
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    store
        .bump(&[Token::url("/docs/1"), Token::url("/docs/2")])
        .await
        .unwrap();
    let mut calls = command_calls(&redis).await;
    calls.sort();
    assert_eq!(
        calls,
        vec![
            ("evalsha".to_string(), 2),
            ("get".to_string(), 2),  // inside the scripts
            ("incr".to_string(), 2), // inside the scripts
            ("publish".to_string(), 1)
        ]
    );

    // And the tiered store answers a hot key from L1: no round trip.
    let tiered = tiered_store(RedisNodes::Single(redis.url()), &stop).await;
    assert!(tiered.lookup(&key(9)).await.unwrap().record.is_none());
    let g9 = tiered.lookup(&key(9)).await.unwrap().generations;
    tiered
        .insert(&key(9), entry(&key(9), g9, "z", Duration::from_secs(60)))
        .await
        .unwrap();
    let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    for _ in 0..10 {
        assert!(tiered.lookup(&key(9)).await.unwrap().record.is_some());
    }
    assert_eq!(command_calls(&redis).await, vec![], "L1 hits cost nothing");
    let info: String = redis.cmd(&["INFO", "commandstats"]).await;
    assert!(!info.contains("cmdstat_keys") && !info.contains("cmdstat_scan"));
    stop.cancel();
}
