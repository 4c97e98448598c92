//! The least a hyper-based server can do per request: the reference points
//! `benches/load.sh` measures beside nginx and cachecar (docs/benchmarks.md).
//!
//! ```text
//! bare_hyper serve ADDR BODY_FILE   answer every request with the file's bytes
//! bare_hyper proxy ADDR UPSTREAM    forward every request to UPSTREAM (host:port)
//! ```
//!
//! `serve` is the ceiling for a hit: hyper's server and nothing else.
//! `proxy` is the floor for a pass-through: hyper's server, hyper's client,
//! one upstream connection per client connection (no pool, no lock shared
//! between connections), the request and response passed on untouched.
//! Both run on a current-thread runtime with mimalloc, as cachecar does on
//! one CPU. Nothing here is safe to expose: no timeouts, no limits.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, addr, arg] = args.as_slice() else {
        return Err("usage: bare_hyper serve ADDR BODY_FILE | proxy ADDR UPSTREAM".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match mode.as_str() {
        "serve" => runtime.block_on(serve(addr, Bytes::from(std::fs::read(arg)?))),
        "proxy" => runtime.block_on(proxy(addr, arg.clone())),
        other => Err(format!("unknown mode {other:?}: serve or proxy").into()),
    }
}

async fn serve(addr: &str, body: Bytes) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let service = service_fn(move |_: Request<Incoming>| {
            let response = Response::builder()
                .header("content-type", "application/json")
                .header("cache-control", "max-age=3600")
                .body(Full::new(body.clone()))
                .expect("static response parts are valid");
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

async fn proxy(addr: &str, upstream: String) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(origin) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = origin.set_nodelay(true);
            let Ok((sender, connection)) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(origin)).await
            else {
                return;
            };
            tokio::spawn(connection);
            let sender: Arc<Mutex<SendRequest<Incoming>>> = Arc::new(Mutex::new(sender));
            let service = service_fn(move |request: Request<Incoming>| {
                let sender = sender.clone();
                async move {
                    let mut sender = sender.lock().await;
                    sender.ready().await?;
                    let response = sender.send_request(request);
                    drop(sender);
                    response.await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
