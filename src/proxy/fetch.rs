//! Filling the cache: the upstream request for a miss or a revalidation,
//! the decision to store, and what the client (and coalesced followers)
//! get.
//!
//! [`Proxy::fill`] coalesces concurrent fills of one key: the leader's
//! [`Proxy::fetch`] runs in its own task, so a client that disconnects does
//! not cancel it for the others. `fetch` itself:
//!
//! - sends the request with the stale entry's validators, if revalidating;
//! - on a 304, updates the stored headers and freshness (RFC 9111 §4.3.4)
//!   and answers from the stored body;
//! - on an error, a timeout or a 5xx, answers stale within `stale-if-error`;
//! - otherwise decides (`policy::decide`), reads the body within
//!   `max_body_bytes`, stores it (under its `Vary` variant), and answers;
//!   what cannot be stored streams through.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, Uri, header};

use super::body::{self, Body, Collected};
use super::conditional::{self, ClientConditions};
use super::normalize::Normalized;
use super::policy::{self, Exchange, Freshness, RequestDirectives};
use super::respond::{self, CacheOutcome, Fwd, StaleReason};
use super::upstream::{Peer, ResponseBody};
use super::{Outcome, Proxy, content_length};
use crate::cache::coalesce::{Flight, Join, Shared, Waited};
use crate::cache::{self, CacheKey, Entry, FillLock, NoCacheReason, Record, Variants};

/// A fill lock outlives the upstream timeout by this much, so a live holder
/// never loses it, and a dead one's is taken over soon after.
const LOCK_MARGIN: Duration = Duration::from_secs(1);
/// Waiting on another instance's fill: first poll, and the longest between
/// polls (each poll is one lookup).
const FIRST_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(100);
use crate::config::{Route, RuntimeConfig};
use crate::error::ProxyError;

/// Everything a fill needs, owned, so it can run in its own task. Passed
/// boxed from the lookup to the fill's task: it is 520 bytes, and every
/// `async fn` that takes it by value holds it twice and copies it in.
pub(crate) struct FetchRequest {
    pub config: Arc<RuntimeConfig>,
    pub route: Arc<Route>,
    /// The primary key.
    pub key: CacheKey,
    /// Generations read before the upstream request; `None` if the store
    /// failed, in which case nothing is stored.
    pub generations: Option<Vec<u64>>,
    /// The `Vary` index seen at the primary key, if any.
    pub index: Option<Arc<Variants>>,
    pub target: Normalized,
    pub uri: Uri,
    /// The client's headers, without its own preconditions.
    pub headers: HeaderMap,
    pub client: Peer,
    pub credentials: bool,
    /// The stored response being revalidated (validators, stale-if-error).
    pub stale: Option<Arc<Entry>>,
    pub directives: RequestDirectives,
    pub fwd: Fwd,
    /// False when the response must not be stored (a coalesced wait timed out).
    pub store: bool,
    /// The cross-instance fill lock this fill holds, released once its
    /// response is written (or at once if it is not stored).
    pub lock: Option<u64>,
}

/// The result of a fill.
pub(crate) enum Fetched {
    /// Answer from this entry (stored, revalidated, or served stale).
    Entry {
        entry: Arc<Entry>,
        outcome: CacheOutcome,
        upstream: Option<Duration>,
        /// The headers as the upstream sent them, for the request that
        /// fetched the entry: a miss passes them on as received (`Age`
        /// included); others answer from the entry.
        received: Option<HeaderMap>,
    },
    /// Stream this response; it is not shareable.
    Response {
        response: Response<Body>,
        outcome: CacheOutcome,
        upstream: Option<Duration>,
    },
    /// The upstream failed; answer with this error.
    Failed {
        response: Response<Body>,
        outcome: CacheOutcome,
        upstream: Option<Duration>,
    },
}

impl Fetched {
    /// What coalesced followers get.
    fn shared(&self) -> Shared {
        match self {
            Fetched::Entry { entry, .. } => Shared::Entry(entry.clone()),
            Fetched::Response { .. } => Shared::Uncacheable,
            Fetched::Failed { response, .. } => Shared::Failed(response.status()),
        }
    }
}

