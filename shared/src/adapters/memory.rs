//! In-memory adapters with the same contract as DynamoDB and SQS, and the
//! behaviours of AWS the emulator does not have: every store operation is
//! atomic and checks the same conditions; indexes can lag behind the table;
//! ended items carry a TTL after which they may vanish at any moment; every
//! write goes to a stream; the queue has visibility timeouts, redelivery,
//! receive counts and a dead-letter queue. For unit tests, the simulator and
//! the schedule explorer; the emulator tests prove the real adapters.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::admission::{AdmissionPlan, Arm, BacklogChange, NumberingPlan};
use crate::domain::events::DomainEvent;
use crate::domain::line::{Place, wake_group_id};
use crate::domain::session::expiry_bucket;
use crate::domain::{
    Admission, Change, Clock, EndReason, Ending, EventCounters, EventId, EventState, KeyDigest,
    LineEntry, Session, SessionId, SessionStatus, StateChange, StreamRecord, TicketCounter,
    Timestamp, UserId,
};
use crate::ports::{
    Arrival, Claim, Delivery, Discard, EndFrom, EndOutcome, EventSettings, EventSink, EventStore,
    Expiry, ExpiryStore, JoinQueue, JoinQueueMessage, LineStore, OutcomeSender, PuzzleLedger,
    Quarantine, QueueConsumer, QueueError, Redelivery, SessionStore, StoreError, Touch, WakeQueue,
    WakeUp, WriteOutcome,
};

/// How the in-memory store tells time and how far its indexes lag: the
/// explorer's world decides both. Without one, indexes are current at once.
pub trait StoreModel: Send + Sync {
    fn now(&self) -> Timestamp;
    /// How long until a change just made shows in an index.
    fn index_lag(&self) -> Duration;
}

type IndexChange<I, K, V> = (I, Option<(K, V)>);

/// An index that shows each item's changes in order, each after a delay.
#[derive(Debug)]
struct Lagged<I: Ord + Clone, K: Ord + Clone, V: Clone> {
    visible: BTreeMap<K, V>,
    key_of: BTreeMap<I, K>,
    /// Changes not yet shown, by when they show: (item, its new key and value, or none if removed).
    pending: BTreeMap<(Timestamp, u64), IndexChange<I, K, V>>,
    last_due: BTreeMap<I, Timestamp>,
    seq: u64,
}

