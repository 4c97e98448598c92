//! The client side of interim responses (`proxy::interim`): a queue of
//! encoded 1xx heads per connection, written by [`super::paced::Paced`]
//! before the final response's first byte.
//!
//! hyper's server cannot send a 1xx, but it writes everything through the
//! connection's stream, and an HTTP/1 connection has one request at a time:
//! while the service works on it, hyper writes nothing else (a `100
//! Continue` aside). The queue is open from when an HTTP/1.1 request
//! reaches the service until its response is ready; heads queued meanwhile
//! are written when hyper next writes or flushes at the boundary of one of
//! its own buffers, which is at the latest the final response's head.
//! Queuing wakes the connection's task, so a head goes out while the app is
//! still working, which is the point of `103 Early Hints`.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

use crate::proxy::interim::InterimWriter;

/// One connection's interim responses waiting to be written.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// An HTTP/1.1 request is with the service and not yet answered.
    open: AtomicBool,
    /// Its upstream request may bring interim responses.
    expecting: AtomicBool,
    /// The connection task's waker is kept, to write them as they come.
    waiting: AtomicBool,
    /// Bytes are queued (read without the lock on every write).
    pending: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    heads: Vec<Bytes>,
    waker: Option<Waker>,
}

impl Queue {
    /// An HTTP/1.1 request reached the service.
    pub(super) fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// Its response is ready: what is queued still goes first, nothing more
    /// is taken.
    pub(super) fn close(&self) {
        self.open.store(false, Ordering::Release);
        // Only a request that went upstream can have a head being queued:
        // taking the lock waits for it, so it is queued (and goes first)
        // or dropped, never written into the response.
        let expecting = self.expecting.swap(false, Ordering::AcqRel);
        if self.waiting.swap(false, Ordering::AcqRel) || expecting {
            self.lock().waker = None;
        }
    }

    /// Keeps `waker` (the connection task's) while a request waits: its
    /// upstream request, maybe not sent yet, may bring interim responses.
    pub(super) fn keep_waker(&self, waker: &Waker) {
        if !self.open.load(Ordering::Acquire) {
            return;
        }
        self.waiting.store(true, Ordering::Release);
        let mut state = self.lock();
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
    }

    /// Writes what is queued to `io`, whole, before anything else.
    pub(super) fn poll_write_out<T: AsyncWrite>(
        &self,
        mut io: Pin<&mut T>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pending.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let mut state = self.lock();
        while let Some(head) = state.heads.first_mut() {
            match io.as_mut().poll_write(cx, head) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    head.advance(n);
                    if head.is_empty() {
                        state.heads.remove(0);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.store(false, Ordering::Release);
        Poll::Ready(Ok(()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl InterimWriter for Queue {
    fn expect(&self) {
        self.expecting.store(true, Ordering::Release);
    }

    fn write(&self, head: Bytes) {
        let mut state = self.lock();
        // Checked under the lock, so a head never lands after `close`
        // has let the final response go.
        if !self.open.load(Ordering::Acquire) {
            return;
        }
        state.heads.push(head);
        self.pending.store(true, Ordering::Release);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}
