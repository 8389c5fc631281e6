//! The check the protected origin relies on: a valid token of a session that
//! is still active. The authorizer function runs it; other Rust services can
//! call it directly.

use std::sync::Arc;

use crate::domain::token::{AdmissionClaims, TokenError, TokenVerifier};
use crate::domain::{Clock, EventId, Session, SessionId, SessionStatus, UserId};
use crate::ports::SessionStore;

use super::cache::TtlCache;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("invalid token: {0}")]
    Token(#[from] TokenError),
    #[error("the session no longer exists")]
    SessionGone,
    #[error("the session is {0}, not ACTIVE")]
    SessionNotActive(&'static str),
    #[error("the token does not match its session")]
    Mismatch,
    #[error("session state unavailable: {0}")]
    Unavailable(String),
}

/// What a valid token of an active session vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub claims: AdmissionClaims,
    pub user_id: UserId,
}

pub struct AdmissionCheck<S> {
    pub verifier: TokenVerifier,
    pub store: S,
    pub clock: Arc<dyn Clock>,
    /// Session states, briefly: a session that left is refused within this
    /// time, and the origin does not wait on DynamoDB for every request.
    pub sessions: TtlCache<SessionId, Option<Session>>,
}

impl<S: SessionStore> AdmissionCheck<S> {
    /// A token sent to a route of `event`: valid, of that event, and of a
    /// session that is active now.
    pub async fn check(&self, token: &str, event: &EventId) -> Result<Admitted, Refusal> {
        let now = self.clock.now();
        let claims = self.verifier.verify(token, event, now)?;
        let id = SessionId::parse(&claims.sid).map_err(|_| Refusal::Mismatch)?;
        let session = match self.sessions.get(&id, now) {
            Some(cached) => cached,
            None => {
                let fetched = self
                    .store
                    .get_session(&id)
                    .await
                    .map_err(|e| Refusal::Unavailable(e.to_string()))?;
                self.sessions.put(id.clone(), fetched.clone(), now);
                fetched
            }
        };
        let session = session.ok_or(Refusal::SessionGone)?;
        match session.expires_at() {
            Some(end) if session.status() == SessionStatus::Active && end > now => Ok(Admitted {
                user_id: session.user_id.clone(),
                claims,
            }),
            _ if session.status() == SessionStatus::Active => {
                Err(Refusal::SessionNotActive("past its stay"))
            }
            _ => Err(Refusal::SessionNotActive(session.status().as_str())),
        }
    }
}
