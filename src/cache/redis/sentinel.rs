//! Following a Sentinel failover at once: the sentinels announce a new
//! master on their `+switch-master` channel, and on that message every
//! lane is let go, so the next command connects through the sentinels to
//! the new master. Without it, lanes stay on the old master until the
//! sentinel demotes it (it checks each instance about every ten seconds)
//! and writes made meanwhile are lost with the old master's data.

use std::time::Duration;

use futures_util::StreamExt;
use redis::RedisError;
use tokio_util::sync::CancellationToken;

use super::client::{RedisAuth, client};
use super::{RedisNodes, RedisStore};

/// Watches the sentinels of `store` (one at a time, in turn) until
/// `shutdown`; nothing for a store without Sentinel.
pub(super) fn watch(store: &RedisStore, shutdown: CancellationToken) {
    let RedisNodes::Sentinel { master, nodes, .. } = store.settings().nodes.clone() else {
        return;
    };
    let store = store.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        for attempt in 0usize.. {
            let node = &nodes[attempt % nodes.len()];
            match follow(&store, node, &master, &shutdown).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::debug!(cause = %e, "sentinel subscription failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// Listens on one sentinel until it goes away or `shutdown`.
async fn follow(
    store: &RedisStore,
    node: &str,
    master: &str,
    shutdown: &CancellationToken,
) -> Result<(), RedisError> {
    let tls = store.settings().tls.as_ref();
    let client = client(node, &RedisAuth::default(), tls)?;
    let timeout = store.settings().timeout.max(Duration::from_millis(250));
    let timed_out = |_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
    let mut pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(timed_out)??;
    pubsub.subscribe("+switch-master").await?;
    let mut messages = pubsub.on_message();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                // `<name> <old ip> <old port> <new ip> <new port>`
                let text: String = message.get_payload()?;
                if text.split(' ').next() == Some(master) {
                    tracing::info!(master, to = %text, "sentinel switched the master; reconnecting");
                    store.drop_lanes();
                }
            }
        }
    }
}
