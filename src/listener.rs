//! The accept loop: TCP -> hyper-util's auto connection builder (HTTP/1.1,
//! and HTTP/2 with prior knowledge, "h2c") -> a tower service, with graceful
//! shutdown.
//!
//! When `stop` fires the loop stops accepting and drops the listener (new
//! connections are refused), asks every open connection to finish its
//! in-flight requests and close, and waits for them up to `grace`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::proxy::upstream::BoxError;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Serves connections from `listener` until `stop` fires, then drains.
/// Returns `false` if connections were still open when `grace` ran out.
pub async fn serve<M, S, B>(
    name: &'static str,
    listener: TcpListener,
    make_service: M,
    stop: CancellationToken,
    grace: Duration,
) -> bool
where
    M: Fn(SocketAddr) -> S,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(listener = name, cause = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(make_service(peer));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(connection);
        let span = tracing::debug_span!("connection", listener = name, %peer);
        tokio::spawn(
            async move {
                if let Err(e) = watched.await {
                    tracing::debug!(cause = %e, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(
            listener = name,
            open,
            "waiting for open connections to finish"
        );
    }
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(grace) => {
            tracing::warn!(listener = name, ?grace, "grace period expired; closing remaining connections");
            false
        }
    }
}