impl<I: Ord + Clone, K: Ord + Clone, V: Clone> Default for Lagged<I, K, V> {
    fn default() -> Self {
        Self {
            visible: BTreeMap::new(),
            key_of: BTreeMap::new(),
            pending: BTreeMap::new(),
            last_due: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<I: Ord + Clone, K: Ord + Clone, V: Clone> Lagged<I, K, V> {
    /// The item's index entry becomes `value` at `due` (never before an
    /// earlier change of the same item: indexes apply them in order).
    fn set(&mut self, item: I, value: Option<(K, V)>, due: Option<Timestamp>) {
        let Some(due) = due else {
            self.apply(item, value);
            return;
        };
        let due = self.last_due.get(&item).map_or(due, |last| due.max(*last));
        self.last_due.insert(item.clone(), due);
        self.seq += 1;
        self.pending.insert((due, self.seq), (item, value));
    }

    fn apply(&mut self, item: I, value: Option<(K, V)>) {
        if let Some(old) = self.key_of.remove(&item) {
            self.visible.remove(&old);
        }
        if let Some((key, v)) = value {
            self.key_of.insert(item, key.clone());
            self.visible.insert(key, v);
        }
    }

    fn catch_up(&mut self, now: Option<Timestamp>) {
        let Some(now) = now else { return };
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (item, value) = entry.remove();
            self.apply(item, value);
        }
    }

    fn settled(&self) -> bool {
        self.pending.is_empty()
    }
}

#[derive(Debug, Clone)]
struct StoredSession {
    session: Session,
    /// When DynamoDB's TTL may delete it (ended sessions only).
    ttl: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct StoredClaim {
    /// The session that holds it; none on a claim made only to block.
    session_id: Option<SessionId>,
    /// When DynamoDB's TTL may delete it; never for a blocked user's.
    ttl: Option<Timestamp>,
    blocked: bool,
}

type LineKey = (EventId, u16, Place);
/// Bucket, end of stay, session id (as text, so a range can start at "").
type ExpiryKey = (u16, Timestamp, String);

#[derive(Default)]
struct Tables {
    sessions: BTreeMap<SessionId, StoredSession>,
    claims: BTreeMap<(EventId, UserId), StoredClaim>,
    events: BTreeMap<EventId, EventCounters>,
    tickets: BTreeMap<(EventId, u16), TicketCounter>,
    /// Mirrors of `EventCounters::heads`, one item per shard, for polls.
    heads: BTreeMap<(EventId, u16), u64>,
    line_index: Lagged<SessionId, LineKey, LineEntry>,
    expiry_index: Lagged<SessionId, ExpiryKey, SessionId>,
    event_index: Lagged<EventId, EventId, ()>,
    /// Events whose item carries the listing attribute (at once; the index
    /// above shows them after its lag).
    listed: BTreeSet<EventId>,
    /// Events a join listed: they can no longer be scheduled.
    took_joins: BTreeSet<EventId>,
    /// Spent puzzle solutions, by the key of the join that spent each
    /// (kept: a stale one is refused anyway).
    puzzles: BTreeMap<[u8; 32], KeyDigest>,
    stream: Vec<StreamRecord>,
}

/// The store ports in a mutex. `fail_next` makes calls fail as if the
/// store were unreachable, to test recovery.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    model: Option<Arc<dyn StoreModel>>,
    successes_before_failure: AtomicUsize,
    failures_left: AtomicUsize,
    joins_to_unconfirm: AtomicUsize,
    admits_to_contend: AtomicUsize,
    /// A broken store for the explorer's checks: admissions ignore a pause.
    pause_ignored: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose indexes lag and whose TTL runs on `model`'s time.
    pub fn modelled(model: Arc<dyn StoreModel>) -> Self {
        Self {
            model: Some(model),
            ..Self::default()
        }
    }

    /// The next `calls` store calls fail with `Unavailable`.
    pub fn fail_next(&self, calls: usize) {
        self.fail_after(0, calls);
    }

    /// Break the store on purpose: admissions no longer check the pause.
    #[cfg(any(test, feature = "test-support"))]
    pub fn ignore_pause_for_tests(&self) {
        self.pause_ignored.store(true, Ordering::SeqCst);
    }

    /// The next `successes` calls work, then `failures` calls fail.
    pub fn fail_after(&self, successes: usize, failures: usize) {
        self.successes_before_failure
            .store(successes, Ordering::SeqCst);
        self.failures_left.store(failures, Ordering::SeqCst);
    }

    /// The next `admits` admitting writes are refused as DynamoDB refuses a
    /// transaction on items another has in flight (`TransactionConflict`).
    pub fn contend_next_admits(&self, admits: usize) {
        self.admits_to_contend.store(admits, Ordering::SeqCst);
    }

    /// The next `joins` session writes are applied and then answered with
    /// `Unavailable`, as a timeout after the write landed would be.
    pub fn lose_next_join_answers(&self, joins: usize) {
        self.joins_to_unconfirm.store(joins, Ordering::SeqCst);
    }

    pub fn all_sessions(&self) -> Vec<Session> {
        self.with(|t| t.sessions.values().map(|s| s.session.clone()).collect())
    }

    /// Every event's counters as stored.
    pub fn all_counters(&self) -> Vec<(EventId, EventCounters)> {
        self.with(|t| {
            t.events
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// Stream records from `from` on (a reader's position), and the next
    /// position.
    pub fn stream_since(&self, from: usize) -> (Vec<StreamRecord>, usize) {
        self.with(|t| {
            let records = t.stream.get(from..).map(<[_]>::to_vec).unwrap_or_default();
            (records, t.stream.len())
        })
    }

    /// TTL at work: deletes ended sessions and claims whose time has come
    /// (`pick` chooses which of them go now). Returns how many went.
    pub fn delete_expired(&self, now: Timestamp, mut pick: impl FnMut() -> bool) -> usize {
        self.with(|t| {
            let sessions: Vec<SessionId> = t
                .sessions
                .iter()
                .filter(|(_, s)| s.ttl.is_some_and(|ttl| ttl <= now))
                .map(|(id, _)| id.clone())
                .collect();
            let mut deleted = 0;
            for id in sessions {
                if pick() {
                    if let Some(old) = t.sessions.remove(&id) {
                        push(
                            t,
                            Change::Session {
                                old: Some(Box::new(old.session)),
                                new: None,
                            },
                        );
                        deleted += 1;
                    }
                }
            }
            let claims: Vec<(EventId, UserId)> = t
                .claims
                .iter()
                .filter(|(_, c)| c.ttl.is_some_and(|ttl| ttl <= now))
                .map(|(k, _)| k.clone())
                .collect();
            for key in claims {
                if pick() {
                    t.claims.remove(&key);
                    push(t, Change::Other);
                    deleted += 1;
                }
            }
            deleted
        })
    }

    /// True when every index shows every change made so far.
    pub fn indexes_settled(&self) -> bool {
        self.with(|t| t.line_index.settled() && t.expiry_index.settled() && t.event_index.settled())
    }

    /// Test-only breakage: move an event's `active` counter by `by`, as a
    /// slot given back twice would (the explorer's fault switches).
    #[cfg(any(test, feature = "test-support"))]
    pub fn set_active_for_tests(&self, event: &EventId, by: i64) {
        self.with(|t| {
            let mut counters = t.events.get(event).cloned().unwrap_or_default();
            counters.active = counters.active.saturating_add_signed(by);
            self.put_counters(t, event, counters);
        });
    }

    /// Test-only breakage: apply an admission without the sessions'
    /// conditions (a redelivery admitting again).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn admit_ignoring_status_for_tests(
        &self,
        plan: &AdmissionPlan,
        _retain_until: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        Ok(self.with(|t| {
            let before = t.events.get(&plan.event_id).cloned().unwrap_or_default();
            let after = plan.counters_after(&before);
            for admit in &plan.admitted {
                if let Some(stored) = t.sessions.get(&admit.session_id).cloned() {
                    let mut session = stored.session;
                    session.stage = crate::domain::Stage::Active(Admission {
                        admitted_at: plan.now,
                        admission_no: admit.admission_no,
                        expires_at: admit.expires_at,
                    });
                    self.put_session(t, session, None);
                }
            }
            self.put_counters(t, &plan.event_id, after);
            WriteOutcome::Applied
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let mut guard = match self.tables.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = self.model.as_ref().map(|m| m.now());
        guard.line_index.catch_up(now);
        guard.expiry_index.catch_up(now);
        guard.event_index.catch_up(now);
        f(&mut guard)
    }

    /// When a change made now shows in the indexes (`None`: at once).
    fn due(&self) -> Option<Timestamp> {
        self.model.as_ref().map(|m| m.now().plus(m.index_lag()))
    }

    fn check_fault(&self) -> Result<(), StoreError> {
        let take = |counter: &AtomicUsize| {
            counter
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        if take(&self.successes_before_failure) {
            return Ok(());
        }
        if take(&self.failures_left) {
            return Err(StoreError::Unavailable("injected fault".into()));
        }
        Ok(())
    }

    /// Writes a session and keeps the indexes and the stream in step.
    fn put_session(&self, t: &mut Tables, session: Session, ttl: Option<Timestamp>) {
        let old = t.sessions.get(&session.id).map(|s| s.session.clone());
        let due = self.due();
        let line = (session.status() == SessionStatus::Waiting).then(|| {
            (
                (session.event_id.clone(), session.shard, session.place()),
                entry_of(&session),
            )
        });
        t.line_index.set(session.id.clone(), line, due);
        let expiry = session.expires_at().map(|at| {
            (
                (expiry_bucket(&session.id), at, session.id.to_string()),
                session.id.clone(),
            )
        });
        t.expiry_index.set(session.id.clone(), expiry, due);
        t.sessions.insert(
            session.id.clone(),
            StoredSession {
                session: session.clone(),
                ttl,
            },
        );
        push(
            t,
            Change::Session {
                old: old.map(Box::new),
                new: Some(Box::new(session)),
            },
        );
    }

    fn put_counters(&self, t: &mut Tables, event: &EventId, after: EventCounters) {
        let before = t.events.get(event).cloned().unwrap_or_default();
        for (shard, head) in after.heads.iter().enumerate() {
            let Ok(shard) = u16::try_from(shard) else {
                continue;
            };
            if before.head(shard) != *head {
                t.heads.insert((event.clone(), shard), *head);
                push(t, Change::Other);
            }
        }
        t.events.insert(event.clone(), after.clone());
        push(
            t,
            Change::Counters {
                event_id: event.clone(),
                before: Box::new(before),
                after: Box::new(after),
            },
        );
    }
}

fn push(t: &mut Tables, change: Change) {
    let id = format!("{:020}", t.stream.len());
    t.stream.push(StreamRecord {
        id,
        change: Ok(change),
        written_at: None,
    });
}

fn entry_of(session: &Session) -> LineEntry {
    session.line_entry()
}

fn claim_key(session: &Session) -> (EventId, UserId) {
    (session.event_id.clone(), session.user_id.clone())
}

/// What DynamoDB's end update writes once its condition held: a live
/// session ends (its admission kept); an ended one (a late purchase) takes
/// the new ending.
fn end(session: &mut Session, ending: &Ending) {
    if session.end(ending.clone()).is_err() {
        // Already ended: the other transition applies, and cannot fail.
        let _ = session.record_late_ending(ending.clone());
    }
}

fn counters_of(t: &Tables, event: &EventId, shard_count: u16) -> EventCounters {
    let mut counters = t.events.get(event).cloned().unwrap_or_default();
    counters.listed = t.listed.contains(event);
    counters.heads.resize(usize::from(shard_count.max(1)), 0);
    counters
}

fn bump_end_counter(counters: &mut EventCounters, reason: EndReason, by: i64) {
    let counter = match reason.final_status() {
        SessionStatus::Left => &mut counters.left,
        SessionStatus::Completed => &mut counters.completed,
        SessionStatus::Failed => &mut counters.failed,
        _ => &mut counters.expired,
    };
    *counter = counter.saturating_add_signed(by);
}

impl PuzzleLedger for MemoryStore {
    async fn spend(
        &self,
        digest: &[u8; 32],
        key: &KeyDigest,
        _until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| t.puzzles.entry(*digest).or_insert_with(|| key.clone()) == key))
    }
}

impl SessionStore for MemoryStore {
    async fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.check_fault()?;
        let claim = self.with(|t| {
            let key = claim_key(session);
            match (t.claims.get(&key), replacing) {
                (Some(claim), _) if claim.blocked => return Ok(Claim::Blocked),
                (Some(holder), _) if holder.session_id.as_ref() == Some(&session.id) => {
                    return Ok(Claim::Created);
                }
                (Some(holder), None) => {
                    return Ok(holder
                        .session_id
                        .clone()
                        .map_or(Claim::Vacant, Claim::HeldBy));
                }
                (Some(holder), Some(old)) if holder.session_id.as_ref() != Some(old) => {
                    return Ok(holder
                        .session_id
                        .clone()
                        .map_or(Claim::Vacant, Claim::HeldBy));
                }
                (None, Some(_)) => return Ok(Claim::Vacant),
                _ => {}
            }
            if t.sessions.contains_key(&session.id) {
                return Err(StoreError::Rejected("session id collision".into()));
            }
            t.claims.insert(
                key,
                StoredClaim {
                    session_id: Some(session.id.clone()),
                    ttl: Some(claim_ttl),
                    blocked: false,
                },
            );
            push(t, Change::Other);
            self.put_session(t, session.clone(), None);
            Ok(Claim::Created)
        })?;
        let lose_answer = claim == Claim::Created
            && self
                .joins_to_unconfirm
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if lose_answer {
            return Err(StoreError::Unavailable("the answer was lost".into()));
        }
        Ok(claim)
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| t.sessions.get(id).map(|s| s.session.clone())))
    }

    async fn discard(&self, session: &Session) -> Result<Discard, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            if let Some(stored) = t.sessions.get(&session.id) {
                if stored.session.status() != SessionStatus::Waiting {
                    return Discard::NoLongerWaiting;
                }
            }
            if let Some(old) = t.sessions.remove(&session.id) {
                t.line_index.set(session.id.clone(), None, self.due());
                push(
                    t,
                    Change::Session {
                        old: Some(Box::new(old.session)),
                        new: None,
                    },
                );
            }
            let key = claim_key(session);
            if t.claims
                .get(&key)
                .is_some_and(|c| c.session_id.as_ref() == Some(&session.id))
            {
                t.claims.remove(&key);
                push(t, Change::Other);
            }
            Discard::Discarded
        }))
    }

    async fn block(&self, event: &EventId, user: &UserId) -> Result<(), StoreError> {
        self.check_fault()?;
        self.with(|t| {
            let claim = t
                .claims
                .entry((event.clone(), user.clone()))
                .or_insert(StoredClaim {
                    session_id: None,
                    ttl: None,
                    blocked: false,
                });
            claim.blocked = true;
            claim.ttl = None;
            push(t, Change::Other);
        });
        Ok(())
    }

    async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Touch, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let Some(stored) = t.sessions.get(id).cloned() else {
                return Touch::NotFound;
            };
            if stored.session.status().is_ended() {
                return Touch::Ended(stored.session);
            }
            let mut session = stored.session;
            session.last_seen_at = now;
            self.put_session(t, session.clone(), stored.ttl);
            Touch::Touched(session)
        }))
    }

    async fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> Result<EndOutcome, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let Some(stored) = t.sessions.get(id).cloned() else {
                return EndOutcome::NotAsExpected(None);
            };
            let expected = match from {
                EndFrom::ActiveOverdue { at } => {
                    stored.session.expires_at().is_some_and(|end| end <= at)
                }
                other => EndFrom::of(&stored.session) == Some(other),
            };
            if !expected {
                return EndOutcome::NotAsExpected(Some(Box::new(stored.session)));
            }
            let mut session = stored.session;
            let event = session.event_id.clone();
            let shard = session.shard;
            end(&mut session, ending);
            self.put_session(t, session, Some(retain_until));
            match from {
                EndFrom::Active | EndFrom::ActiveOverdue { .. } => {
                    let mut counters = t.events.get(&event).cloned().unwrap_or_default();
                    counters.active = counters.active.saturating_sub(1);
                    bump_end_counter(&mut counters, ending.reason, 1);
                    self.put_counters(t, &event, counters);
                }
                EndFrom::Waiting { .. } => {
                    let counter = t
                        .tickets
                        .entry((event, shard))
                        .or_insert_with(|| TicketCounter::empty(shard));
                    counter.stored = true;
                    counter.left_waiting += 1;
                    push(t, Change::Other);
                }
            }
            EndOutcome::Ended
        }))
    }

    async fn record_late_completion(
        &self,
        id: &SessionId,
        was: EndReason,
        ending: &Ending,
    ) -> Result<bool, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let Some(stored) = t.sessions.get(id).cloned() else {
                return false;
            };
            let session = &stored.session;
            let as_expected =
                session.admission().is_some() && session.ending().is_some_and(|e| e.reason == was);
            if !as_expected {
                return false;
            }
            let mut session = stored.session;
            let event = session.event_id.clone();
            end(&mut session, ending);
            self.put_session(t, session, stored.ttl);
            let mut counters = t.events.get(&event).cloned().unwrap_or_default();
            bump_end_counter(&mut counters, was, -1);
            bump_end_counter(&mut counters, ending.reason, 1);
            self.put_counters(t, &event, counters);
            true
        }))
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let Some(stored) = t.sessions.get(id).cloned() else {
                return false;
            };
            if stored.session.expires_at() != Some(from) || from <= now {
                return false;
            }
            let mut session = stored.session;
            if session.extend_stay(to).is_err() {
                return false;
            }
            self.put_session(t, session, stored.ttl);
            true
        }))
    }
}

