//! Hot reload of the config file, so operators can edit rules while
//! traffic flows.
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
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::config::{self, ConfigError, ConfigHandle, RuntimeConfig};
use crate::metrics::Metrics;

mod watch;

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
        let unchanged = || Reloaded::Unchanged {
            generation: inner.config.load().source.generation,
        };
        let bytes = match self.read(trigger).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return unchanged(),
            Err(errors) => return self.refused(trigger, errors),
        };
        let seen = blake3::hash(&bytes);
        if !trigger.explicit() && state.seen == Some(seen) {
            return unchanged();
        }
        state.seen = Some(seen);
        let new = match String::from_utf8(bytes) {
            Ok(text) => config::load_str(&text, &config::process_env),
            Err(_) => return self.refused(trigger, vec!["the file is not UTF-8 text".into()]),
        };
        match new {
            Ok(new) => self.apply(trigger, new),
            Err(ConfigError::Invalid { problems, .. }) => {
                let errors = problems.iter().map(ToString::to_string).collect();
                self.refused(trigger, errors)
            }
            Err(e) => self.refused(trigger, vec![e.to_string()]),
        }
    }

    /// The file's bytes; `None` when it is missing for a moment (a
    /// ConfigMap swap) and the trigger was not explicit.
    async fn read(&self, trigger: Trigger) -> Result<Option<Vec<u8>>, Vec<String>> {
        let path = self.inner.path.clone();
        match tokio::task::spawn_blocking(move || std::fs::read(&path)).await {
            Ok(Ok(bytes)) => Ok(Some(bytes)),
            Ok(Err(e)) if !trigger.explicit() && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Ok(Err(e)) => Err(vec![format!(
                "cannot read {}: {e}",
                self.inner.path.display()
            )]),
            Err(e) => Err(vec![format!("reload task failed: {e}")]),
        }
    }

    /// Makes `new` the running config, unless it is what runs already.
    fn apply(&self, trigger: Trigger, mut new: RuntimeConfig) -> Reloaded {
        let inner = &self.inner;
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
            .with_label_values(&["applied"])
            .inc();
        log_applied(trigger, generation, &hash, &restart_required);
        self.remember(
            trigger,
            "applied",
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
            .with_label_values(&["refused"])
            .inc();
        self.remember(trigger, "refused", json!({ "errors": errors }));
        Reloaded::Refused { errors }
    }

    fn remember(&self, trigger: Trigger, result: &str, mut detail: Value) {
        detail["trigger"] = json!(trigger.as_str());
        detail["result"] = json!(result);
        detail["at"] = json!(httpdate::fmt_http_date(SystemTime::now()));
        *self.inner.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(detail);
    }
}

fn log_applied(trigger: Trigger, generation: u64, hash: &str, restart_required: &[&str]) {
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
    keep!("traces", traces);
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
