//! What the operator CLI reads and writes.

use serde::Serialize;

use crate::domain::EventId;
use crate::ports::SessionStore;

use super::ServiceError;

/// One event's counters, as `waiting-room-admin show` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventReport {
    pub event_id: String,
    pub capacity: u32,
    /// `"set"` by an operator, or `"default"` from configuration.
    pub capacity_source: &'static str,
    pub active: u64,
    pub free: u64,
    /// In line (filed by the granter), not yet admitted.
    pub waiting: u64,
    pub admitted: u64,
    /// Left, by choice: while active plus while waiting.
    pub left: u64,
    pub left_while_waiting: u64,
    pub expired: u64,
    pub abandoned_while_waiting: u64,
    pub completed: u64,
    pub failed: u64,
}

pub async fn event_report<S: SessionStore>(
    store: &S,
    event: &EventId,
    line_shards: u16,
    default_capacity: u32,
) -> Result<EventReport, ServiceError> {
    let state = store.line_state(event, line_shards).await?;
    let counters = &state.counters;
    let left_while_waiting: u64 = state.shards.iter().map(|s| s.left_waiting).sum();
    Ok(EventReport {
        event_id: event.to_string(),
        capacity: counters.effective_capacity(default_capacity),
        capacity_source: if counters.capacity.is_some() {
            "set"
        } else {
            "default"
        },
        active: counters.active,
        free: counters.free_slots(default_capacity),
        waiting: state.waiting(),
        admitted: counters.admitted,
        left: counters.left + left_while_waiting,
        left_while_waiting,
        expired: counters.expired,
        abandoned_while_waiting: state.shards.iter().map(|s| s.abandoned).sum(),
        completed: counters.completed,
        failed: counters.failed,
    })
}