impl EventStore for MemoryStore {
    async fn event_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| counters_of(t, event, shard_count)))
    }

    async fn register_event(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let mut counters = t.events.get(event).cloned().unwrap_or_default();
            if counters.capacity.is_none() {
                counters.capacity = Some(default_capacity);
                self.put_counters(t, event, counters);
            }
            t.event_index
                .set(event.clone(), Some((event.clone(), ())), self.due());
            t.listed.insert(event.clone());
            counters_of(t, event, shard_count)
        }))
    }

    async fn list_event(&self, event: &EventId) -> Result<(), StoreError> {
        self.check_fault()?;
        self.with(|t| {
            t.event_index
                .set(event.clone(), Some((event.clone(), ())), self.due());
            t.listed.insert(event.clone());
            t.took_joins.insert(event.clone());
            push(t, Change::Other);
        });
        Ok(())
    }

    async fn events(&self) -> Result<Vec<EventId>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| t.event_index.visible.keys().cloned().collect()))
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        self.check_fault()?;
        self.with(|t| {
            let mut counters = t.events.get(event).cloned().unwrap_or_default();
            counters.capacity = Some(capacity);
            self.put_counters(t, event, counters);
            t.event_index
                .set(event.clone(), Some((event.clone(), ())), self.due());
            t.listed.insert(event.clone());
        });
        Ok(())
    }

    async fn set_event_state(&self, change: &StateChange) -> Result<bool, StoreError> {
        self.check_fault()?;
        let event = &change.event_id;
        Ok(self.with(|t| {
            let mut counters = t.events.get(event).cloned().unwrap_or_default();
            if counters.state != change.from {
                return false;
            }
            let time_moved = match (change.on_time, change.to) {
                (true, EventState::Open) => counters.opens_at != Some(change.at),
                (true, EventState::Closed) => counters.closes_at != Some(change.at),
                _ => false,
            };
            if time_moved {
                return false;
            }
            if change.to == EventState::Scheduled {
                let opened_or_joined = t.took_joins.contains(event) || counters.draw_seed.is_some();
                if change.from == EventState::Open && opened_or_joined {
                    return false;
                }
                counters.draw_seed = counters.draw_seed.or(change.seed);
            }
            counters.state = change.to;
            counters.state_changed_at = Some(change.at);
            counters.opens_at = change.opens_at.or(counters.opens_at);
            counters.admits_from = change.admits_from.or(counters.admits_from);
            if change.arms() {
                counters.backlog =
                    BacklogChange::Arm(Arm::from_snapshot(&counters)).applied_to(counters.backlog);
            }
            self.put_counters(t, event, counters);
            let mut record = change.clone();
            if change.to != EventState::Open {
                // The seed is published at the opening only.
                record.seed = None;
            }
            push(t, Change::StateChanged(record));
            t.event_index
                .set(event.clone(), Some((event.clone(), ())), self.due());
            t.listed.insert(event.clone());
            true
        }))
    }

    async fn configure_event(
        &self,
        event: &EventId,
        settings: &EventSettings,
    ) -> Result<(), StoreError> {
        self.check_fault()?;
        self.with(|t| {
            let mut counters = t.events.get(event).cloned().unwrap_or_default();
            if let Some(closes_at) = settings.closes_at {
                counters.closes_at = closes_at;
            }
            if let Some(origin_url) = &settings.origin_url {
                counters.origin_url = origin_url.clone();
            }
            if let Some(stay) = settings.stay {
                counters.stay = stay;
            }
            if let Some(max_stay) = settings.max_stay {
                counters.max_stay = max_stay;
            }
            if let Some(abandon_after) = settings.abandon_after {
                counters.abandon_after = abandon_after;
            }
            if let Some(signed) = settings.signed_joins {
                counters.signed_joins = signed;
            }
            if let Some(bits) = settings.puzzle_difficulty {
                counters.puzzle_difficulty = bits;
            }
            self.put_counters(t, event, counters);
            t.event_index
                .set(event.clone(), Some((event.clone(), ())), self.due());
            t.listed.insert(event.clone());
        });
        Ok(())
    }
}

