//! Graceful shutdown of open connections, checked on every poll of every
//! connection for the price of one atomic waker registration.
//!
//! hyper-util's `GracefulShutdown` polls a `watch` channel's `changed()`
//! future on each poll of a connection, and that future takes the channel's
//! waiter lock every time, on every request. Here each connection has a
//! flag and an [`AtomicWaker`]: a poll registers the task's waker
//! (lock-free, and only a comparison when it has not changed) and reads
//! the flag.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;

/// The connections of one listener, to be asked to finish.
#[derive(Debug, Default)]
pub(super) struct Drain {
    /// One per connection; dead ones are pruned as the list grows.
    signals: Mutex<Vec<Weak<Signal>>>,
}

#[derive(Debug, Default)]
struct Signal {
    stop: AtomicBool,
    waker: AtomicWaker,
}

pin_project! {
    /// A connection that finishes its in-flight requests and closes once
    /// its [`Drain`] is started.
    pub(super) struct Watched<C> {
        #[pin]
        conn: C,
        signal: Arc<Signal>,
        stopping: bool,
    }
}

impl Drain {
    /// Watches `conn` until it ends.
    pub(super) fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        let signal = Arc::new(Signal::default());
        let mut signals = self.signals.lock().unwrap_or_else(|e| e.into_inner());
        // Amortized: the list is pruned only when it would grow, so it
        // stays within twice the most connections open at once.
        if signals.len() == signals.capacity() {
            signals.retain(|s| s.strong_count() > 0);
        }
        signals.push(Arc::downgrade(&signal));
        Watched {
            conn,
            signal,
            stopping: false,
        }
    }

    /// Asks every watched connection to finish: HTTP/1.1 ones close after
    /// the response in flight (idle ones at once), HTTP/2 ones send GOAWAY.
    pub(super) fn start(&self) {
        let signals = std::mem::take(&mut *self.signals.lock().unwrap_or_else(|e| e.into_inner()));
        for signal in signals.iter().filter_map(Weak::upgrade) {
            signal.stop.store(true, Ordering::Release);
            signal.waker.wake();
        }
    }
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.stopping {
            // Registered before the flag is read: a `start` in between
            // wakes this task again.
            this.signal.waker.register(cx.waker());
            if this.signal.stop.load(Ordering::Acquire) {
                *this.stopping = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.poll(cx)
    }
}
