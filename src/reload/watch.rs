//! The triggers of a reload besides `SIGHUP` and the admin API: a change
//! in the config file's directory (notify, non-recursive), debounced, and
//! a poll of the file's content hash every `reload.poll_interval`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Reloader, Trigger};
use crate::config::ReloadConfig;

/// Events closer together than this are one change (a ConfigMap update is
/// several renames; an editor's save is a write and a rename).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A steady stream of events still reloads this often.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

impl Reloader {
    /// Watches the file's directory (if `settings.watch`) and polls its
    /// hash (every `settings.poll_interval`) until `stop`.
    pub fn spawn_watch(&self, settings: ReloadConfig, stop: CancellationToken) {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = if settings.watch {
            watch_dir(&self.inner.path, tx, settings.poll_interval)
        } else {
            None
        };
        let reloader = self.clone();
        tokio::spawn(async move {
            // Dropping the watcher ends the notify thread.
            let _watcher = watcher;
            reloader.watch_loop(rx, settings.poll_interval, stop).await;
        });
    }

    async fn watch_loop(
        &self,
        mut events: mpsc::UnboundedReceiver<()>,
        poll_every: Option<Duration>,
        stop: CancellationToken,
    ) {
        // With polling off, the interval is never awaited.
        let mut poll = tokio::time::interval(poll_every.unwrap_or(Duration::from_secs(3600)));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let trigger = tokio::select! {
                () = stop.cancelled() => return,
                _ = poll.tick(), if poll_every.is_some() => Trigger::Poll,
                Some(()) = events.recv() => {
                    debounce(&mut events).await;
                    Trigger::Watch
                }
            };
            self.reload(trigger).await;
        }
    }
}

/// Waits until events stop for [`DEBOUNCE`] (at most [`MAX_DEBOUNCE`]).
async fn debounce(events: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
    loop {
        let quiet = tokio::time::sleep(DEBOUNCE);
        tokio::select! {
            () = quiet => return,
            () = tokio::time::sleep_until(deadline) => return,
            event = events.recv() => if event.is_none() { return },
        }
    }
}

/// A notify watcher on `path`'s directory sending `()` per event, or
/// `None` (logged) when the platform refuses one: the poll still works.
fn watch_dir(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
    poll: Option<Duration>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(&dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    match watched {
        Ok(w) => {
            tracing::debug!(dir = %dir.display(), "watching the config directory");
            Some(w)
        }
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                cause = %e,
                poll = ?poll,
                "cannot watch the config directory; reloading only by poll (if on), SIGHUP and /admin/reload"
            );
            None
        }
    }
}
