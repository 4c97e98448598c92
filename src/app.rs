//! The application: config, metrics, store, proxy and admin wired together,
//! listeners bound, and the lifecycle from start to a drained exit.
//!
//! `App::bind` binds both listeners (so a test or `main` knows the ports
//! before serving), `App::run` serves until the shutdown token fires, then:
//! readiness turns 503, traffic is still served for `shutdown.drain_delay`,
//! the proxy listener closes and in-flight requests get
//! `shutdown.grace_period`, and finally the admin listener closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::admin::Admin;
use crate::cache::memory::MemoryStore;
use crate::cache::redis::RedisStore;
use crate::cache::tiered::TieredStore;
use crate::cache::{Cache, Store};
use crate::clock::Clock;
use crate::config::{ConfigHandle, Limits, RuntimeConfig, StoreKind};
use crate::listener::Winding;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::proxy::interim::Interim;
use crate::proxy::upstream::{BoxError, Upstream};
use crate::reload::Reloader;
use crate::shutdown::{Readiness, WRITE_GRACE, finish_writes};
use crate::warmup;

/// How long the admin listener may take to close after the proxy drained.
const ADMIN_GRACE: Duration = Duration::from_secs(1);
/// Readiness waits at most this long for the start-up warmup; past it the
/// warmup goes on in the background (a hung app must not keep the pod out
/// of service forever).
const WARMUP_READY_LIMIT: Duration = Duration::from_secs(30);

/// A bound, ready-to-run cachecar.
pub struct App {
    config: Arc<ConfigHandle>,
    cache: Cache,
    /// Cancels the store's background tasks when the app stops or is
    /// dropped unrun.
    _background: DropGuard,
    proxy: Proxy,
    admin: Admin,
    metrics: Arc<Metrics>,
    reloader: Option<Reloader>,
    readiness: Arc<Readiness>,
    proxy_listener: TcpListener,
    admin_listener: TcpListener,
}

/// Start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// `proxy` or `admin`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Metrics could not be registered (a bug).
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The store could not be set up (not: could not be reached).
    #[error("cannot set up the cache store: {0}")]
    Store(String),
}

impl App {
    /// Builds every part from `config` and binds both listeners.
    ///
    /// # Errors
    ///
    /// [`AppError::Bind`] when a port is taken or not permitted.
    pub async fn bind(config: RuntimeConfig) -> Result<Self, AppError> {
        Self::bind_with_clock(config, Clock::system()).await
    }

    /// [`App::bind`], judging freshness by `clock`: a test's
    /// [`Clock::manual`] ages entries without waiting.
    ///
    /// # Errors
    ///
    /// As [`App::bind`].
    pub async fn bind_with_clock(config: RuntimeConfig, clock: Clock) -> Result<Self, AppError> {
        let registry = Registry::new();
        let metrics = Arc::new(Metrics::new(&registry)?);
        let background = CancellationToken::new();
        let upstream = Upstream::new(&config.upstream);
        let proxy_addr = config.listen;
        let admin_addr = config.admin.listen;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        loaded(&config, &metrics);
        let config = Arc::new(ConfigHandle::new(config));
        let store = build_store(&config, &metrics, &background)?;
        let cache = Cache::new(store, metrics.clone());
        let proxy = Proxy::new(
            config.clone(),
            cache.clone(),
            upstream,
            metrics.clone(),
            clock.clone(),
        );
        let reloader = reloader(&config, &proxy, &metrics);
        let readiness = Arc::new(Readiness::default());
        let admin = Admin::new(
            config.clone(),
            registry,
            cache.clone(),
            proxy.clone(),
            reloader.clone(),
            readiness.clone(),
            clock,
        );
        Ok(Self {
            config,
            cache,
            _background: background.drop_guard(),
            proxy,
            admin,
            metrics,
            reloader,
            readiness,
            proxy_listener: bind("proxy", proxy_addr).await?,
            admin_listener: bind("admin", admin_addr).await?,
        })
    }

    /// The bound proxy address (useful with port 0).
    pub fn proxy_addr(&self) -> SocketAddr {
        local_addr(&self.proxy_listener)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        local_addr(&self.admin_listener)
    }

    /// Reloads the config file; `None` when the config did not come from
    /// a file (the demo). `main` wires `SIGHUP` to it.
    pub fn reloader(&self) -> Option<Reloader> {
        self.reloader.clone()
    }

    /// Serves until `shutdown` fires, then drains and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let config = self.config.load();
        let (drain_delay, grace) = (config.shutdown.drain_delay, config.shutdown.grace_period);
        let (proxy_addr, admin_addr) = (self.proxy_addr(), self.admin_addr());
        let admin_service = self.admin.service();
        let admin = Serving::start(
            ("admin", tracing::info_span!("admin")),
            self.admin_listener,
            Limits::default(),
            ADMIN_GRACE,
            move |_, _| admin_service.clone(),
        );
        let proxy = self.proxy.clone();
        let serving = Serving::start(
            ("proxy", tracing::info_span!("proxy")),
            self.proxy_listener,
            config.limits,
            grace,
            move |peer, interim| proxy.service(peer, Some(interim)),
        );
        let watch_stop = CancellationToken::new();
        if let Some(reloader) = &self.reloader {
            reloader.spawn_watch(config.reload, watch_stop.clone());
        }
        warm_up(&self.proxy, &self.cache, &self.metrics, &config).await;
        self.readiness.set_ready();
        tracing::info!(
            listen = %proxy_addr,
            admin = %admin_addr,
            upstream = %config.upstream.url,
            routes = config.routes.len(),
            "cachecar ready"
        );
        drop(config);
        shutdown.cancelled().await;
        watch_stop.cancel();
        self.readiness.set_draining();
        serving.winding.close_connections();
        tracing::info!(?drain_delay, "draining: readiness is 503, still serving");
        tokio::time::sleep(drain_delay).await;
        // Tunnels get the same grace as connections, from the same moment.
        let tunnels = self.proxy.tunnels().wind_down(grace);
        let (clean, ()) = tokio::join!(serving.stop(), tunnels);
        finish_writes(&self.cache).await;
        admin.stop().await;
        tracing::info!(clean, "cachecar stopped");
    }
}

