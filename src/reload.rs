//! Hot reload of the config file (issue: operators edit rules while traffic
//! flows).
//!
//! A reload reads and validates the whole file; only a valid file replaces
//! the running config, in one [`ConfigHandle::store`], so a request sees
//! either the old rules or the new ones, never a mix. Triggers:
//!
//! - a change in the file's directory (notify, non-recursive), debounced.
//!   Watching the directory rather than the file is what makes Kubernetes
//!   ConfigMap volumes work: there the file is a symlink through `..data`,
//!   and an update swaps `..data` (a rename in the directory) without ever
//!   writing the file. Editors that write a temporary file and rename it,
//!   and in-place writes, are directory events too;
//! - a poll of the file's content hash every `reload.poll_interval` (5s),
//!   for file systems or set-ups where events are missed;
//! - `SIGHUP` and `POST /admin/reload` (explicit: always re-read and always
//!   answered).
//!
//! Settings that live in things built once at start (listen addresses, the
//! store and its connections, the upstream connection pool) are not
//! half-applied: a reload that changes them keeps the running values,
//! applies everything else, and reports "restart required" for them.
//!
//! Entries stay valid across reloads unless their route's key shape,
//! sharing rules or purge bindings changed: those are in the route's
//! fingerprint, which is part of every key (see `config::validate`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError, ConfigHandle, ReloadConfig, RuntimeConfig};
use crate::metrics::Metrics;

/// Events closer together than this are one change (a ConfigMap update is
/// several renames; an editor's save is a write and a rename).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// A steady stream of events still reloads this often.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// What asked for a reload, for logs and `/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A file event in the config's directory.
    Watch,
    /// The periodic content-hash check.
    Poll,
    /// `SIGHUP`.
    Signal,
    /// `POST /admin/reload`.
    Admin,
}

impl Trigger {
    /// The name used in logs and `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Poll => "poll",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
        }
    }

    /// Explicit triggers re-read and report even when nothing changed.
    fn explicit(self) -> bool {
        matches!(self, Trigger::Signal | Trigger::Admin)
    }
}

/// The result of one reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The new file is running.
    Applied {
        /// Its generation.
        generation: u64,
        /// Its hash.
        hash: String,
        /// Settings that changed but need a restart (kept as they were).
        restart_required: Vec<&'static str>,
    },
    /// The file's content is what is running already.
    Unchanged {
        /// The running generation.
        generation: u64,
    },
    /// The file is invalid (or unreadable); the running config stays.
    Refused {
        /// Every problem, with line:column.
        errors: Vec<String>,
    },
}

/// Reloads the config file into the running [`ConfigHandle`]. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    config: Arc<ConfigHandle>,
    metrics: Arc<Metrics>,
    /// One reload at a time, and the last one's outcome.
    state: tokio::sync::Mutex<State>,
    /// The last outcome, readable without waiting (for `/status`).
    last: Mutex<Option<Value>>,
    /// Told about each applied reload (warmup).
    applied: Box<dyn Fn(Arc<RuntimeConfig>) + Send + Sync>,
}

#[derive(Default)]
struct State {
    /// Hash of the raw bytes last read, valid or not: the poll and file
    /// events act only when the content changed.
    seen: Option<blake3::Hash>,
}

impl Reloader {
    /// A reloader for `path` (the file the running config came from).
    /// `applied` is called with each newly applied config.
    pub fn new(
        path: PathBuf,
        config: Arc<ConfigHandle>,
        metrics: Arc<Metrics>,
        applied: impl Fn(Arc<RuntimeConfig>) + Send + Sync + 'static,
    ) -> Self {
        let seen = std::fs::read(&path).ok().map(|b| blake3::hash(&b));
        Self {
            inner: Arc::new(Inner {
                path,
                config,
                metrics,
                state: tokio::sync::Mutex::new(State { seen }),
                last: Mutex::new(None),
                applied: Box::new(applied),
            }),
        }
    }

