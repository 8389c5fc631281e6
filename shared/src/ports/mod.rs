//! What the services need from the outside world, as traits. The DynamoDB and
//! SQS adapters implement them for real; the in-memory adapters implement the
//! same contract for unit tests, the simulator and the schedule explorer.

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::admission::{AdmissionPlan, BacklogChange, NumberingPlan};
use crate::domain::draw::is_drawn;
use crate::domain::line::{message_group_id, pre_queue_group_id};
use crate::domain::{
    EndReason, Ending, EventCounters, EventId, KeyDigest, LineEntry, Place, Session, SessionId,
    StateChange, TicketCounter, Timestamp, UserId,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Throttled, timed out or unreachable: worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another write to the same item was in progress (a DynamoDB
    /// transaction conflict): worth retrying at once, after a short pause.
    #[error("concurrent write to the same item: {0}")]
    Contention(String),
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
    /// The new session is stored, in line, and owns the claim.
    Created,
    /// Another session holds the claim (it may have ended since).
    HeldBy(SessionId),
    /// The claim we meant to replace is gone (expired); try a fresh claim.
    Vacant,
    /// An operator blocked this user from the event: nothing was stored.
    Blocked,
}

/// Result of undoing a join whose message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    Discarded,
    /// It was admitted or ended meanwhile: it is not taken back.
    NoLongerWaiting,
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
    /// Waiting in line: it leaves the line (and its shard counts it).
    Waiting {
        shard: u16,
    },
}

impl EndFrom {
    pub fn of(session: &Session) -> Option<Self> {
        use crate::domain::SessionStatus::{Active, Waiting};
        match session.status() {
            Active => Some(Self::Active),
            Waiting => Some(Self::Waiting {
                shard: session.shard,
            }),
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

/// What became of a conditional write of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied,
    /// Nothing was written. `rejected` sessions failed their own condition
    /// (admitted, ended, numbered already, or gone); otherwise the counters
    /// or the ticket counter moved under us and the plan must be made again.
    Conflict {
        rejected: Vec<SessionId>,
    },
}

/// What one expiry write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expiry {
    pub expired: Vec<SessionId>,
    /// No longer overdue (a heartbeat extended the stay), ended or gone.
    pub skipped: Vec<SessionId>,
}

/// A user's session: created by a join, read and touched by polls, ended
/// by a leave, a purchase or its stay running out. The join, status,
/// session-command, checkout and admission-check services ask for this.
pub trait SessionStore: Send + Sync {
    /// Store `session` (waiting, in line at its place) and claim its
    /// `(eventId, userId)` in one write. With `replacing`, take over a claim
    /// held by that (ended) session.
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

