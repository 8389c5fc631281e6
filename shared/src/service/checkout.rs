//! Checkout outcomes from the protected flow: each ends an admitted session
//! as `COMPLETED`, `FAILED` or `EXPIRED` and gives its slot back. Duplicates
//! and outcomes arriving after another one are acknowledged without effect;
//! a completed purchase reported after the stay ran out is recorded.

use serde::Deserialize;

use crate::domain::{EndReason, Ending, EventId, Session, SessionId, UserId};
use crate::ports::{Delivery, SessionStore};

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
    /// Can never apply (malformed, unknown session, not admitted): it goes
    /// to the dead-letter queue after the queue's retries.
    Rejected(String),
    /// A dependency failed: try again.
    Retry(ServiceError),
}

fn reason_of(kind: &str) -> Option<EndReason> {
    match kind {
        "CHECKOUT_COMPLETED" => Some(EndReason::CheckoutCompleted),
        "CHECKOUT_FAILED" => Some(EndReason::CheckoutFailed),
        "CHECKOUT_EXPIRED" => Some(EndReason::CheckoutExpired),
        _ => None,
    }
}

fn parse(body: &str) -> Result<(SessionId, EndReason, Option<String>, Option<String>), String> {
    let message: OutcomeMessage =
        serde_json::from_str(body).map_err(|e| format!("not an outcome message: {e}"))?;
    let reason =
        reason_of(&message.kind).ok_or_else(|| format!("unknown type {:?}", message.kind))?;
    let session = SessionId::parse(&message.session_id).map_err(|e| e.to_string())?;
    let event = EventId::parse(&message.event_id).map_err(|e| e.to_string())?;
    if session.event_id() != event {
        return Err("event_id does not match the session".into());
    }
    UserId::parse(&message.user_id).map_err(|e| e.to_string())?;
    let printable =
        |text: &String, max: usize| text.len() <= max && !text.chars().any(char::is_control);
    if message
        .order_id
        .as_ref()
        .is_some_and(|o| !printable(o, MAX_ORDER_ID))
    {
        return Err("order_id is too long or not printable".into());
    }
    if message
        .reason
        .as_ref()
        .is_some_and(|r| !printable(r, MAX_REASON))
    {
        return Err("reason is too long or not printable".into());
    }
    Ok((session, reason, message.order_id, message.reason))
}

pub struct CheckoutOutcomes<S> {
    pub commands: SessionCommands<S>,
}

impl<S: SessionStore> CheckoutOutcomes<S> {
    pub async fn apply(&self, body: &str) -> OutcomeResult {
        let (session, reason, order_id, detail) = match parse(body) {
            Ok(parsed) => parsed,
            Err(problem) => return OutcomeResult::Rejected(problem),
        };
        let ending = Ending {
            ended_at: self.commands.clock.now(),
            reason,
            order_id,
            detail,
        };
        match self
            .commands
            .end(&session, &ending, AppliesTo::Active)
            .await
        {
            Ok(Ended::Now) => OutcomeResult::Applied,
            Ok(Ended::Before(ended)) => self.late(&ended, &ending).await,
            Err(ServiceError::SessionNotFound) => {
                OutcomeResult::Rejected(format!("no session {session}"))
            }
            Err(ServiceError::NotActive(current)) => OutcomeResult::Rejected(format!(
                "session {session} is {}, not admitted",
                current.status.as_str()
            )),
            Err(err) => OutcomeResult::Retry(err),
        }
    }

    /// An outcome for a session that had ended already. Only a completed
    /// purchase of an admitted session that ended otherwise than by an
    /// outcome (its stay ran out, the user left) changes anything: the
    /// purchase happened, so the record must say so. Every other late or
    /// repeated outcome is acknowledged and changes nothing.
    async fn late(&self, ended: &Session, ending: &Ending) -> OutcomeResult {
        let was = ended.ending.as_ref().map(|e| e.reason);
        let recordable = ending.reason == EndReason::CheckoutCompleted
            && ended.admission.is_some()
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
            match self.apply(&delivery.body).await {
                OutcomeResult::Applied
                | OutcomeResult::AppliedLate
                | OutcomeResult::AlreadyEnded => {}
                OutcomeResult::Rejected(problem) => {
                    tracing::error!(message_id = %delivery.message_id, %problem, "checkout outcome refused; it will reach the dead-letter queue");
                    failed.push(delivery.message_id.clone());
                }
                OutcomeResult::Retry(err) => {
                    tracing::warn!(message_id = %delivery.message_id, error = %err, "checkout outcome not applied yet");
                    failed.push(delivery.message_id.clone());
                }
            }
        }
        failed
    }
}
