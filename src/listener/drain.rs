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

use std::time::Duration;

use futures_util::task::AtomicWaker;
use hyper_util::server::graceful::GracefulConnection;
use pin_project_lite::pin_project;

use super::paced::Phase;

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

/// How long a connection that has not yet brought a request is given to
/// bring one once the drain starts. Closing it at once would reset a
/// request whose bytes are already on their way (the client connected
/// while the listener was still open); a connection opened and left idle
/// holds the drain no longer than this.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

pin_project! {
    /// A connection that finishes its in-flight requests and closes once
    /// its [`Drain`] is started.
    pub(super) struct Watched<C> {
        #[pin]
        conn: C,
        signal: Arc<Signal>,
        phase: Arc<Phase>,
        // Waiting for a first request since the drain started.
        waiting: Option<Pin<Box<tokio::time::Sleep>>>,
        stopping: bool,
    }
}

impl Drain {
    /// Watches `conn`, whose service reports to `phase`, until it ends.
    pub(super) fn watch<C: GracefulConnection>(&self, conn: C, phase: Arc<Phase>) -> Watched<C> {
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
            phase,
            waiting: None,
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
                let first_due = this.phase.has_started() || {
                    let wait = this
                        .waiting
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(FIRST_REQUEST_WAIT)));
                    wait.as_mut().poll(cx).is_ready()
                };
                if first_due {
                    *this.stopping = true;
                    this.conn.as_mut().graceful_shutdown();
                }
            }
        }
        let polled = this.conn.as_mut().poll(cx);
        if !*this.stopping && this.waiting.is_some() && this.phase.has_started() {
            // Its first request arrived: finish it and close.
            *this.stopping = true;
            this.conn.as_mut().graceful_shutdown();
            return this.conn.poll(cx);
        }
        polled
    }
}