    /// The file being watched.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The last reload's outcome as JSON for `/status`, if any.
    pub fn last(&self) -> Option<Value> {
        self.inner
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads and validates the file and, if valid, makes it the running
    /// config. For non-explicit triggers an unchanged file is not even
    /// parsed, and a broken file is reported once, not at every poll.
    pub async fn reload(&self, trigger: Trigger) -> Reloaded {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let path = inner.path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                // A ConfigMap swap can leave the path missing for an instant.
                if !trigger.explicit() && e.kind() == std::io::ErrorKind::NotFound {
                    return Reloaded::Unchanged {
                        generation: inner.config.load().source.generation,
                    };
                }
                let errors = vec![format!("cannot read {}: {e}", inner.path.display())];
                return self.refused(trigger, errors);
            }
            Err(e) => return self.refused(trigger, vec![format!("reload task failed: {e}")]),
        };
        let seen = blake3::hash(&bytes);
        if !trigger.explicit() && state.seen == Some(seen) {
            return Reloaded::Unchanged {
                generation: inner.config.load().source.generation,
            };
        }
        state.seen = Some(seen);
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => return self.refused(trigger, vec!["the file is not UTF-8 text".into()]),
        };
        let mut new = match config::load_str(&text, &config::process_env) {
            Ok(c) => c,
            Err(ConfigError::Invalid { problems, .. }) => {
                let errors = problems.iter().map(ToString::to_string).collect();
                return self.refused(trigger, errors);
            }
            Err(e) => return self.refused(trigger, vec![e.to_string()]),
        };
        let old = inner.config.load();
        if new.source.hash == old.source.hash {
            let generation = old.source.generation;
            if trigger.explicit() {
                tracing::info!(trigger = trigger.as_str(), generation, "config unchanged");
                self.remember(trigger, "unchanged", json!({}));
            }
            return Reloaded::Unchanged { generation };
        }
        new.source.path = Some(inner.path.clone());
        new.source.generation = old.source.generation + 1;
        let restart_required = carry_over(&old, &mut new);
        for warning in &new.warnings {
            tracing::warn!("{warning}");
        }
        let (generation, hash) = (new.source.generation, new.source.hash.clone());
        inner.config.store(new);
        inner.metrics.config_generation.set(generation as i64);
        inner
            .metrics
            .config_reloads_total
            .with_label_values(&["ok"])
            .inc();
        if restart_required.is_empty() {
            tracing::info!(trigger = trigger.as_str(), generation, %hash, "config reloaded");
        } else {
            tracing::warn!(
                trigger = trigger.as_str(),
                generation,
                %hash,
                restart_required = %restart_required.join(", "),
                "config reloaded; these changes need a restart and were not applied"
            );
        }
        self.remember(
            trigger,
            "ok",
            json!({ "generation": generation, "hash": hash, "restart_required": restart_required }),
        );
        (inner.applied)(inner.config.load());
        Reloaded::Applied {
            generation,
            hash,
            restart_required,
        }
    }

    fn refused(&self, trigger: Trigger, errors: Vec<String>) -> Reloaded {
        tracing::error!(
            trigger = trigger.as_str(),
            path = %self.inner.path.display(),
            errors = errors.len(),
            "config reload refused; still running the previous config"
        );
        for e in &errors {
            tracing::error!("  {e}");
        }
        self.inner
            .metrics
            .config_reloads_total
            .with_label_values(&["error"])
            .inc();
        self.remember(trigger, "error", json!({ "errors": errors }));
        Reloaded::Refused { errors }
    }

    fn remember(&self, trigger: Trigger, result: &str, mut detail: Value) {
        detail["trigger"] = json!(trigger.as_str());
        detail["result"] = json!(result);
        detail["at"] = json!(httpdate::fmt_http_date(SystemTime::now()));
        *self.inner.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(detail);
    }

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

/// Keeps the running values of settings that need a restart, returning
/// the names of those that changed.
fn carry_over(old: &RuntimeConfig, new: &mut RuntimeConfig) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($name:literal, $($field:tt)+) => {
            if old.$($field)+ != new.$($field)+ {
                changed.push($name);
                new.$($field)+ = old.$($field)+.clone();
            }
        };
    }
    keep!("listen", listen);
    keep!("admin.listen", admin.listen);
    keep!("upstream.connect_timeout", upstream.connect_timeout);
    keep!("upstream.idle_timeout", upstream.idle_timeout);
    keep!("cache.store", cache.store);
    keep!("cache.memory.max_bytes", cache.memory_max_bytes);
    keep!("cache.redis", cache.redis);
    keep!("cache.l1", cache.l1);
    keep!("reload", reload);
    keep!("limits", limits);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> RuntimeConfig {
        config::load_str(yaml, &|_| None).expect("valid config")
    }

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let base = "upstream: { url: http://127.0.0.1:8000 }\nroutes: []\n";
        let old = load(&format!("listen: 127.0.0.1:1000\n{base}"));
        let mut new = load(&format!(
            "listen: 127.0.0.1:2000\ncache: {{ enabled: false, memory: {{ max_bytes: 1MiB }} }}\n{base}"
        ));
        let changed = carry_over(&old, &mut new);
        assert_eq!(changed, ["listen", "cache.memory.max_bytes"]);
        assert_eq!(new.listen, old.listen);
        assert_eq!(new.cache.memory_max_bytes, old.cache.memory_max_bytes);
        assert!(!new.cache.enabled, "hot settings are applied");
    }

    #[test]
    fn identical_settings_need_no_restart() {
        let yaml = "upstream: { url: http://127.0.0.1:8000 }\nroutes: []\n";
        let (old, mut new) = (load(yaml), load(yaml));
        assert!(carry_over(&old, &mut new).is_empty());
    }
}
