//! What the services need from the outside world, as traits. The DynamoDB and
//! SQS adapters implement them for real; the in-memory adapters implement the
//! same contract for unit tests and the simulator.

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::admission::LineAdvance;
use crate::domain::{
    Ending, EventCounters, EventId, LineEntry, LineShard, LineState, Session, SessionId, Timestamp,
};
use crate::events::DomainEvent;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Throttled, timed out or unreachable: worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request itself (misconfiguration, a bug).
    #[error("store rejected the request: {0}")]
    Rejected(String),
    /// An item did not have the shape this code writes.
    #[error("unreadable item: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("queue rejected the request: {0}")]
    Rejected(String),
}

/// Result of claiming `(eventId, userId)` for a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The new session is stored and owns the claim.
    Created,
    /// Another session holds the claim (it may have ended since).
    HeldBy(SessionId),
    /// The claim we meant to replace is gone (expired); try a fresh claim.
    Vacant,
}

/// Result of undoing a join whose message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    Discarded,
    /// The granter filed it meanwhile: the message did go out after all.
    AlreadyFiled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    Touched(Session),
    Ended(Session),
    NotFound,
}

/// The state a session must be in for an ending to apply; it decides which
/// counter gets the slot or the place back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndFrom {
    Active,
    /// Active and past its stay at this time: a heartbeat that extended the
    /// stay meanwhile wins over the sweeper.
    ActiveOverdue {
        at: Timestamp,
    },
    /// Waiting with a ticket: the line shard counts it as ended in line.
    WaitingFiled {
        shard: u16,
        ticket: u64,
    },
    /// Waiting, not filed yet: only the session changes.
    WaitingUnfiled,
}

