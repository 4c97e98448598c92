//! Phase 7, fill: the upstream request for a miss or a revalidation, the
//! decision to store, and what the client (and coalesced followers) get.
//!
//! [`Fill::run`] coalesces concurrent fills of one key ([`coalesce`]): the
//! leader's fetch runs in its own task, so a client that disconnects does
//! not cancel it for the others, and followers take its outcome. With
//! `coalesce.across_instances` the leader also takes the store's fill lock
//! ([`across`]). The fetch itself ([`fetch`]):
//!
//! - sends the request with the stale entry's validators, if revalidating;
//! - on a 304, updates the stored headers and freshness (RFC 9111 §4.3.4)
//!   and answers from the stored body; a HEAD on a stale entry revalidates
//!   with a HEAD, and a 200 whose validators match the entry's updates it
//!   the same way (§4.3.5);
//! - on an error, a timeout or a 5xx, answers stale within `stale-if-error`;
//! - otherwise decides (`policy::decide`), reads the body within
//!   `max_body_bytes`, stores it ([`store`], under its `Vary` variant), and
//!   answers; what cannot be stored streams through.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Response, StatusCode, Uri};

use super::body::Body;
use super::conditional::{self, ClientConditions};
use super::key::Keyed;
use super::lookup::Found;
use super::policy::RequestDirectives;
use super::respond::{self, Answer, Outcome};
use super::serve::{Asks, Why};
use super::upstream::Peer;
use super::{Core, ProxyError};
use crate::cache::{CacheKey, Entry, Variants};
use crate::config::RuntimeConfig;
use crate::outcome::{CacheOutcome, Fwd};
use crate::rules::Route;
use crate::rules::normalize::Normalized;

mod across;
mod coalesce;
mod fetch;
mod store;
mod tags;

pub(super) use coalesce::Coalescer;
use coalesce::{Flight, Join, Shared, Stamp, Waited};

/// One fill: everything it needs, owned, so it can run in its own task.
/// Boxed from the lookup on: it is over 500 bytes, and an `async fn` that
/// takes it by value holds it twice and copies it in.
pub(super) struct Fill {
    core: Arc<Core>,
    config: Arc<RuntimeConfig>,
    route: Arc<Route>,
    /// The primary key.
    key: CacheKey,
    /// Generations read before the upstream request; `None` if the store
    /// failed, in which case nothing is stored.
    generations: Option<Vec<u64>>,
    /// The tag epoch read with them, to stamp the response's tags against.
    tag_epoch: u64,
    /// The `Vary` index seen at the primary key, if any.
    index: Option<Arc<Variants>>,
    target: Normalized,
    method: Method,
    uri: Uri,
    /// The client's headers, without its own preconditions.
    headers: HeaderMap,
    /// The client's preconditions and range, answered from what is filled.
    conditions: Option<ClientConditions>,
    client: Peer,
    credentials: bool,
    directives: RequestDirectives,
    why: Why,
    /// False when the response must not be stored (a coalesced wait timed out).
    store: bool,
    /// The cross-instance fill lock this fill holds, released once its
    /// response is written (or at once if it is not stored).
    lock: Option<u64>,
}

/// The result of a fill.
enum Fetched {
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
    /// The exchange failed; answer with this error.
    Failed {
        error: ProxyError,
        outcome: CacheOutcome,
        upstream: Option<Duration>,
    },
}

/// What the client's answer needs once the fill has moved into its task.
struct Asker {
    route: Arc<Route>,
    method: Method,
    conditions: Option<ClientConditions>,
}

