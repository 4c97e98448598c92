//! The response body type of the proxy, and bounded collection of an
//! upstream body for storing.
//!
//! A hit answers with `Full(bytes)`, a refcounted slice of the stored body:
//! no copy. A response that is not stored streams straight through. A
//! response being stored is collected up to `cache.max_body_bytes`; if it
//! turns out larger, what was read so far is sent first and the rest streams
//! on (`Chain`), unstored.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::upstream::ResponseBody;

/// A proxy response body.
#[derive(Debug)]
pub enum Body {
    /// No body.
    Empty,
    /// A complete body in memory (`None` once sent).
    Full(Option<Bytes>),
    /// An upstream body, streamed as it arrives.
    Stream(ResponseBody),
    /// Chunks already read, then the rest of an upstream body. Boxed: it is
    /// rare, and every response's body is as large as its largest kind.
    Chain(Box<Chained>),
}

/// What [`Body::Chain`] holds.
#[derive(Debug)]
pub struct Chained {
    /// Read but not yet sent.
    buffered: VecDeque<Bytes>,
    /// The remainder.
    rest: ResponseBody,
}

/// The result of [`collect_limited`].
#[derive(Debug)]
pub enum Collected {
    /// The whole body, within the limit.
    Complete(Bytes),
    /// Over the limit: a body that replays what was read and streams the rest.
    TooLarge(Body),
}

impl Body {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }
}

/// Reads `body` whole if it fits in `limit` bytes.
///
/// Each piece is copied as it arrives into one buffer (sized from the
/// declared length when there is one) and let go at once: a piece is a
/// slice of the upstream connection's read buffer, and while any slice
/// lives hyper cannot reuse that buffer and allocates another. Holding the
/// pieces until the end would cost a second body's worth per fill in
/// flight. The stored body is exactly sized: a body of unknown length is
/// copied once more when its buffer grew past it.
///
/// # Errors
///
/// When the upstream body fails or ends early; the response is then a 502.
pub async fn collect_limited(
    mut body: ResponseBody,
    limit: u64,
) -> Result<Collected, hyper::Error> {
    let declared = http_body::Body::size_hint(&body)
        .exact()
        .filter(|n| *n <= limit);
    let mut out = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers are not stored
        };
        if (out.len() + data.len()) as u64 > limit {
            let mut buffered = VecDeque::with_capacity(2);
            buffered.push_back(out.freeze());
            buffered.push_back(data);
            return Ok(Collected::TooLarge(Body::Chain(Box::new(Chained {
                buffered,
                rest: body,
            }))));
        }
        out.extend_from_slice(&data);
    }
    Ok(Collected::Complete(if out.capacity() == out.len() {
        out.freeze()
    } else {
        Bytes::copy_from_slice(&out)
    }))
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(incoming) => Pin::new(incoming).poll_frame(cx),
            Body::Chain(chain) => match chain.buffered.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(&mut chain.rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Stream(incoming) => incoming.is_end_stream(),
            Body::Chain(chain) => chain.buffered.is_empty() && chain.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(incoming) => incoming.size_hint(),
            Body::Chain(chain) => {
                let read: u64 = chain.buffered.iter().map(|b| b.len() as u64).sum();
                let rest = chain.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(read + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(read + upper);
                }
                hint
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A client's request body on its way upstream, held to
    /// `limits.max_request_body_bytes` and `limits.request_body_timeout`
    /// (the longest wait for the next piece): a body that breaks either
    /// ends with a [`BodyLimit`] error, which fails the upstream request;
    /// the proxy answers 413 or 408 and the app sees an aborted request,
    /// never a truncated one it could mistake for complete. The timer lives
    /// inline and is re-armed, not re-allocated, for each wait.
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: tokio::time::Sleep,
        armed: bool,
        remaining: u64,
        limit: u64,
        idle: std::time::Duration,
        pace: Pace,
    }
}

/// `limits.request_body_min_rate` over `limits.request_body_rate_window`:
/// the bytes of the current window and when it began (the first frame).
#[derive(Debug)]
pub struct Pace {
    min_rate: u64,
    window: std::time::Duration,
    began: Option<tokio::time::Instant>,
    bytes: u64,
}

impl Pace {
    /// At least `min_rate` bytes per second over each `window`; 0: any.
    pub fn new(min_rate: u64, window: std::time::Duration) -> Self {
        Self {
            min_rate,
            window,
            began: None,
            bytes: 0,
        }
    }

    /// Counts `len` more bytes; whether the body still keeps the pace.
    /// Judged when a window has passed, so a body is never cut off before
    /// it has had one whole window.
    fn keeps_up(&mut self, len: u64) -> bool {
        if self.min_rate == 0 {
            return true;
        }
        let now = tokio::time::Instant::now();
        let began = *self.began.get_or_insert(now);
        self.bytes += len;
        let spent = now - began;
        if spent < self.window {
            return true;
        }
        let needed = self.min_rate as f64 * spent.as_secs_f64();
        self.began = Some(now);
        std::mem::take(&mut self.bytes) as f64 >= needed
    }
}

/// Why a [`Guarded`] body was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyLimit {
    /// More than the limit was sent.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// No data for this long.
    #[error("no request body data for {0:?}")]
    Timeout(std::time::Duration),
    /// Fewer bytes per second than this, over a window.
    #[error("request body slower than {0} bytes per second")]
    TooSlow(u64),
    /// The body could not be read: bad chunked framing, or the client
    /// closed the connection before its end.
    #[error("request body malformed or cut off")]
    Malformed,
}

impl BodyLimit {
    /// The first [`BodyLimit`] in `error`'s source chain.
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<BodyLimit> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(limit) = e.downcast_ref::<BodyLimit>() {
                return Some(*limit);
            }
            next = e.source();
        }
        None
    }
}

impl<B> Guarded<B> {
    /// Guards `inner`.
    pub fn new(inner: B, limit: u64, idle: std::time::Duration, pace: Pace) -> Self {
        Self {
            inner,
            timer: tokio::time::sleep(idle),
            armed: false,
            remaining: limit,
            limit,
            idle,
            pace,
        }
    }
}

impl<B> http_body::Body for Guarded<B>
where
    B: http_body::Body<Data = Bytes, Error = crate::proxy::upstream::BoxError>,
{
    type Data = Bytes;
    type Error = crate::proxy::upstream::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.armed = false;
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        return Poll::Ready(Some(Err(BodyLimit::TooLarge(*this.limit).into())));
                    }
                    *this.remaining -= len;
                    if !this.pace.keeps_up(len) {
                        let rate = this.pace.min_rate;
                        return Poll::Ready(Some(Err(BodyLimit::TooSlow(rate).into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The client's side of the exchange: its framing or its
                // connection, never the app's.
                tracing::debug!(cause = %e, "request body unreadable");
                Poll::Ready(Some(Err(BodyLimit::Malformed.into())))
            }
            Poll::Ready(None) => {
                *this.armed = false;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !*this.armed {
                    let deadline = tokio::time::Instant::now() + *this.idle;
                    this.timer.as_mut().reset(deadline);
                    *this.armed = true;
                }
                match this.timer.poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(BodyLimit::Timeout(*this.idle).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `Content-Length` of a message, if it has a valid one.
pub(crate) fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
