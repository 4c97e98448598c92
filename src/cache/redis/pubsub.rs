//! The invalidation channel's subscriber: every bump any instance makes is
//! published on `{prefix}invalidate`, and the tiered store's L1 listens
//! here so it drops what another instance purged.

use std::sync::Arc;
use std::time::Duration;

use redis::{RedisError, Value};

use super::RedisStore;
use tokio_util::sync::CancellationToken;

/// What [`subscribe`] tells the listening store.
pub trait InvalidationListener: Send + Sync + 'static {
    /// These tokens changed (bumped by some instance).
    fn invalidated(&self, tokens: &[&str]);
    /// The subscription is (again) confirmed: everything missed while it was
    /// down must be assumed changed.
    fn resynced(&self);
    /// The subscription is down: nothing local may be trusted until
    /// [`InvalidationListener::resynced`].
    fn lost(&self);
}

/// Keeps a subscription to `store`'s invalidation channel (on a cluster,
/// trying each node in turn; under Sentinel, on the current master),
/// pinging it every second so a frozen Redis counts as down, and reports to
/// `listener` until `shutdown`.
pub fn subscribe(
    store: RedisStore,
    ping_timeout: Duration,
    listener: Arc<dyn InvalidationListener>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        for attempt in 0usize.. {
            if shutdown.is_cancelled() {
                return;
            }
            let channel = store.channel();
            match listen(
                &store,
                attempt,
                &channel,
                ping_timeout,
                &*listener,
                &shutdown,
            )
            .await
            {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::debug!(cause = %e, "invalidation subscription failed"),
            }
            listener.lost();
            let wait = backoff.mul_f64(0.8 + fastrand::f64() * 0.4);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

async fn listen(
    store: &RedisStore,
    attempt: usize,
    channel: &str,
    ping_timeout: Duration,
    listener: &dyn InvalidationListener,
    shutdown: &CancellationToken,
) -> Result<(), RedisError> {
    use futures_util::StreamExt;
    let timeout = |e: tokio::time::error::Elapsed| {
        RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, e))
    };
    let client = tokio::time::timeout(ping_timeout, store.pubsub_client(attempt))
        .await
        .map_err(timeout)??;
    let mut pubsub = tokio::time::timeout(ping_timeout, client.get_async_pubsub())
        .await
        .map_err(timeout)??;
    tokio::time::timeout(ping_timeout, pubsub.subscribe(channel))
        .await
        .map_err(timeout)??;
    listener.resynced();
    let (mut sink, mut stream) = pubsub.split();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = stream.next() => {
                let Some(message) = message else { return Ok(()) };
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                let text = String::from_utf8_lossy(&payload);
                let tokens: Vec<&str> = text.split('\n').filter(|t| !t.is_empty()).collect();
                listener.invalidated(&tokens);
            }
            _ = ticker.tick() => {
                tokio::time::timeout(ping_timeout, sink.ping::<Value>()).await.map_err(timeout)??;
            }
        }
    }
}

impl RedisStore {
    /// A client for the invalidation channel's subscription, on the
    /// `attempt`-th try.
    async fn pubsub_client(&self, attempt: usize) -> redis::RedisResult<redis::Client> {
        let clients = &self.inner.pool.manager().0;
        clients.for_pubsub(&self.inner.settings, attempt).await
    }
}
