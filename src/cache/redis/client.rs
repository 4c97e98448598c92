//! How cachecar reaches Redis: one server, a Cluster, or the master that
//! Sentinel names; over TCP, or TLS (rustls) for `rediss://` with an
//! optional CA file and client certificate; with credentials from the
//! config (substituted from the environment) or a file. New connections
//! come from a deadpool [`Manager`] over redis-rs' own clients, which carry
//! all of that (deadpool-redis' builders cannot pass certificates to the
//! Cluster and Sentinel clients).

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError,
    RedisResult, TlsCertificates, TlsMode,
};

use super::conn::Conn;
use super::{RedisNodes, RedisSettings};

/// Credentials for the data nodes (not the sentinels, whose own go in
/// their URLs).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisAuth {
    /// `AUTH` user (Redis 6 ACLs); `None`: the URL's, or `default`.
    pub username: Option<String>,
    /// `AUTH` password; `None`: the URL's, if any.
    pub password: Option<String>,
}

/// `cache.redis.tls`, read at load: PEM bytes, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CAs to trust instead of the system's.
    pub ca: Option<Vec<u8>>,
    /// A client certificate chain and its key (mTLS).
    pub client: Option<(Vec<u8>, Vec<u8>)>,
    /// Accept any certificate (tests only).
    pub insecure: bool,
}

impl std::fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuth")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca.as_ref().map(Vec::len))
            .field("client", &self.client.is_some())
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl RedisTls {
    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        }
    }
}

/// The redis-rs client of each kind of deployment.
pub(super) enum Clients {
    Single(Client),
    Cluster(ClusterClient),
    /// Locked: asking the sentinels needs `&mut`. Each new connection asks
    /// them for the current master, so a failover is followed as soon as
    /// the old connections fail.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Clients {
    /// The clients of `settings`.
    pub(super) fn new(settings: &RedisSettings) -> RedisResult<Self> {
        let (auth, tls) = (&settings.auth, settings.tls.as_ref());
        Ok(match &settings.nodes {
            RedisNodes::Single(url) => Clients::Single(client(url, auth, tls)?),
            RedisNodes::Cluster(urls) => {
                let mut builder = ClusterClientBuilder::new(
                    urls.iter()
                        .map(|u| info(u, auth, tls))
                        .collect::<RedisResult<Vec<_>>>()?,
                );
                if let Some(user) = &auth.username {
                    builder = builder.username(user);
                }
                if let Some(password) = &auth.password {
                    builder = builder.password(password);
                }
                if let Some(tls) = tls {
                    builder = builder
                        .certs(tls.certificates())
                        .danger_accept_invalid_hostnames(tls.insecure);
                }
                Clients::Cluster(builder.build()?)
            }
            RedisNodes::Sentinel { master, nodes, db } => Clients::Sentinel(
                tokio::sync::Mutex::new(sentinel(master, nodes, *db, settings)?),
            ),
        })
    }

    /// A new multiplexed connection. Every call on it is bounded by the
    /// store's own `timeout` (`conn.rs`); redis-rs' per-command timer (500 ms
    /// unless told otherwise) would add a timer to each command and cut a
    /// longer `timeout` short, so it is off.
    pub(super) async fn connect(&self, timeout: Duration) -> RedisResult<Conn> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(timeout));
        Ok(match self {
            Clients::Single(c) => Conn::Single(
                c.get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ),
            Clients::Cluster(c) => Conn::Cluster(c.get_async_connection().await?),
            Clients::Sentinel(c) => {
                let mut sentinel = c.lock().await;
                Conn::Single(sentinel.get_async_connection_with_config(&config).await?)
            }
        })
    }

    /// A client to subscribe with on the `attempt`-th try: the server, a
    /// cluster node in turn (a publish reaches every node), or the master
    /// the sentinels name now.
    pub(super) async fn for_pubsub(
        &self,
        settings: &RedisSettings,
        attempt: usize,
    ) -> RedisResult<Client> {
        let (auth, tls) = (&settings.auth, settings.tls.as_ref());
        match (self, &settings.nodes) {
            (Clients::Single(c), _) => Ok(c.clone()),
            (Clients::Cluster(_), RedisNodes::Cluster(urls)) => {
                client(&urls[attempt % urls.len()], auth, tls)
            }
            (Clients::Sentinel(c), _) => c.lock().await.get_client(),
            _ => Err(RedisError::from(std::io::Error::other("no such node"))),
        }
    }
}

/// The connection target of `url`, with `auth` and TLS applied.
fn info(url: &str, auth: &RedisAuth, tls: Option<&RedisTls>) -> RedisResult<ConnectionInfo> {
    let mut info = url.into_connection_info()?;
    let mut redis = info.redis_settings().clone();
    if let Some(user) = &auth.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &auth.password {
        redis = redis.set_password(password);
    }
    info = info.set_redis_settings(redis);
    if let (Some(tls), ConnectionAddr::TcpTls { host, port, .. }) = (tls, info.addr()) {
        let addr = ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: tls.insecure,
            tls_params: None,
        };
        info = info.set_addr(addr);
    }
    Ok(info)
}

/// A client for `url`, with `auth`, and the CA and client certificate of
/// `tls` when it is a `rediss://` one.
pub(super) fn client(url: &str, auth: &RedisAuth, tls: Option<&RedisTls>) -> RedisResult<Client> {
    let info = info(url, auth, tls)?;
    match tls {
        Some(tls) if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) => {
            Client::build_with_tls(info, tls.certificates())
        }
        _ => Client::open(info),
    }
}

/// A client for the master called `master`, found through the sentinels at
/// `nodes`; TLS to both when the nodes are `rediss://`.
fn sentinel(
    master: &str,
    nodes: &[String],
    db: i64,
    settings: &RedisSettings,
) -> RedisResult<SentinelClient> {
    let tls = settings.tls.as_ref();
    let infos = nodes
        .iter()
        .map(|n| info(n, &RedisAuth::default(), tls))
        .collect::<RedisResult<Vec<_>>>()?;
    let secure = infos
        .iter()
        .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }));
    let addrs = infos.iter().map(|i| i.addr().clone());
    let mut builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
        .set_client_to_redis_db(db);
    if let Some(first) = infos.first() {
        let own = first.redis_settings();
        if let Some(user) = own.username() {
            builder = builder.set_client_to_sentinel_username(user);
        }
        if let Some(password) = own.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    if let Some(user) = &settings.auth.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &settings.auth.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if secure {
        let mode = if tls.is_some_and(|t| t.insecure) {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        };
        builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
        if let Some(tls) = tls {
            builder = builder
                .set_client_to_redis_certificates(tls.certificates())
                .set_client_to_sentinel_certificates(tls.certificates());
        }
    }
    builder.build()
}

/// Makes the store's connections (with its clients, under its timeout): the
/// pool's only job, as each is taken out of it at once to serve as a lane.
pub(super) struct Manager(pub(super) Clients, pub(super) Duration);

impl deadpool::managed::Manager for Manager {
    type Type = Conn;
    type Error = RedisError;

    async fn create(&self) -> Result<Conn, RedisError> {
        self.0.connect(self.1).await
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await?;
        Ok(())
    }
}

/// The pool of new connections.
pub(super) type Pool = deadpool::managed::Pool<Manager>;
