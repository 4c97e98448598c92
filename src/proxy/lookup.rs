//! Phase 5, lookup: the stored response for a request, following a `Vary`
//! index to the request's variant, with the current generations of the
//! key's tokens; and whether what was found may answer this request at all.
//!
//! Freshness is not judged here (that is `policy::judge`); "usable" means
//! the entry belongs to this request: same key, same generations (not
//! purged since), still within its keep time, shareable with its
//! credentials, same `Vary` values.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use super::key;
use crate::cache::{Cache, CacheKey, Entry, KeyHash, Record, Variants};

/// What a lookup found.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Current generations of the key's tokens (to stamp a fill with).
    pub generations: Vec<u64>,
    /// The tag epoch read with them (to stamp a fill's tags against).
    pub tag_epoch: u64,
    /// Current generations of the found entry's tags.
    pub tag_generations: Vec<u64>,
    /// The `Vary` index at the primary key, if the response varies.
    pub index: Option<Arc<Variants>>,
    /// The stored response for this request's variant, if any.
    pub entry: Option<Arc<Entry>>,
    /// The key the entry was looked up under (primary or variant).
    pub entry_key: Option<KeyHash>,
}

/// Whether a found entry belongs to this request.
pub(crate) enum Usable {
    /// Yes.
    Yes(Arc<Entry>),
    /// Stored for other values of the `Vary` headers.
    VaryMiss,
    /// No, and why.
    No(NotUsable),
}

/// Why a found entry cannot answer a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotUsable {
    /// Nothing is stored under the key.
    Absent,
    /// The stored value belongs to another key.
    KeyMismatch,
    /// A purge or mutation bumped a generation since it was stored.
    Invalidated,
    /// The request has credentials and the entry may not be shared with it.
    Credentials,
}

impl NotUsable {
    /// The explain / log word.
    pub fn as_str(self) -> &'static str {
        match self {
            NotUsable::Absent => "absent",
            NotUsable::KeyMismatch => "key-mismatch",
            NotUsable::Invalidated => "invalidated",
            NotUsable::Credentials => "credentials",
        }
    }
}

/// Looks `key` up, following a `Vary` index to the request's variant. A
/// store error is `None` (a miss that does not store), already counted.
pub(crate) async fn find(cache: &Cache, key: &CacheKey, headers: &HeaderMap) -> Option<Found> {
    let primary = cache.lookup(key).await.ok()?;
    let mut found = Found {
        generations: primary.generations,
        tag_epoch: primary.tag_epoch,
        tag_generations: primary.tag_generations,
        ..Found::default()
    };
    match primary.record {
        None => {}
        Some(Record::Response(entry)) => {
            found.entry = Some(entry);
            found.entry_key = Some(key.hash);
        }
        Some(Record::Variants(index)) => {
            let variant = key::variant(&key.hash, &index.names, headers);
            let variant_key = CacheKey {
                hash: variant,
                ..key.clone()
            };
            if let Ok(l) = cache.lookup(&variant_key).await
                && let Some(Record::Response(entry)) = l.record
            {
                found.entry = Some(entry);
                found.entry_key = Some(variant);
                found.tag_generations = l.tag_generations;
            }
            found.index = Some(index);
        }
    }
    Some(found)
}

/// Whether the found entry belongs to this request at `now`.
pub(crate) fn usable(
    found: &Found,
    headers: &HeaderMap,
    credentials: bool,
    now: SystemTime,
) -> Usable {
    let (Some(entry), Some(entry_key)) = (&found.entry, found.entry_key) else {
        return Usable::No(NotUsable::Absent);
    };
    let not = if entry.key != entry_key {
        Some(NotUsable::KeyMismatch)
    } else if now >= entry.freshness.keep_until {
        // A store may hold it a moment past its keep time; it is over.
        Some(NotUsable::Absent)
    } else if entry.generations != found.generations
        || entry.tags.generations != found.tag_generations
    {
        Some(NotUsable::Invalidated)
    } else if credentials && !entry.freshness.shareable_with_auth {
        Some(NotUsable::Credentials)
    } else {
        None
    };
    if let Some(why) = not {
        return Usable::No(why);
    }
    if !entry.vary_matches(headers) {
        return Usable::VaryMiss;
    }
    Usable::Yes(entry.clone())
}