impl LineStore for MemoryStore {
    async fn waiting_among(&self, ids: &[SessionId]) -> Result<Vec<LineEntry>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            ids.iter()
                .filter_map(|id| t.sessions.get(id))
                .filter(|s| s.session.status() == SessionStatus::Waiting)
                .map(|s| entry_of(&s.session))
                .collect()
        }))
    }

    async fn line_front(
        &self,
        event: &EventId,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            t.line_index
                .visible
                .iter()
                .skip_while(|((e, s, _), _)| (e, *s) < (event, shard))
                .take_while(|((e, s, _), _)| e == event && *s == shard)
                .take(limit)
                .map(|(_, entry)| entry.clone())
                .collect()
        }))
    }

    async fn line_after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        self.check_fault()?;
        let from = (event.clone(), shard, after.clone());
        Ok(self.with(|t| {
            t.line_index
                .visible
                .range((std::ops::Bound::Excluded(from), std::ops::Bound::Unbounded))
                .take_while(|((e, s, _), _)| e == event && *s == shard)
                .take(limit)
                .map(|(_, entry)| entry.clone())
                .collect()
        }))
    }

    async fn shard_head(&self, event: &EventId, shard: u16) -> Result<u64, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| t.heads.get(&(event.clone(), shard)).copied().unwrap_or(0)))
    }

    async fn ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> Result<Vec<TicketCounter>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            shards
                .iter()
                .map(|&shard| {
                    t.tickets
                        .get(&(event.clone(), shard))
                        .cloned()
                        .unwrap_or_else(|| TicketCounter::empty(shard))
                })
                .collect()
        }))
    }

    async fn number_sessions(&self, plan: &NumberingPlan) -> Result<WriteOutcome, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let rejected: Vec<SessionId> = plan
                .tickets
                .iter()
                .filter(|n| {
                    t.sessions
                        .get(&n.session_id)
                        .is_none_or(|s| s.session.ticket.is_some())
                })
                .map(|n| n.session_id.clone())
                .collect();
            if !rejected.is_empty() {
                return WriteOutcome::Conflict { rejected };
            }
            let key = (plan.event_id.clone(), plan.shard);
            let next_now = t.tickets.get(&key).map_or(0, |c| c.next_ticket);
            if next_now != plan.counter_seen.next_ticket {
                return WriteOutcome::Conflict { rejected: vec![] };
            }
            let counter = t
                .tickets
                .entry(key)
                .or_insert_with(|| TicketCounter::empty(plan.shard));
            counter.stored = true;
            counter.next_ticket = plan.next_ticket();
            counter.drawn |= plan.completes_draw;
            if let Some(cursor) = &plan.draw_cursor {
                counter.drawn_through = Some(cursor.clone());
            }
            push(t, Change::Other);
            for numbered in &plan.tickets {
                if let Some(stored) = t.sessions.get(&numbered.session_id).cloned() {
                    let mut session = stored.session;
                    session.ticket = Some(numbered.ticket);
                    session.ahead_at_filing = Some(numbered.ahead);
                    self.put_session(t, session, stored.ttl);
                }
            }
            WriteOutcome::Applied
        }))
    }

    async fn admit(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.check_fault()?;
        if self
            .admits_to_contend
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Contention(
                "injected transaction conflict".into(),
            ));
        }
        Ok(self.with(|t| {
            let waiting = |id: &SessionId| {
                t.sessions
                    .get(id)
                    .is_some_and(|s| s.session.status() == SessionStatus::Waiting)
            };
            let mut rejected: Vec<SessionId> = plan
                .admitted
                .iter()
                .map(|a| &a.session_id)
                .filter(|id| !waiting(id))
                .cloned()
                .collect();
            rejected.extend(
                plan.abandoned
                    .iter()
                    .filter(|a| {
                        !waiting(&a.session_id)
                            || t.sessions
                                .get(&a.session_id)
                                .is_some_and(|s| s.session.last_seen_at > a.silent_since)
                    })
                    .map(|a| a.session_id.clone()),
            );
            if !rejected.is_empty() {
                return WriteOutcome::Conflict { rejected };
            }
            let before = t.events.get(&plan.event_id).cloned().unwrap_or_default();
            let mut seen = before.clone();
            if self.pause_ignored.load(Ordering::SeqCst) {
                seen.state = EventState::Open;
            }
            if !counters_allow(&seen, plan) {
                return WriteOutcome::Conflict { rejected: vec![] };
            }
            let after = plan.counters_after(&before);
            for admit in &plan.admitted {
                if let Some(stored) = t.sessions.get(&admit.session_id).cloned() {
                    let mut session = stored.session;
                    // Every admitted one was found waiting above.
                    let admitted = session.admit(Admission {
                        admitted_at: plan.now,
                        admission_no: admit.admission_no,
                        expires_at: admit.expires_at,
                    });
                    if admitted.is_ok() {
                        self.put_session(t, session, None);
                    }
                }
            }
            for abandon in &plan.abandoned {
                if let Some(stored) = t.sessions.get(&abandon.session_id).cloned() {
                    let mut session = stored.session;
                    end(&mut session, &Ending::new(EndReason::Abandoned, plan.now));
                    self.put_session(t, session, Some(retain_until));
                }
            }
            self.put_counters(t, &plan.event_id, after);
            WriteOutcome::Applied
        }))
    }

    async fn update_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> Result<bool, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let before = t.events.get(event).cloned().unwrap_or_default();
            if !backlog_condition(&before, change) {
                return false;
            }
            let mut after = before.clone();
            after.backlog = change.applied_to(before.backlog);
            self.put_counters(t, event, after);
            true
        }))
    }
}

