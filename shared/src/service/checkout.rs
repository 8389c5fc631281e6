//! Checkout outcomes from the protected flow: each ends an admitted session
//! as `COMPLETED`, `FAILED` or `EXPIRED` and gives its slot back. Duplicates
//! and outcomes arriving after another one are acknowledged without effect;
//! a completed purchase reported after the stay ran out is recorded. An
//! outcome that can never apply is set aside in the checkout dead-letter
//! queue at once, with its reason, as the granter does with an unreadable
//! join message: retrying cannot help it.

use serde::Deserialize;
use tracing::Instrument;

use crate::domain::{EndReason, Ending, EventId, InvalidId, Session, SessionId, UserId};
use crate::ports::{Delivery, Quarantine, SessionStore};

use super::ServiceError;
use super::session_command::{AppliesTo, Ended, SessionCommands};

const MAX_ORDER_ID: usize = 128;
const MAX_REASON: usize = 1024;

/// The message the checkout service sends.
#[derive(Debug, Deserialize)]
struct OutcomeMessage {
    #[serde(rename = "type")]
    kind: String,
    session_id: String,
    event_id: String,
    user_id: String,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeResult {
    Applied,
    /// A purchase completed after the session had expired or been left:
    /// recorded (the session is `COMPLETED`, an event says so); the slot had
    /// gone back already and does not move.
    AppliedLate,
    /// The session had ended already (a duplicate, or a later outcome).
    AlreadyEnded,
    /// Can never apply: it is set aside in the dead-letter queue.
    Rejected(Refusal),
    /// A dependency failed: try again.
    Retry(ServiceError),
}

/// Why an outcome message can never apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not an outcome message: {0}")]
    NotAnOutcome(String),
    #[error("unknown type {0:?}")]
    UnknownType(String),
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("{0} is too long or not printable")]
    Unprintable(&'static str),
    #[error("event_id does not match the session")]
    OtherEvent,
    #[error("no session {0}")]
    NoSuchSession(SessionId),
    #[error("session {0} is {1}, not admitted")]
    NotAdmitted(SessionId, &'static str),
}

/// An outcome message, checked: which session it ends, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutOutcome {
    pub session: SessionId,
    pub reason: EndReason,
    pub order_id: Option<String>,
    /// The checkout's own words on why (a failure's cause).
    pub detail: Option<String>,
}

impl CheckoutOutcome {
    pub fn parse(body: &str) -> Result<Self, Refusal> {
        let message: OutcomeMessage =
            serde_json::from_str(body).map_err(|e| Refusal::NotAnOutcome(e.to_string()))?;
        let reason = match message.kind.as_str() {
            "CHECKOUT_COMPLETED" => EndReason::CheckoutCompleted,
            "CHECKOUT_FAILED" => EndReason::CheckoutFailed,
            "CHECKOUT_EXPIRED" => EndReason::CheckoutExpired,
            _ => return Err(Refusal::UnknownType(message.kind)),
        };
        let session = SessionId::parse(&message.session_id)?;
        if session.event_id() != EventId::parse(&message.event_id)? {
            return Err(Refusal::OtherEvent);
        }
        UserId::parse(&message.user_id)?;
        let printable = |text: &Option<String>, max: usize| {
            text.as_ref()
                .is_none_or(|t| t.len() <= max && !t.chars().any(char::is_control))
        };
        if !printable(&message.order_id, MAX_ORDER_ID) {
            return Err(Refusal::Unprintable("order_id"));
        }
        if !printable(&message.reason, MAX_REASON) {
            return Err(Refusal::Unprintable("reason"));
        }
        Ok(Self {
            session,
            reason,
            order_id: message.order_id,
            detail: message.reason,
        })
    }
}

pub struct CheckoutOutcomes<S, Q> {
    pub commands: SessionCommands<S>,
    /// Where outcomes that can never apply go (the checkout dead-letter
    /// queue).
    pub quarantine: Q,
}

impl<S: SessionStore, Q: Quarantine> CheckoutOutcomes<S, Q> {
    pub async fn apply(&self, body: &str) -> OutcomeResult {
        let outcome = match CheckoutOutcome::parse(body) {
            Ok(outcome) => outcome,
            Err(refusal) => return OutcomeResult::Rejected(refusal),
        };
        let ending = Ending {
            ended_at: self.commands.clock.now(),
            reason: outcome.reason,
            order_id: outcome.order_id,
            detail: outcome.detail,
        };
        let session = outcome.session;
        match self
            .commands
            .end(&session, &ending, AppliesTo::Active)
            .await
        {
            Ok(Ended::Now) => OutcomeResult::Applied,
            Ok(Ended::Before(ended)) => self.late(&ended, &ending).await,
            Err(ServiceError::SessionNotFound) => {
                OutcomeResult::Rejected(Refusal::NoSuchSession(session))
            }
            Err(ServiceError::NotActive(current)) => {
                OutcomeResult::Rejected(Refusal::NotAdmitted(session, current.status().as_str()))
            }
            Err(err) => OutcomeResult::Retry(err),
        }
    }

