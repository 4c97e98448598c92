//! What is stored: a response ([`Entry`]) with the [`Freshness`] decided
//! when it was stored, or the index of a URL's `Vary` variants
//! ([`Variants`]), either one a [`Record`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::headers::normalized_field;
use super::{KeyHash, Token};

/// One stored response.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key this entry was stored under; a mismatch on read is a miss.
    pub key: KeyHash,
    /// Response status.
    pub status: StatusCode,
    /// End-to-end response headers as received (no hop-by-hop headers, no `Age`).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When the response was received.
    pub stored_at: SystemTime,
    /// How long it may be used, and by whom, as decided when it was stored.
    pub freshness: Freshness,
    /// The request's values of the headers named by the response's `Vary`.
    pub vary: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Generations of the key's tokens when the fill started, in token order.
    pub generations: Vec<u64>,
    /// The tags the app gave the response, with their generations.
    pub tags: Tags,
}

/// The tags (surrogate keys) an entry carries from the app's tag header,
/// and the generation each tag's token had when the entry was stored
/// (docs/architecture.md, "Tags"). Tags a route derives from captures are
/// key tokens instead, known before the request is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags {
    /// The tags' tokens (`t:{tag}`), sorted by tag, without duplicates:
    /// made once, so a lookup reads their generations without allocating.
    pub tokens: Vec<Token>,
    /// The generation of each tag's token when stored, in `tokens` order;
    /// empty until stamped.
    pub generations: Vec<u64>,
    /// Until stamped: the tag epoch the fill's lookup read. The store stamps
    /// the entry only if the epoch is still that, and drops it otherwise.
    pub epoch: Option<u64>,
}

impl Tags {
    /// Unstamped tags `names` (sorted) of a fill whose lookup read `epoch`.
    pub fn pending(names: &[Box<str>], epoch: u64) -> Self {
        Self {
            tokens: names.iter().map(|n| Token::tag(n)).collect(),
            generations: Vec::new(),
            epoch: Some(epoch),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tags, in `tokens` order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter_map(Token::tag_name)
    }

    /// The tag epoch to stamp against, while the tags await stamping.
    pub fn unstamped(&self) -> Option<u64> {
        self.epoch.filter(|_| !self.tokens.is_empty())
    }
}

/// How long a stored response may be used (RFC 9111 §4.2), decided once
/// when it is stored (`proxy/policy.rs`) and carried with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// `Age` the response already had when received (RFC 9111 §4.2.3).
    pub initial_age: Duration,
    /// Until when it is fresh.
    pub fresh_until: SystemTime,
    /// Until when it may be served stale while it is refreshed in the
    /// background (`stale-while-revalidate`).
    pub stale_while_revalidate_until: SystemTime,
    /// Until when it may be served stale if the upstream fails
    /// (`stale-if-error`).
    pub stale_if_error_until: SystemTime,
    /// Never served stale, and revalidated when stale (`must-revalidate`,
    /// `proxy-revalidate`, `no-cache`).
    pub must_revalidate: bool,
    /// Until when the store keeps it: freshness, stale windows, and a while
    /// longer when it has validators, for cheap revalidation.
    pub keep_until: SystemTime,
    /// The response may also be served to requests with credentials
    /// (RFC 9111 §3.5, or the route's `share_authenticated`).
    pub shareable_with_auth: bool,
}

/// What is stored under one key.
#[derive(Clone, Debug)]
pub enum Record {
    /// A response.
    Response(Arc<Entry>),
    /// The response at this key varies (`Vary`): the variants are stored
    /// under keys derived from this one and the request's values of `names`.
    Variants(Arc<Variants>),
}

/// The index of a URL's variants (RFC 9111 §4.1; docs/architecture.md,
/// "Storage and invalidation").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variants {
    /// The primary key this index is stored under.
    pub key: KeyHash,
    /// Lower-cased header names from the response's `Vary`, sorted.
    pub names: Vec<HeaderName>,
    /// Variant keys stored so far; bounded by `cache.max_variants`.
    pub known: Vec<KeyHash>,
    /// Until when the store keeps the index (the longest-kept variant).
    pub keep_until: SystemTime,
}

// === impl Freshness ===

impl Freshness {
    /// Fresh, and kept, for `keep` from `now`; no stale windows beyond it.
    pub fn for_duration(now: SystemTime, keep: Duration) -> Self {
        let until = now + keep;
        Self {
            initial_age: Duration::ZERO,
            fresh_until: until,
            stale_while_revalidate_until: until,
            stale_if_error_until: until,
            must_revalidate: false,
            keep_until: until,
            shareable_with_auth: false,
        }
    }
}

// === impl Entry ===