impl ExpiryStore for MemoryStore {
    async fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let from = (bucket, Timestamp::from_millis(0), String::new());
            t.expiry_index
                .visible
                .range(from..)
                .take_while(|((b, at, _), _)| *b == bucket && *at <= now)
                .take(limit)
                .map(|(_, id)| id.clone())
                .collect()
        }))
    }

    async fn expire_overdue(
        &self,
        event: &EventId,
        ids: &[SessionId],
        now: Timestamp,
        retain_until: Timestamp,
    ) -> Result<Expiry, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let mut expiry = Expiry::default();
            for id in ids {
                let overdue = t.sessions.get(id).is_some_and(|s| {
                    &s.session.event_id == event
                        && s.session.expires_at().is_some_and(|end| end <= now)
                });
                if overdue {
                    expiry.expired.push(id.clone());
                } else {
                    expiry.skipped.push(id.clone());
                }
            }
            if !expiry.skipped.is_empty() {
                // DynamoDB cancels the whole transaction; the caller retries
                // with the rest.
                return Expiry {
                    expired: Vec::new(),
                    skipped: expiry.skipped,
                };
            }
            let ending = Ending::new(EndReason::Expired, now);
            for id in &expiry.expired {
                if let Some(stored) = t.sessions.get(id).cloned() {
                    let mut session = stored.session;
                    end(&mut session, &ending);
                    self.put_session(t, session, Some(retain_until));
                }
            }
            if !expiry.expired.is_empty() {
                let mut counters = t.events.get(event).cloned().unwrap_or_default();
                let count = expiry.expired.len() as u64;
                counters.active = counters.active.saturating_sub(count);
                counters.expired += count;
                self.put_counters(t, event, counters);
            }
            expiry
        }))
    }
}

