//! Phase 6, serve: whether the stored response answers this request
//! (RFC 9111 §4): fresh; stale where the client accepts it (`max-stale`);
//! stale within `stale-while-revalidate`, refreshed in the background; or
//! not at all, and then why a fill goes upstream (the `fwd` of RFC 9211),
//! or, for `only-if-cached`, a 504. Pure: no I/O.

use std::sync::Arc;
use std::time::SystemTime;

use super::ProxyError;
use http::HeaderMap;

use super::conditional::ClientConditions;
use super::key::Keyed;
use super::lookup::{self, Found, Usable};
use super::policy::{self, RequestDirectives, Verdict};
use super::respond::{self, Answer, Outcome};
use crate::cache::Entry;
use crate::outcome::{CacheOutcome, Fwd, StaleReason};

/// What a request asks of a stored response beyond the response itself
/// (RFC 9111 §5.2.1, RFC 9110 §13, §14).
pub(super) struct Asks {
    /// Its `Cache-Control`.
    pub directives: RequestDirectives,
    /// Its preconditions and range.
    pub conditions: Option<ClientConditions>,
}

impl Asks {
    /// What a request with `headers` asks.
    pub(super) fn of(headers: &HeaderMap) -> Self {
        Self {
            directives: RequestDirectives::parse(headers),
            conditions: ClientConditions::from_request(headers),
        }
    }
}

/// Why a fill goes upstream.
pub(super) struct Why {
    /// The stored response being revalidated (validators, stale-if-error).
    pub stale: Option<Arc<Entry>>,
    /// RFC 9211's `fwd`: why the stored response did not answer.
    pub fwd: Fwd,
}

impl Why {
    /// Refresh `stale`, which was served stale.
    pub(super) fn stale(stale: Arc<Entry>) -> Self {
        Self {
            stale: Some(stale),
            fwd: Fwd::Stale,
        }
    }
}

/// What the stored response does for a request.
pub(super) enum Serve {
    /// It answers.
    Answered(Answer),
    /// It answers, stale; a refresh of it runs in the background.
    Refresh(Answer, Arc<Entry>),
    /// A fill goes upstream, for this reason.
    Fill(Why),
}

/// What the stored response in `found` (if any) does for `keyed`, which
/// `asks` this of it, at `now`.
pub(super) fn decide(found: Option<&Found>, keyed: &Keyed, asks: &Asks, now: SystemTime) -> Serve {
    let (usable, fwd) = usable(found, keyed, now);
    let Some(entry) = usable else {
        return not_served(keyed, asks, Why { stale: None, fwd });
    };
    let ttl = entry.ttl_secs(now);
    let verdict = policy::judge(&entry, &asks.directives, now);
    let cache = match verdict {
        Verdict::Fresh => CacheOutcome::hit(ttl),
        Verdict::StaleAccepted => CacheOutcome::stale(ttl, StaleReason::Accepted),
        Verdict::StaleWhileRevalidate => CacheOutcome::stale(ttl, StaleReason::WhileRevalidate),
        Verdict::Revalidate => {
            let fwd = if entry.is_fresh(now) {
                Fwd::Request
            } else {
                Fwd::Stale
            };
            return not_served(
                keyed,
                asks,
                Why {
                    stale: Some(entry),
                    fwd,
                },
            );
        }
    };
    let method = &keyed.parts.method;
    let response = respond::entry_response(&entry, method, asks.conditions.as_ref(), now);
    let answer = Answer::new(response, Outcome::new(Some(keyed.route.clone()), cache));
    if verdict == Verdict::StaleWhileRevalidate {
        Serve::Refresh(answer, entry)
    } else {
        Serve::Answered(answer)
    }
}

/// The entry that belongs to this request, if any, and the `fwd` of a fill
/// without it.
pub(super) fn usable(
    found: Option<&Found>,
    keyed: &Keyed,
    now: SystemTime,
) -> (Option<Arc<Entry>>, Fwd) {
    let Some(found) = found else {
        return (None, Fwd::Miss);
    };
    let varies = found.index.is_some();
    match lookup::usable(found, &keyed.parts.headers, keyed.credentials, now) {
        Usable::Yes(entry) => (Some(entry), Fwd::Miss),
        Usable::VaryMiss => (None, Fwd::VaryMiss),
        Usable::No(_) if varies => (None, Fwd::VaryMiss),
        Usable::No(_) => (None, Fwd::Miss),
    }
}

/// Not answered from the store: a fill, unless the client asked for
/// `only-if-cached`.
fn not_served(keyed: &Keyed, asks: &Asks, why: Why) -> Serve {
    if !asks.directives.only_if_cached {
        return Serve::Fill(why);
    }
    let route = &keyed.route;
    let response = ProxyError::NotCached.into_response(&route.name);
    let outcome = Outcome::new(Some(route.clone()), CacheOutcome::miss(why.fwd));
    Serve::Answered(Answer::new(response, outcome))
}
