//! Open tunnels: each a task copying bytes both ways between the client's
//! upgraded connection and the app's, until both sides have closed, one
//! fails, nothing has moved for `upgrade.idle_timeout`, it has been open
//! `upgrade.max_lifetime`, or the process winds down
//! ([`Tunnels::wind_down`]). Half-closes are passed on: a side that
//! finishes sending has the other side's writing half shut down, as
//! `tokio::io::copy_bidirectional` does.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::UpgradeConfig;
use crate::metrics::Metrics;

/// Every tunnel of the process.
#[derive(Debug)]
pub(crate) struct Tunnels {
    tasks: TaskTracker,
    /// Cancelled when the grace period of a wind-down runs out.
    close: CancellationToken,
    /// Tunnels reserved or open.
    open: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// A tunnel's place under `upgrade.max_tunnels`, held from before the
/// handshake is forwarded until the tunnel closes.
pub(crate) struct Slot {
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a tunnel ended: the `reason` of `upgrade_tunnels_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Both sides closed.
    Closed,
    /// A side failed (reset, or an upgrade that never completed).
    Error,
    /// Nothing moved for `upgrade.idle_timeout`.
    Idle,
    /// Open for `upgrade.max_lifetime`.
    Lifetime,
    /// The grace period of a shutdown ran out.
    Shutdown,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Error => "error",
            Ended::Idle => "idle",
            Ended::Lifetime => "lifetime",
            Ended::Shutdown => "shutdown",
        }
    }
}

impl Tunnels {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            tasks: TaskTracker::new(),
            close: CancellationToken::new(),
            open: Arc::default(),
            metrics,
        }
    }

    /// A slot for one more tunnel, unless `max` are reserved or open.
    pub(super) fn reserve(&self, max: usize) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        taken.ok().map(|_| Slot {
            open: self.open.clone(),
        })
    }

    /// Splices `client` and `app` in a task of its own once both upgrades
    /// complete (the client's once hyper has written the `101`).
    pub(super) fn open(
        &self,
        slot: Slot,
        client: OnUpgrade,
        app: OnUpgrade,
        config: &UpgradeConfig,
        route: &str,
    ) {
        let limits = (config.idle_timeout, config.max_lifetime);
        let (metrics, close, route) = (self.metrics.clone(), self.close.clone(), route.to_owned());
        self.tasks.spawn(async move {
            let _slot = slot;
            let ended = tokio::select! {
                biased;
                () = close.cancelled() => Ended::Shutdown,
                upgraded = futures_util::future::try_join(client, app) => match upgraded {
                    Ok((client, app)) => {
                        metrics.upgrade_tunnels_open.inc();
                        let ended = splice(client, app, limits, &close).await;
                        metrics.upgrade_tunnels_open.dec();
                        ended
                    }
                    Err(e) => {
                        tracing::debug!(route, cause = %e, "upgrade did not complete");
                        Ended::Error
                    }
                },
            };
            tracing::debug!(route, ended = ended.as_str(), "tunnel closed");
            metrics
                .upgrade_tunnels_closed_total
                .with_label_values(&[ended.as_str()])
                .inc();
        });
    }

    /// Tunnels open now.
    pub(crate) fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Waits up to `grace` for the open tunnels to end by themselves, then
    /// closes the rest. Tunnels opened while a listener drains are waited
    /// for and closed alike.
    pub(crate) async fn wind_down(&self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return;
        }
        let open = self.count();
        tracing::warn!(open, ?grace, "grace period expired; closing open tunnels");
        self.close.cancel();
        self.tasks.wait().await;
    }
}

/// Copies both ways until the tunnel ends, and says why.
async fn splice(
    client: hyper::upgrade::Upgraded,
    app: hyper::upgrade::Upgraded,
    (idle, lifetime): (Duration, Option<Duration>),
    close: &CancellationToken,
) -> Ended {
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Active::new(TokioIo::new(client), last.clone(), start);
    let mut app = Active::new(TokioIo::new(app), last.clone(), start);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut app);
    tokio::pin!(copy);
    let end_of_life = lifetime.map(|l| start + l);
    let never = start + Duration::from_secs(100 * 365 * 24 * 3600);
    loop {
        let quiet_until = start + Duration::from_millis(last.load(Ordering::Acquire)) + idle;
        tokio::select! {
            biased;
            done = &mut copy => return if done.is_ok() { Ended::Closed } else { Ended::Error },
            () = close.cancelled() => return Ended::Shutdown,
            () = tokio::time::sleep_until(end_of_life.unwrap_or(never)) => return Ended::Lifetime,
            () = tokio::time::sleep_until(quiet_until) => {
                // Bytes moved since the deadline was set: wait again from
                // the last of them (each turn of the loop is a later one).
                let moved = start + Duration::from_millis(last.load(Ordering::Acquire));
                if moved + idle <= Instant::now() {
                    return Ended::Idle;
                }
            }
        }
    }
}

pin_project! {
    /// A stream that notes when it last read something, in milliseconds
    /// since the tunnel's start.
    struct Active<T> {
        #[pin]
        io: T,
        last: Arc<AtomicU64>,
        start: Instant,
    }
}

impl<T> Active<T> {
    fn new(io: T, last: Arc<AtomicU64>, start: Instant) -> Self {
        Self { io, last, start }
    }
}

impl<T: AsyncRead> AsyncRead for Active<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = u64::try_from(this.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            this.last.store(now, Ordering::Release);
        }
        polled
    }
}

impl<T: AsyncWrite> AsyncWrite for Active<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
