//! In-memory adapters with the same contract as DynamoDB and SQS: every
//! operation is atomic and checks the same conditions. For unit tests and the
//! simulator; the emulator tests prove the real adapters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::domain::admission::{BacklogHint, LineAdvance, SessionChangeKind};
use crate::domain::session::expiry_bucket;
use crate::domain::{
    Admission, EndReason, Ending, EventCounters, EventId, LineEntry, LineShard, LineState, Session,
    SessionId, SessionStatus, Timestamp, UserId,
};
use crate::events::DomainEvent;
use crate::ports::{
    AdvanceOutcome, Claim, Delivery, Discard, EndFrom, EndOutcome, EventSink, JoinQueue,
    JoinTicket, Quarantine, QueueConsumer, QueueError, SessionStore, StoreError, Touch,
};

#[derive(Debug, Clone)]
struct StoredSession {
    session: Session,
}

#[derive(Debug, Default)]
struct Tables {
    sessions: HashMap<SessionId, StoredSession>,
    claims: HashMap<(EventId, UserId), SessionId>,
    events: HashMap<EventId, EventCounters>,
    lines: HashMap<(EventId, u16), LineShard>,
    /// Mirrors the sparse line index, ordered by ticket so the front of a
    /// shard is found without a scan: an entry when filed, none once admitted.
    line_index: BTreeMap<(EventId, u16, u64), SessionId>,
}

/// A `SessionStore` in a mutex. `fail_next` makes calls fail as if the
/// store were unreachable, to test recovery.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    successes_before_failure: AtomicUsize,
    failures_left: AtomicUsize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `calls` store calls fail with `Unavailable`.
    pub fn fail_next(&self, calls: usize) {
        self.fail_after(0, calls);
    }

    /// The next `successes` calls work, then `failures` calls fail.
    pub fn fail_after(&self, successes: usize, failures: usize) {
        self.successes_before_failure
            .store(successes, Ordering::SeqCst);
        self.failures_left.store(failures, Ordering::SeqCst);
    }

    pub fn all_sessions(&self) -> Vec<Session> {
        self.with(|t| t.sessions.values().map(|s| s.session.clone()).collect())
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let mut guard = match self.tables.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
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
}

fn claim_key(session: &Session) -> (EventId, UserId) {
    (session.event_id.clone(), session.user_id.clone())
}

fn end(session: &mut Session, ending: &Ending) {
    session.status = ending.reason.final_status();
    session.ending = Some(ending.clone());
}

fn line_shard(tables: &Tables, event: &EventId, shard: u16) -> LineShard {
    tables
        .lines
        .get(&(event.clone(), shard))
        .cloned()
        .unwrap_or_else(|| LineShard::empty(shard))
}

fn bump_end_counter(counters: &mut EventCounters, reason: EndReason) {
    let counter = match reason.final_status() {
        SessionStatus::Left => &mut counters.left,
        SessionStatus::Completed => &mut counters.completed,
        SessionStatus::Failed => &mut counters.failed,
        _ => &mut counters.expired,
    };
    *counter += 1;
}

