//! The app under the chaos run: resources `/r/<id>` whose version goes up
//! with every `PUT`. A `GET` answers the version current when it arrived,
//! after a short random delay (so fills straddle writes), cacheable for a
//! minute; a `PUT` bumps the version before it answers, and says which.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

/// The versions, shared by every connection.
type Versions = Arc<Mutex<HashMap<String, u64>>>;

/// Serves on a free loopback port until the process ends.
pub async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the origin");
    let addr = listener.local_addr().expect("origin address");
    let versions = Versions::default();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let versions = versions.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(versions.clone(), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(
    versions: Versions,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let response = Response::builder();
    if req.method() == Method::PUT {
        let version = {
            let mut v = versions.lock().unwrap_or_else(|e| e.into_inner());
            let version = v.entry(path).or_default();
            *version += 1;
            *version
        };
        let response = response
            .status(StatusCode::NO_CONTENT)
            .header("x-version", version)
            .body(Full::default());
        return Ok(response.expect("a valid response"));
    }
    let version = *versions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .unwrap_or(&0);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..20))).await;
    let body = format!("{{\"path\":\"{path}\",\"version\":{version}}}");
    let response = response
        .header("cache-control", "max-age=60")
        .header("x-version", version)
        .body(Full::new(Bytes::from(body)));
    Ok(response.expect("a valid response"))
}
