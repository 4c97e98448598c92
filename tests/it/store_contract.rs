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
        auth: Default::default(),
        tls: None,
        pool_size: 2,
        timeout: Duration::from_millis(500),
        key_prefix: PREFIX.into(),
        fence_after_outage: true,
        on_purge_failure: cachecar::cache::redis::OnPurgeFailure::Wait,
        purge_wait: Duration::from_secs(2),
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
    let g = reads_back_what_it_stored(store).await;
    replaces_and_bumps(store, &g).await;
    keeps_variant_indexes(store).await;
    keeps_records_until_keep_until(store).await;
}

/// An unknown key has no record and one stable generation per token; an
/// insert reads back exactly. Returns the generations of `key(1)`.
async fn reads_back_what_it_stored(store: &dyn Store) -> Vec<u64> {
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
    g
}

/// Other keys are untouched; replacing a record replaces it; a bump
/// changes exactly the named tokens.
async fn replaces_and_bumps(store: &dyn Store, g: &[u64]) {
    let a = key(1);
    let b = key(2);
    let gb = store.lookup(&b).await.unwrap();
    assert!(gb.record.is_none());
    store
        .insert(&a, entry(&a, g.to_vec(), "beta", Duration::from_secs(60)))
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
}

/// Variant indexes round-trip.
async fn keeps_variant_indexes(store: &dyn Store) {
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
}

/// Records are kept until `keep_until` and no longer.
async fn keeps_records_until_keep_until(store: &dyn Store) {
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
    // The layout of docs/architecture.md ("Redis layout"), under the prefix.
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

/// One instance's fill lock holds the other off, on keys in many slots.
async fn locks_are_exclusive_across_slots(store: &RedisStore, other: &RedisStore) {
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
    locks_are_exclusive_across_slots(&store, &other).await;

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

mod remote;
