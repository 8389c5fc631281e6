//! The custom methods on a session (`:heartbeat`, `:leave`) and every other
//! way a session ends (expiry, checkout outcomes) go through here.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Clock, EndReason, Ending, Session, SessionId, StayPolicy};
use crate::ports::{EndFrom, EndOutcome, SessionStore, Touch};

use super::{MAX_ATTEMPTS, ServiceError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveOutcome {
    Left,
    /// It had ended before (left, expired, completed): nothing changed.
    AlreadyEnded(Box<Session>),
}

/// Which sessions an ending may apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndsWhen {
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

impl<S: SessionStore> SessionCommands<S> {
    /// Record that the user is still there; an admitted user's stay is
    /// extended (up to the maximum).
    pub async fn heartbeat(&self, id: &SessionId) -> Result<Session, ServiceError> {
        let now = self.clock.now();
        let mut session = match self.store.touch(id, now).await? {
            Touch::Touched(session) => session,
            Touch::Ended(session) => return Err(ServiceError::SessionEnded(Box::new(session))),
            Touch::NotFound => return Err(ServiceError::SessionNotFound),
        };
        if let (Some(current), Some(extended)) = (
            session.expires_at(),
            self.stay.extended_expiry(&session, now),
        ) {
            // A concurrent heartbeat or an expiry may win; either is fine.
            if self.store.extend_stay(id, current, extended).await? {
                if let Some(admission) = session.admission.as_mut() {
                    admission.expires_at = extended;
                }
            }
        }
        Ok(session)
    }

    /// End the session and give back its slot (or place) in the same write,
    /// exactly once however often or concurrently it is called.
    pub async fn leave(&self, id: &SessionId) -> Result<LeaveOutcome, ServiceError> {
        let ending = Ending::new(EndReason::UserLeft, self.clock.now());
        self.end(id, &ending, EndsWhen::Live).await
    }

    pub async fn end(
        &self,
        id: &SessionId,
        ending: &Ending,
        when: EndsWhen,
    ) -> Result<LeaveOutcome, ServiceError> {
        let retain_until = ending.ended_at.plus(self.ended_retention);
        // Most sessions that end are active: try that first, and learn the
        // real state from the failed condition otherwise.
        let mut from = EndFrom::Active;
        for _ in 0..MAX_ATTEMPTS {
            match self
                .store
                .end_session(id, from, ending, retain_until)
                .await?
            {
                EndOutcome::Ended => return Ok(LeaveOutcome::Left),
                EndOutcome::NotAsExpected(None) => return Err(ServiceError::SessionNotFound),
                EndOutcome::NotAsExpected(Some(current)) => match EndFrom::of(&current) {
                    None => return Ok(LeaveOutcome::AlreadyEnded(current)),
                    Some(EndFrom::Active) => from = EndFrom::Active,
                    Some(_) if when == EndsWhen::Active => {
                        return Err(ServiceError::NotActive(current));
                    }
                    Some(actual) => from = actual,
                },
            }
        }
        Err(ServiceError::Contention)
    }

    /// End an active session whose stay is over; false if it was extended,
    /// ended or gone meanwhile. Used by the sweeper.
    pub async fn expire(&self, id: &SessionId) -> Result<bool, ServiceError> {
        let now = self.clock.now();
        let ending = Ending::new(EndReason::Expired, now);
        let retain_until = now.plus(self.ended_retention);
        let from = EndFrom::ActiveOverdue { at: now };
        Ok(self
            .store
            .end_session(id, from, &ending, retain_until)
            .await?
            == EndOutcome::Ended)
    }
}
