use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::cache::Entry;

fn key(n: u8) -> CacheKey {
    CacheKey {
        route: "r".into(),
        hash: KeyHash([n; 32]),
        tokens: vec![Token::route("r"), Token::url(&format!("/{n}"))],
    }
}

fn entry(key: &CacheKey, generations: Vec<u64>, body: usize, keep: Duration) -> Record {
    let body = Bytes::from(vec![b'x'; body]);
    Record::Response(Arc::new(Entry::fresh(
        key.hash,
        body,
        SystemTime::now(),
        keep,
        generations,
    )))
}

/// Stores `count` entries of `body` bytes, kept for `keep`.
async fn fill(store: &MemoryStore, count: u8, body: usize, keep: Duration) {
    for n in 0..count {
        let k = key(n);
        let g = store.lookup(&k).await.unwrap().generations;
        store.insert(&k, entry(&k, g, body, keep)).await.unwrap();
    }
}

#[tokio::test]
async fn lookup_returns_entry_and_stable_generations() {
    let store = MemoryStore::new(1 << 20, None);
    let k = key(1);
    let first = store.lookup(&k).await.unwrap();
    assert!(first.record.is_none());
    assert_eq!(first.generations.len(), 2);
    let again = store.lookup(&k).await.unwrap();
    assert_eq!(first.generations, again.generations);
    store
        .insert(
            &k,
            entry(&k, first.generations.clone(), 10, Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let hit = store.lookup(&k).await.unwrap();
    let Some(Record::Response(e)) = hit.record else {
        panic!("stored response expected");
    };
    assert_eq!(e.generations, hit.generations);
}

#[tokio::test]
async fn bump_changes_only_the_named_tokens() {
    let store = MemoryStore::new(1 << 20, None);
    let (a, b) = (key(1), key(2));
    let bumped = Token::url("/1");
    // Tokens that share the bumped one's slot are bumped with it, by
    // design; these three are checked only when they do not.
    let apart = |t: &Token| store.generations.slot(t) != store.generations.slot(&bumped);
    let ga = store.lookup(&a).await.unwrap().generations;
    let gb = store.lookup(&b).await.unwrap().generations;
    store.bump(std::slice::from_ref(&bumped)).await.unwrap();
    let ga2 = store.lookup(&a).await.unwrap().generations;
    let gb2 = store.lookup(&b).await.unwrap().generations;
    assert_ne!(ga[1], ga2[1], "url token bumped");
    if apart(&a.tokens[0]) {
        assert_eq!(ga[0], ga2[0], "route token untouched");
    }
    if b.tokens.iter().all(apart) {
        assert_eq!(gb, gb2);
    }
}

#[tokio::test]
async fn each_bump_draws_a_value_never_used_before() {
    let store = MemoryStore::new(1 << 20, None);
    let k = key(1);
    let mut seen = vec![store.lookup(&k).await.unwrap().generations[1]];
    for _ in 0..5 {
        store.bump(&k.tokens[1..]).await.unwrap();
        let now = store.lookup(&k).await.unwrap().generations[1];
        assert!(seen.iter().all(|&s| now > s), "{now} after {seen:?}");
        seen.push(now);
    }
}

#[tokio::test]
async fn a_flood_of_new_urls_allocates_no_counters() {
    let store = MemoryStore::new(1 << 20, None);
    for n in 0..10_000u32 {
        let k = CacheKey {
            route: "r".into(),
            hash: KeyHash([0; 32]),
            tokens: vec![Token::route("r"), Token::url(&format!("/{n}"))],
        };
        store.lookup(&k).await.unwrap();
    }
    assert_eq!(store.generations.allocated_bytes(), 0);
}

#[tokio::test]
async fn entries_are_bounded_by_bytes() {
    let store = MemoryStore::new(64 * 1024, None);
    fill(&store, 40, 4096, Duration::from_secs(60)).await;
    let usage = store.usage().unwrap();
    assert!(usage.bytes <= 64 * 1024, "{usage:?}");
    assert!(usage.entries < 40, "{usage:?}");
}

#[tokio::test]
async fn expired_entries_leave_without_any_access() {
    let store = MemoryStore::new(1 << 20, None);
    fill(&store, 50, 100, Duration::from_millis(50)).await;
    store.entries.run_pending_tasks();
    assert_eq!(store.entries.entry_count(), 50);
    // Nothing touches the store from here on: moka by itself would
    // only drop them at the next access, all in that access.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.entries.entry_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.entries.entry_count(), 0);
}

#[tokio::test]
async fn entries_expire_at_keep_until() {
    let store = MemoryStore::new(1 << 20, None);
    let k = key(1);
    let g = store.lookup(&k).await.unwrap().generations;
    store
        .insert(&k, entry(&k, g, 1, Duration::from_millis(50)))
        .await
        .unwrap();
    assert!(store.lookup(&k).await.unwrap().record.is_some());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(store.lookup(&k).await.unwrap().record.is_none());
}
