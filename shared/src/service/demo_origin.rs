//! The demo origin: a stand-in for the ticket shop behind the waiting
//! room. It lets in only a valid admission token of a session that is
//! still active (`AdmissionCheck`, as the authorizer does in AWS), and its
//! "complete purchase" and "give up" report the outcome to the
//! checkout-outcome queue, which frees the slot for the next fan.

use crate::domain::EventId;
use crate::ports::{OutcomeSender, SessionStore};

use super::ServiceError;
use super::admission_check::{AdmissionCheck, Admitted, Refusal};

/// How a purchase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// The fan gave up.
    Failed,
}

impl Outcome {
    pub fn message_type(self) -> &'static str {
        match self {
            Self::Completed => "CHECKOUT_COMPLETED",
            Self::Failed => "CHECKOUT_FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// The token was refused: not this event's, not valid, or its session
    /// is no longer active.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The outcome could not be reported: try again.
    #[error(transparent)]
    Failed(#[from] ServiceError),
}

pub struct DemoOrigin<S, O> {
    pub check: AdmissionCheck<S>,
    pub outcomes: O,
}

impl<S: SessionStore, O: OutcomeSender> DemoOrigin<S, O> {
    /// Who the token lets in, if anyone.
    pub async fn enter(&self, token: &str, event: &EventId) -> Result<Admitted, OriginError> {
        Ok(self.check.check(token, event).await?)
    }

    /// End the admitted fan's purchase with `outcome`, checked first.
    pub async fn finish(
        &self,
        token: &str,
        event: &EventId,
        outcome: Outcome,
    ) -> Result<Admitted, OriginError> {
        let admitted = self.enter(token, event).await?;
        let mut message = serde_json::json!({
            "type": outcome.message_type(),
            "session_id": admitted.claims.sid,
            "event_id": event.as_str(),
            "user_id": admitted.user_id.as_str(),
        });
        match outcome {
            Outcome::Completed => {
                message["order_id"] = format!("demo-{}", admitted.claims.sid).into()
            }
            Outcome::Failed => message["reason"] = "the fan gave up".into(),
        }
        self.outcomes
            .send_outcome(&message.to_string())
            .await
            .map_err(ServiceError::from)?;
        // The session ends once the outcome is applied, within seconds; a
        // second report meanwhile is a duplicate, applied once.
        Ok(admitted)
    }
}
