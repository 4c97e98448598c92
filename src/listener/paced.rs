//! The header read timeout, counted from a request's first byte.
//!
//! hyper's own header timer starts when a connection goes idle, so it is
//! also the keep-alive idle timeout: one value cannot both let a load
//! balancer keep idle connections for a minute and close a client that
//! trickles its header a byte at a time within seconds. hyper's timer is
//! therefore set to `limits.idle_timeout`, and [`Paced`] adds
//! `limits.header_read_timeout` from the first byte of each request's head
//! until the service is called with it.
//!
//! The deadline is checked when bytes arrive, so it needs no timer of its
//! own: a client that trickles is cut off by its next byte past the
//! deadline, and one that stops sending is left to hyper's idle timer. A
//! connection that opens with the HTTP/2 preface is left alone: its frames
//! (pings, settings) are not request heads.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::interim::Queue;

/// What the connection's service has done, for its [`Paced`] stream and
/// its drain.
#[derive(Debug, Default)]
pub(super) struct Phase {
    /// Requests whose head was read and handed to the service.
    started: AtomicU64,
    /// Requests the service has answered (response head ready).
    answered: AtomicU64,
    /// The listener's: once set, every HTTP/1 answer closes its connection.
    closing: Arc<AtomicBool>,
    /// Interim responses waiting to be written.
    pub(super) interim: Arc<Queue>,
    /// The service answered `101`: the connection is a tunnel's now, and
    /// what is read is no request head.
    upgraded: AtomicBool,
}

impl Phase {
    /// A connection's phase on a listener whose `closing` flag this is.
    pub(super) fn new(closing: Arc<AtomicBool>) -> Self {
        Self {
            closing,
            ..Self::default()
        }
    }

    /// Whether a request is with the service: bytes read now are its body.
    fn busy(&self) -> bool {
        self.started.load(Ordering::Acquire) != self.answered.load(Ordering::Acquire)
    }

    /// Whether a request has reached the service on this connection yet.
    pub(super) fn has_started(&self) -> bool {
        self.started.load(Ordering::Acquire) > 0
    }
}

/// The HTTP/2 connection preface's start (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

pin_project! {
    /// A client connection whose request heads must arrive within
    /// `timeout` of their first byte.
    pub(super) struct Paced<T> {
        #[pin]
        io: T,
        phase: Arc<Phase>,
        timeout: Duration,
        // The head being read must be complete by then.
        deadline: Option<Instant>,
        // `started` when the deadline was set.
        armed_at: u64,
        // Bytes of the HTTP/2 preface seen so far; `None` once the
        // connection is known to be HTTP/1 or is HTTP/2 (`h2`).
        preface: Option<usize>,
        h2: bool,
        // hyper's last write went out whole: the next one starts a buffer
        // of its own, where interim responses may go first.
        clean: bool,
    }
}

impl<T> Paced<T> {
    pub(super) fn new(io: T, phase: Arc<Phase>, timeout: Duration) -> Self {
        Self {
            io,
            phase,
            timeout,
            deadline: None,
            armed_at: 0,
            preface: Some(0),
            h2: false,
            clean: true,
        }
    }
}

impl<T: AsyncRead> AsyncRead for Paced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if read.is_empty() || *this.h2 || this.phase.upgraded.load(Ordering::Acquire) {
            return polled;
        }
        if let Some(seen) = *this.preface {
            let rest = &H2_PREFACE[seen..];
            let n = read.len().min(rest.len());
            *this.preface = if read[..n] != rest[..n] {
                None
            } else if seen + n == H2_PREFACE.len() {
                *this.h2 = true;
                *this.deadline = None;
                return polled;
            } else {
                Some(seen + n)
            };
        }
        let started = this.phase.started.load(Ordering::Acquire);
        if this.deadline.is_some() && started != *this.armed_at {
            *this.deadline = None; // that head reached the service
        }
        match *this.deadline {
            Some(deadline) if Instant::now() > deadline => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not complete within limits.header_read_timeout",
            ))),
            Some(_) => polled,
            None if this.phase.busy() => polled, // body bytes
            // A whole head in one read, the usual case: it reaches the
            // service now, and the clock need not be read.
            None if read.ends_with(b"\r\n\r\n") => polled,
            None => {
                *this.deadline = Some(Instant::now() + *this.timeout);
                *this.armed_at = started;
                polled
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for Paced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        if *this.clean {
            std::task::ready!(this.phase.interim.poll_write_out(this.io.as_mut(), cx))?;
        }
        let written = std::task::ready!(this.io.poll_write(cx, buf))?;
        *this.clean = written == buf.len();
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        if *this.clean {
            std::task::ready!(this.phase.interim.poll_write_out(this.io.as_mut(), cx))?;
        }
        let written = std::task::ready!(this.io.poll_write_vectored(cx, bufs))?;
        *this.clean = written == bufs.iter().map(|b| b.len()).sum::<usize>();
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        // hyper flushes the stream only with nothing of its own unwritten.
        std::task::ready!(this.phase.interim.poll_write_out(this.io.as_mut(), cx))?;
        this.io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// A connection's service, telling its [`Phase`] when a request's head
/// reaches it and when it is answered.
#[derive(Clone, Debug)]
pub(super) struct Phased<S> {
    pub(super) inner: S,
    pub(super) phase: Arc<Phase>,
}

impl<S, Q, B> hyper::service::Service<Request<Q>> for Phased<S>
where
    S: hyper::service::Service<Request<Q>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Answering<S::Future>;

    fn call(&self, request: Request<Q>) -> Self::Future {
        self.phase.started.fetch_add(1, Ordering::AcqRel);
        let h1 = request.version() < Version::HTTP_2;
        if request.version() == Version::HTTP_11 {
            self.phase.interim.open();
        }
        Answering {
            inner: self.inner.call(request),
            phase: Some(self.phase.clone()),
            h1,
        }
    }
}

pin_project! {
    /// A service future that marks its request answered when it is ready
    /// (or dropped unanswered), and asks to close an HTTP/1 connection
    /// once its listener is closing.
    pub(super) struct Answering<F> {
        #[pin]
        inner: F,
        phase: Option<Arc<Phase>>,
        h1: bool,
    }

    impl<F> PinnedDrop for Answering<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(phase) = this.project().phase.take() {
                phase.interim.close();
                phase.answered.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

impl<F, B, E> Future for Answering<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Poll::Ready(mut ready) = this.inner.poll(cx) else {
            if let Some(phase) = this.phase.as_ref() {
                phase.interim.keep_waker(cx.waker());
            }
            return Poll::Pending;
        };
        if let Some(phase) = this.phase.take() {
            phase.interim.close();
            let switched = matches!(&ready, Ok(r) if r.status() == StatusCode::SWITCHING_PROTOCOLS);
            if switched {
                phase.upgraded.store(true, Ordering::Release);
            }
            phase.answered.fetch_add(1, Ordering::AcqRel);
            if *this.h1
                && !switched
                && phase.closing.load(Ordering::Acquire)
                && let Ok(response) = &mut ready
            {
                // Keep-alive clients move to a new connection now, while
                // the listener still accepts, rather than find this one
                // closed under their next request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(ready)
    }
}

#[cfg(test)]
mod tests;