/// The conditions the DynamoDB adapter puts on the event item.
fn counters_allow(now: &EventCounters, plan: &AdmissionPlan) -> bool {
    let admitting = plan.counters.as_ref().is_none_or(|expect| {
        let slots = expect.slots.is_none_or(|slots| {
            now.capacity == Some(slots.capacity)
                && now.active <= slots.active_at_most
                && now.state.admits()
        });
        slots && now.admitted == expect.admitted_seen && now.abandoned == expect.abandoned_seen
    });
    let hint = plan
        .arm
        .is_none_or(|arm| backlog_condition(now, BacklogChange::Arm(arm)));
    admitting && hint
}

fn backlog_condition(now: &EventCounters, change: BacklogChange) -> bool {
    match change {
        BacklogChange::Arm(arm) => {
            now.active >= arm.active_seen
                && now.capacity == arm.capacity_seen
                && match arm.held_seen {
                    Some(state) => now.state == state,
                    None => now.state.admits(),
                }
        }
        BacklogChange::MarkEmpty { .. } => now.backlog.armed && now.backlog.empty_since.is_none(),
        BacklogChange::Clear { marked_at } => now.backlog.empty_since == Some(marked_at),
    }
}

/// How SQS FIFO behaves, for the in-memory queue. The default is the join
/// queue as provisioned.
#[derive(Debug, Clone)]
pub struct QueueBehaviour {
    pub visibility_timeout: Duration,
    /// Receives after which a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    pub deduplication_window: Duration,
}

