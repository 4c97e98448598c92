//! The mixed workload and its judge: 90% GET and 10% PUT over 200
//! resources, each request through a replica picked at random. A read is
//! stale when it returns a version older than one whose PUT was answered
//! before the read began, less an allowance for pub/sub delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const RESOURCES: u32 = 200;

/// Answered writes: per resource, each version and when its PUT was
/// answered.
#[derive(Default)]
pub struct Ledger(Mutex<HashMap<u32, Vec<(u64, Instant)>>>);

impl Ledger {
    fn acked(&self, id: u32, version: u64, at: Instant) {
        self.lock().entry(id).or_default().push((version, at));
    }

    /// The newest version of `id` whose write was answered by `by`.
    fn newest_by(&self, id: u32, by: Instant) -> u64 {
        self.lock().get(&id).map_or(0, |acks| {
            acks.iter()
                .filter(|(_, at)| *at <= by)
                .map(|(v, _)| *v)
                .max()
                .unwrap_or(0)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Vec<(u64, Instant)>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What one scenario's load saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: u64,
    pub non_2xx: u64,
    /// Connections refused: a replica was down (not accepted at all).
    pub refused: u64,
    /// Other errors: accepted, then cut off or failed.
    pub failed: u64,
    pub stale: u64,
    latencies: Vec<u32>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.requests += other.requests;
        self.non_2xx += other.non_2xx;
        self.refused += other.refused;
        self.failed += other.failed;
        self.stale += other.stale;
        self.latencies.extend(other.latencies);
    }

    /// The 99th percentile latency, in milliseconds.
    pub fn p99_ms(&mut self) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        let i = (self.latencies.len() * 99 / 100).min(self.latencies.len() - 1);
        f64::from(self.latencies[i]) / 1000.0
    }
}

/// The load, running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Stats>>,
}

impl Load {
    /// `workers` clients against the replicas on `ports`, judged by a
    /// ledger shared with no other run; reads may lag writes by `allowance`.
    pub fn start(ports: &[u16], workers: usize, allowance: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Ledger::default());
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let workers = (0..workers)
            .map(|_| {
                let worker = Worker {
                    ports: ports.to_vec(),
                    client: client.clone(),
                    ledger: ledger.clone(),
                    allowance,
                };
                tokio::spawn(worker.run(stop.clone()))
            })
            .collect();
        Self { stop, workers }
    }

    pub async fn stop(self) -> Stats {
        self.stop.store(true, Ordering::Release);
        let mut stats = Stats::default();
        for w in self.workers {
            stats.merge(w.await.expect("worker"));
        }
        stats
    }
}

struct Worker {
    ports: Vec<u16>,
    client: Client<HttpConnector, Full<Bytes>>,
    ledger: Arc<Ledger>,
    allowance: Duration,
}

impl Worker {
    async fn run(self, stop: Arc<AtomicBool>) -> Stats {
        let mut stats = Stats::default();
        // Bounded: a scenario is seconds long, this is far more.
        for _ in 0..10_000_000u64 {
            if stop.load(Ordering::Acquire) {
                break;
            }
            self.one(&mut stats).await;
        }
        stats
    }

    async fn one(&self, stats: &mut Stats) {
        let id = fastrand::u32(0..RESOURCES);
        let port = self.ports[fastrand::usize(0..self.ports.len())];
        let write = fastrand::u8(0..10) == 0;
        let method = if write { Method::PUT } else { Method::GET };
        let request = Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}/r/{id}"))
            .body(Full::default())
            .expect("a valid request");
        let started = Instant::now();
        let sent =
            tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await;
        stats.requests += 1;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) if e.is_connect() => {
                stats.refused += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                return;
            }
            _ => {
                stats.failed += 1;
                return;
            }
        };
        let status = response.status();
        let version: u64 = response
            .headers()
            .get("x-version")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
        if response.into_body().collect().await.is_err() {
            stats.failed += 1;
            return;
        }
        stats
            .latencies
            .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !status.is_success() {
            stats.non_2xx += 1;
        } else if write {
            self.ledger.acked(id, version, Instant::now());
        } else if let Some(by) = started.checked_sub(self.allowance)
            && version < self.ledger.newest_by(id, by)
        {
            stats.stale += 1;
        }
    }
}