impl Fill {
    /// The fill of `keyed`, whose lookup `found`.
    pub(super) fn new(
        core: &Arc<Core>,
        config: &Arc<RuntimeConfig>,
        keyed: Keyed,
        found: Option<Found>,
        asks: Asks,
        client: &Peer,
        why: Why,
    ) -> Box<Self> {
        let Keyed {
            parts,
            target,
            route,
            key,
            credentials,
        } = keyed;
        let Asks {
            directives,
            conditions,
        } = asks;
        let mut headers = parts.headers;
        conditional::strip_client_conditions(&mut headers);
        let (generations, tag_epoch, index) = match found {
            Some(f) => (Some(f.generations), f.tag_epoch, f.index),
            None => (None, 0, None),
        };
        Box::new(Self {
            core: core.clone(),
            config: config.clone(),
            route,
            key,
            generations,
            tag_epoch,
            index,
            target,
            method: parts.method,
            uri: parts.uri,
            headers,
            conditions,
            client: client.clone(),
            credentials,
            directives,
            why,
            store: true,
            lock: None,
        })
    }

    /// Fills the key (coalesced with concurrent fills unless disabled),
    /// then answers the client.
    pub(super) async fn run(mut self: Box<Self>) -> Answer {
        let asker = Asker {
            route: self.route.clone(),
            method: self.method.clone(),
            conditions: self.conditions.take(),
        };
        let core = self.core.clone();
        let coalesce = self.config.cache.coalesce;
        let coalescer = &core.coalescer;
        // A HEAD revalidation brings no body another request could use.
        let alone = !coalesce.enabled
            || self.credentials
            || self.head_revalidation()
            || coalescer.is_uncacheable(&self.key.hash);
        let fetched = if alone {
            Box::pin(self.fetch()).await
        } else {
            match coalescer.join(self.key.hash, self.stamp()) {
                Join::Leader(flight) => self.lead(flight).await,
                Join::Follower(follower) => {
                    let wait = follower.wait(coalesce.wait_timeout);
                    let waited = if core.traces {
                        let span = super::span::child("coalesce wait");
                        tracing::Instrument::instrument(wait, span).await
                    } else {
                        wait.await
                    };
                    match self.follow(&waited) {
                        Some(fetched) => fetched,
                        None => {
                            self.store = !matches!(waited, Waited::TimedOut);
                            Box::pin(self.fetch()).await
                        }
                    }
                }
            }
        };
        asker.answer(fetched, &core)
    }

    /// Starts the leader's fetch in its own task and waits for it.
    async fn lead(self: Box<Self>, flight: Flight) -> Fetched {
        let route = self.route.name.clone();
        // The fill is boxed so the task's future is small: spawning moves
        // it into the task, and tokio moves a task's future at least once.
        // In the request's span: the task's upstream exchange is its child.
        let span = tracing::Span::current();
        let fill = async move {
            let fetched = if self.config.cache.coalesce.across_instances {
                Box::pin(self.fetch_across()).await
            } else {
                Box::pin(self.fetch()).await
            };
            flight.complete(fetched.shared());
            fetched
        };
        let task = tokio::spawn(tracing::Instrument::instrument(fill, span));
        match task.await {
            Ok(fetched) => fetched,
            Err(e) => {
                tracing::error!(route = %route, cause = %e, "fill task failed");
                let error = ProxyError::Collapsed(StatusCode::BAD_GATEWAY);
                Fetched::failed(error, CacheOutcome::miss(Fwd::Miss))
            }
        }
    }

    /// Whether this is a HEAD request revalidating a stale entry: it asks
    /// the upstream with a conditional HEAD, not a GET, so a HEAD never
    /// costs a body transfer (RFC 9111 §4.3.5 uses its answer).
    fn head_revalidation(&self) -> bool {
        self.method == Method::HEAD && self.why.stale.is_some()
    }

    /// What this fill's data will be current against, for coalescing.
    fn stamp(&self) -> Stamp {
        Stamp {
            generations: self.generations.clone(),
            tag_epoch: self.tag_epoch,
            purges: self.core.cache.purges(),
        }
    }