impl Proxy {
    /// Fills `fetch.key` (coalesced with concurrent fills unless disabled),
    /// then answers a `method` request with the client's `conditions`.
    pub(crate) async fn fill(
        &self,
        mut fetch: Box<FetchRequest>,
        method: &Method,
        conditions: Option<&ClientConditions>,
    ) -> (Response<Body>, Outcome) {
        let route = fetch.route.clone();
        let coalesce = fetch.config.cache.coalesce;
        let coalescer = &self.inner.coalescer;
        let fetched = if !coalesce.enabled
            || fetch.credentials
            || coalescer.is_uncacheable(&fetch.key.hash)
        {
            Box::pin(self.fetch(&fetch)).await
        } else {
            match coalescer.join(fetch.key.hash) {
                Join::Leader(flight) => self.lead(flight, fetch).await,
                Join::Follower(follower) => {
                    let waited = follower.wait(coalesce.wait_timeout).await;
                    match self.follow(&waited, &fetch) {
                        Some(fetched) => fetched,
                        None => {
                            fetch.store = !matches!(waited, Waited::TimedOut);
                            Box::pin(self.fetch(&fetch)).await
                        }
                    }
                }
            }
        };
        answer(fetched, route, method, conditions)
    }

    /// Starts the leader's fetch in its own task and waits for it.
    async fn lead(&self, flight: Flight, fetch: Box<FetchRequest>) -> Fetched {
        let proxy = self.clone();
        let route = fetch.route.name.clone();
        // The fetch is boxed so the task's future is small: spawning moves
        // it into the task, and tokio moves a task's future at least once.
        let task = tokio::spawn(async move {
            let fetched = if fetch.config.cache.coalesce.across_instances {
                Box::pin(proxy.fetch_across(fetch)).await
            } else {
                Box::pin(proxy.fetch(&fetch)).await
            };
            flight.complete(fetched.shared());
            fetched
        });
        match task.await {
            Ok(fetched) => fetched,
            Err(e) => {
                tracing::error!(route = %route, cause = %e, "fill task failed");
                failed(StatusCode::BAD_GATEWAY, CacheOutcome::miss(Fwd::Miss), None)
            }
        }
    }

