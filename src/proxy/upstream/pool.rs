//! Keep-alive connections to the upstream, over hyper's `conn::http1`, or
//! one shared HTTP/2 connection when the app speaks it (`connect`).
//!
//! hyper-util's pooled client costs more per request than the exchange on
//! a loopback sidecar: a spawned task per request to put the connection
//! back once the response body ends, a connect future raced against every
//! checkout, and a key hashed per request. A sidecar has one upstream, so
//! this pool is a stack of idle connections under a mutex:
//!
//! - **checkout** pops the most recently used connection that is still
//!   open and not past `idle_timeout` (a warm one: the app is least likely
//!   to have closed it), or connects a new one;
//! - **checkin** happens when the response body has been read to its end
//!   ([`ResponseBody`]); a body dropped early closes its connection, since
//!   unread bytes would corrupt the next exchange;
//! - a request the connection never sent (closed while idle) is sent again
//!   on another one; one that was sent is the caller's to retry.
//!
//! An HTTP/2 connection carries every request at once: it is kept while
//! open and shared, and a new one is made when it closes.
//!
//! Each connection is driven by its own task. The upstream can change on
//! reload: the pool belongs to one upstream (address, TLS settings,
//! version) at a time and is emptied when requests start naming another.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::{Either, FutureExt, ready};
use http::header;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use super::UpstreamBody;
use crate::config::UpstreamConfig;

mod body;
mod connect;

use body::Checkin;
pub use body::ResponseBody;
use connect::Sender;

/// Idle connections kept at most; more are closed when they come back.
const MAX_IDLE: usize = 1024;
/// Connections that may turn out closed during one checkout before a new
/// one is made: bounds the resend loop.
const MAX_RESENDS: usize = 4;

/// The pool. Shared by every request through an `Arc`.
pub(super) struct Pool {
    idle: Mutex<Idle>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

struct Idle {
    /// The upstream the connections lead to.
    target: Option<UpstreamConfig>,
    /// Counts changes of `target`: a connection comes back only to the
    /// epoch it was taken in (a number to compare, not a target to clone
    /// and carry in every response body).
    epoch: u64,
    /// HTTP/1.1 connections, most recently used last.
    conns: Vec<IdleConn>,
    /// The HTTP/2 connection, shared by every request while it is open.
    h2: Option<http2::SendRequest<UpstreamBody>>,
}

struct IdleConn {
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

/// Why an exchange failed, for [`super::UpstreamError`].
pub(super) enum Failure {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The exchange failed on a connection.
    Exchange(hyper::Error),
}

impl From<Failure> for super::UpstreamError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Connect(e) => super::UpstreamError::Connect(e),
            Failure::Exchange(e) => super::UpstreamError::Failed(e),
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.lock().map(|i| i.conns.len()).unwrap_or(0);
        f.debug_struct("Pool").field("idle", &idle).finish()
    }
}