impl SessionStore for MemoryStore {
    async fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        _claim_ttl: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.check_fault()?;
        self.with(|t| {
            let key = claim_key(session);
            match (t.claims.get(&key), replacing) {
                (Some(holder), None) => return Ok(Claim::HeldBy(holder.clone())),
                (Some(holder), Some(old)) if holder != old => {
                    return Ok(Claim::HeldBy(holder.clone()));
                }
                (None, Some(_)) => return Ok(Claim::Vacant),
                _ => {}
            }
            if t.sessions.contains_key(&session.id) {
                return Err(StoreError::Rejected("session id collision".into()));
            }
            t.claims.insert(key, session.id.clone());
            t.sessions.insert(
                session.id.clone(),
                StoredSession {
                    session: session.clone(),
                },
            );
            Ok(Claim::Created)
        })
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| t.sessions.get(id).map(|s| s.session.clone())))
    }

    async fn discard_unfiled(&self, session: &Session) -> Result<Discard, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            if let Some(stored) = t.sessions.get(&session.id) {
                let s = &stored.session;
                if s.ticket.is_some() || s.status != SessionStatus::Waiting {
                    return Discard::AlreadyFiled;
                }
            }
            t.sessions.remove(&session.id);
            let key = claim_key(session);
            if t.claims.get(&key) == Some(&session.id) {
                t.claims.remove(&key);
            }
            Discard::Discarded
        }))
    }

    async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Touch, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| match t.sessions.get_mut(id) {
            None => Touch::NotFound,
            Some(stored) if stored.session.status.is_ended() => {
                Touch::Ended(stored.session.clone())
            }
            Some(stored) => {
                stored.session.last_seen_at = now;
                Touch::Touched(stored.session.clone())
            }
        }))
    }

    async fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        _retain_until: Timestamp,
    ) -> Result<EndOutcome, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let Some(stored) = t.sessions.get_mut(id) else {
                return EndOutcome::NotAsExpected(None);
            };
            let expected = match from {
                EndFrom::ActiveOverdue { at } => {
                    stored.session.expires_at().is_some_and(|end| end <= at)
                }
                other => EndFrom::of(&stored.session) == Some(other),
            };
            if !expected {
                return EndOutcome::NotAsExpected(Some(Box::new(stored.session.clone())));
            }
            let event = stored.session.event_id.clone();
            end(&mut stored.session, ending);
            match from {
                EndFrom::Active | EndFrom::ActiveOverdue { .. } => {
                    let counters = t.events.entry(event).or_default();
                    counters.active = counters.active.saturating_sub(1);
                    bump_end_counter(counters, ending.reason);
                }
                EndFrom::WaitingFiled { shard, .. } => {
                    let line = t
                        .lines
                        .entry((event, shard))
                        .or_insert_with(|| LineShard::empty(shard));
                    line.ended_in_line += 1;
                    if ending.reason == EndReason::Timeout {
                        line.abandoned += 1;
                    } else {
                        line.left_waiting += 1;
                    }
                }
                EndFrom::WaitingUnfiled => {}
            }
            EndOutcome::Ended
        }))
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let Some(stored) = t.sessions.get_mut(id) else {
                return false;
            };
            if stored.session.expires_at() != Some(from) {
                return false;
            }
            if let Some(admission) = stored.session.admission.as_mut() {
                admission.expires_at = to;
            }
            true
        }))
    }

    async fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let mut overdue: Vec<(Timestamp, SessionId)> = t
                .sessions
                .values()
                .filter(|s| expiry_bucket(&s.session.id) == bucket)
                .filter_map(|s| {
                    Some((
                        s.session.expires_at().filter(|&end| end <= now)?,
                        s.session.id.clone(),
                    ))
                })
                .collect();
            overdue.sort_by_key(|(end, _)| *end);
            overdue.into_iter().take(limit).map(|(_, id)| id).collect()
        }))
    }

    async fn line_shard(&self, event: &EventId, shard: u16) -> Result<LineShard, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| line_shard(t, event, shard)))
    }

    async fn line_state(&self, event: &EventId, shard_count: u16) -> Result<LineState, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| LineState {
            event_id: event.clone(),
            counters: t.events.get(event).cloned().unwrap_or_default(),
            shards: (0..shard_count).map(|s| line_shard(t, event, s)).collect(),
        }))
    }

    async fn line_entries(
        &self,
        event: &EventId,
        shard: u16,
        from_ticket: u64,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let from = (event.clone(), shard, from_ticket);
            let to = (event.clone(), shard, u64::MAX);
            t.line_index
                .range(from..=to)
                .filter_map(|((_, _, ticket), id)| {
                    let s = &t.sessions.get(id)?.session;
                    Some(LineEntry {
                        session_id: s.id.clone(),
                        ticket: *ticket,
                        status: s.status,
                        joined_at: s.joined_at,
                        last_seen_at: s.last_seen_at,
                    })
                })
                .take(limit)
                .collect()
        }))
    }

    async fn advance_line(
        &self,
        plan: &LineAdvance,
        _retain_until: Timestamp,
    ) -> Result<AdvanceOutcome, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| {
            let rejected = rejected_sessions(t, plan);
            if !rejected.is_empty() {
                return AdvanceOutcome::Conflict { rejected };
            }
            if !line_and_counters_match(t, plan) {
                return AdvanceOutcome::Conflict { rejected: vec![] };
            }
            apply_advance(t, plan);
            AdvanceOutcome::Applied
        }))
    }

    async fn event_counters(&self, event: &EventId) -> Result<EventCounters, StoreError> {
        self.check_fault()?;
        Ok(self.with(|t| t.events.get(event).cloned().unwrap_or_default()))
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        self.check_fault()?;
        self.with(|t| t.events.entry(event.clone()).or_default().capacity = Some(capacity));
        Ok(())
    }
}

