//! The accept loop: TCP -> hyper-util's auto connection builder (HTTP/1.1,
//! and HTTP/2 with prior knowledge, "h2c") -> a hyper service, with graceful
//! shutdown.
//!
//! Limits (`limits` in the config) are enforced here where hyper can: the
//! idle timeout (with a timer; hyper silently has none without one, which
//! leaves slowloris connections open forever), the header read timeout
//! from a head's first byte (`paced`), header bytes and
//! count (431), HTTP/2 stream concurrency and reset floods, and a bound on
//! open connections: past `max_connections` the loop stops accepting, so
//! new connections wait in the kernel's backlog instead of costing memory.
//!
//! Winding down ([`Winding`]) has two steps. Closing connections: every
//! HTTP/1 answer says `Connection: close` while the listener still
//! accepts, so keep-alive clients move to new connections. Stopping: the
//! loop stops accepting, serves what is left in the accept queue, closes
//! the listener (new connections are refused), asks every open connection
//! to finish its in-flight requests and close (one that has not brought a
//! request yet gets a moment to), and waits for them up to `grace`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

mod drain;
mod interim;
mod paced;

use crate::config::Limits;
use crate::proxy::interim::Interim;
use crate::proxy::upstream::BoxError;

/// HTTP/2 streams a client may reset before the server has accepted them,
/// at once: the "rapid reset" flood (CVE-2023-44487) is bounded by it.
const H2_MAX_PENDING_RESETS: usize = 20;
/// HTTP/2 streams the server may reset for a client's protocol errors
/// before the connection is closed (CVE-2024-27316 style floods).
const H2_MAX_LOCAL_RESETS: usize = 1024;

/// The connection builder with `limits` applied.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper counts this from when the connection goes idle: the
        // keep-alive idle timeout. The head's own, from its first byte, is
        // `paced`'s.
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        // WebSocket over HTTP/2 (RFC 8441), tunnelled per `upgrade`.
        .enable_connect_protocol();
    builder
}

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// How a listener is wound down: first [`Winding::close_connections`],
/// while it still accepts (every HTTP/1 answer from then on closes its
/// connection, so keep-alive clients move to new connections instead of
/// finding theirs closed under a request), then [`Winding::stop`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Winding {
    closing: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Winding {
    /// Stopped when `stop` is cancelled, without the closing step.
    pub(crate) fn stopped_by(stop: CancellationToken) -> Self {
        Self {
            closing: Arc::default(),
            stop,
        }
    }

    /// Answers from now on close their HTTP/1 connections.
    pub(crate) fn close_connections(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Stops accepting and asks every connection to finish.
    pub(crate) fn stop(&self) {
        self.close_connections();
        self.stop.cancel();
    }
}

/// Serves connections from `listener` until `winding` stops it, then
/// drains. Returns `false` if connections were still open when `grace`
/// ran out.
pub async fn serve<M, S, B>(
    name: &'static str,
    listener: TcpListener,
    make_service: M,
    limits: Limits,
    winding: Winding,
    grace: Duration,
) -> bool
where
    M: Fn(SocketAddr, Interim) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let connections = Connections {
        name,
        builder: builder(&limits),
        drain: drain::Drain::default(),
        closing: winding.closing.clone(),
        header_read_timeout: limits.header_read_timeout,
    };
    // A permit per open connection, so that shutdown can wait for all of
    // them to come back. (No system has 2^32 descriptors.)
    let max_connections = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    while let Some((slot, stream, peer)) = accept(name, &listener, &slots, &winding.stop).await {
        connections.spawn(stream, peer, &make_service, slot);
    }
    // Connections the kernel completed before the close are served (each
    // is asked to finish with its first request) rather than reset.
    for (stream, peer) in backlog(name, listener) {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            break;
        };
        connections.spawn(stream, peer, &make_service, slot);
    }
    finish(name, &connections.drain, &slots, max_connections, grace).await
}

/// What every connection of one listener is served with.
struct Connections {
    name: &'static str,
    builder: auto::Builder<TokioExecutor>,
    drain: drain::Drain,
    closing: Arc<AtomicBool>,
    header_read_timeout: Duration,
}

impl Connections {
    /// Serves `stream` from `peer` with `service` in a task of its own,
    /// holding `slot` until it ends.
    fn spawn<M, S, B>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        make_service: &M,
        slot: OwnedSemaphorePermit,
    ) where
        M: Fn(SocketAddr, Interim) -> S,
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let _ = stream.set_nodelay(true);
        let phase = Arc::new(paced::Phase::new(self.closing.clone()));
        let service = paced::Phased {
            inner: make_service(peer, Interim::new(phase.interim.clone())),
            phase: phase.clone(),
        };
        let stream = paced::Paced::new(stream, phase.clone(), self.header_read_timeout);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let watched = self.drain.watch(connection, phase);
        let name = self.name;
        // No span around the connection: it would be entered and left on
        // every poll of every request; the one log line names the peer.
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = watched.await {
                tracing::debug!(listener = name, %peer, cause = %e, "connection ended with an error");
            }
        });
    }
}

/// The connections waiting in `listener`'s accept queue, taken without
/// waiting; the listener is closed afterwards.
fn backlog(name: &'static str, listener: TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let Ok(listener) = listener.into_std() else {
        return Vec::new();
    };
    let mut waiting = Vec::new();
    // Non-blocking (tokio set it so): the loop ends at the queue's end.
    while let Ok((stream, peer)) = listener.accept() {
        // An accepted socket does not inherit the listener's non-blocking
        // mode, and tokio refuses a blocking one.
        match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => waiting.push((stream, peer)),
            Err(e) => tracing::debug!(listener = name, %peer, cause = %e, "queued connection lost"),
        }
    }
    waiting
}

/// The next connection and its slot; `None` once `stop` fires.
async fn accept(
    name: &'static str,
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let slot = tokio::select! {
        biased;
        () = stop.cancelled() => return None,
        slot = slots.clone().acquire_owned() => slot.ok()?,
    };
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((slot, stream, peer)),
                Err(e) => {
                    tracing::warn!(listener = name, cause = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
}

/// Asks every open connection to finish and waits for them, at most
/// `grace`; whether they all did.
async fn finish(
    name: &'static str,
    drain: &drain::Drain,
    slots: &Semaphore,
    max_connections: u32,
    grace: Duration,
) -> bool {
    let open = max_connections as usize - slots.available_permits();
    if open > 0 {
        tracing::info!(
            listener = name,
            open,
            "waiting for open connections to finish"
        );
    }
    drain.start();
    tokio::select! {
        _ = slots.acquire_many(max_connections) => true,
        () = tokio::time::sleep(grace) => {
            tracing::warn!(listener = name, ?grace, "grace period expired; closing remaining connections");
            false
        }
    }
}
