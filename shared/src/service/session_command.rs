//! The custom methods on a session (`:heartbeat`, `:leave`) and every other
//! way a session ends (expiry, checkout outcomes, an operator's eviction)
//! go through here.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Clock, EndReason, Ending, Session, SessionId, StayPolicy};
use crate::ports::{EndFrom, EndOutcome, EventStore, SessionStore, StoreError, Touch};

use super::patience::contention_pause;
use super::{MAX_ATTEMPTS, ServiceError};

/// What a leave or a checkout outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It ended now, by this call (its slot or place given back).
    Now,
    /// It had ended before (left, expired, completed): nothing changed.
    Before(Box<Session>),
}

/// Which sessions an ending applies to (the store's `EndFrom` is then the
/// one state its write is conditioned on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliesTo {
    /// Waiting or active (a leave).
    Live,
    /// Active only (a checkout outcome): a waiting session cannot have one.
    Active,
}

pub struct SessionCommands<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    /// How long an ended session stays readable before DynamoDB deletes it.
    pub ended_retention: Duration,
    pub stay: StayPolicy,
}

impl<S: SessionStore + EventStore> SessionCommands<S> {
    /// Record that the user is still there; an admitted user's stay is
    /// extended (up to the maximum, the event's own where an operator set
    /// one). A stay that is over is not revived: the session is expired now
    /// (if the sweeper has not yet) and the answer is that it ended.
    pub async fn heartbeat(&self, id: &SessionId) -> Result<Session, ServiceError> {
        let now = self.clock.now();
        let mut session = match self.store.touch(id, now).await? {
            Touch::Touched(session) => session,
            Touch::Ended(session) => return Err(ServiceError::SessionEnded(Box::new(session))),
            Touch::NotFound => return Err(ServiceError::SessionNotFound),
        };
        let Some(current) = session.expires_at() else {
            return Ok(session);
        };
        if current <= now {
            self.expire(id).await?;
            return Err(self.ended(id).await);
        }
        // One read of the event, for active sessions only (they are few).
        let counters = self.store.event_counters(&session.event_id, 1).await?;
        let stay = self.stay.for_event(&counters);
        if let Some(extended) = stay.extended_expiry(&session, now) {
            // The local copy cannot refuse (it is active, `current` came
            // from it); if it did, the stored session below is the truth.
            let extended_here = self.store.extend_stay(id, current, extended, now).await?
                && session.extend_stay(extended).is_ok();
            if !extended_here {
                // Another heartbeat extended it, or it ended meanwhile.
                if let Some(now_stored) = self.store.get_session(id).await? {
                    if now_stored.status().is_ended() {
                        return Err(ServiceError::SessionEnded(Box::new(now_stored)));
                    }
                    session = now_stored;
                }
            }
        }
        Ok(session)
    }
}

impl<S: SessionStore> SessionCommands<S> {
    /// The error for a session found ended (or gone).
    async fn ended(&self, id: &SessionId) -> ServiceError {
        match self.store.get_session(id).await {
            Ok(Some(session)) => ServiceError::SessionEnded(Box::new(session)),
            Ok(None) => ServiceError::SessionNotFound,
            Err(err) => err.into(),
        }
    }

    /// End the session and give back its slot (or place) in the same write,
    /// exactly once however often or concurrently it is called.
    pub async fn leave(&self, id: &SessionId) -> Result<Ended, ServiceError> {
        let ending = Ending::new(EndReason::UserLeft, self.clock.now());
        self.end(id, &ending, AppliesTo::Live).await
    }

    /// An operator removes a session, waiting or active: it ends `LEFT`
    /// with reason `evicted`, and its place or slot is given back once, as
    /// for a leave (an evicted fan polling sees why).
    pub async fn evict(&self, id: &SessionId) -> Result<Ended, ServiceError> {
        let ending = Ending::new(EndReason::Evicted, self.clock.now());
        self.end(id, &ending, AppliesTo::Live).await
    }

    pub async fn end(
        &self,
        id: &SessionId,
        ending: &Ending,
        applies_to: AppliesTo,
    ) -> Result<Ended, ServiceError> {
        let retain_until = ending.ended_at.plus(self.ended_retention);
        // Most sessions that end are active: try that first, and learn the
        // real state from the failed condition otherwise.
        let mut from = EndFrom::Active;
        for attempt in 1..=MAX_ATTEMPTS {
            let outcome = match self.store.end_session(id, from, ending, retain_until).await {
                Ok(outcome) => outcome,
                // Another write to the event's counters was in flight:
                // DynamoDB refused ours; it is worth trying again at once.
                Err(StoreError::Contention(_)) => {
                    tokio::time::sleep(contention_pause(attempt, id.stable_hash())).await;
                    continue;
                }
                Err(err) => return Err(err.into()),
            };
            match outcome {
                EndOutcome::Ended => return Ok(Ended::Now),
                EndOutcome::NotAsExpected(None) => return Err(ServiceError::SessionNotFound),
                EndOutcome::NotAsExpected(Some(current)) => match EndFrom::of(&current) {
                    None => return Ok(Ended::Before(current)),
                    Some(EndFrom::Active) => from = EndFrom::Active,
                    Some(_) if applies_to == AppliesTo::Active => {
                        return Err(ServiceError::NotActive(current));
                    }
                    Some(actual) => from = actual,
                },
            }
        }
        Err(ServiceError::Contention)
    }

    /// End an active session whose stay is over; false if it was extended,
    /// ended or gone meanwhile.
    pub async fn expire(&self, id: &SessionId) -> Result<bool, ServiceError> {
        let now = self.clock.now();
        let ending = Ending::new(EndReason::Expired, now);
        let retain_until = now.plus(self.ended_retention);
        let from = EndFrom::ActiveOverdue { at: now };
        for attempt in 1..=MAX_ATTEMPTS {
            match self
                .store
                .end_session(id, from, &ending, retain_until)
                .await
            {
                Ok(outcome) => return Ok(outcome == EndOutcome::Ended),
                Err(StoreError::Contention(_)) => {
                    tokio::time::sleep(contention_pause(attempt, id.stable_hash())).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(ServiceError::Contention)
    }
}
