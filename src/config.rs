//! Configuration: the YAML file (docs/configuration.md) turned into the
//! validated [`RuntimeConfig`] the proxy runs on.
//!
//! Loading is: read -> `${VAR}` substitution (`env.rs`) -> YAML into a located
//! tree (`yaml.rs`) -> `RawConfig`, what the file says
//! (`file.rs`) -> `RuntimeConfig`, what the proxy uses (`validate.rs`). Every
//! step collects all of its problems before giving up, so an operator sees
//! every mistake in one pass, each with line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::rules::purge::Invalidations;
use crate::rules::{Route, RouteTable};

mod env;
mod file;
pub mod report;
mod settings;
mod validate;
mod yaml;

pub use settings::{
    AdminConfig, AdminToken, CacheConfig, CoalesceConfig, HostsConfig, HttpVersion, IdentityConfig,
    IdentitySource, L1Config, Limits, LogConfig, RedisNodes, RedisSettings, ReloadConfig,
    SecurityConfig, ShutdownConfig, StoreKind, TracesConfig, UpgradeConfig, UpstreamConfig,
    UpstreamTls, WarmupTarget, host_matches,
};
pub use yaml::{Loc, Problem, parse_duration};

/// The validated configuration. Immutable; a reload builds a new one.
#[derive(Debug)]
pub struct RuntimeConfig {
    /// Data-plane listen address (restart to change).
    pub listen: SocketAddr,
    /// The app behind cachecar.
    pub upstream: UpstreamConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// Store and size settings.
    pub cache: CacheConfig,
    /// Who "the user" is for `scope: user`.
    pub identity: IdentityConfig,
    /// Cache rules, first match wins.
    pub routes: RouteTable<Arc<Route>>,
    /// Invalidation rules.
    pub invalidations: Invalidations,
    /// Draining on SIGTERM.
    pub shutdown: ShutdownConfig,
    /// Requests fetched and stored at start and after reloads that add them.
    pub warmup: Vec<WarmupTarget>,
    /// Access log and slow-request warnings.
    pub log: LogConfig,
    /// What reloads the config file besides `SIGHUP` and the admin API.
    pub reload: ReloadConfig,
    /// Bounds on what a client may send (restart to change).
    pub limits: Limits,
    /// `hosts`: the names the app answers to, keyed as one.
    pub hosts: HostsConfig,
    /// Which hosts are served and which client headers are trusted.
    pub security: SecurityConfig,
    /// `Upgrade` (WebSocket) tunnels.
    pub upgrade: UpgradeConfig,
    /// OpenTelemetry traces (restart to change).
    pub traces: TracesConfig,
    /// Where the config came from and its content hash.
    pub source: ConfigSource,
    /// Things that are allowed but probably not meant (e.g. unreachable routes).
    pub warnings: Vec<String>,
}

/// Provenance of a config.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// The file, if loaded from one.
    pub path: Option<PathBuf>,
    /// 1 for the config loaded at start, +1 for each applied reload.
    pub generation: u64,
    /// First 16 hex digits of the BLAKE3 hash of the substituted text.
    pub hash: String,
}

/// The one place the running config lives: a single `ArcSwap`,
/// loaded once per request, so a request never sees half of two configs.
#[derive(Debug)]
pub struct ConfigHandle {
    current: ArcSwap<RuntimeConfig>,
}

impl ConfigHandle {
    /// Holds `config` as generation 1.
    pub fn new(mut config: RuntimeConfig) -> Self {
        config.source.generation = 1;
        Self {
            current: ArcSwap::from_pointee(config),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<RuntimeConfig> {
        self.current.load_full()
    }

    /// Makes `config` the running config; requests already holding the old
    /// snapshot finish with it.
    pub fn store(&self, config: RuntimeConfig) {
        self.current.store(Arc::new(config));
    }
}

/// Loading failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("{}", render_problems(.path.as_deref(), .problems))]
    Invalid {
        /// The file, if any.
        path: Option<PathBuf>,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },
}

/// Looks environment variables up for `${VAR}` substitution.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`load_file`] and [`load_str`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and validates a config file.
///
/// # Errors
///
/// [`ConfigError::Io`] if the file cannot be read; [`ConfigError::Invalid`]
/// with every problem otherwise.
pub fn load_file(path: &Path, env: EnvLookup<'_>) -> Result<RuntimeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, env)
        .map(|mut c| {
            c.source.path = Some(path.to_path_buf());
            c
        })
        .map_err(|e| match e {
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid {
                path: Some(path.to_path_buf()),
                problems,
            },
            other => other,
        })
}

/// Loads and validates config text.
///
/// # Errors
///
/// [`ConfigError::Invalid`] with every problem.
pub fn load_str(text: &str, env: EnvLookup<'_>) -> Result<RuntimeConfig, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        path: None,
        problems,
    };
    let substituted = env::substitute(text, env).map_err(invalid)?;
    let remap = |mut p: Problem| {
        p.loc = p.loc.map(|l| substituted.columns.original(l));
        p
    };
    let tree = yaml::parse(&substituted.text).map_err(|p| invalid(vec![remap(p)]))?;
    let mut problems = yaml::Problems::default();
    let raw = file::decode(&tree, &mut problems);
    let config = validate::validate(raw, &mut problems);
    match config {
        Some(mut config) if problems.is_empty() => {
            config.source.hash =
                blake3::hash(substituted.text.as_bytes()).to_hex()[..16].to_string();
            Ok(config)
        }
        _ => Err(invalid(
            problems.into_sorted().into_iter().map(remap).collect(),
        )),
    }
}

fn render_problems(path: Option<&Path>, problems: &[Problem]) -> String {
    let name = path.map_or_else(|| "config".to_string(), |p| p.display().to_string());
    let mut out = format!(
        "{name}: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        let sep = if p.loc.is_some_and(|l| l.line > 0) {
            ":"
        } else {
            ": "
        };
        out.push_str(&format!("\n  {name}{sep}{p}"));
    }
    out
}
