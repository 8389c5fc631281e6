//! Status: where a session stands, how long it may take, when to ask again,
//! and for an admitted user the token that opens the protected flow.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::draw::{poll_before_opening, poll_while_numbered};
use crate::domain::estimate::{estimated_wait, poll_interval};
use crate::domain::line::people_ahead;
use crate::domain::token::AdmissionSigner;
use crate::domain::{
    Clock, EventCounters, EventId, EventState, Session, SessionId, SessionStatus, Timestamp,
};
use crate::ports::{EventStore, LineStore, SessionStore, Touch};

use super::ServiceError;
use super::cache::TtlCache;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub session: Session,
    /// For a waiting session the granter has numbered.
    pub people_ahead: Option<u64>,
    pub estimated_wait: Option<Duration>,
    /// When the client should poll next; `None` once there is nothing to wait for.
    pub poll_after: Option<Duration>,
    /// For an active session: what the protected origin checks.
    pub admission_token: Option<String>,
    /// For someone in the pre-queue of an event not open yet: when it
    /// opens (there is no position before the draw).
    pub opens_at: Option<Timestamp>,
    /// For a waiting fan: the event's state (a pause or a closing is theirs
    /// to know).
    pub event_state: Option<EventState>,
    /// For an active session: where to take the fan (with the token), the
    /// event's origin or the deployment's.
    pub origin_url: Option<String>,
}

impl StatusReport {
    pub fn position(&self) -> Option<u64> {
        self.people_ahead.map(|ahead| ahead + 1)
    }

    /// For an active session: its origin with the admission token as the
    /// `token` query parameter, which origins exchange for a cookie of
    /// their own. (A token is base64url and dots: nothing to escape.)
    pub fn handover_url(&self) -> Option<String> {
        let origin = self.origin_url.as_deref()?;
        let token = self.admission_token.as_deref()?;
        let (base, fragment) = match origin.split_once('#') {
            Some((base, fragment)) => (base, format!("#{fragment}")),
            None => (origin, String::new()),
        };
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(format!("{base}{separator}token={token}{fragment}"))
    }
}

pub struct StatusService<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub line_shards: u16,
    pub signer: AdmissionSigner,
    /// The deployment's abandonment limit for waiting users (an event may
    /// have its own); polls keep them present.
    pub abandon_after: Option<Duration>,
    /// The event counters (for the admission rate) are read by every poll
    /// of every waiting user: one read per `cache` per instance instead.
    /// The shard's head is read consistently on every poll instead, so that
    /// the position a user sees never goes up, whichever instance answers.
    pub counters: TtlCache<EventId, EventCounters>,
    /// Where admitted fans go when their event names no origin; `{eventId}`
    /// in it is replaced by the event's id.
    pub default_origin_url: Option<String>,
}

impl<S: SessionStore + EventStore + LineStore> StatusService<S> {
    pub fn new(
        store: S,
        clock: Arc<dyn Clock>,
        line_shards: u16,
        signer: AdmissionSigner,
        abandon_after: Option<Duration>,
        cache: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            line_shards,
            signer,
            abandon_after,
            counters: TtlCache::new(cache),
            default_origin_url: None,
        }
    }

    pub fn with_default_origin(self, url: Option<String>) -> Self {
        Self {
            default_origin_url: url,
            ..self
        }
    }

    /// The event as this instance last read it (at most the cache's age).
    pub async fn event(&self, event: &EventId) -> Result<EventCounters, ServiceError> {
        self.event_counters(event).await
    }

    /// Where an admitted fan of `event` goes.
    pub fn origin_of(&self, event: &EventId, counters: &EventCounters) -> Option<String> {
        counters.origin_url.clone().or_else(|| {
            self.default_origin_url
                .as_ref()
                .map(|url| url.replace("{eventId}", event.as_str()))
        })
    }

    pub async fn status(&self, id: &SessionId) -> Result<StatusReport, ServiceError> {
        let now = self.clock.now();
        let mut session = self
            .store
            .get_session(id)
            .await?
            .ok_or(ServiceError::SessionNotFound)?;
        // A waiting fan's event (one read per instance per second): its
        // abandonment limit, rate and opening.
        let counters = match session.status() {
            SessionStatus::Waiting | SessionStatus::Active => {
                Some(self.event_counters(&session.event_id).await?)
            }
            _ => None,
        };
        let abandon_after = counters
            .as_ref()
            .map_or(self.abandon_after, |c| c.abandon_limit(self.abandon_after));
        // Polls come at most a third of the abandonment limit apart
        // (`poll_interval`), so writing presence once half of it has
        // passed keeps every polling user at least a third of the limit
        // from being taken for gone, while most polls write nothing.
        let stale = abandon_after.is_some_and(|limit| now.since(session.last_seen_at) >= limit / 2);
        if session.status() == SessionStatus::Waiting && stale {
            // Polling is how a waiting user shows they are still there.
            match self.store.touch(id, now).await? {
                Touch::Touched(touched) | Touch::Ended(touched) => session = touched,
                Touch::NotFound => return Err(ServiceError::SessionNotFound),
            }
        }
        let (ahead, wait) = match (&counters, session.status(), session.ticket) {
            (Some(counters), SessionStatus::Waiting, Some(ticket)) => {
                let head = self
                    .store
                    .shard_head(&session.event_id, session.shard)
                    .await?;
                let ahead = people_ahead(ticket, head, self.line_shards);
                let rate = counters.rate.current_per_hour(now);
                (Some(ahead), estimated_wait(ahead, rate))
            }
            _ => (None, None),
        };
        let unnumbered_draw = session.draw.is_some() && session.ticket.is_none();
        let opens_at = match &counters {
            Some(counters) if unnumbered_draw => counters.scheduled_opening(),
            _ => None,
        };
        let poll_after = (session.status() == SessionStatus::Waiting).then(|| match opens_at {
            Some(at) => poll_before_opening(at.since(now), abandon_after),
            None if unnumbered_draw => poll_while_numbered(abandon_after),
            None => poll_interval(ahead, wait, abandon_after),
        });
        let waiting = session.status() == SessionStatus::Waiting;
        let event_state = counters.as_ref().filter(|_| waiting).map(|c| c.state);
        let origin_url = match (&counters, session.status()) {
            (Some(counters), SessionStatus::Active) => self.origin_of(&session.event_id, counters),
            _ => None,
        };
        Ok(StatusReport {
            opens_at,
            event_state,
            origin_url,
            admission_token: self.signer.token_for(&session),
            session,
            people_ahead: ahead,
            estimated_wait: wait,
            poll_after,
        })
    }

    async fn event_counters(&self, event: &EventId) -> Result<EventCounters, ServiceError> {
        let now = self.clock.now();
        if let Some(counters) = self.counters.get(event, now) {
            return Ok(counters);
        }
        let counters = self.store.event_counters(event, self.line_shards).await?;
        self.counters.put(event.clone(), counters.clone(), now);
        Ok(counters)
    }
}
