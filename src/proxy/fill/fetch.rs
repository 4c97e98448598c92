//! One upstream exchange for a fill or a revalidation, and what becomes of
//! its answer: a 304 refreshes the stored response, a failure may be
//! answered stale, and a full response is stored if RFC 9111 and the route
//! allow it, else streamed through.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode, header};

use super::{Fetched, Fill};
use crate::cache::{self, CacheKey, Entry, Freshness, Record};
use crate::outcome::{CacheOutcome, NoCacheReason, StaleReason};
use crate::proxy::ProxyError;
use crate::proxy::body::{self, Body, Collected, content_length};
use crate::proxy::cache_control::Directives;
use crate::proxy::conditional;
use crate::proxy::forward::Exchanged;
use crate::proxy::policy::{self, Exchange};
use crate::proxy::upstream::{ResponseBody, UpstreamRequest};

impl Fill {
    /// One upstream exchange for this fill. Borrows the fill: an `async fn`
    /// keeps an argument it owns twice over, and this future is boxed
    /// (copied whole) on every miss.
    pub(super) async fn fetch(&self) -> Fetched {
        let sent_at = self.core.clock.now();
        let (result, took) = self.send().await;
        let received_at = self.core.clock.now();
        let ex = Exchange {
            method: &Method::GET,
            uri: &self.uri,
            request: &self.headers,
            directives: &self.directives,
            credentials: self.credentials,
            sent_at,
            received_at,
        };
        let response = match result {
            Ok(response) => response,
            Err(e) => return self.upstream_failed(ProxyError::from(e), None, took),
        };
        let status = response.status();
        match &self.why.stale {
            Some(stale) if status == StatusCode::NOT_MODIFIED => {
                self.revalidated(&ex, stale, response.headers(), took).await
            }
            Some(stale)
                if self.head_revalidation()
                    && status == StatusCode::OK
                    && conditional::same_validators(stale, response.headers()) =>
            {
                self.revalidated(&ex, stale, response.headers(), took).await
            }
            Some(stale)
                if status.is_server_error()
                    && policy::stale_if_error(stale, &self.directives, received_at) =>
            {
                serve_stale(
                    stale.clone(),
                    Some(status.as_u16()),
                    received_at,
                    Some(took),
                )
            }
            _ if self.head_revalidation() => self.head_passed(response, took),
            _ => self.fresh(&ex, response, took).await,
        }
    }

    /// The answer to a HEAD revalidation that did not confirm the entry,
    /// passed on. Nothing is stored without a body; the stale entry stays
    /// until a GET revalidates or replaces it.
    fn head_passed(&self, response: Response<ResponseBody>, took: Duration) -> Fetched {
        let outcome = CacheOutcome::miss(self.why.fwd).with_fwd_status(response.status().as_u16());
        Fetched::Response {
            response: response.map(Body::Stream),
            outcome: outcome.not_stored(NoCacheReason::Method),
            upstream: Some(took),
        }
    }

    /// Sends the fill's GET, with the stale entry's validators when
    /// revalidating.
    async fn send(&self) -> Exchanged {
        // The upstream request copies the headers anyway: only a
        // revalidation needs its own map first.
        let headers = match &self.why.stale {
            Some(stale) => {
                let mut headers = self.headers.clone();
                for (name, value) in conditional::validators(stale) {
                    headers.insert(name, value);
                }
                Cow::Owned(headers)
            }
            None => Cow::Borrowed(&self.headers),
        };
        let method = if self.head_revalidation() {
            &Method::HEAD
        } else {
            &Method::GET
        };
        let request = UpstreamRequest {
            method,
            uri: &self.uri,
            headers: &headers,
            target: &self.target,
            client: &self.client,
        };
        let route = &self.route.metrics;
        self.core
            .forwarder
            .forward(&self.config, request, None, route)
            .await
    }

    /// The exchange failed: stale within `stale-if-error`, else the error.
    fn upstream_failed(&self, error: ProxyError, status: Option<u16>, took: Duration) -> Fetched {
        let now = self.core.clock.now();
        if let Some(stale) = &self.why.stale
            && policy::stale_if_error(stale, &self.directives, now)
        {
            tracing::warn!(route = %self.route.name, cause = %error, "upstream failed; serving stale");
            return serve_stale(stale.clone(), status, now, Some(took));
        }
        Fetched::Failed {
            error,
            outcome: CacheOutcome::miss(self.why.fwd),
            upstream: Some(took),
        }
    }

