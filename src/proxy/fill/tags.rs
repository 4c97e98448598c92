//! The tags of a fetched response: read from the app's tag headers
//! (`cache.tags`), bounded, and left for the store to stamp against the tag
//! epoch this fill's lookup read (docs/architecture.md, "Tags").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use super::Fill;
use crate::cache::Tags;

/// At most one warning about dropped tags per this many seconds: an app
/// that always sends too many must not flood the log (the metric counts
/// every one).
const WARN_EVERY_SECS: u64 = 60;

impl Fill {
    /// The response's tags, unstamped; the tag headers are taken out of
    /// `headers` (what is stored) when `cache.tags.strip` is on.
    pub(super) fn take_tags(&self, headers: &mut HeaderMap) -> Tags {
        let config = &self.config.cache.tags;
        let read = config.read(headers);
        config.strip_from(headers);
        let dropped = [("count", read.over_count), ("length", read.too_long)];
        for (reason, n) in dropped.into_iter().filter(|(_, n)| *n > 0) {
            let counter = &self.core.metrics.tags_dropped_total;
            counter.with_label_values(&[reason]).inc_by(n as u64);
            if warn_now() {
                tracing::warn!(
                    route = %self.route.name,
                    path = %self.target.path,
                    reason,
                    dropped = n,
                    max_per_entry = config.max_per_entry,
                    max_length = config.max_length,
                    "tags from the app not kept (cache.tags bounds)"
                );
            }
        }
        if read.tags.is_empty() {
            return Tags::default();
        }
        Tags::pending(&read.tags, self.tag_epoch)
    }
}

/// Whether a rate-limited warning may be logged now.
fn warn_now() -> bool {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    now >= last + WARN_EVERY_SECS
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}
