//! What the table's stream tells: one record per write of an item, in order
//! per item, at least once. The stream adapters (Lambda's event, the local
//! poller's reads, the in-memory store) turn their records into these, so
//! the services that follow the stream see only domain types.

use super::event_state::EventState;
use super::ids::EventId;
use super::line::{DRAW_SETTLES, EventCounters};
use super::session::{Session, SessionStatus};
use super::time::Timestamp;

/// One write, as far as the services care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A session before and after (`None`: did not exist / was deleted).
    Session {
        old: Option<Box<Session>>,
        new: Option<Box<Session>>,
    },
    /// An event's counters before and after.
    Counters {
        event_id: EventId,
        before: Box<EventCounters>,
        after: Box<EventCounters>,
    },
    /// An operator changed an event's state (the record of the change,
    /// written with it: what the publisher turns into a domain event).
    StateChanged(StateChange),
    /// Any other item (claims, ticket counters, heads).
    Other,
}

/// One change of an event's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub event_id: EventId,
    pub from: EventState,
    pub to: EventState,
    pub at: Timestamp,
    /// Scheduling: when the event opens.
    pub opens_at: Option<Timestamp>,
    /// Opening with a pre-queue: the draw's seed, published now that it
    /// can no longer help anyone.
    pub seed: Option<u64>,
    /// Opening with a pre-queue: when admissions start.
    pub admits_from: Option<Timestamp>,
    /// Made because a stored time came (an opening at `opensAt`, a closing
    /// at `closesAt`, both equal to `at`): the write holds only while that
    /// time is still stored, so an operator's new time wins over a granter
    /// that read the old one.
    pub on_time: bool,
}

impl StateChange {
    /// The change that opens a scheduled event (as `counters` show it) at
    /// `at`: with a draw, admissions wait `DRAW_SETTLES` and the seed is
    /// published. The hint is armed by the write (`arms`), so that the
    /// stream wakes a granter for the pre-queue.
    pub fn opening(event_id: &EventId, counters: &EventCounters, at: Timestamp) -> Self {
        Self {
            seed: counters.draw_seed,
            admits_from: counters.draw_seed.map(|_| at.plus(DRAW_SETTLES)),
            ..Self::plain(event_id.clone(), counters.state, EventState::Open, at)
        }
    }

    /// The write arms the backlog hint: an opening after a pre-queue, whose
    /// people no granter could arm it for while the line was held.
    pub fn arms(&self) -> bool {
        self.from == EventState::Scheduled && self.to.admits()
    }

    /// A plain change (pause, resume, close, or an opening with no draw).
    pub fn plain(event_id: EventId, from: EventState, to: EventState, at: Timestamp) -> Self {
        Self {
            event_id,
            from,
            to,
            at,
            opens_at: None,
            seed: None,
            admits_from: None,
            on_time: false,
        }
    }
}

impl Change {
    /// A slot may have become free (fewer active sessions, a new capacity,
    /// or a paused event resumed) while someone waits: what wakes the granter. Admissions,
    /// and exits with nobody in line, are not worth waking it for.
    pub fn frees_a_slot(&self) -> Option<(&EventId, &EventCounters)> {
        let Change::Counters {
            event_id,
            before,
            after,
        } = self
        else {
            return None;
        };
        let resumed = after.state.admits() && !before.state.admits();
        let freed = after.active < before.active || after.capacity != before.capacity || resumed;
        (freed && after.backlog.armed).then_some((event_id, after.as_ref()))
    }

    /// A session that has just joined (its first write).
    pub fn joined(&self) -> Option<&Session> {
        match self {
            Change::Session {
                old: None,
                new: Some(new),
            } if new.status() == SessionStatus::Waiting => Some(new),
            _ => None,
        }
    }
}

/// One stream record: its id (what a partial batch failure names) and the
/// change, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub id: String,
    pub change: Result<Change, UnreadableRecord>,
    /// When the write happened, as the stream says (to the second, or
    /// finer); `None` where the source does not tell.
    pub written_at: Option<Timestamp>,
}

/// A record this code cannot read, kept whole for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRecord {
    pub reason: String,
    /// The record as received (JSON), for the dead-letter queue.
    pub raw: String,
}