    /// The leader's fill when fills coalesce across instances: take the
    /// store's fill lock and fill; or, while another instance holds it,
    /// poll the store for its result, and past `wait_timeout` go upstream
    /// without storing. A holder that died is replaced when its lock
    /// expires (the lock lives `upstream.timeout` plus a margin).
    async fn fetch_across(&self, mut fetch: Box<FetchRequest>) -> Fetched {
        let ttl = fetch.config.upstream.timeout + LOCK_MARGIN;
        let deadline = tokio::time::Instant::now() + fetch.config.cache.coalesce.wait_timeout;
        let mut poll = FIRST_POLL;
        loop {
            match self.inner.cache.try_lock(&fetch.key, ttl).await {
                Ok(FillLock::Acquired(token)) => return self.fetch_locked(fetch, token).await,
                Ok(FillLock::Held) => {}
                Ok(FillLock::Uncacheable | FillLock::Unsupported) | Err(_) => {
                    return Box::pin(self.fetch(&fetch)).await;
                }
            }
            if tokio::time::Instant::now() + poll > deadline {
                fetch.store = false;
                return Box::pin(self.fetch(&fetch)).await;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(MAX_POLL);
            if let Some(entry) = self.filled_elsewhere(&fetch).await {
                fetch.route.metrics.coalesced(&self.inner.metrics);
                return Fetched::Entry {
                    entry,
                    outcome: CacheOutcome::miss(fetch.fwd).collapsed(),
                    upstream: None,
                    received: None,
                };
            }
        }
    }

    /// A fill holding the lock: released after the write when the response
    /// is stored, at once otherwise (marked uncacheable when it is).
    async fn fetch_locked(&self, mut fetch: Box<FetchRequest>, token: u64) -> Fetched {
        fetch.lock = Some(token);
        let key = fetch.key.clone();
        let fetched = Box::pin(self.fetch(&fetch)).await;
        let handed_over = matches!(&fetched, Fetched::Entry { outcome, .. } if outcome.stored);
        if !handed_over {
            let uncacheable = matches!(fetched, Fetched::Response { .. });
            let mark = uncacheable.then_some(crate::cache::coalesce::HIT_FOR_MISS_TTL);
            self.inner.cache.unlock(&key, token, mark).await;
        }
        fetched
    }

    /// A fresh entry another instance stored for this request, if any.
    async fn filled_elsewhere(&self, fetch: &FetchRequest) -> Option<Arc<Entry>> {
        let found = super::lookup::find(&self.inner.cache, &fetch.key, &fetch.headers).await?;
        match super::lookup::usable(&found, &fetch.headers, fetch.credentials) {
            super::lookup::Usable::Yes(entry)
                if policy::judge(&entry, &fetch.directives, SystemTime::now())
                    == policy::Verdict::Fresh =>
            {
                Some(entry)
            }
            _ => None,
        }
    }

    /// What a follower does with the leader's outcome; `None`: go upstream.
    fn follow(&self, waited: &Waited, fetch: &FetchRequest) -> Option<Fetched> {
        let collapsed = CacheOutcome::miss(fetch.fwd).collapsed();
        let fetched = match waited {
            Waited::Done(Shared::Entry(entry))
                if entry.vary_matches(&fetch.headers)
                    && (!fetch.credentials || entry.shareable_with_auth) =>
            {
                Fetched::Entry {
                    entry: entry.clone(),
                    outcome: collapsed,
                    upstream: None,
                    received: None,
                }
            }
            Waited::Done(Shared::Failed(status)) => failed(*status, collapsed, None),
            _ => return None,
        };
        fetch.route.metrics.coalesced(&self.inner.metrics);
        Some(fetched)
    }

    /// Refreshes a stale entry in the background, once per key.
    pub(crate) fn refresh(&self, fetch: Box<FetchRequest>) {
        let Join::Leader(flight) = self.inner.coalescer.join(fetch.key.hash) else {
            return; // a fill or refresh of this key is already under way
        };
        let proxy = self.clone();
        let span = tracing::debug_span!("refresh", route = %fetch.route.name);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let fetched = proxy.fetch(&fetch).await;
                flight.complete(fetched.shared());
            },
            span,
        ));
    }

    /// One upstream exchange for a fill or revalidation. Borrows its
    /// request: an `async fn` keeps an argument it owns twice over, and this
    /// future is boxed (copied whole) on every miss.
    pub(crate) async fn fetch(&self, fetch: &FetchRequest) -> Fetched {
        // The upstream request copies the headers anyway: only a
        // revalidation needs its own map first.
        let headers = match &fetch.stale {
            Some(stale) => {
                let mut headers = fetch.headers.clone();
                for (name, value) in conditional::validators(stale) {
                    headers.insert(name, value);
                }
                Cow::Owned(headers)
            }
            None => Cow::Borrowed(&fetch.headers),
        };
        let sent_at = SystemTime::now();
        let (result, took) = self
            .forward(
                &fetch.config,
                &Method::GET,
                &fetch.uri,
                &headers,
                None,
                &fetch.target,
                &fetch.client,
                &fetch.route.metrics,
            )
            .await;
        let received_at = SystemTime::now();
        let ex = Exchange {
            method: &Method::GET,
            uri: &fetch.uri,
            request: &fetch.headers,
            directives: &fetch.directives,
            credentials: fetch.credentials,
            sent_at,
            received_at,
        };
        let response = match result {
            Ok(response) => response,
            Err(e) => return self.upstream_failed(fetch, ProxyError::from(e), None, took),
        };
        let status = response.status();
        match &fetch.stale {
            Some(stale) if status == StatusCode::NOT_MODIFIED => {
                self.revalidated(fetch, &ex, stale.clone(), response.headers(), took)
                    .await
            }
            Some(stale)
                if status.is_server_error()
                    && policy::stale_if_error(stale, &fetch.directives, received_at) =>
            {
                serve_stale(
                    stale.clone(),
                    Some(status.as_u16()),
                    received_at,
                    Some(took),
                )
            }
            _ => self.fresh(fetch, &ex, response, took).await,
        }
    }

    fn upstream_failed(
        &self,
        fetch: &FetchRequest,
        error: ProxyError,
        status: Option<u16>,
        took: Duration,
    ) -> Fetched {
        let now = SystemTime::now();
        if let Some(stale) = &fetch.stale
            && policy::stale_if_error(stale, &fetch.directives, now)
        {
            tracing::warn!(route = %fetch.route.name, cause = %error, "upstream failed; serving stale");
            return serve_stale(stale.clone(), status, now, Some(took));
        }
        Fetched::Failed {
            response: error.to_response(&fetch.route.name),
            outcome: CacheOutcome::miss(fetch.fwd),
            upstream: Some(took),
        }
    }

    /// A 304: the stored response, with its headers updated, is fresh again.
    async fn revalidated(
        &self,
        fetch: &FetchRequest,
        ex: &Exchange<'_>,
        stale: Arc<Entry>,
        not_modified: &HeaderMap,
        took: Duration,
    ) -> Fetched {
        let mut headers =
            conditional::merge_304(&stale.headers, &cache::detached_headers(not_modified));
        headers.remove(header::AGE);
        let mut outcome = CacheOutcome::revalidated(fetch.fwd);
        let entry = match policy::decide(&fetch.route, ex, stale.status, &headers) {
            Ok(freshness) => {
                let entry = Arc::new(Entry {
                    headers,
                    generations: fetch.generations.clone().unwrap_or_default(),
                    ..with_freshness(Entry::clone(&stale), ex.received_at, freshness)
                });
                let key = CacheKey {
                    hash: stale.key,
                    ..fetch.key.clone()
                };
                outcome = match (&fetch.generations, fetch.store) {
                    (Some(_), true) => {
                        match self
                            .write(fetch, vec![(key, Record::Response(entry.clone()))])
                            .await
                        {
                            Ok(()) => outcome.stored(),
                            Err(reason) => outcome.not_stored(reason),
                        }
                    }
                    (None, _) => outcome.not_stored(NoCacheReason::StorageError),
                    (_, false) => outcome.not_stored(NoCacheReason::WaitTimeout),
                };
                entry
            }
            Err(reason) => {
                outcome = outcome.not_stored(reason);
                Arc::new(Entry {
                    headers,
                    ..(*stale).clone()
                })
            }
        };
        Fetched::Entry {
            entry,
            outcome,
            upstream: Some(took),
            received: None,
        }
    }

    /// A full response: store it if allowed, else stream it through.
    async fn fresh(
        &self,
        fetch: &FetchRequest,
        ex: &Exchange<'_>,
        response: Response<ResponseBody>,
        took: Duration,
    ) -> Fetched {
        let mut outcome = CacheOutcome::miss(fetch.fwd);
        if fetch.stale.is_some() {
            outcome = outcome.with_fwd_status(response.status().as_u16());
        }
        let freshness = match storable(fetch, ex, &response) {
            Ok(f) => f,
            Err(reason) => {
                return Fetched::Response {
                    response: response.map(Body::Stream),
                    outcome: outcome.not_stored(reason),
                    upstream: Some(took),
                };
            }
        };
        let (head, body) = response.into_parts();
        let bytes = match body::collect_limited(body, fetch.config.cache.max_body_bytes).await {
            Ok(Collected::Complete(bytes)) => bytes,
            Ok(Collected::TooLarge(body)) => {
                return Fetched::Response {
                    response: Response::from_parts(head, body),
                    outcome: outcome.not_stored(NoCacheReason::TooLarge),
                    upstream: Some(took),
                };
            }
            Err(e) => {
                let response = ProxyError::UpstreamBody(e).to_response(&fetch.route.name);
                return Fetched::Failed {
                    response,
                    outcome: outcome.not_stored(NoCacheReason::Incomplete),
                    upstream: Some(took),
                };
            }
        };
        let entry = new_entry(fetch, ex, freshness, &head, bytes);
        let (entry, stored) = self.store(fetch, entry).await;
        let outcome = match stored {
            Ok(()) => outcome.stored(),
            Err(reason) => outcome.not_stored(reason),
        };
        Fetched::Entry {
            entry,
            outcome,
            upstream: Some(took),
            received: Some(head.headers),
        }
    }

    /// Stores `entry` under its key, or under its `Vary` variant with the
    /// variant index at the primary key.
    async fn store(
        &self,
        fetch: &FetchRequest,
        mut entry: Entry,
    ) -> (Arc<Entry>, Result<(), NoCacheReason>) {
        let names = policy::vary_fields(&entry.headers);
        if names.is_empty() {
            let entry = Arc::new(entry);
            let records = vec![(fetch.key.clone(), Record::Response(entry.clone()))];
            let result = self.write(fetch, records).await;
            return (entry, result);
        }
        let variant = super::key::variant(&fetch.key.hash, &names, &fetch.headers);
        entry.key = variant;
        entry.vary = policy::vary_values(&names, &fetch.headers)
            .into_iter()
            .map(|(name, value)| (name, value.as_ref().map(cache::detached_value)))
            .collect();
        let entry = Arc::new(entry);
        let index = match &fetch.index {
            Some(index) if index.names == names => (**index).clone(),
            _ => Variants {
                key: fetch.key.hash,
                names,
                known: Vec::new(),
                keep_until: entry.keep_until,
            },
        };
        let Some(index) = with_variant(index, &entry, fetch.config.cache.max_variants) else {
            return (entry, Err(NoCacheReason::Variants));
        };
        let variant_key = CacheKey {
            hash: variant,
            ..fetch.key.clone()
        };
        // The variant first: a reader that finds the index finds it too.
        let mut records = vec![(variant_key, Record::Response(entry.clone()))];
        if fetch.index.as_deref() != Some(&index) {
            records.push((fetch.key.clone(), Record::Variants(Arc::new(index))));
        }
        let result = self.write(fetch, records).await;
        (entry, result)
    }

    /// Hands records to the store; a held fill lock is released once they
    /// are written, so other instances waiting on it find them.
    async fn write(
        &self,
        fetch: &FetchRequest,
        records: Vec<(CacheKey, Record)>,
    ) -> Result<(), NoCacheReason> {
        let then = fetch.lock.map(|token| {
            let cache = self.inner.cache.clone();
            let key = fetch.key.clone();
            Box::pin(async move { cache.unlock(&key, token, None).await }) as cache::AfterWrite
        });
        if self.inner.cache.store(records, then).await {
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
    index.keep_until = index.keep_until.max(entry.keep_until);
    Some(index)
}

/// Whether a fetched response may be stored, and for how long.
fn storable(
    fetch: &FetchRequest,
    ex: &Exchange<'_>,
    response: &Response<ResponseBody>,
) -> Result<Freshness, NoCacheReason> {
    if fetch.generations.is_none() {
        return Err(NoCacheReason::StorageError);
    }
    if !fetch.store {
        return Err(NoCacheReason::WaitTimeout);
    }
    let freshness = policy::decide(&fetch.route, ex, response.status(), response.headers())?;
    if content_length(response.headers()).is_some_and(|n| n > fetch.config.cache.max_body_bytes) {
        return Err(NoCacheReason::TooLarge);
    }
    Ok(freshness)
}

/// The entry for a fetched response, owning its bytes; `Age` is dropped
/// (computed on every hit). Key and `Vary` values are set when stored.
fn new_entry(
    fetch: &FetchRequest,
    ex: &Exchange<'_>,
    freshness: Freshness,
    head: &http::response::Parts,
    body: Bytes,
) -> Entry {
    let mut headers = cache::detached_headers(&head.headers);
    headers.remove(header::AGE);
    strip_qualified(&mut headers);
    let template = Entry {
        key: fetch.key.hash,
        status: head.status,
        headers,
        body,
        stored_at: ex.received_at,
        initial_age: Duration::ZERO,
        fresh_until: ex.received_at,
        stale_while_revalidate_until: ex.received_at,
        stale_if_error_until: ex.received_at,
        must_revalidate: false,
        keep_until: ex.received_at,
        vary: Vec::new(),
        generations: fetch.generations.clone().unwrap_or_default(),
        shareable_with_auth: false,
    };
    with_freshness(template, ex.received_at, freshness)
}

/// `entry` with new freshness, as received at `received_at`.
fn with_freshness(entry: Entry, received_at: SystemTime, f: Freshness) -> Entry {
    Entry {
        stored_at: received_at,
        initial_age: f.initial_age,
        fresh_until: f.fresh_until,
        stale_while_revalidate_until: f.stale_while_revalidate_until,
        stale_if_error_until: f.stale_if_error_until,
        must_revalidate: f.must_revalidate,
        keep_until: f.keep_until,
        shareable_with_auth: f.shareable_with_auth,
        ..entry
    }
}

/// Removes the fields a qualified `no-cache="a"` or `private="a"` names:
/// they may not be reused without revalidation (RFC 9111 §5.2.2.4, §5.2.2.7).
fn strip_qualified(headers: &mut HeaderMap) {
    // Almost no response has either directive: look before parsing.
    let mentions =
        |v: &[u8], name: &[u8]| v.windows(name.len()).any(|w| w.eq_ignore_ascii_case(name));
    let may_qualify = |v: &http::HeaderValue| {
        mentions(v.as_bytes(), b"no-cache") || mentions(v.as_bytes(), b"private")
    };
    if !headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .any(may_qualify)
    {
        return;
    }
    let cc = super::cache_control::Directives::parse(headers);
    for directive in ["no-cache", "private"] {
        for field in cc.field_list(directive).unwrap_or_default() {
            headers.remove(field.as_str());
        }
    }
}

fn serve_stale(
    entry: Arc<Entry>,
    status: Option<u16>,
    now: SystemTime,
    took: Option<Duration>,
) -> Fetched {
    let mut outcome = CacheOutcome::stale(entry.ttl_secs(now), StaleReason::IfError);
    if let Some(status) = status {
        outcome = outcome.with_fwd_status(status);
    }
    Fetched::Entry {
        entry,
        outcome,
        upstream: took,
        received: None,
    }
}

fn failed(status: StatusCode, outcome: CacheOutcome, upstream: Option<Duration>) -> Fetched {
    let text = if status == StatusCode::GATEWAY_TIMEOUT {
        "upstream timed out\n"
    } else {
        "upstream unavailable\n"
    };
    let response = crate::error::status_response(status, text);
    Fetched::Failed {
        response,
        outcome,
        upstream,
    }
}

/// The client's response from a fill.
fn answer(
    fetched: Fetched,
    route: Arc<Route>,
    method: &Method,
    conditions: Option<&ClientConditions>,
) -> (Response<Body>, Outcome) {
    let now = SystemTime::now();
    let (response, cache, upstream) = match fetched {
        Fetched::Entry {
            entry,
            outcome,
            upstream,
            received,
        } => {
            let not_modified = conditions.is_some_and(|c| conditional::not_modified(&entry, c));
            let response = match received {
                Some(headers) if !not_modified => {
                    let body = if *method == Method::HEAD {
                        Body::Empty
                    } else {
                        Body::full(entry.body.clone())
                    };
                    let mut response = Response::new(body);
                    *response.status_mut() = entry.status;
                    *response.headers_mut() = headers;
                    response
                }
                _ => respond::entry_response(&entry, method, conditions, now),
            };
            (response, outcome, upstream)
        }
        Fetched::Response {
            mut response,
            outcome,
            upstream,
        }
        | Fetched::Failed {
            mut response,
            outcome,
            upstream,
        } => {
            if *method == Method::HEAD {
                *response.body_mut() = Body::Empty;
            }
            (response, outcome, upstream)
        }
    };
    let mut outcome = Outcome::new(Some(route), cache);
    outcome.upstream = upstream;
    (response, outcome)
}
