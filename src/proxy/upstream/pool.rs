//! Keep-alive connections to the upstream, over hyper's `conn::http1`.
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
//! Each connection is driven by its own task. The upstream can change on
//! reload: the pool belongs to one authority at a time and is emptied when
//! requests start naming another.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::{Either, FutureExt, ready};
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::UpstreamBody;

mod body;

use body::Checkin;
pub use body::ResponseBody;

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
    authority: Option<Authority>,
    /// Counts changes of `authority`: a connection comes back only to the
    /// epoch it was taken in (a number to compare, not an authority to
    /// clone and carry in every response body).
    epoch: u64,
    /// Most recently used last.
    conns: Vec<IdleConn>,
}

struct IdleConn {
    sender: SendRequest<UpstreamBody>,
    since: Instant,
}

/// Why an exchange failed, for [`super::UpstreamError`].
pub(super) enum Failure {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The exchange failed on a connection.
    Exchange(hyper::Error),
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
                authority: None,
                epoch: 0,
                conns: Vec::new(),
            }),
            connect_timeout,
            idle_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&pool), idle_timeout));
        }
        pool
    }

    /// Sends `request` (origin-form URI, `Host` set) to `authority` on a
    /// pooled or new connection.
    ///
    /// On a pooled connection ready for it (the usual case) the request is
    /// handed to the connection before the future is made, and the future
    /// is a combinator around hyper's: it holds what the answer needs and
    /// no more. As an `async fn` it would hold the request three times, all
    /// copied when the exchange is boxed: an `async fn` keeps its arguments
    /// for its whole life, and an `async` block holds a future it awaits
    /// twice, as its capture and as what it polls.
    pub(super) fn send<'a>(
        self: &'a Arc<Self>,
        authority: &'a Authority,
        request: Request<UpstreamBody>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, Failure>> + Send + 'a {
        let (epoch, pooled) = self.checkout(authority);
        match pooled {
            Some(mut sender) if sender.is_ready() => {
                let response = sender.try_send_request(request);
                Either::Left(response.then(move |result| match result {
                    Ok(response) => Either::Left(ready(Ok(self.answer(epoch, sender, response)))),
                    Err(mut e) => match e.take_message() {
                        // Never written: the connection closed as we took it.
                        Some(unsent) => Either::Right(Box::pin(
                            self.send_waiting(authority, epoch, unsent, None),
                        )),
                        None => Either::Left(ready(Err(Failure::Exchange(e.into_error())))),
                    },
                }))
            }
            // Boxed: rare (no pooled connection, or one not ready yet, which
            // is waited for), and its future would otherwise be carried in
            // every request's.
            pooled => Either::Right(Box::pin(
                self.send_waiting(authority, epoch, request, pooled),
            )),
        }
    }

    /// The response, its body holding the connection (taken in `epoch`)
    /// until it has been read.
    fn answer(
        self: &Arc<Self>,
        epoch: u64,
        sender: SendRequest<UpstreamBody>,
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
        authority: &Authority,
        mut epoch: u64,
        mut request: Request<UpstreamBody>,
        mut pooled: Option<SendRequest<UpstreamBody>>,
    ) -> Result<Response<ResponseBody>, Failure> {
        // Pooled connections first; the last try always on a new one.
        let mut attempts = 1;
        loop {
            let pooled = pooled.take().or_else(|| {
                if attempts >= MAX_RESENDS {
                    return None;
                }
                let (now, pooled) = self.checkout(authority);
                epoch = now;
                pooled
            });
            attempts += 1;
            let reused = pooled.is_some();
            let mut sender = match pooled {
                Some(sender) => sender,
                // Boxed: connecting is rare, and its future (resolve,
                // connect, handshake) would otherwise be carried, and
                // copied, in every request's.
                None => Box::pin(self.connect(authority)).await?,
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

    /// The most recently used open connection to `authority`, if any, and
    /// the epoch a connection to it is taken in.
    fn checkout(&self, authority: &Authority) -> (u64, Option<SendRequest<UpstreamBody>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if !idle.authority.as_ref().is_some_and(|a| same(a, authority)) {
            idle.authority = Some(authority.clone());
            idle.epoch += 1;
            idle.conns.clear();
            return (idle.epoch, None);
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
            return (idle.epoch, Some(conn.sender));
        }
        (idle.epoch, None)
    }

    fn checkin(&self, epoch: u64, sender: SendRequest<UpstreamBody>) {
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

    /// A new connection to `authority`, its driver task spawned.
    async fn connect(&self, authority: &Authority) -> Result<SendRequest<UpstreamBody>, Failure> {
        let stream = self.dial(authority).await?;
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(UPSTREAM_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(cause = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends an `Upgrade` handshake (RFC 9110 §7.8) on a new connection of
    /// its own, never pooled: after a `101` the connection is the
    /// tunnel's (`hyper::upgrade::on` on the response), otherwise it
    /// closes once the answer has been read.
    pub(super) async fn send_upgrade(
        &self,
        authority: &Authority,
        request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, Failure> {
        let stream = self.dial(authority).await?;
        let (mut sender, connection) = http1::Builder::new()
            .max_buf_size(UPSTREAM_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Exchange)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(cause = %e, "upstream upgrade connection ended with an error");
            }
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(Failure::Exchange)?;
        Ok(response.map(ResponseBody::unpooled))
    }

    /// A TCP connection to `authority` within the connect timeout.
    async fn dial(&self, authority: &Authority) -> Result<TcpStream, Failure> {
        let stream = tokio::time::timeout(self.connect_timeout, tcp_connect(authority))
            .await
            .map_err(|_| {
                Failure::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.connect_timeout),
                ))
            })?
            .map_err(Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// The most an upstream connection's read buffer grows to. hyper's
/// default (about 400 KiB) grows with each large body and is kept for the
/// connection's life: with hundreds of pooled connections that is more
/// memory than the cache. A body larger than this is read in more pieces.
const UPSTREAM_READ_BUFFER: usize = 32 << 10;

/// Whether two authorities are spelled the same. `Authority`'s own `==`
/// ignores case byte by byte, which costs more than the rest of a checkout;
/// both sides come from the config, so a differently cased spelling only
/// means a reload changed it (and the pool starts over).
fn same(a: &Authority, b: &Authority) -> bool {
    a.as_str() == b.as_str()
}

/// Connects to the first address of `authority` that accepts.
async fn tcp_connect(authority: &Authority) -> std::io::Result<TcpStream> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }))
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
