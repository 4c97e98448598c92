//! Connections to Redis and the guard every command passes: a lane (a
//! clone of a multiplexed connection, since a pool checkout costs a PING),
//! the command timeout and the circuit breaker.

use std::sync::atomic::Ordering;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};

use super::{RedisSettings, RedisStore, client};
use crate::cache::StoreError;

/// A multiplexed connection of either kind; clones share the socket.
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The pool that makes `settings`' connections.
pub(super) fn pool(settings: &RedisSettings) -> Result<client::Pool, StoreError> {
    let invalid =
        |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("invalid redis settings: {e}"));
    let clients = client::Clients::new(settings).map_err(|e| invalid(&e))?;
    let t = Some(settings.timeout);
    client::Pool::builder(client::Manager(clients, settings.timeout))
        .max_size(settings.pool_size)
        .timeouts(deadpool::managed::Timeouts {
            wait: t,
            create: t,
            recycle: t,
        })
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| invalid(&e))
}

impl RedisStore {
    /// A connection: a lane's clone, or a new one from the pool.
    async fn conn(&self) -> Result<(usize, Conn), RedisError> {
        let lane = self.inner.next_lane.fetch_add(1, Ordering::Relaxed) % self.inner.lanes.len();
        if let Some(conn) = self.lane(lane).clone() {
            return Ok((lane, conn));
        }
        let fresh =
            deadpool::managed::Object::take(self.inner.pool.get().await.map_err(pool_error)?);
        *self.lane(lane) = Some(fresh.clone());
        Ok((lane, fresh))
    }

    fn lane(&self, lane: usize) -> std::sync::MutexGuard<'_, Option<Conn>> {
        // Held for a clone or an assignment only.
        self.inner.lanes[lane]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `op` on a connection, bounded by the timeout and the breaker.
    pub(super) async fn guarded<T, F, Fut>(&self, probe: bool, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        if !probe && !self.inner.breaker.allow() {
            return Err(StoreError::CircuitOpen);
        }
        let timeout = self.inner.settings.timeout;
        let mut used_lane = None;
        let outcome = tokio::time::timeout(timeout, async {
            let (lane, conn) = self.conn().await?;
            used_lane = Some(lane);
            op(conn).await
        })
        .await;
        match outcome {
            Ok(Ok(value)) => {
                self.inner.breaker.success();
                Ok(value)
            }
            // A probe must find Redis usable; an answer such as OOM or
            // WRONGTYPE says nothing against the connection otherwise.
            Ok(Err(e)) if is_server_reply(&e) && !probe && !is_unusable(&e) => {
                Err(StoreError::Unavailable(e.to_string()))
            }
            Ok(Err(e)) => {
                self.fail(used_lane);
                Err(StoreError::Unavailable(e.to_string()))
            }
            Err(_) => {
                self.fail(used_lane);
                Err(StoreError::Timeout(timeout))
            }
        }
    }

    /// Lets every lane go: the next commands connect afresh.
    pub(super) fn drop_lanes(&self) {
        for lane in 0..self.inner.lanes.len() {
            *self.lane(lane) = None;
        }
    }

    fn fail(&self, lane: Option<usize>) {
        if self.inner.breaker.failure() {
            // Redis went away or froze: every lane's socket is suspect.
            // The probe and the first calls after it connect afresh.
            self.drop_lanes();
        } else if let Some(lane) = lane {
            *self.lane(lane) = None;
        }
    }

    pub(super) async fn query<T: FromRedisValue + Send>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.guarded(false, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs one-key script calls concurrently (a cluster refuses commands
    /// that span slots; on one server they share the socket anyway).
    pub(super) async fn scripts<T: FromRedisValue + Send>(
        &self,
        calls: Vec<redis::ScriptInvocation<'_>>,
    ) -> Result<Vec<T>, StoreError> {
        self.guarded(false, |c| async move { run_scripts(&c, &calls).await })
            .await
    }
}

/// Runs script calls concurrently on clones of `c`.
pub(super) async fn run_scripts<T: FromRedisValue + Send>(
    c: &Conn,
    calls: &[redis::ScriptInvocation<'_>],
) -> Result<Vec<T>, RedisError> {
    join_all(calls.iter().map(|call| {
        let mut c = c.clone();
        async move { call.invoke_async::<T>(&mut c).await }
    }))
    .await
    .into_iter()
    .collect()
}

/// Whether Redis answered with an error reply (OOM, wrong type, ...): the
/// connection is fine, so it does not count against the breaker.
fn is_server_reply(e: &RedisError) -> bool {
    !(e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout())
        && e.kind() != redis::ErrorKind::Client
}

/// Whether Redis answered that it cannot serve now: loading its data, a
/// busy script, a master or cluster down, a replica that will not write.
/// Counted against the breaker like a timeout, so requests stop asking and
/// the prober waits until Redis is usable, not merely answering.
fn is_unusable(e: &RedisError) -> bool {
    matches!(
        e.code(),
        Some("LOADING" | "BUSY" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN" | "READONLY")
    )
}

fn pool_error(e: deadpool::managed::PoolError<RedisError>) -> RedisError {
    match e {
        deadpool::managed::PoolError::Backend(e) => e,
        other => RedisError::from(std::io::Error::other(other.to_string())),
    }
}
