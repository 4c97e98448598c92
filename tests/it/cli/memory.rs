//! The memory bound as the kernel sees it: the binary's resident set under
//! a flood of unique URLs whose bodies run from 256 B to 64 KiB.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;

use super::*;

/// 64 KiB of body, sliced per answer: the upstream allocates nothing.
static BODY: [u8; 64 << 10] = [b'x'; 64 << 10];

/// Answers `/f/<n>` with 256 << (n % 9) bytes (256 B to 64 KiB), cacheable.
async fn sized_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: http::Request<_>| {
                    let n: usize = req
                        .uri()
                        .path()
                        .rsplit('-')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let body = Bytes::from_static(&BODY[..256 << (n % 9)]);
                    let response = http::Response::builder()
                        .header("cache-control", "max-age=3600")
                        .body(Full::new(body))
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// `clients` clients asking for new URLs on `port` for `time`; how many
/// were answered.
async fn flood(port: u16, clients: u64, time: Duration) -> u64 {
    let deadline = Instant::now() + time;
    let clients: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(async move {
                let mut served = 0u64;
                for i in 0..1_000_000u64 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let url = format!("http://127.0.0.1:{port}/f/{c}-{i}-{}", i * 7 + c);
                    assert_eq!(get(&url, &[]).await.status, 200);
                    served += 1;
                }
                served
            })
        })
        .collect();
    let mut served = 0;
    for c in clients {
        served += c.await.unwrap();
    }
    served
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `max_bytes` 32 MiB, 128 clients asking for new URLs for 6 s: the
/// resident set grows by at most 1.5 x `max_bytes` + 14 MiB over the idle
/// process's (16 MiB idle in a release build: 1.5 x + 30 MiB in all).
#[tokio::test]
async fn resident_memory_stays_within_the_bound_under_a_flood() {
    trace_init();
    let (upstream, task) = sized_upstream().await;
    let (port, admin) = (free_port(), free_port());
    let path = write_config(
        "memory-flood",
        &format!(
            "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
             upstream: {{ url: \"http://{upstream}\" }}\n\
             log: {{ access_sample: 0.0, slow_request: 0s }}\n\
             shutdown: {{ drain_delay: 0s, grace_period: 2s }}\n\
             cache: {{ memory: {{ max_bytes: 32MiB }} }}\n\
             routes:\n  - {{ name: flood, match: \"GET /f/{{*p}}\", ttl: 1h }}\n"
        ),
    );
    let child = run_quietly(&path);
    assert!(port_open(port).await, "cachecar listens");
    let pid = child.id();
    let idle = status_kib(pid, "VmRSS:");
    let served = flood(port, 128, Duration::from_secs(6)).await;
    let peak = status_kib(pid, "VmHWM:");
    let bound = (32 << 10) * 3 / 2 + (14 << 10);
    eprintln!("{served} requests; RSS idle {idle} KiB, peak {peak} KiB, bound idle + {bound} KiB");
    assert!(served > 2000, "the flood ran: {served}");
    assert!(
        peak.saturating_sub(idle) <= bound,
        "peak {peak} KiB is more than {bound} KiB over idle {idle} KiB"
    );
    assert!(terminate(child).success());
    task.abort();
}
