//! The custom methods on a session: `:heartbeat` and `:leave`.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Clock, EndReason, Session, SessionId};
use crate::ports::{EndFrom, EndOutcome, SessionStore, Touch};

use super::{MAX_ATTEMPTS, ServiceError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaveOutcome {
    Left,
    /// It had ended before (left, expired, completed): nothing changed.
    AlreadyEnded(Session),
}

pub struct SessionCommands<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    /// How long an ended session stays readable before DynamoDB deletes it.
    pub ended_retention: Duration,
}

impl<S: SessionStore> SessionCommands<S> {
    /// Record that the user is still there.
    pub async fn heartbeat(&self, id: &SessionId) -> Result<Session, ServiceError> {
        match self.store.touch(id, self.clock.now()).await? {
            Touch::Touched(session) => Ok(session),
            Touch::Ended(session) => Err(ServiceError::SessionEnded(Box::new(session))),
            Touch::NotFound => Err(ServiceError::SessionNotFound),
        }
    }

    /// End the session and give back its slot (or place) in the same write,
    /// exactly once however often or concurrently it is called.
    pub async fn leave(&self, id: &SessionId) -> Result<LeaveOutcome, ServiceError> {
        self.end(id, EndReason::UserLeft).await
    }

    pub async fn end(
        &self,
        id: &SessionId,
        reason: EndReason,
    ) -> Result<LeaveOutcome, ServiceError> {
        // Most sessions that end are active: try that first, and learn the
        // real state from the failed condition otherwise.
        let mut from = EndFrom::Active;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let retain_until = now.plus(self.ended_retention);
            match self
                .store
                .end_session(id, from, reason, now, retain_until)
                .await?
            {
                EndOutcome::Ended => return Ok(LeaveOutcome::Left),
                EndOutcome::NotAsExpected(None) => return Err(ServiceError::SessionNotFound),
                EndOutcome::NotAsExpected(Some(current)) => match EndFrom::of(&current) {
                    None => return Ok(LeaveOutcome::AlreadyEnded(current)),
                    Some(actual) => from = actual,
                },
            }
        }
        Err(ServiceError::Contention)
    }
}