    /// Take back a join whose message could not be sent: the session and its
    /// claim, if it is still waiting.
    fn discard(
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

    /// A purchase completed after the session had ended for `was` (its stay
    /// ran out, or the user left): record it. No slot moves, it went back
    /// when the session ended. False if the session is not in that state.
    fn record_late_completion(
        &self,
        id: &SessionId,
        was: EndReason,
        ending: &Ending,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Move an active session's end from `from` to `to`, if its stay is not
    /// over at `now`; false if it is no longer active, is overdue, or its
    /// end moved meanwhile.
    fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Keep `user` from taking a place in `event` again: their claim is
    /// marked blocked and kept (no TTL); every later join of theirs finds
    /// `Claim::Blocked`.
    fn block(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Join puzzle solutions already used (`domain::puzzle`), so that each
/// buys one join. Only the join uses it.
pub trait PuzzleLedger: Send + Sync {
    /// Record `digest` as spent by the join with idempotency key `key`, to
    /// be forgotten after `until` (when the solution is stale anyway). True
    /// if this join may use it: it was unspent, or spent by the same join
    /// (a retry with the same key); false if another join spent it.
    fn spend(
        &self,
        digest: &[u8; 32],
        key: &KeyDigest,
        until: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl<T: PuzzleLedger> PuzzleLedger for std::sync::Arc<T> {
    fn spend(
        &self,
        digest: &[u8; 32],
        key: &KeyDigest,
        until: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).spend(digest, key, until)
    }
}

/// An event's counters and settings (capacity, the backlog hint's home),
/// and the list of events the reconciliation walks.
pub trait EventStore: Send + Sync {
    /// The event's counters, read consistently (`heads` as long as
    /// `shard_count`).
    fn event_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> impl Future<Output = Result<EventCounters, StoreError>> + Send;

    /// Store the default capacity on an event that has none yet, and list
    /// the event for the reconciliation. Returns the counters after.
    fn register_event(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> impl Future<Output = Result<EventCounters, StoreError>> + Send;

    /// Put an event in the event index (its capacity is stored later, by
    /// `register_event`).
    fn list_event(&self, event: &EventId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every listed event (the index may lag by a moment).
    fn events(&self) -> impl Future<Output = Result<Vec<EventId>, StoreError>> + Send;

    fn set_capacity(
        &self,
        event: &EventId,
        capacity: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Move the event from `from` to `to` (and list it); `false`, changing
    /// nothing, when it is no longer in `from`.
    /// Apply one change of the event's state (and list it), with its
    /// record for the publisher; `false`, changing nothing, when the event
    /// is no longer in `change.from` (or, to schedule it, took joins).
    fn set_event_state(
        &self,
        change: &StateChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Store the settings given (and list the event).
    fn configure_event(
        &self,
        event: &EventId,
        settings: &EventSettings,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Per-event settings an operator stores; `None` leaves one as it is,
/// `Some(None)` removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSettings {
    pub closes_at: Option<Option<Timestamp>>,
    pub origin_url: Option<Option<String>>,
    /// The stay, longest stay and abandonment limit (zero: off), in place
    /// of the deployment's.
    pub stay: Option<Option<Duration>>,
    pub max_stay: Option<Option<Duration>>,
    pub abandon_after: Option<Option<Duration>>,
    pub signed_joins: Option<bool>,
    /// Bits; 0 turns the puzzle off.
    pub puzzle_difficulty: Option<u8>,
}

/// The line: its shards' heads and ticket counters, the line index, and
/// the atomic writes that number and admit. Only the granter writes it.
pub trait LineStore: Send + Sync {
    /// Of `ids`, the sessions still waiting, as line entries (read
    /// consistently).
    fn waiting_among(
        &self,
        ids: &[SessionId],
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send;

    /// Waiting sessions of one shard in place order from the front, at most
    /// `limit`, from the line index (eventually consistent).
    fn line_front(
        &self,
        event: &EventId,
        shard: u16,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send;

    /// The same, from just behind `after` (paging through a shard's line).
    fn line_after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send;

    /// The first ticket of a shard not yet passed, read consistently (every
    /// poll of a numbered waiting user reads it).
    fn shard_head(
        &self,
        event: &EventId,
        shard: u16,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The ticket counters of `shards`, read consistently.
    fn ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> impl Future<Output = Result<Vec<TicketCounter>, StoreError>> + Send;

    /// Apply a numbering atomically, or nothing of it.
    fn number_sessions(
        &self,
        plan: &NumberingPlan,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Apply an admission plan atomically, or nothing of it.
    fn admit(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Change the backlog hint; false if its condition did not hold.
    fn update_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Stays that ran out, found by the sparse expiry index and ended in
/// batches: the sweeper's part of the store.
pub trait ExpiryStore: Send + Sync {
    /// Active sessions of one expiry bucket whose stay ended by `now`,
    /// soonest first, from the sparse expiry index (no table scan).
    fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SessionId>, StoreError>> + Send;

    /// End the sessions of `ids` (all of `event`) that are still active and
    /// overdue at `now`, and give their slots back, in one write.
    fn expire_overdue(
        &self,
        event: &EventId,
        ids: &[SessionId],
        now: Timestamp,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<Expiry, StoreError>> + Send;
}

/// The whole store, for what wires the services and for the contract tests
/// run against every adapter; a service asks only for the parts it uses.
pub trait Store: SessionStore + EventStore + LineStore + ExpiryStore + PuzzleLedger {}

impl<T: SessionStore + EventStore + LineStore + ExpiryStore + PuzzleLedger> Store for T {}

/// The body of a join message: a session that arrived in line, with what
/// the granter needs to number it and to admit it before the line index
/// shows it. (A "ticket" is only ever the number of a place in line.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arrival {
    pub session_id: String,
    pub event_id: String,
    pub shard: u16,
    pub joined_at: u64,
}

impl Arrival {
    /// The message group its join message goes to: its shard's, or the
    /// event's pre-queue group for a join whose place is a draw's.
    pub fn message_group(&self, event: &EventId) -> String {
        if is_drawn(Timestamp::from_millis(self.joined_at)) {
            pre_queue_group_id(event, self.shard)
        } else {
            message_group_id(event, self.shard)
        }
    }

    pub fn for_session(session: &Session) -> Self {
        Self {
            session_id: session.id.to_string(),
            event_id: session.event_id.to_string(),
            shard: session.shard,
            // The place's time: a pre-queue session's draw, not its join.
            joined_at: session.place().joined_at.as_millis(),
        }
    }
}

/// A wake-up for an event whose advance gave up (after a freed slot, or
/// after a batch of joins): it is retried from the join queue, in the
/// event's own message group, so the table stream and the joins' shard
/// groups go on for everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WakeUp {
    pub wake_event_id: String,
    /// The joins whose advance it carries on, which the line index may not
    /// show yet (a wake-up from the stream carries none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arrivals: Vec<Arrival>,
}

/// Anything on the join queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JoinQueueMessage {
    Joined(Arrival),
    Wake(WakeUp),
}

/// A message as received from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// How many times the queue has handed this message out, this time
    /// included (SQS's `ApproximateReceiveCount`; 1 when unknown).
    pub receive_count: u32,
}

/// SQS handed out a message without an id or receipt handle. It could be
/// neither reported as failed nor deleted, so every edge refuses the whole
/// batch that holds one (Lambda retries it; the local poller backs off)
/// rather than drop a message nobody can name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SQS message without an id or receipt handle")]
pub struct UnnamedMessage;

impl Delivery {
    /// A received message as SQS describes it, on either edge (a Lambda
    /// event's record or a `ReceiveMessage` answer).
    pub fn named(
        message_id: Option<&str>,
        receipt_handle: Option<&str>,
        body: Option<&str>,
        receive_count: Option<&str>,
    ) -> Result<Self, UnnamedMessage> {
        match (message_id, receipt_handle) {
            (Some(message_id), Some(receipt_handle)) => Ok(Self {
                message_id: message_id.to_owned(),
                receipt_handle: receipt_handle.to_owned(),
                body: body.unwrap_or_default().to_owned(),
                receive_count: Self::receive_count_of(receive_count),
            }),
            _ => Err(UnnamedMessage),
        }
    }

    /// SQS's `ApproximateReceiveCount` attribute; 1 when absent or unreadable.
    pub fn receive_count_of(attribute: Option<&str>) -> u32 {
        attribute
            .and_then(|count| count.parse().ok())
            .unwrap_or(1)
            .max(1)
    }
}

pub trait JoinQueue: Send + Sync {
    /// Send to the shard's message group, deduplicated by session id.
    fn send(&self, arrival: &Arrival) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Where the granter hands a failed wake-up so it is retried apart from
/// other events (the join queue, in the event's wake-up group).
pub trait WakeQueue: Send + Sync {
    fn wake(
        &self,
        event: &EventId,
        arrivals: &[Arrival],
        deduplication_id: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Brings received messages back sooner than the visibility timeout (SQS
/// `ChangeMessageVisibility`). A message given back for a passing failure
/// would otherwise stay invisible for the whole timeout, and in a FIFO queue
/// hold back every later message of its group with it.
pub trait Redelivery: Send + Sync {
    fn redeliver_after(
        &self,
        deliveries: &[Delivery],
        pause: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Where a checkout reports how an admitted fan's purchase ended (the
/// checkout-outcome queue); the demo origin uses it.
pub trait OutcomeSender: Send + Sync {
    /// Send one outcome message (`service::checkout` reads it).
    fn send_outcome(&self, body: &str) -> impl Future<Output = Result<(), QueueError>> + Send;
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
        events: &[crate::domain::events::DomainEvent],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Where what can never be processed goes, so it cannot block what follows
/// it (a dead-letter queue): unreadable join messages, unreadable stream
/// records.
pub trait Quarantine: Send + Sync {
    fn quarantine(
        &self,
        id: &str,
        body: &str,
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
/// services in tests, the simulator and the explorer.
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

    fn discard(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Discard, StoreError>> + Send {
        (**self).discard(session)
    }

    fn block(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).block(event, user)
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

    fn record_late_completion(
        &self,
        id: &SessionId,
        was: EndReason,
        ending: &Ending,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).record_late_completion(id, was, ending)
    }

    fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).extend_stay(id, from, to, now)
    }
}

impl<T: EventStore> EventStore for std::sync::Arc<T> {
    fn event_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> impl Future<Output = Result<EventCounters, StoreError>> + Send {
        (**self).event_counters(event, shard_count)
    }

    fn register_event(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> impl Future<Output = Result<EventCounters, StoreError>> + Send {
        (**self).register_event(event, default_capacity, shard_count)
    }

    fn list_event(&self, event: &EventId) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).list_event(event)
    }

    fn events(&self) -> impl Future<Output = Result<Vec<EventId>, StoreError>> + Send {
        (**self).events()
    }

    fn set_capacity(
        &self,
        event: &EventId,
        capacity: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_capacity(event, capacity)
    }

    fn set_event_state(
        &self,
        change: &StateChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).set_event_state(change)
    }

    fn configure_event(
        &self,
        event: &EventId,
        settings: &EventSettings,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).configure_event(event, settings)
    }
}

impl<T: LineStore> LineStore for std::sync::Arc<T> {
    fn waiting_among(
        &self,
        ids: &[SessionId],
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send {
        (**self).waiting_among(ids)
    }

    fn line_front(
        &self,
        event: &EventId,
        shard: u16,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send {
        (**self).line_front(event, shard, limit)
    }

    fn line_after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LineEntry>, StoreError>> + Send {
        (**self).line_after(event, shard, after, limit)
    }

    fn shard_head(
        &self,
        event: &EventId,
        shard: u16,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        (**self).shard_head(event, shard)
    }

    fn ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> impl Future<Output = Result<Vec<TicketCounter>, StoreError>> + Send {
        (**self).ticket_counters(event, shards)
    }

    fn number_sessions(
        &self,
        plan: &NumberingPlan,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send {
        (**self).number_sessions(plan)
    }

    fn admit(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send {
        (**self).admit(plan, retain_until)
    }

    fn update_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).update_backlog(event, change)
    }
}

impl<T: ExpiryStore> ExpiryStore for std::sync::Arc<T> {
    fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SessionId>, StoreError>> + Send {
        (**self).overdue_sessions(bucket, now, limit)
    }

    fn expire_overdue(
        &self,
        event: &EventId,
        ids: &[SessionId],
        now: Timestamp,
        retain_until: Timestamp,
    ) -> impl Future<Output = Result<Expiry, StoreError>> + Send {
        (**self).expire_overdue(event, ids, now, retain_until)
    }
}

impl<T: JoinQueue> JoinQueue for std::sync::Arc<T> {
    fn send(&self, arrival: &Arrival) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(arrival)
    }
}

impl<T: Redelivery> Redelivery for std::sync::Arc<T> {
    fn redeliver_after(
        &self,
        deliveries: &[Delivery],
        pause: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).redeliver_after(deliveries, pause)
    }
}

impl<T: WakeQueue> WakeQueue for std::sync::Arc<T> {
    fn wake(
        &self,
        event: &EventId,
        arrivals: &[Arrival],
        deduplication_id: &str,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).wake(event, arrivals, deduplication_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receive_count_is_read_from_its_attribute() {
        assert_eq!(Delivery::receive_count_of(Some("3")), 3);
        assert_eq!(Delivery::receive_count_of(Some("0")), 1);
        assert_eq!(Delivery::receive_count_of(Some("many")), 1);
        assert_eq!(Delivery::receive_count_of(None), 1);
    }

    #[test]
    fn a_message_sqs_did_not_name_is_refused() {
        let named = Delivery::named(Some("m-1"), Some("r-1"), None, Some("2")).unwrap();
        assert_eq!(
            named,
            Delivery {
                message_id: "m-1".into(),
                receipt_handle: "r-1".into(),
                body: String::new(),
                receive_count: 2,
            }
        );
        assert_eq!(
            Delivery::named(None, Some("r-1"), Some("{}"), None),
            Err(UnnamedMessage)
        );
        assert_eq!(
            Delivery::named(Some("m-1"), None, Some("{}"), None),
            Err(UnnamedMessage)
        );
    }
}
