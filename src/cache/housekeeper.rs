//! Keeps moka's maintenance off the request path.
//!
//! moka does its maintenance (applying recorded reads and writes, evicting,
//! removing expired entries) inline, in whichever cache access finds it due.
//! After a quiet spell, that access pays for every entry that expired in the
//! meantime, all at once: without an eviction listener moka puts no bound on
//! one run, and with one the bound is 100 ms. In the tiered store, whose L1
//! keeps entries for `l1.ttl`, a burst of 35k misses followed by a 5 s pause
//! stalled the next requests for over 100 ms while the L1 dropped them.
//!
//! A [`Housekeeper`] runs the maintenance on a thread of its own every
//! [`INTERVAL`] instead, so each run finds only what expired since the last
//! one, and the event loop is never the one to pay for a backlog. The thread
//! stops when the housekeeper is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// How often maintenance runs. moka runs it itself on an access 300 ms
/// after the last run, so a shorter interval keeps accesses from finding
/// it due after a pause.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// A thread running `task` every [`INTERVAL`] until dropped.
pub(crate) struct Housekeeper {
    stop: Arc<AtomicBool>,
    thread: Thread,
}

impl Housekeeper {
    /// Starts the thread. Without one (the process may not create threads),
    /// maintenance stays inline in moka, as before: logged, not fatal.
    pub(crate) fn start(task: impl Fn() + Send + 'static) -> Option<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("cachecar-housekeeper".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    std::thread::park_timeout(INTERVAL);
                    if stopped.load(Ordering::Acquire) {
                        break;
                    }
                    task();
                }
            });
        match spawned {
            Ok(handle) => Some(Self {
                stop,
                thread: handle.thread().clone(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no housekeeping thread: cache maintenance runs inline");
                None
            }
        }
    }
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    use super::*;

    #[test]
    fn runs_until_dropped() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let keeper = Housekeeper::start(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        })
        .expect("a thread");
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(runs.load(Ordering::Relaxed) >= 2, "ran periodically");
        drop(keeper);
        // The thread wakes at once and stops; a run already under way may
        // still finish.
        std::thread::sleep(Duration::from_millis(50));
        let after = runs.load(Ordering::Relaxed);
        std::thread::sleep(INTERVAL * 3);
        assert_eq!(runs.load(Ordering::Relaxed), after, "stopped when dropped");
    }
}