impl Entry {
    /// The plainest entry: a `200` with `body` and no headers, stored at
    /// `now`, fresh and kept for `keep`, filled under `generations`. For
    /// tests, benches and tools; the proxy builds entries from responses.
    pub fn fresh(
        key: KeyHash,
        body: Bytes,
        now: SystemTime,
        keep: Duration,
        generations: Vec<u64>,
    ) -> Self {
        Self {
            key,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body,
            stored_at: now,
            freshness: Freshness::for_duration(now, keep),
            vary: Vec::new(),
            generations,
            tags: Tags::default(),
        }
    }

    /// `Age` at `now` (RFC 9111 §4.2.3): age when received plus resident time.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.freshness.initial_age + now.duration_since(self.stored_at).unwrap_or_default()
    }

    /// Whether the entry is fresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now < self.freshness.fresh_until
    }

    /// Seconds of freshness left at `now`; negative once stale.
    pub fn ttl_secs(&self, now: SystemTime) -> i64 {
        match self.freshness.fresh_until.duration_since(now) {
            Ok(left) => left.as_secs() as i64,
            Err(past) => {
                let past = past.duration();
                -(past.as_secs() as i64) - i64::from(past.subsec_nanos() > 0)
            }
        }
    }

    /// Approximate memory footprint, for the byte-bounded memory store:
    /// the body, each header's bytes plus its map slot and value buffer,
    /// and the entry itself with its store bookkeeping.
    pub fn weight(&self) -> u64 {
        // What an entry costs beyond its bytes, measured with 100k stored
        // entries (docs/benchmarks.md, "Memory"): the Entry, its HeaderMap
        // and moka's node, queues and timer.
        const PER_ENTRY: usize = 1024;
        const PER_HEADER: usize = 160;
        let headers: usize = self
            .headers
            .iter()
            .chain(self.vary.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))))
            .map(|(k, v)| k.as_str().len() + v.len() + PER_HEADER)
            .sum();
        let tags: usize = self.tags.tokens.iter().map(|t| t.as_str().len() + 24).sum();
        (PER_ENTRY + self.body.len() + headers + tags + self.generations.len() * 8) as u64
    }

    /// Whether the request presents the same values (normalized) for the
    /// headers named by the response's `Vary` as the request that filled it.
    pub fn vary_matches(&self, request: &HeaderMap) -> bool {
        self.vary.iter().all(|(name, value)| {
            normalized_field(request, name).as_deref() == value.as_ref().map(|v| v.as_bytes())
        })
    }

    /// The stored `ETag`.
    pub fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(http::header::ETAG)
    }

    /// The stored `Last-Modified`.
    pub fn last_modified(&self) -> Option<&HeaderValue> {
        self.headers.get(http::header::LAST_MODIFIED)
    }

    /// Whether it can be revalidated with a conditional request.
    pub fn has_validators(&self) -> bool {
        self.etag().is_some() || self.last_modified().is_some()
    }
}

// === impl Record ===

impl Record {
    /// Approximate memory footprint.
    pub fn weight(&self) -> u64 {
        match self {
            Record::Response(e) => e.weight(),
            Record::Variants(v) => 256 + 32 * v.known.len() as u64 + 32 * v.names.len() as u64,
        }
    }

    /// Until when a store should keep it.
    pub fn keep_until(&self) -> SystemTime {
        match self {
            Record::Response(e) => e.freshness.keep_until,
            Record::Variants(v) => v.keep_until,
        }
    }

    /// How much longer a store should keep it.
    pub fn keep_for(&self, now: SystemTime) -> Duration {
        self.keep_until().duration_since(now).unwrap_or_default()
    }

    /// The key it was stored under; a value read back under another key
    /// is not this key's.
    pub fn key(&self) -> &KeyHash {
        match self {
            Record::Response(e) => &e.key,
            Record::Variants(v) => &v.key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ttl_counts_down_and_goes_negative() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut entry = Entry::fresh(
            KeyHash([0; 32]),
            Bytes::new(),
            now,
            Duration::from_secs(60),
            vec![1],
        );
        entry.freshness.initial_age = Duration::from_secs(5);
        assert_eq!(entry.ttl_secs(now), 60);
        assert_eq!(
            entry.age(now + Duration::from_secs(10)),
            Duration::from_secs(15)
        );
        assert!(entry.is_fresh(now + Duration::from_secs(59)));
        assert!(!entry.is_fresh(now + Duration::from_secs(60)));
        assert_eq!(entry.ttl_secs(now + Duration::from_secs(61)), -1);
        assert_eq!(entry.ttl_secs(now + Duration::from_millis(60_500)), -1);
    }
}
