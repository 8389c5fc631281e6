//! What operators read and change: an event's report, its capacity and
//! state, and evictions. The CLI and the admin HTTP API both go through
//! here.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::{Clock, Control, EventId, EventState, SessionId, Timestamp};
use crate::ports::{EventStore, LineStore, SessionStore};

use super::session_command::{Ended, SessionCommands};
use super::{MAX_ATTEMPTS, ServiceError};

/// The largest capacity an operator may set: far above any origin, small
/// enough that a typo (an extra zero or three) is refused.
pub const MAX_CAPACITY: u32 = 10_000_000;

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
/// changes nothing; a closed event refuses every control and keeps its state;
/// an event nobody listed (a mistyped id) is not found.
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
        let counters = store.event_counters(event, line_shards).await?;
        if !counters.listed {
            return Err(ServiceError::EventNotFound);
        }
        let from = counters.state;
        let to = from.after(control)?;
        if from == to || store.set_event_state(event, from, to, now).await? {
            return Ok(outcome(from, to));
        }
        tracing::info!(event = %event, control = control.as_str(), "the event's state changed meanwhile; reading again");
    }
    Err(ServiceError::Contention)
}

/// What an eviction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvictOutcome {
    pub session_id: String,
    /// False when it had ended before (nothing changed).
    pub evicted: bool,
    /// The user may not join the event again.
    pub blocked: bool,
    /// `LEFT` once evicted, else the status it had ended in.
    pub status: &'static str,
}

/// The operator's use cases, for the admin HTTP API.
pub struct AdminService<S> {
    pub store: S,
    pub commands: SessionCommands<S>,
    pub clock: Arc<dyn Clock>,
    pub line_shards: u16,
    pub default_capacity: u32,
}

impl<S: EventStore + LineStore + SessionStore> AdminService<S> {
    /// Every listed event's report, by event id.
    pub async fn events(&self) -> Result<Vec<EventReport>, ServiceError> {
        let mut events = self.store.events().await?;
        events.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut reports = Vec::with_capacity(events.len());
        for event in &events {
            reports.push(self.report(event).await?);
        }
        Ok(reports)
    }

    pub async fn report(&self, event: &EventId) -> Result<EventReport, ServiceError> {
        event_report(&self.store, event, self.line_shards, self.default_capacity).await
    }

    /// Set the capacity (at most `MAX_CAPACITY`; the caller validates) and
    /// answer with the report after it.
    pub async fn set_capacity(
        &self,
        event: &EventId,
        capacity: u32,
    ) -> Result<EventReport, ServiceError> {
        self.store.set_capacity(event, capacity).await?;
        self.report(event).await
    }

    pub async fn control(
        &self,
        event: &EventId,
        control_of: Control,
    ) -> Result<ControlOutcome, ServiceError> {
        control(
            &self.store,
            event,
            control_of,
            self.line_shards,
            self.clock.now(),
        )
        .await
    }

    /// Evict a session; with `block`, its user is first kept from joining
    /// the event again (so no rejoin slips in between).
    pub async fn evict(&self, id: &SessionId, block: bool) -> Result<EvictOutcome, ServiceError> {
        if block {
            let session = self
                .store
                .get_session(id)
                .await?
                .ok_or(ServiceError::SessionNotFound)?;
            self.store
                .block(&session.event_id, &session.user_id)
                .await?;
            tracing::info!(session = %id, event = %session.event_id, "user blocked from the event");
        }
        Ok(match self.commands.evict(id).await? {
            Ended::Now => EvictOutcome {
                session_id: id.to_string(),
                evicted: true,
                blocked: block,
                status: "LEFT",
            },
            Ended::Before(session) => EvictOutcome {
                session_id: id.to_string(),
                evicted: false,
                blocked: block,
                status: session.status().as_str(),
            },
        })
    }
}
