//! What the operator CLI reads and writes.

use serde::Serialize;

use crate::domain::EventId;
use crate::ports::{EventStore, LineStore};

use super::ServiceError;

/// One event's counters, as `waiting-room-admin show` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventReport {
    pub event_id: String,
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