    /// A 304: the stored response, with its headers updated, is fresh again.
    async fn revalidated(
        &self,
        ex: &Exchange<'_>,
        stale: &Entry,
        not_modified: &HeaderMap,
        took: Duration,
    ) -> Fetched {
        let mut headers =
            conditional::merge_304(&stale.headers, &cache::detached_headers(not_modified));
        headers.remove(header::AGE);
        self.strip_own_field(&mut headers);
        // The entry keeps the tags it was stored with.
        self.config.cache.tags.strip_from(&mut headers);
        let outcome = CacheOutcome::revalidated(self.why.fwd);
        let (entry, outcome) = match policy::decide(&self.route, ex, stale.status, &headers) {
            Ok(freshness) => {
                let generations = self.generations.clone().unwrap_or_default();
                let renewed = (ex.received_at, freshness, generations);
                let entry = Arc::new(revised(stale, headers, Some(renewed)));
                let key = CacheKey {
                    hash: stale.key,
                    ..self.key.clone()
                };
                let stored = match self.storing() {
                    Ok(()) => {
                        self.write(vec![(key, Record::Response(entry.clone()))])
                            .await
                    }
                    Err(reason) => Err(reason),
                };
                (entry, stored_or_not(outcome, stored))
            }
            Err(reason) => (
                Arc::new(revised(stale, headers, None)),
                outcome.not_stored(reason),
            ),
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
        ex: &Exchange<'_>,
        response: Response<ResponseBody>,
        took: Duration,
    ) -> Fetched {
        let mut outcome = CacheOutcome::miss(self.why.fwd);
        if self.why.stale.is_some() {
            outcome = outcome.with_fwd_status(response.status().as_u16());
        }
        let freshness = match self.storable(ex, &response) {
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
        let limit = self.config.cache.max_body_bytes;
        let bytes = match body::collect_limited(body, limit).await {
            Ok(Collected::Complete(bytes)) => bytes,
            Ok(Collected::TooLarge(body)) => {
                return Fetched::Response {
                    response: Response::from_parts(head, body),
                    outcome: outcome.not_stored(NoCacheReason::TooLarge),
                    upstream: Some(took),
                };
            }
            Err(e) => {
                return Fetched::Failed {
                    error: ProxyError::UpstreamBody(e),
                    outcome: outcome.not_stored(NoCacheReason::Incomplete),
                    upstream: Some(took),
                };
            }
        };
        let entry = self.new_entry(ex, freshness, &head, bytes);
        let (entry, stored) = self.store(entry).await;
        Fetched::Entry {
            entry,
            outcome: stored_or_not(outcome, stored),
            upstream: Some(took),
            received: Some(head.headers),
        }
    }

    /// Removes cachecar's own targeted field from what is stored: it is for
    /// cachecar alone, and a hit, unlike an upstream answer, is not
    /// stripped on its way out (`respond::finish`).
    fn strip_own_field(&self, headers: &mut HeaderMap) {
        if let Some(own) = &self.route.targeted.own {
            headers.remove(own);
        }
    }

    /// Whether this fill may store at all: the store answered the lookup,
    /// and a coalesced wait did not time out.
    fn storing(&self) -> Result<(), NoCacheReason> {
        if self.generations.is_none() {
            return Err(NoCacheReason::StorageError);
        }
        if !self.store {
            return Err(NoCacheReason::WaitTimeout);
        }
        Ok(())
    }

    /// Whether a fetched response may be stored, and for how long.
    fn storable(
        &self,
        ex: &Exchange<'_>,
        response: &Response<ResponseBody>,
    ) -> Result<Freshness, NoCacheReason> {
        self.storing()?;
        let freshness = policy::decide(&self.route, ex, response.status(), response.headers())?;
        let limit = self.config.cache.max_body_bytes;
        if content_length(response.headers()).is_some_and(|n| n > limit) {
            return Err(NoCacheReason::TooLarge);
        }
        Ok(freshness)
    }

    /// The entry for a fetched response, owning its bytes; `Age` is dropped
    /// (computed on every hit). Key and `Vary` values are set when stored.
    fn new_entry(
        &self,
        ex: &Exchange<'_>,
        freshness: Freshness,
        head: &http::response::Parts,
        body: Bytes,
    ) -> Entry {
        let mut headers = cache::detached_headers(&head.headers);
        headers.remove(header::AGE);
        self.strip_own_field(&mut headers);
        strip_qualified(&mut headers);
        let tags = self.take_tags(&mut headers);
        Entry {
            key: self.key.hash,
            status: head.status,
            headers,
            body,
            stored_at: ex.received_at,
            freshness,
            vary: Vec::new(),
            generations: self.generations.clone().unwrap_or_default(),
            tags,
        }
    }
}

/// `stale` with the headers a 304 updated and, when it may be stored again,
/// renewed as received at a time, with its freshness and generations.
fn revised(
    stale: &Entry,
    headers: HeaderMap,
    renewed: Option<(SystemTime, Freshness, Vec<u64>)>,
) -> Entry {
    let (stored_at, freshness, generations) = match renewed {
        Some(renewed) => renewed,
        None => (stale.stored_at, stale.freshness, stale.generations.clone()),
    };
    Entry {
        key: stale.key,
        status: stale.status,
        headers,
        body: stale.body.clone(),
        stored_at,
        freshness,
        vary: stale.vary.clone(),
        generations,
        // Stamped when the stale entry was stored, and current when it was
        // found: a tag purge since ends the renewed entry too.
        tags: stale.tags.clone(),
    }
}

/// `outcome`, stored or not for the reason given.
fn stored_or_not(outcome: CacheOutcome, stored: Result<(), NoCacheReason>) -> CacheOutcome {
    match stored {
        Ok(()) => outcome.stored(),
        Err(reason) => outcome.not_stored(reason),
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
    let cc = Directives::parse(headers);
    for directive in ["no-cache", "private"] {
        for field in cc.field_list(directive).unwrap_or_default() {
            headers.remove(field.as_str());
        }
    }
}

/// `entry`, served stale because the upstream failed (with `status`, when
/// it answered at all).
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