impl Pool {
    /// An empty pool; with a tokio runtime, also a task that closes
    /// connections idle for longer than `idle_timeout`.
    pub(super) fn new(connect_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        let pool = Arc::new(Self {
            idle: Mutex::new(Idle {
                target: None,
                epoch: 0,
                conns: Vec::new(),
                h2: None,
            }),
            connect_timeout,
            idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&pool), idle_timeout));
        }
        pool
    }

    /// Sends `request` (origin-form URI, `Host` set) to `target` on a
    /// pooled or new connection.
    ///
    /// On a pooled HTTP/1.1 connection ready for it (the usual case) the
    /// request is handed to the connection before the future is made, and
    /// the future is a combinator around hyper's: it holds what the answer
    /// needs and no more. As an `async fn` it would hold the request three
    /// times, all copied when the exchange is boxed: an `async fn` keeps
    /// its arguments for its whole life, and an `async` block holds a
    /// future it awaits twice, as its capture and as what it polls.
    pub(super) fn send<'a>(
        self: &'a Arc<Self>,
        target: &'a UpstreamConfig,
        request: Request<UpstreamBody>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, Failure>> + Send + 'a {
        let (epoch, pooled) = self.checkout(target);
        match pooled {
            Some(Sender::Http1(mut sender)) if sender.is_ready() => {
                let response = sender.try_send_request(request);
                Either::Left(response.then(move |result| match result {
                    Ok(response) => Either::Left(ready(Ok(self.answer(epoch, sender, response)))),
                    Err(mut e) => match e.take_message() {
                        // Never written: the connection closed as we took it.
                        Some(unsent) => {
                            Either::Right(Box::pin(self.send_waiting(target, epoch, unsent, None)))
                        }
                        None => Either::Left(ready(Err(Failure::Exchange(e.into_error())))),
                    },
                }))
            }
            // Boxed: rare (no pooled connection, or one not ready yet, which
            // is waited for, or HTTP/2), and its future would otherwise be
            // carried in every request's.
            pooled => Either::Right(Box::pin(self.send_waiting(target, epoch, request, pooled))),
        }
    }

    /// The response, its body holding the connection (taken in `epoch`)
    /// until it has been read.
    fn answer(
        self: &Arc<Self>,
        epoch: u64,
        sender: http1::SendRequest<UpstreamBody>,
        response: Response<Incoming>,
    ) -> Response<ResponseBody> {
        let checkin = Checkin {
            pool: Arc::downgrade(self),
            epoch,
            sender,
        };
        response.map(|body| ResponseBody::new(body, checkin))
    }

    /// [`Pool::send`] when the request could not be handed to a pooled
    /// connection at once: waits for `pooled` (if any) to be ready, or takes
    /// another, or connects, and sends the request again while connections
    /// turn out closed.
    async fn send_waiting(
        self: &Arc<Self>,
        target: &UpstreamConfig,
        mut epoch: u64,
        mut request: Request<UpstreamBody>,
        mut pooled: Option<Sender>,
    ) -> Result<Response<ResponseBody>, Failure> {
        // Pooled connections first; the last try always on a new one.
        let mut attempts = 1;
        loop {
            let pooled = pooled.take().or_else(|| {
                if attempts >= MAX_RESENDS {
                    return None;
                }
                let (now, pooled) = self.checkout(target);
                epoch = now;
                pooled
            });
            attempts += 1;
            let reused = pooled.is_some();
            let sender = match pooled {
                Some(sender) => sender,
                // Boxed: connecting is rare, and its future (resolve,
                // connect, handshake) would otherwise be carried, and
                // copied, in every request's.
                None => Box::pin(self.connect(target, epoch)).await?,
            };
            let mut sender = match sender {
                Sender::Http1(sender) => sender,
                Sender::Http2(sender) => return send_h2(sender, target, request).await,
            };
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(Failure::Exchange(e));
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.answer(epoch, sender, response)),
                Err(mut e) => match e.take_message() {
                    // Never written: the connection was closed as we took it.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Failure::Exchange(e.into_error())),
                },
            }
        }
    }

    /// The shared HTTP/2 connection or the most recently used open
    /// HTTP/1.1 connection to `target`, if any, and the epoch a connection
    /// to it is taken in.
    fn checkout(&self, target: &UpstreamConfig) -> (u64, Option<Sender>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if !idle
            .target
            .as_ref()
            .is_some_and(|t| t.same_connections(target))
        {
            idle.target = Some(target.clone());
            idle.epoch += 1;
            idle.conns.clear();
            idle.h2 = None;
            return (idle.epoch, None);
        }
        if let Some(h2) = &idle.h2 {
            if !h2.is_closed() {
                return (idle.epoch, Some(Sender::Http2(h2.clone())));
            }
            idle.h2 = None;
        }
        let now = Instant::now();
        while let Some(conn) = idle.conns.pop() {
            if conn.sender.is_closed() {
                continue;
            }
            if now.duration_since(conn.since) >= self.idle_timeout {
                // The rest are older still.
                idle.conns.clear();
                return (idle.epoch, None);
            }
            return (idle.epoch, Some(Sender::Http1(conn.sender)));
        }
        (idle.epoch, None)
    }

    fn checkin(&self, epoch: u64, sender: http1::SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.epoch == epoch && idle.conns.len() < MAX_IDLE {
            idle.conns.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle for `idle_timeout` or more.
    fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let timeout = self.idle_timeout;
        idle.conns
            .retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < timeout);
    }

    /// A new connection to `target` (taken in `epoch`); an HTTP/2 one is
    /// also kept for every request after.
    async fn connect(&self, target: &UpstreamConfig, epoch: u64) -> Result<Sender, Failure> {
        let sender = connect::connect(target, self.connect_timeout, false).await?;
        if let Sender::Http2(h2) = &sender {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.epoch == epoch {
                idle.h2 = Some(h2.clone());
            }
        }
        Ok(sender)
    }

    /// Sends an `Upgrade` handshake (RFC 9110 §7.8) on a new HTTP/1.1
    /// connection of its own, never pooled: after a `101` the connection
    /// is the tunnel's (`hyper::upgrade::on` on the response), otherwise
    /// it closes once the answer has been read.
    pub(super) async fn send_upgrade(
        &self,
        target: &UpstreamConfig,
        request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let Sender::Http1(mut sender) =
            connect::connect(target, self.connect_timeout, true).await?
        else {
            unreachable!("an upgrade connection is always HTTP/1.1");
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(Failure::Exchange)?;
        Ok(response.map(ResponseBody::unpooled))
    }
}

/// Sends `request` on the shared HTTP/2 connection `sender`, as HTTP/2
/// wants it: the target in absolute form (`:scheme`, `:authority` from
/// `Host`), no `Host` field.
async fn send_h2(
    mut sender: http2::SendRequest<UpstreamBody>,
    target: &UpstreamConfig,
    mut request: Request<UpstreamBody>,
) -> Result<Response<ResponseBody>, Failure> {
    let host = request.headers_mut().remove(header::HOST);
    let authority = host
        .as_ref()
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| target.authority.clone());
    let scheme = if target.tls.is_some() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = Version::HTTP_2;
    sender.ready().await.map_err(Failure::Exchange)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(Failure::Exchange)?;
    Ok(response.map(ResponseBody::unpooled))
}

async fn reap(pool: Weak<Pool>, idle_timeout: Duration) {
    let every = idle_timeout.clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) => pool.reap(),
            None => return,
        }
    }
}