    /// An outcome for a session that had ended already. Only a completed
    /// purchase of an admitted session that ended otherwise than by an
    /// outcome (its stay ran out, the user left) changes anything: the
    /// purchase happened, so the record must say so. Every other late or
    /// repeated outcome is acknowledged and changes nothing.
    async fn late(&self, ended: &Session, ending: &Ending) -> OutcomeResult {
        let was = ended.ending().map(|e| e.reason);
        let recordable = ending.reason == EndReason::CheckoutCompleted
            && ended.admission().is_some()
            && matches!(was, Some(EndReason::Expired | EndReason::UserLeft));
        let Some(was) = was.filter(|_| recordable) else {
            return OutcomeResult::AlreadyEnded;
        };
        match self
            .commands
            .store
            .record_late_completion(&ended.id, was, ending)
            .await
        {
            Ok(true) => {
                tracing::info!(session = %ended.id, was = was.as_str(), "purchase completed after the session ended; recorded");
                OutcomeResult::AppliedLate
            }
            // Recorded by a duplicate meanwhile.
            Ok(false) => OutcomeResult::AlreadyEnded,
            Err(err) => OutcomeResult::Retry(err.into()),
        }
    }

    /// Apply a batch; returns the ids of messages to hand back to the queue.
    pub async fn handle_batch(&self, deliveries: &[Delivery]) -> Vec<String> {
        let mut failed = Vec::new();
        for delivery in deliveries {
            let span = tracing::info_span!("checkout_outcome", message_id = %delivery.message_id);
            let handled = async {
                match self.apply(&delivery.body).await {
                    OutcomeResult::Applied
                    | OutcomeResult::AppliedLate
                    | OutcomeResult::AlreadyEnded => true,
                    OutcomeResult::Rejected(refusal) => self.set_aside(delivery, &refusal).await,
                    OutcomeResult::Retry(err) => {
                        tracing::warn!(error = %err, "checkout outcome not applied yet");
                        false
                    }
                }
            }
            .instrument(span)
            .await;
            if !handled {
                failed.push(delivery.message_id.clone());
            }
        }
        failed
    }

    /// Put an outcome that can never apply in the dead-letter queue; false
    /// if that failed (the queue brings it back, and it is tried again).
    async fn set_aside(&self, delivery: &Delivery, refusal: &Refusal) -> bool {
        let reason = refusal.to_string();
        match self
            .quarantine
            .quarantine(&delivery.message_id, &delivery.body, &reason)
            .await
        {
            Ok(()) => {
                tracing::warn!(%reason, "checkout outcome can never apply; set aside in the dead-letter queue");
                true
            }
            Err(err) => {
                tracing::warn!(%reason, error = %err, "checkout outcome can never apply and could not be set aside; it will be received again");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SESSION: &str = "E1.aaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn body(changes: serde_json::Value) -> String {
        let mut message = json!({"type": "CHECKOUT_COMPLETED", "session_id": SESSION, "event_id": "E1", "user_id": "U1", "order_id": "o-1"});
        for (field, value) in changes.as_object().unwrap() {
            message[field] = value.clone();
        }
        message.to_string()
    }

    #[test]
    fn a_well_formed_outcome_names_its_session_and_reason() {
        let outcome = CheckoutOutcome::parse(&body(json!({"reason": "paid"}))).unwrap();
        assert_eq!(outcome.session.to_string(), SESSION);
        assert_eq!(outcome.reason, EndReason::CheckoutCompleted);
        assert_eq!(
            (outcome.order_id.as_deref(), outcome.detail.as_deref()),
            (Some("o-1"), Some("paid"))
        );
    }

    #[test]
    fn each_malformed_outcome_is_refused_for_its_own_reason() {
        let refused = |changes| CheckoutOutcome::parse(&body(changes)).unwrap_err();
        assert!(matches!(
            CheckoutOutcome::parse("{"),
            Err(Refusal::NotAnOutcome(_))
        ));
        assert_eq!(
            refused(json!({"type": "CHECKOUT_MAYBE"})),
            Refusal::UnknownType("CHECKOUT_MAYBE".into())
        );
        assert!(
            matches!(refused(json!({"session_id": "E1"})), Refusal::InvalidId(e) if e.field == "sessionId")
        );
        assert_eq!(refused(json!({"event_id": "E2"})), Refusal::OtherEvent);
        assert!(
            matches!(refused(json!({"user_id": ""})), Refusal::InvalidId(e) if e.field == "userId")
        );
        assert_eq!(
            refused(json!({"order_id": "o\n1"})),
            Refusal::Unprintable("order_id")
        );
        assert_eq!(
            refused(json!({"reason": "x".repeat(MAX_REASON + 1)})),
            Refusal::Unprintable("reason")
        );
    }
}