impl EndFrom {
    pub fn of(session: &Session) -> Option<Self> {
        use crate::domain::SessionStatus::{Active, Waiting};
        match (session.status, session.ticket) {
            (Active, _) => Some(Self::Active),
            (Waiting, Some(ticket)) => Some(Self::WaitingFiled {
                shard: session.shard,
                ticket,
            }),
            (Waiting, None) => Some(Self::WaitingUnfiled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    Ended,
    /// The session was not in the expected state; here is how it is now.
    NotAsExpected(Option<Box<Session>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvanceOutcome {
    Applied,
    /// Nothing was written. `rejected` sessions failed their condition (they
    /// are filed already, ended, or gone); otherwise the line or the counters
    /// moved under us and the plan must be made again.
    Conflict {
        rejected: Vec<SessionId>,
    },
}

pub trait SessionStore: Send + Sync {
    /// Store `session` and claim its `(eventId, userId)` in one write. With
    /// `replacing`, take over a claim held by that (ended) session.
    fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    fn get_session(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    /// Remove a session that was never filed, and its claim.
    fn discard_unfiled(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Discard, StoreError>> + Send;

    /// Record that the user is still there.
    fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Touch, StoreError>> + Send;

    /// End a session that is in state `from`, giving back its slot or place
    /// in the same write. `retain_until` is when the ended session may vanish.
    fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<EndOutcome, StoreError>> + Send;

    /// Move an active session's end from `from` to `to`; false if it is no
    /// longer active or its end moved meanwhile.
    fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Active sessions of one expiry bucket whose stay ended by `now`,
    /// soonest first, from the sparse expiry index (no table scan).
    fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SessionId>, StoreError>> + Send;

    /// One shard of the line, read cheaply (may be a moment old).
    fn line_shard(
        &self,
        event: &EventId,
        shard: u16,
    ) -> impl Future<Output = Result<LineShard, StoreError>> + Send;

    /// Counters and every shard of an event, read consistently.
    fn line_state(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> impl Future<Output = Result<LineState, StoreError>> + Send;

    /// Filed sessions of a shard from `from_ticket` on, in ticket order.
    fn line_entries(
        &self,
        event: &EventId,
        shard: u16,
        from_ticket: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send;

    /// Apply a plan atomically, or nothing of it.
    fn advance_line(
        &self,
        plan: &LineAdvance,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<AdvanceOutcome, StoreError>> + Send;

    fn event_counters(
        &self,
        event: &EventId,
    ) -> impl Future<Output = Result<EventCounters, StoreError>> + Send;

    fn set_capacity(
        &self,
        event: &EventId,
        capacity: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The body of a join message: what the granter needs to file the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinTicket {
    pub session_id: String,
    pub event_id: String,
    pub shard: u16,
    pub joined_at: u64,
}

impl JoinTicket {
    pub fn for_session(session: &Session) -> Self {
        Self {
            session_id: session.id.to_string(),
            event_id: session.event_id.to_string(),
            shard: session.shard,
            joined_at: session.joined_at.as_millis(),
        }
    }
}

/// A message as received from the join queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

pub trait JoinQueue: Send + Sync {
    /// Send to the shard's message group, deduplicated by session id.
    fn send(&self, ticket: &JoinTicket) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The receiving side, used by the local poller (Lambda receives for us).
pub trait QueueConsumer: Send + Sync {
    fn receive(
        &self,
        max_messages: i32,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, QueueError>> + Send;

    fn delete(
        &self,
        deliveries: &[Delivery],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Where domain events are published (an SNS FIFO topic in AWS), in the
/// order given within each `DomainEvent::partition`.
pub trait EventSink: Send + Sync {
    fn publish(
        &self,
        events: &[DomainEvent],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Where unreadable messages go so they cannot block their message group
/// while SQS redelivers them a hundred times (the dead-letter queue).
pub trait Quarantine: Send + Sync {
    fn quarantine(
        &self,
        delivery: &Delivery,
        reason: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Source of the random part of session ids.
pub trait IdSource: Send + Sync {
    /// `None` only if the operating system cannot produce randomness.
    fn random_id(&self) -> Option<[u8; 16]>;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl IdSource for OsRandom {
    fn random_id(&self) -> Option<[u8; 16]> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).ok().map(|()| bytes)
    }
}

/// A shared store is a store: lets one in-memory store serve several
/// services in tests and the simulator.
impl<T: SessionStore> SessionStore for std::sync::Arc<T> {
    fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        (**self).create_session(session, replacing, claim_ttl)
    }
    fn get_session(
        &self,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send {
        (**self).get_session(id)
    }
    fn discard_unfiled(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Discard, StoreError>> + Send {
        (**self).discard_unfiled(session)
    }
    fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Touch, StoreError>> + Send {
        (**self).touch(id, now)
    }
    fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<EndOutcome, StoreError>> + Send {
        (**self).end_session(id, from, ending, retain_until)
    }
    fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).extend_stay(id, from, to)
    }
    fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SessionId>, StoreError>> + Send {
        (**self).overdue_sessions(bucket, now, limit)
    }
    fn line_shard(
        &self,
        event: &EventId,
        shard: u16,
    ) -> impl Future<Output = Result<LineShard, StoreError>> + Send {
        (**self).line_shard(event, shard)
    }
    fn line_state(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> impl Future<Output = Result<LineState, StoreError>> + Send {
        (**self).line_state(event, shard_count)
    }
    fn line_entries(
        &self,
        event: &EventId,
        shard: u16,
        from_ticket: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send {
        (**self).line_entries(event, shard, from_ticket, limit)
    }
    fn advance_line(
        &self,
        plan: &LineAdvance,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<AdvanceOutcome, StoreError>> + Send {
        (**self).advance_line(plan, retain_until)
    }
    fn event_counters(
        &self,
        event: &EventId,
    ) -> impl Future<Output = Result<EventCounters, StoreError>> + Send {
        (**self).event_counters(event)
    }
    fn set_capacity(
        &self,
        event: &EventId,
        capacity: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_capacity(event, capacity)
    }
}

impl<T: JoinQueue> JoinQueue for std::sync::Arc<T> {
    fn send(&self, ticket: &JoinTicket) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(ticket)
    }
}
