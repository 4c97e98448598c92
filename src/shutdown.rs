//! Process signals and readiness.
//!
//! SIGTERM (Kubernetes) and SIGINT (Ctrl-C) start a drain: readiness turns
//! 503 at once, traffic keeps being served for `shutdown.drain_delay` so
//! load balancers stop routing here, then the listener closes and in-flight
//! requests get `shutdown.grace_period` to finish (`App::run`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

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

/// Waits for SIGTERM or SIGINT and returns the signal's name.
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub async fn signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
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
