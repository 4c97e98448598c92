//! Storing what a fill fetched: under its key, or under its `Vary` variant
//! with the variant index at the primary key (RFC 9111 §4.1), at most
//! `cache.max_variants` of them per URL.

use std::sync::Arc;

use super::Fill;
use crate::cache::{self, AfterWrite, CacheKey, Entry, Record, Variants};
use crate::outcome::NoCacheReason;
use crate::proxy::key;
use crate::proxy::policy;

impl Fill {
    /// Stores `entry` under its key, or under its `Vary` variant with the
    /// variant index at the primary key.
    pub(super) async fn store(&self, mut entry: Entry) -> (Arc<Entry>, Result<(), NoCacheReason>) {
        let names = policy::vary_fields(&entry.headers);
        if names.is_empty() {
            let entry = Arc::new(entry);
            let records = vec![(self.key.clone(), Record::Response(entry.clone()))];
            let result = self.write(records).await;
            return (entry, result);
        }
        let variant = key::variant(&self.key.hash, &names, &self.headers);
        entry.key = variant;
        entry.vary = policy::vary_values(&names, &self.headers)
            .into_iter()
            .map(|(name, value)| (name, value.as_ref().map(cache::detached_value)))
            .collect();
        let entry = Arc::new(entry);
        let index = match &self.index {
            Some(index) if index.names == names => (**index).clone(),
            _ => Variants {
                key: self.key.hash,
                names,
                known: Vec::new(),
                keep_until: entry.freshness.keep_until,
            },
        };
        let Some(index) = with_variant(index, &entry, self.config.cache.max_variants) else {
            return (entry, Err(NoCacheReason::Variants));
        };
        let variant_key = CacheKey {
            hash: variant,
            ..self.key.clone()
        };
        // The variant first: a reader that finds the index finds it too.
        let mut records = vec![(variant_key, Record::Response(entry.clone()))];
        if self.index.as_deref() != Some(&index) {
            records.push((self.key.clone(), Record::Variants(Arc::new(index))));
        }
        let result = self.write(records).await;
        (entry, result)
    }

    /// Hands records to the store; a held fill lock is released once they
    /// are written, so other instances waiting on it find them.
    pub(super) async fn write(
        &self,
        records: Vec<(CacheKey, Record)>,
    ) -> Result<(), NoCacheReason> {
        let cache = &self.core.cache;
        let then = self.lock.map(|token| {
            let (cache, key) = (cache.clone(), self.key.clone());
            Box::pin(async move { cache.unlock(&key, token, None).await }) as AfterWrite
        });
        if cache.store(records, then).await {
            Ok(())
        } else {
            Err(NoCacheReason::StorageError)
        }
    }
}

/// The index with `entry`'s variant added, or `None` when it is full.
fn with_variant(mut index: Variants, entry: &Entry, max: usize) -> Option<Variants> {
    if !index.known.contains(&entry.key) {
        if index.known.len() >= max {
            return None;
        }
        index.known.push(entry.key);
    }
    index.keep_until = index.keep_until.max(entry.freshness.keep_until);
    Some(index)
}
