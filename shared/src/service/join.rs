//! Join: store a `WAITING` session and send its join message.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::line::shard_for;
use crate::domain::{Clock, EventId, Session, SessionId, SessionStatus, UserId};
use crate::ports::{Claim, Discard, IdSource, JoinQueue, JoinTicket, SessionStore};

use super::{MAX_ATTEMPTS, ServiceError};

/// A claim outlives any session it can point to; when it expires DynamoDB
/// deletes it and the next join starts afresh.
const CLAIM_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Created(Session),
    /// The user already had a live session: same session, same place.
    Existing(Session),
}

impl JoinOutcome {
    pub fn session(&self) -> &Session {
        match self {
            Self::Created(s) | Self::Existing(s) => s,
        }
    }
}

pub struct JoinService<S, Q> {
    pub store: S,
    pub queue: Q,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub line_shards: u16,
}

impl<S: SessionStore, Q: JoinQueue> JoinService<S, Q> {
    pub async fn join(&self, event: EventId, user: UserId) -> Result<JoinOutcome, ServiceError> {
        let random = self
            .ids
            .random_id()
            .ok_or_else(|| ServiceError::Unavailable("no randomness for a session id".into()))?;
        let id = SessionId::new(&event, random);
        let shard = shard_for(&id, self.line_shards);
        let now = self.clock.now();
        let session = Session::new_waiting(id, user, shard, now);
        let claim_ttl = now.plus(CLAIM_LIFETIME);

        let mut replacing: Option<SessionId> = None;
        for _ in 0..MAX_ATTEMPTS {
            match self
                .store
                .create_session(&session, replacing.as_ref(), claim_ttl)
                .await?
            {
                Claim::Created => return self.send_new(session).await,
                Claim::Vacant => replacing = None,
                Claim::HeldBy(holder) => match self.store.get_session(&holder).await? {
                    Some(existing) if existing.is_live() => {
                        self.resend_if_unfiled(&existing).await?;
                        return Ok(JoinOutcome::Existing(existing));
                    }
                    // Ended (or already deleted): the claim is free to take.
                    _ => replacing = Some(holder),
                },
            }
        }
        Err(ServiceError::Contention)
    }

    /// Send the join message; if that fails, take the session back so the
    /// user holds no place that would never be granted.
    async fn send_new(&self, session: Session) -> Result<JoinOutcome, ServiceError> {
        let Err(send_error) = self.queue.send(&JoinTicket::for_session(&session)).await else {
            return Ok(JoinOutcome::Created(session));
        };
        tracing::warn!(session = %session.id, error = %send_error, "join message not sent; undoing the join");
        match self.store.discard_unfiled(&session).await {
            Ok(Discard::Discarded) => Err(send_error.into()),
            // The send did reach the queue (only its answer was lost).
            Ok(Discard::AlreadyFiled) => Ok(JoinOutcome::Created(session)),
            Err(discard_error) => {
                // The session stays unfiled: it has no place and no slot, and
                // the user's retry finds it and sends the message again.
                tracing::error!(session = %session.id, error = %discard_error, "could not undo the join");
                Err(send_error.into())
            }
        }
    }

    /// A retried join of a session whose message never reached the queue
    /// sends it now. SQS drops the duplicate when the first did arrive.
    async fn resend_if_unfiled(&self, session: &Session) -> Result<(), ServiceError> {
        if session.status == SessionStatus::Waiting && session.ticket.is_none() {
            self.queue.send(&JoinTicket::for_session(session)).await?;
        }
        Ok(())
    }
}
