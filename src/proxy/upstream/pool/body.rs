//! The response body that hands its connection back to the pool.

use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::Pool;
use crate::proxy::upstream::UpstreamBody;

/// Hands the connection back when the response has been read.
pub(super) struct Checkin {
    pub(super) pool: Weak<Pool>,
    /// The pool's epoch when the connection was taken.
    pub(super) epoch: u64,
    pub(super) sender: SendRequest<UpstreamBody>,
}

impl Checkin {
    fn done(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.checkin(self.epoch, self.sender);
        }
    }
}

/// An upstream response body. Once read to its end, its connection goes
/// back to the pool; dropped before that, the connection is closed.
pub struct ResponseBody {
    inner: Incoming,
    checkin: Option<Checkin>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    pub(super) fn new(inner: Incoming, checkin: Checkin) -> Self {
        let mut body = Self {
            inner,
            checkin: Some(checkin),
        };
        body.check_end();
        body
    }

    /// The body of a connection that is never pooled (an `Upgrade`
    /// handshake's).
    pub(super) fn unpooled(inner: Incoming) -> Self {
        Self {
            inner,
            checkin: None,
        }
    }

    fn check_end(&mut self) {
        if http_body::Body::is_end_stream(&self.inner)
            && let Some(checkin) = self.checkin.take()
        {
            checkin.done();
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => {
                if let Some(checkin) = this.checkin.take() {
                    checkin.done();
                }
            }
            // A failed body leaves the connection unusable.
            Some(Err(_)) => this.checkin = None,
            Some(Ok(_)) => this.check_end(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