    /// What a follower does with the leader's outcome; `None`: go upstream.
    fn follow(&self, waited: &Waited) -> Option<Fetched> {
        let collapsed = CacheOutcome::miss(self.why.fwd).collapsed();
        let fetched = match waited {
            Waited::Done(Shared::Entry(entry))
                if entry.vary_matches(&self.headers)
                    && (!self.credentials || entry.freshness.shareable_with_auth) =>
            {
                Fetched::from_elsewhere(entry.clone(), collapsed)
            }
            Waited::Done(Shared::Failed(status)) => {
                Fetched::failed(ProxyError::Collapsed(*status), collapsed)
            }
            _ => return None,
        };
        self.route.metrics.coalesced(&self.core.metrics);
        Some(fetched)
    }

    /// Refreshes a stale entry in the background, once per key.
    pub(super) fn refresh(mut self: Box<Self>) {
        // The client was answered already: the app's interim responses to
        // the refresh are for no one.
        self.client = self.client.clone().with_interim(None);
        let Join::Leader(flight) = self.core.coalescer.join(self.key.hash, self.stamp()) else {
            return; // a fill or refresh of this key is already under way
        };
        let span = tracing::debug_span!("refresh", route = %self.route.name);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let fetched = self.fetch().await;
                flight.complete(fetched.shared());
            },
            span,
        ));
    }
}

impl Fetched {
    /// What coalesced followers get.
    fn shared(&self) -> Shared {
        match self {
            Fetched::Entry { entry, .. } => Shared::Entry(entry.clone()),
            Fetched::Response { .. } => Shared::Uncacheable,
            Fetched::Failed { error, .. } => Shared::Failed(error.status()),
        }
    }

    /// An entry another request filled.
    fn from_elsewhere(entry: Arc<Entry>, outcome: CacheOutcome) -> Self {
        Fetched::Entry {
            entry,
            outcome,
            upstream: None,
            received: None,
        }
    }

    /// Failed without asking the upstream itself.
    fn failed(error: ProxyError, outcome: CacheOutcome) -> Self {
        Fetched::Failed {
            error,
            outcome,
            upstream: None,
        }
    }
}

impl Asker {
    /// The client's response from a fill.
    fn answer(self, fetched: Fetched, core: &Core) -> Answer {
        let (response, cache, upstream) = match fetched {
            Fetched::Entry {
                entry,
                outcome,
                upstream,
                received,
            } => (
                self.entry_response(&entry, received, core),
                outcome,
                upstream,
            ),
            Fetched::Response {
                response,
                outcome,
                upstream,
            } => (self.headless(response), outcome, upstream),
            Fetched::Failed {
                error,
                outcome,
                upstream,
            } => (
                self.headless(error.into_response(&self.route.name)),
                outcome,
                upstream,
            ),
        };
        let mut outcome = Outcome::new(Some(self.route), cache);
        outcome.upstream = upstream;
        Answer::new(response, outcome)
    }

    /// The answer from a filled entry: as the upstream sent it to the
    /// request that fetched it (unless the client's conditions now make it
    /// a 304), else as a stored entry is served.
    fn entry_response(
        &self,
        entry: &Entry,
        received: Option<HeaderMap>,
        core: &Core,
    ) -> Response<Body> {
        let conditions = self.conditions.as_ref();
        let not_modified = conditions.is_some_and(|c| conditional::not_modified(entry, c));
        match received {
            Some(headers) if !not_modified => {
                let body = if self.method == Method::HEAD {
                    Body::Empty
                } else {
                    Body::full(entry.body.clone())
                };
                let mut response = Response::new(body);
                *response.status_mut() = entry.status;
                *response.headers_mut() = headers;
                response
            }
            _ => respond::entry_response(entry, &self.method, conditions, core.clock.now()),
        }
    }

    /// `response`, without its body for a HEAD request.
    fn headless(&self, mut response: Response<Body>) -> Response<Body> {
        if self.method == Method::HEAD {
            *response.body_mut() = Body::Empty;
        }
        response
    }
}