fn rejected_sessions(t: &Tables, plan: &LineAdvance) -> Vec<SessionId> {
    plan.sessions
        .iter()
        .filter(|change| {
            let Some(stored) = t.sessions.get(&change.session_id) else {
                return true;
            };
            let s = &stored.session;
            let filed_now = matches!(
                change.kind,
                SessionChangeKind::File
                    | SessionChangeKind::Admit {
                        filed_now: true,
                        ..
                    }
            );
            let expected_ticket = if filed_now { None } else { Some(change.ticket) };
            let silent_enough = match change.kind {
                SessionChangeKind::Abandon { silent_since } => s.last_seen_at <= silent_since,
                _ => true,
            };
            !(s.status == SessionStatus::Waiting && s.ticket == expected_ticket && silent_enough)
        })
        .map(|change| change.session_id.clone())
        .collect()
}

fn line_and_counters_match(t: &Tables, plan: &LineAdvance) -> bool {
    // The head is checked only by writes that move it (as in DynamoDB).
    let shard_is = |shard: u16, stored: bool, next_seen: u64, head_seen: Option<u64>| match t
        .lines
        .get(&(plan.event_id.clone(), shard))
    {
        None => !stored,
        Some(line) => {
            stored
                && line.next_ticket == next_seen
                && head_seen.is_none_or(|head| line.head_ticket == head)
        }
    };
    let shards_match = plan.shards.iter().all(|a| {
        let head_seen = (a.head != a.head_seen).then_some(a.head_seen);
        shard_is(a.shard, a.stored, a.next_seen, head_seen)
    });
    let others_unchanged = plan
        .unchanged_shards
        .iter()
        .all(|seen| shard_is(seen.shard, seen.stored, seen.next_seen, None));
    let counters_now = t.events.get(&plan.event_id).cloned().unwrap_or_default();
    let hint_proof = match &plan.backlog {
        BacklogHint::Set {
            active_seen,
            capacity_seen,
        } => counters_now.active >= *active_seen && counters_now.capacity == *capacity_seen,
        _ => true,
    };
    let counters_match = plan.counters.as_ref().is_none_or(|expect| {
        counters_now.capacity == expect.capacity_seen
            && counters_now.active <= expect.active_at_most
            && counters_now.admitted == expect.admitted_seen
    });
    shards_match && counters_match && hint_proof && others_unchanged
}

fn apply_advance(t: &mut Tables, plan: &LineAdvance) {
    for advance in &plan.shards {
        let line = t
            .lines
            .entry((plan.event_id.clone(), advance.shard))
            .or_insert_with(|| LineShard::empty(advance.shard));
        line.stored = true;
        line.next_ticket = advance.next;
        if advance.head != advance.head_seen {
            line.head_ticket = advance.head;
        }
        line.filed_through = advance.filed_through;
        line.ended_in_line = line.ended_in_line.saturating_sub(advance.passed_ended);
        line.abandoned += advance.abandoned;
    }
    let counters = t.events.entry(plan.event_id.clone()).or_default();
    if plan.admitted > 0 {
        counters.active += plan.admitted;
        counters.admitted += plan.admitted;
        counters.rate = plan.rate;
    }
    counters.backlog = plan.backlog_after(counters.backlog);
    for change in &plan.sessions {
        let Some(stored) = t.sessions.get_mut(&change.session_id) else {
            continue;
        };
        stored.session.ticket = Some(change.ticket);
        stored.session.shard = change.shard;
        if change.ahead_at_filing.is_some() {
            stored.session.ahead_at_filing = change.ahead_at_filing;
        }
        let index_key = (plan.event_id.clone(), change.shard, change.ticket);
        t.line_index
            .insert(index_key.clone(), change.session_id.clone());
        match change.kind {
            SessionChangeKind::File => {}
            SessionChangeKind::Admit {
                admission_no,
                expires_at,
                ..
            } => {
                stored.session.status = SessionStatus::Active;
                stored.session.admission = Some(Admission {
                    admitted_at: plan.now,
                    admission_no,
                    expires_at,
                });
                t.line_index.remove(&index_key);
            }
            SessionChangeKind::Abandon { .. } => end(
                &mut stored.session,
                &Ending::new(EndReason::Timeout, plan.now),
            ),
        }
    }
}

