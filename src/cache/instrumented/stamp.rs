//! Stamping a fill's tags (docs/architecture.md, "Tags"): the tags an
//! app's response carries are only known once it has arrived, so their
//! generations are read when the entry is written, and the tag epoch read
//! by the fill's lookup tells whether a tag purge came in between.

use std::sync::Arc;

use super::Cache;
use crate::cache::{CacheKey, Entry, Record, StoreError, Token};

impl Cache {
    /// The record with its tags' generations read, or `None` when a tag
    /// purge began after the fill's lookup: the fill may have fetched what
    /// the purge ends, so it is not stored. The tags are read before the
    /// epoch, and a purge bumps the epoch before the tags: a tag read that
    /// sees a purge then sees its epoch.
    pub(super) async fn stamped(
        &self,
        key: &CacheKey,
        record: Record,
    ) -> Result<Option<Record>, StoreError> {
        let Record::Response(entry) = &record else {
            return Ok(Some(record));
        };
        let Some(epoch) = entry.tags.unstamped() else {
            return Ok(Some(record));
        };
        let generations = self.store.current(&entry.tags.tokens).await?;
        let epoch_now = std::slice::from_ref(Token::tag_epoch());
        if self.store.current(epoch_now).await?.first() != Some(&epoch) {
            tracing::debug!(route = %key.route, "a tag purge raced this fill; not stored");
            return Ok(None);
        }
        let mut entry = Entry::clone(entry);
        entry.tags.generations = generations;
        entry.tags.epoch = None;
        Ok(Some(Record::Response(Arc::new(entry))))
    }
}
