//! What the operator CLI reads and writes.

use serde::Serialize;

use crate::domain::{Control, EventId, EventState, Timestamp};
use crate::ports::{EventStore, LineStore};

use super::{MAX_ATTEMPTS, ServiceError};

/// One event's counters, as `waiting-room-admin show` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventReport {
    pub event_id: String,
    /// `OPEN`, `PAUSED` or `CLOSED`.
    pub state: &'static str,
    pub capacity: u32,
    /// `"stored"` on the event (set by an operator, or the default stored
    /// when the event was first used), or `"default"` for an event nobody
    /// has used yet.
    pub capacity_source: &'static str,
    pub active: u64,
    pub free: u64,
    /// Numbered and not yet passed, minus those who left: an estimate (a
    /// join is counted once the granter numbers it).
    pub waiting: u64,
    pub admitted: u64,
    /// Left, by choice: while active plus while waiting.
    pub left: u64,
    pub left_while_waiting: u64,
    pub expired: u64,
    pub abandoned: u64,
    pub completed: u64,
    pub failed: u64,
    /// The backlog hint: whether a freed slot wakes the granter.
    pub backlog_armed: bool,
}

pub async fn event_report<S: EventStore + LineStore>(
    store: &S,
    event: &EventId,
    line_shards: u16,
    default_capacity: u32,
) -> Result<EventReport, ServiceError> {
    let counters = store.event_counters(event, line_shards).await?;
    let shards: Vec<u16> = (0..line_shards.max(1)).collect();
    let tickets = store.ticket_counters(event, &shards).await?;
    let numbered: u64 = tickets.iter().map(|t| t.next_ticket).sum();
    let left_while_waiting: u64 = tickets.iter().map(|t| t.left_waiting).sum();
    let passed_or_gone = counters.admitted + counters.abandoned + left_while_waiting;
    Ok(EventReport {
        event_id: event.to_string(),
        state: counters.state.as_str(),
        capacity: counters.effective_capacity(default_capacity),
        capacity_source: if counters.capacity.is_some() {
            "stored"
        } else {
            "default"
        },
        active: counters.active,
        free: counters.free_slots(default_capacity),
        waiting: numbered.saturating_sub(passed_or_gone),
        admitted: counters.admitted,
        left: counters.left + left_while_waiting,
        left_while_waiting,
        expired: counters.expired,
        abandoned: counters.abandoned,
        completed: counters.completed,
        failed: counters.failed,
        backlog_armed: counters.backlog.armed,
    })
}

/// What an operator's control did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlOutcome {
    pub event_id: String,
    pub control: &'static str,
    /// The state before and after (the same when it was already there).
    pub from: &'static str,
    pub state: &'static str,
    pub changed: bool,
}

/// Pause, resume or close an event. Asking for the state it is in already
/// changes nothing; a closed event refuses every control and keeps its state.
/// The write is conditioned on the state read, so two operators acting at
/// once cannot both move it from the same state.
pub async fn control<S: EventStore>(
    store: &S,
    event: &EventId,
    control: Control,
    line_shards: u16,
    now: Timestamp,
) -> Result<ControlOutcome, ServiceError> {
    let outcome = |from: EventState, to: EventState| ControlOutcome {
        event_id: event.to_string(),
        control: control.as_str(),
        from: from.as_str(),
        state: to.as_str(),
        changed: from != to,
    };
    for _ in 0..MAX_ATTEMPTS {
        let from = store.event_counters(event, line_shards).await?.state;
        let to = from.after(control)?;
        if from == to || store.set_event_state(event, from, to, now).await? {
            return Ok(outcome(from, to));
        }
        tracing::info!(event = %event, control = control.as_str(), "the event's state changed meanwhile; reading again");
    }
    Err(ServiceError::Contention)
}
