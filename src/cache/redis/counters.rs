//! Generation counters in Redis: reading them (creating the absent ones
//! with a fresh value), and running a counter script on each of a set of
//! tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::Script;

use super::RedisStore;
use super::scripts::Scripts;
use crate::cache::{StoreError, Token};

impl RedisStore {
    /// The current generation of every token: read (`values`, in token
    /// order), or for counters that are absent or not a number, created
    /// with a fresh value unless another instance just did.
    pub(super) async fn generations(
        &self,
        tokens: &[&Token],
        values: &[Option<Vec<u8>>],
    ) -> Result<Vec<u64>, StoreError> {
        let read: Vec<Option<u64>> = values
            .iter()
            .map(|v| {
                v.as_deref()
                    .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            })
            .collect();
        let missing: Vec<&Token> = tokens
            .iter()
            .zip(&read)
            .filter(|(_, g)| g.is_none())
            .map(|(t, _)| *t)
            .collect();
        let mut created = if missing.is_empty() {
            Vec::new()
        } else {
            let values: Vec<String> = self.counters(Scripts::ensure, &missing).await?;
            values
                .iter()
                .map(|v| v.parse().unwrap_or_else(|_| fresh_generation()))
                .collect()
        }
        .into_iter();
        Ok(read
            .into_iter()
            .map(|g| {
                g.or_else(|| created.next())
                    .unwrap_or_else(fresh_generation)
            })
            .collect())
    }

    /// The current generations of `tokens`, read with one `MGET` (creating
    /// absent counters), unless a purge of one of them awaits replay.
    pub(super) async fn current_generations(
        &self,
        tokens: &[Token],
    ) -> Result<Vec<u64>, StoreError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        if self.inner.pending.any(tokens) {
            return Err(StoreError::Unavailable(
                "a purge of this tag is waiting for redis".into(),
            ));
        }
        let mut mget = redis::cmd("MGET");
        for token in tokens {
            mget.arg(self.gen_key(token));
        }
        let values: Vec<Option<Vec<u8>>> = self.query(mget).await?;
        if values.len() != tokens.len() {
            return Err(StoreError::Unavailable("unexpected MGET reply".into()));
        }
        let tokens: Vec<&Token> = tokens.iter().collect();
        self.generations(&tokens, &values).await
    }

    /// `script(g:{token}, fresh generation)` for each of `tokens`, all sent
    /// at once; once more with the plain scripts if Redis refused the flags.
    pub(super) async fn counters<T: redis::FromRedisValue + Send>(
        &self,
        script: fn(&Scripts) -> &Script,
        tokens: &[&Token],
    ) -> Result<Vec<T>, StoreError> {
        let scripts = &self.inner.scripts;
        match self.scripts(self.per_token(script(scripts), tokens)).await {
            Err(StoreError::Unavailable(e)) if scripts.refused_flags(&e) => {
                self.scripts(self.per_token(script(scripts), tokens)).await
            }
            other => other,
        }
    }

    /// One script call per token (one key, so one slot each), all sent at
    /// once: `script(g:{token}, fresh generation)`.
    pub(super) fn per_token<'s>(
        &self,
        script: &'s Script,
        tokens: &[&Token],
    ) -> Vec<redis::ScriptInvocation<'s>> {
        tokens
            .iter()
            .map(|t| {
                let mut call = script.key(self.gen_key(t));
                call.arg(fresh_generation());
                call
            })
            .collect()
    }
}

/// A generation value no counter has had: microseconds since the epoch with
/// random low bits, so two instances creating one counter at once differ
/// and a re-created counter never equals an old one (old values are older
/// times plus a few increments).
pub fn fresh_generation() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    (micros << 10) | fastrand::u64(..1024)
}
