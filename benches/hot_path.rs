//! Hot-path micro-benchmarks: normalization + route match + key build,
//! memory lookup, entry encode/decode, and `Cache-Status` rendering.
//! `cargo bench --bench hot_path`; the load comparison with nginx is
//! `benches/load.sh` (docs/benchmarks.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cachecar::cache::memory::MemoryStore;
use cachecar::cache::{Entry, Record, Store, codec};
use cachecar::config::load_str;
use cachecar::outcome::{CacheOutcome, Fwd};
use cachecar::proxy::key;
use cachecar::rules::normalize;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;

const CONFIG: &str = r#"
upstream: { url: "http://127.0.0.1:8000" }
identity: { hash_key: "benchmark-identity-key" }
routes:
  - { name: conversation-list, match: GET /api/conversations, scope: user, key: { headers: [accept-language] } }
  - { name: conversation-messages, match: "GET /api/conversations/{id}/messages", scope: user }
  - { name: conversation, match: "GET /api/conversations/{id}", scope: user }
  - { name: documents, match: "GET /api/documents/{*path}" }
invalidate:
  - { match: "PUT /api/conversations/{id}", purge: ["GET /api/conversations/{id}", "GET /api/conversations/{id}/*", GET /api/conversations] }
"#;

fn request() -> Request<()> {
    Request::builder()
        .uri("/api/conversations/42?b=2&a=1")
        .header("host", "api.example")
        .header("authorization", "Bearer alice")
        .body(())
        .unwrap()
}

fn bench_key(c: &mut Criterion) {
    let config = load_str(CONFIG, &|_| None).unwrap();
    let req = request();
    c.bench_function("normalize+route+key", |b| {
        b.iter(|| {
            let target = normalize::request(req.uri(), req.headers()).unwrap();
            let m = config.routes.find(&target.path).unwrap();
            let id = key::identity(&config.identity, req.headers());
            black_box(key::for_request(
                m.value,
                &m.captures,
                &target,
                req.headers(),
                id,
            ))
        })
    });
}

fn bench_memory_lookup(c: &mut Criterion) {
    let config = load_str(CONFIG, &|_| None).unwrap();
    let req = request();
    let target = normalize::request(req.uri(), req.headers()).unwrap();
    let m = config.routes.find(&target.path).unwrap();
    let id = key::identity(&config.identity, req.headers());
    let k = key::for_request(m.value, &m.captures, &target, req.headers(), id);
    let store = MemoryStore::new(64 << 20, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let generations = rt.block_on(store.lookup(&k)).unwrap().generations;
    let entry = Entry::fresh(
        k.hash,
        Bytes::from(vec![b'x'; 2048]),
        SystemTime::now(),
        Duration::from_secs(3600),
        generations,
    );
    let record = Record::Response(Arc::new(entry));
    rt.block_on(store.insert(&k, record.clone())).unwrap();
    c.bench_function("memory lookup (hit)", |b| {
        b.iter(|| black_box(rt.block_on(store.lookup(&k)).unwrap()))
    });
    // The Redis store's value format: encode at store time, decode per
    // Redis hit.
    let encoded = Bytes::from(codec::encode(&record));
    c.bench_function("entry encode (2 KiB body)", |b| {
        b.iter(|| black_box(codec::encode(&record)))
    });
    c.bench_function("entry decode (2 KiB body)", |b| {
        b.iter(|| black_box(codec::decode(encoded.clone()).unwrap()))
    });
}

fn bench_cache_status(c: &mut Criterion) {
    c.bench_function("cache-status render", |b| {
        b.iter(|| black_box(CacheOutcome::miss(Fwd::Miss).stored().cache_status()))
    });
}

criterion_group!(benches, bench_key, bench_memory_lookup, bench_cache_status);
criterion_main!(benches);