impl Default for QueueBehaviour {
    fn default() -> Self {
        Self {
            visibility_timeout: super::provision::JOIN_VISIBILITY_TIMEOUT,
            max_receive_count: super::provision::JOIN_MAX_RECEIVE_COUNT,
            deduplication_window: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone)]
struct QueuedMessage {
    id: String,
    group: String,
    body: String,
    receives: u32,
    /// Invisible until then (in flight); `None` when visible.
    hidden_until: Option<Timestamp>,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct QueueState {
    messages: VecDeque<QueuedMessage>,
    dead_letters: Vec<String>,
    /// Deduplication ids (per message group) and when they were sent.
    sent: BTreeMap<(String, String), Timestamp>,
    next_id: u64,
}

/// An SQS FIFO queue in memory: per-group order, a group blocked while any
/// of its messages is in flight, deduplication by id within a window,
/// redelivery after the visibility timeout, and the dead-letter queue after
/// `max_receive_count` receives. Time comes from `clock`; without one, a
/// message in flight comes back only through `expire_in_flight`.
#[derive(Default)]
pub struct MemoryQueue {
    state: Mutex<QueueState>,
    clock: Option<Arc<dyn Clock>>,
    behaviour: QueueBehaviour,
    failures_left: AtomicUsize,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue").finish_non_exhaustive()
    }
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn timed(clock: Arc<dyn Clock>, behaviour: QueueBehaviour) -> Self {
        Self {
            clock: Some(clock),
            behaviour,
            ..Self::default()
        }
    }

    pub fn fail_next(&self, calls: usize) {
        self.failures_left.store(calls, Ordering::SeqCst);
    }

    fn now(&self) -> Timestamp {
        self.clock
            .as_ref()
            .map_or(Timestamp::from_millis(0), |c| c.now())
    }

    /// Puts every in-flight message back, as a visibility timeout would.
    pub fn expire_in_flight(&self) {
        self.with(|q| {
            for message in &mut q.messages {
                message.hidden_until = None;
                message.receipt = None;
            }
        });
    }

    /// Messages a receive could return now (group blocking aside).
    pub fn visible_len(&self) -> usize {
        let now = self.now();
        let timed = self.clock.is_some();
        self.with(|q| {
            q.messages
                .iter()
                .filter(|m| m.hidden_until.is_none_or(|until| timed && until <= now))
                .count()
        })
    }

    /// Messages not yet deleted, visible or in flight.
    pub fn depth(&self) -> usize {
        self.with(|q| q.messages.len())
    }

    /// Every join queue message not yet deleted (deduplicated sends
    /// excluded).
    pub fn pending(&self) -> Vec<JoinQueueMessage> {
        self.with(|q| {
            q.messages
                .iter()
                .filter_map(|m| serde_json::from_str(&m.body).ok())
                .collect()
        })
    }

    /// The bodies the dead-letter queue holds.
    pub fn dead_letters(&self) -> Vec<String> {
        self.with(|q| q.dead_letters.clone())
    }

    /// Sends a body as is, each in a group of its own (a standard queue:
    /// the checkout outcomes).
    pub fn send_raw(&self, body: String) {
        self.with(|q| {
            let group = format!("raw-{}", q.next_id);
            enqueue(q, group, body);
        });
    }

    /// The join messages sent so far and not yet deleted.
    pub fn sent(&self) -> Vec<Arrival> {
        self.pending()
            .into_iter()
            .filter_map(|m| match m {
                JoinQueueMessage::Joined(arrival) => Some(arrival),
                JoinQueueMessage::Wake(_) => None,
            })
            .collect()
    }

    /// Adds a message bypassing deduplication, as a redelivery after the
    /// five-minute window or a producer bug would.
    pub fn push_duplicate(&self, arrival: Arrival) {
        let group = group_of_arrival(&arrival);
        let body = serde_json::to_string(&JoinQueueMessage::Joined(arrival)).unwrap_or_default();
        self.with(|q| enqueue(q, group, body));
    }

    fn with<R>(&self, f: impl FnOnce(&mut QueueState) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn check_fault(&self) -> Result<(), QueueError> {
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(QueueError::Unavailable("injected fault".into()));
        }
        Ok(())
    }

