//! Process signals and readiness.
//!
//! SIGTERM (Kubernetes) and SIGINT (Ctrl-C) start a drain: readiness turns
//! 503 at once, traffic keeps being served for `shutdown.drain_delay` so
//! load balancers stop routing here, then the listener closes and in-flight
//! requests get `shutdown.grace_period` to finish (`App::run`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cache::Cache;

/// How long background cache writes get to finish at shutdown: entries
/// already fetched are worth a moment, not a hung exit.
pub(crate) const WRITE_GRACE: Duration = Duration::from_secs(2);

/// What `/readyz` answers.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

/// Readiness states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyState {
    /// Listeners are being set up.
    Starting,
    /// Config loaded and the proxy listener is accepting.
    Ready,
    /// Shutting down; still serving until the drain delay passes.
    Draining,
}

impl Readiness {
    /// The current state.
    pub fn state(&self) -> ReadyState {
        match self.0.load(Ordering::Acquire) {
            0 => ReadyState::Starting,
            1 => ReadyState::Ready,
            _ => ReadyState::Draining,
        }
    }

    /// Marks the proxy as accepting traffic.
    pub fn set_ready(&self) {
        let _ = self
            .0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Marks the proxy as draining; final.
    pub fn set_draining(&self) {
        self.0.store(2, Ordering::Release);
    }
}

impl ReadyState {
    /// The word `/readyz` and `/status` use.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyState::Starting => "starting",
            ReadyState::Ready => "ready",
            ReadyState::Draining => "draining",
        }
    }
}

/// Waits for SIGTERM or SIGINT and returns the signal's name. The handlers
/// are installed when this is called, not when the future is first polled:
/// call it before the listeners open, so a signal that comes as soon as
/// they do is never taken by the default handler (which kills the process
/// without a drain).
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub fn signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}

/// Cancels `token` on SIGTERM/SIGINT, with the handlers installed now:
/// call it before the listeners open.
pub fn cancel_on_signal(token: CancellationToken) {
    match signal() {
        Ok(signal) => {
            tokio::spawn(async move {
                let name = signal.await;
                tracing::info!(signal = name, "shutting down");
                token.cancel();
            });
        }
        Err(e) => {
            tracing::error!(cause = %e, "cannot listen for signals; stopping");
            token.cancel();
        }
    }
}

/// Gives pending cache writes and purges a moment to reach the store, and
/// says what is left.
pub(crate) async fn finish_writes(cache: &Cache) {
    let unwritten = cache.drain(WRITE_GRACE).await;
    if unwritten > 0 {
        tracing::warn!(unwritten, "stopping with cache writes still pending");
    }
    let unpurged = cache.drain_purges(WRITE_GRACE).await;
    if unpurged > 0 {
        tracing::error!(
            tokens = unpurged,
            "stopping with purges that never reached redis: another replica serves what \
             they ended until it fences after the outage, or the entries expire"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_moves_forward_only() {
        let r = Readiness::default();
        assert_eq!(r.state(), ReadyState::Starting);
        r.set_ready();
        assert_eq!(r.state(), ReadyState::Ready);
        r.set_draining();
        r.set_ready();
        assert_eq!(r.state(), ReadyState::Draining);
    }
}