/// A listener being served in its own task, until stopped.
struct Serving {
    winding: Winding,
    task: tokio::task::JoinHandle<bool>,
}

impl Serving {
    /// Serves `listener`, named and in its span, with the service
    /// `make_service` makes per peer.
    fn start<S, B>(
        (name, span): (&'static str, tracing::Span),
        listener: TcpListener,
        limits: Limits,
        grace: Duration,
        make_service: impl Fn(SocketAddr, Interim) -> S + Send + 'static,
    ) -> Self
    where
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let winding = Winding::default();
        let serve =
            crate::listener::serve(name, listener, make_service, limits, winding.clone(), grace);
        let task = tokio::spawn(serve.instrument(span));
        Self { winding, task }
    }

    /// Stops accepting and drains; whether every connection finished
    /// within the grace period.
    async fn stop(self) -> bool {
        self.winding.stop();
        self.task.await.unwrap_or(false)
    }
}

/// The reloader of a config that came from a file: each applied reload
/// runs the warmup again.
fn reloader(config: &Arc<ConfigHandle>, proxy: &Proxy, metrics: &Arc<Metrics>) -> Option<Reloader> {
    let path = config.load().source.path.clone()?;
    let (proxy, warm_metrics) = (proxy.clone(), metrics.clone());
    Some(Reloader::new(
        path,
        config.clone(),
        metrics.clone(),
        move |applied| {
            register_routes(&applied, &warm_metrics);
            let (proxy, metrics) = (proxy.clone(), warm_metrics.clone());
            tokio::spawn(async move { warmup::run(&proxy, &applied, &metrics).await });
        },
    ))
}

/// The metrics of the first config: generation 1, the memory store's bound
/// (restart only), the reload counters and every route's main series at
/// zero (the first load is not a reload; `increase()` sees the first
/// refused one).
fn loaded(config: &RuntimeConfig, metrics: &Metrics) {
    metrics.config_generation.set(1);
    let bound = config.cache.memory_bound();
    metrics
        .memory_store_max_bytes
        .set(i64::try_from(bound).unwrap_or(i64::MAX));
    for result in ["applied", "refused"] {
        metrics.config_reloads_total.with_label_values(&[result]);
    }
    register_routes(config, metrics);
}

/// Creates every route's main series at zero (`RouteMetrics::register`).
fn register_routes(config: &RuntimeConfig, metrics: &Metrics) {
    for route in config.routes.values() {
        route.metrics.register(metrics);
        if route.mode == crate::rules::Mode::Shadow {
            route.metrics.shadow(metrics);
        }
    }
}

/// The start-up warmup: readiness waits for it (at most
/// [`WARMUP_READY_LIMIT`]), and for its writes to land, so the first client
/// request already finds the entries.
async fn warm_up(
    proxy: &Proxy,
    cache: &Cache,
    metrics: &Arc<Metrics>,
    config: &Arc<RuntimeConfig>,
) {
    if config.warmup.is_empty() {
        return;
    }
    let (proxy, metrics, config) = (proxy.clone(), metrics.clone(), config.clone());
    let task = tokio::spawn(async move { warmup::run(&proxy, &config, &metrics).await });
    match tokio::time::timeout(WARMUP_READY_LIMIT, task).await {
        Ok(_) => {
            cache.drain(WRITE_GRACE).await;
        }
        Err(_) => tracing::warn!(
            limit = ?WARMUP_READY_LIMIT,
            "warmup is slow; ready now, warming on in the background"
        ),
    }
}

/// The configured store. Background tasks (Redis prober, invalidation
/// subscription) live until `background` is cancelled. Never waits for
/// Redis: it is connected to lazily and may come up later.
fn build_store(
    handle: &Arc<ConfigHandle>,
    metrics: &Metrics,
    background: &CancellationToken,
) -> Result<Arc<dyn Store>, AppError> {
    let config = handle.load();
    let cache = &config.cache;
    let memory = || {
        MemoryStore::new(
            cache.memory_max_bytes,
            Some(metrics.memory_store_evictions_total.clone()),
        )
    };
    let redis = || {
        // Validation makes `redis` present for these stores.
        let settings = cache.redis.clone().ok_or(AppError::Store(
            "cache.redis is required by this store".into(),
        ))?;
        let store = RedisStore::new(
            settings,
            metrics,
            cache.store.as_str(),
            background.child_token(),
        )
        .map_err(|e| AppError::Store(e.to_string()))?;
        // The fence ends every route's entries, as the routes are then.
        let routes = handle.clone();
        store.fence_with(Box::new(move || {
            let config = routes.load();
            config
                .routes
                .values()
                .iter()
                .map(|r| r.token.clone())
                .collect()
        }));
        Ok::<_, AppError>(store)
    };
    Ok(match cache.store {
        StoreKind::Memory => Arc::new(memory()),
        StoreKind::Redis => Arc::new(redis()?),
        StoreKind::Tiered => Arc::new(TieredStore::new(
            redis()?,
            cache.l1.max_bytes,
            cache.l1.ttl,
            background.child_token(),
        )),
    })
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        // A bound TCP listener always has a local address.
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}