    fn send_message(&self, group: String, dedup: String, body: JoinQueueMessage) {
        let body = serde_json::to_string(&body).unwrap_or_default();
        let now = self.now();
        let window = self.behaviour.deduplication_window;
        self.with(|q| {
            let key = (group.clone(), dedup);
            let recent = q
                .sent
                .get(&key)
                .is_some_and(|at| self.clock.is_none() || now.since(*at) < window);
            if recent {
                return;
            }
            q.sent.insert(key, now);
            enqueue(q, group, body);
        });
    }
}

fn enqueue(q: &mut QueueState, group: String, body: String) {
    q.next_id += 1;
    q.messages.push_back(QueuedMessage {
        id: format!("{:020}", q.next_id),
        group,
        body,
        receives: 0,
        hidden_until: None,
        receipt: None,
    });
}

fn group_of_arrival(arrival: &Arrival) -> String {
    match EventId::parse(&arrival.event_id) {
        Ok(event) => arrival.message_group(&event),
        Err(_) => format!("{}#{}", arrival.event_id, arrival.shard),
    }
}

impl JoinQueue for MemoryQueue {
    async fn send(&self, arrival: &Arrival) -> Result<(), QueueError> {
        self.check_fault()?;
        self.send_message(
            group_of_arrival(arrival),
            arrival.session_id.clone(),
            JoinQueueMessage::Joined(arrival.clone()),
        );
        Ok(())
    }
}

impl WakeQueue for MemoryQueue {
    async fn wake(
        &self,
        event: &EventId,
        arrivals: &[Arrival],
        deduplication_id: &str,
    ) -> Result<(), QueueError> {
        self.check_fault()?;
        self.send_message(
            wake_group_id(event),
            deduplication_id.to_owned(),
            JoinQueueMessage::Wake(WakeUp {
                wake_event_id: event.to_string(),
                arrivals: arrivals.to_vec(),
            }),
        );
        Ok(())
    }
}

impl QueueConsumer for MemoryQueue {
    async fn receive(
        &self,
        max_messages: i32,
        _wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.check_fault()?;
        let max = usize::try_from(max_messages).unwrap_or(0);
        let now = self.now();
        let timed = self.clock.is_some();
        let behaviour = self.behaviour.clone();
        Ok(self.with(|q| {
            for message in &mut q.messages {
                if timed && message.hidden_until.is_some_and(|until| until <= now) {
                    message.hidden_until = None;
                    message.receipt = None;
                }
            }
            // A group with a message in flight is blocked, as in SQS FIFO.
            let busy: BTreeSet<String> = q
                .messages
                .iter()
                .filter(|m| m.hidden_until.is_some())
                .map(|m| m.group.clone())
                .collect();
            let mut taken = Vec::new();
            let mut dead = Vec::new();
            for (index, message) in q.messages.iter_mut().enumerate() {
                if taken.len() >= max {
                    break;
                }
                if message.hidden_until.is_some() || busy.contains(&message.group) {
                    continue;
                }
                if message.receives >= behaviour.max_receive_count {
                    dead.push(index);
                    continue;
                }
                message.receives += 1;
                message.hidden_until = Some(now.plus(behaviour.visibility_timeout));
                let receipt = format!("{}-{}", message.id, message.receives);
                message.receipt = Some(receipt.clone());
                taken.push(Delivery {
                    message_id: message.id.clone(),
                    receipt_handle: receipt,
                    body: message.body.clone(),
                    receive_count: message.receives,
                });
            }
            for index in dead.into_iter().rev() {
                if let Some(message) = q.messages.remove(index) {
                    q.dead_letters.push(message.body);
                }
            }
            taken
        }))
    }

    async fn delete(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        self.check_fault()?;
        self.with(|q| {
            q.messages.retain(|m| {
                !deliveries
                    .iter()
                    .any(|d| m.receipt.as_deref() == Some(d.receipt_handle.as_str()))
            });
        });
        Ok(())
    }
}

impl Redelivery for MemoryQueue {
    /// Without a clock no time passes: the messages stay in flight until
    /// `expire_in_flight`, as after a visibility timeout.
    async fn redeliver_after(
        &self,
        deliveries: &[Delivery],
        pause: Duration,
    ) -> Result<(), QueueError> {
        self.check_fault()?;
        let back_at = self.now().plus(pause);
        self.with(|q| {
            for message in &mut q.messages {
                let given_back = deliveries
                    .iter()
                    .any(|d| message.receipt.as_deref() == Some(d.receipt_handle.as_str()));
                if given_back && message.hidden_until.is_some() {
                    message.hidden_until = Some(back_at);
                }
            }
        });
        Ok(())
    }
}

/// Keeps quarantined messages and records for inspection.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    held: Mutex<Vec<(String, String, String)>>,
}

impl MemoryQuarantine {
    /// `(id, body, reason)` of everything set aside.
    pub fn held(&self) -> Vec<(String, String, String)> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Quarantine for MemoryQuarantine {
    async fn quarantine(&self, id: &str, body: &str, reason: &str) -> Result<(), QueueError> {
        if let Ok(mut held) = self.held.lock() {
            held.push((id.to_owned(), body.to_owned(), reason.to_owned()));
        }
        Ok(())
    }
}

/// Collects the outcome messages a checkout sent.
#[derive(Debug, Default)]
pub struct MemoryOutcomes {
    sent: Mutex<Vec<String>>,
}

impl MemoryOutcomes {
    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl OutcomeSender for MemoryOutcomes {
    async fn send_outcome(&self, body: &str) -> Result<(), QueueError> {
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(body.to_owned());
        }
        Ok(())
    }
}

/// Collects published events; `fail_next` makes publishing fail.
#[derive(Debug, Default)]
pub struct MemoryEventSink {
    published: Mutex<Vec<DomainEvent>>,
    failures_left: AtomicUsize,
}

impl MemoryEventSink {
    pub fn published(&self) -> Vec<DomainEvent> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn fail_next(&self, calls: usize) {
        self.failures_left.store(calls, Ordering::SeqCst);
    }
}

impl EventSink for MemoryEventSink {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), QueueError> {
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(QueueError::Unavailable("injected fault".into()));
        }
        if let Ok(mut published) = self.published.lock() {
            published.extend_from_slice(events);
        }
        Ok(())
    }
}