/// An SQS FIFO queue in memory: per-group order, at most one batch of a group
/// in flight, deduplication by id, redelivery of what is not deleted.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    state: Mutex<QueueState>,
    failures_left: AtomicUsize,
}

#[derive(Debug, Default)]
struct QueueState {
    visible: VecDeque<(String, JoinTicket)>,
    in_flight: HashMap<String, (String, JoinTicket)>,
    sent_ids: std::collections::HashSet<String>,
    next_id: u64,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail_next(&self, calls: usize) {
        self.failures_left.store(calls, Ordering::SeqCst);
    }

    /// Puts every in-flight message back, as a visibility timeout would.
    pub fn expire_in_flight(&self) {
        self.with(|q| {
            let mut returned: Vec<_> = q.in_flight.drain().map(|(_, m)| m).collect();
            returned.sort_by(|a, b| a.0.cmp(&b.0));
            for message in returned.into_iter().rev() {
                q.visible.push_front(message);
            }
        });
    }

    pub fn visible_len(&self) -> usize {
        self.with(|q| q.visible.len())
    }

    /// Every distinct message ever accepted (deduplicated sends excluded).
    pub fn sent(&self) -> Vec<JoinTicket> {
        self.with(|q| {
            q.visible
                .iter()
                .chain(q.in_flight.values())
                .map(|(_, t)| t.clone())
                .collect()
        })
    }

    /// Adds a message bypassing deduplication, as a redelivery after the
    /// five-minute window or a producer bug would.
    pub fn push_duplicate(&self, ticket: JoinTicket) {
        self.with(|q| {
            q.next_id += 1;
            let id = format!("{:020}", q.next_id);
            q.visible.push_back((id, ticket));
        });
    }

    fn with<R>(&self, f: impl FnOnce(&mut QueueState) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn check_fault(&self) -> Result<(), QueueError> {
        let left = self.failures_left.load(Ordering::SeqCst);
        if left > 0 {
            self.failures_left.store(left - 1, Ordering::SeqCst);
            return Err(QueueError::Unavailable("injected fault".into()));
        }
        Ok(())
    }
}

fn group_of(ticket: &JoinTicket) -> (String, u16) {
    (ticket.event_id.clone(), ticket.shard)
}

impl JoinQueue for MemoryQueue {
    async fn send(&self, ticket: &JoinTicket) -> Result<(), QueueError> {
        self.check_fault()?;
        self.with(|q| {
            if q.sent_ids.contains(&ticket.session_id) {
                return;
            }
            q.sent_ids.insert(ticket.session_id.clone());
            q.next_id += 1;
            let id = format!("{:020}", q.next_id);
            q.visible.push_back((id, ticket.clone()));
        });
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
        Ok(self.with(|q| {
            // A group with a message in flight is blocked, as in SQS FIFO.
            let busy: Vec<(String, u16)> = q.in_flight.values().map(|(_, t)| group_of(t)).collect();
            let mut taken = Vec::new();
            let mut index = 0;
            while index < q.visible.len() && taken.len() < max {
                if busy.contains(&group_of(&q.visible[index].1)) {
                    index += 1;
                } else if let Some(message) = q.visible.remove(index) {
                    taken.push(message);
                }
            }
            taken
                .into_iter()
                .map(|(id, ticket)| {
                    let body = serde_json::to_string(&ticket).unwrap_or_default();
                    q.in_flight.insert(id.clone(), (id.clone(), ticket));
                    Delivery {
                        message_id: id.clone(),
                        receipt_handle: id,
                        body,
                    }
                })
                .collect()
        }))
    }

    async fn delete(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        self.check_fault()?;
        self.with(|q| {
            for delivery in deliveries {
                q.in_flight.remove(&delivery.receipt_handle);
            }
        });
        Ok(())
    }
}

/// Keeps quarantined messages for inspection.
#[derive(Debug, Default)]
pub struct MemoryQuarantine {
    held: Mutex<Vec<(Delivery, String)>>,
}

impl MemoryQuarantine {
    pub fn held(&self) -> Vec<(Delivery, String)> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Quarantine for MemoryQuarantine {
    async fn quarantine(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        if let Ok(mut held) = self.held.lock() {
            held.push((delivery.clone(), reason.to_owned()));
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
