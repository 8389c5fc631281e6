//! DynamoDB as the simulator sees it: the in-memory store's semantics (with
//! index lag and a stream log, from the world's store model), plus what
//! each request costs and risks in DynamoDB:
//!
//! - call latency, and the billed units of every item it touches (2 write
//!   units per transaction item, 1 per plain write and per index entry
//!   written or removed; 1 read unit per item read consistently, half for
//!   the eventually consistent index queries);
//! - per-partition throughput on the hot partitions (an event's counter
//!   item, each shard's ticket counter and head, each line index partition,
//!   the expiry and event index partitions), with the SDK's retries when
//!   throttled;
//! - transaction conflicts: a transaction holds its items while in flight,
//!   and another write to one of them meanwhile is refused
//!   (`TransactionConflict`);
//!
//! and it tells the run what the store applied: joins, admissions and exits,
//! so the run checks capacity, duplicates and fairness on the sessions
//! themselves rather than on the counters the writes maintain.

use std::sync::{Arc, Mutex, MutexGuard};

use waiting_room::adapters::memory::MemoryStore;
use waiting_room::domain::admission::{AdmissionPlan, BacklogChange, NumberingPlan};
use waiting_room::domain::session::expiry_bucket;
use waiting_room::domain::{
    EndReason, Ending, EventCounters, EventId, KeyDigest, LineEntry, Place, Session, SessionId,
    StateChange, TicketCounter, Timestamp, UserId,
};
use waiting_room::ports::{
    Claim, Discard, EndFrom, EndOutcome, EventSettings, EventStore, Expiry, ExpiryStore, LineStore,
    PuzzleLedger, SessionStore, StoreError, Touch, WriteOutcome,
};

use super::line_index::LineReplica;
use super::quota::{PARTITION_READ_UNITS, PARTITION_WRITE_UNITS};
use super::world::SimModel;
use super::world::{Admitted, Call, SDK_ATTEMPTS, World};

/// A transactional write costs two write units per item.
const TRANSACTION_UNITS: f64 = 2.0;
/// An index entry (or a plain write of a small item): one write unit.
const WRITE_UNIT: f64 = 1.0;
/// A consistent read of an item under 4 KB.
const READ_UNIT: f64 = 1.0;
/// An eventually consistent read (every index query), per 4 KB.
const INDEX_READ_UNIT: f64 = 0.5;
/// A line index entry (keys and projection) is about this large.
const LINE_ENTRY_BYTES: f64 = 250.0;
/// BatchGetItem takes at most 100 keys per request.
const BATCH_GET_KEYS: usize = 100;

pub struct SimStore {
    pub inner: MemoryStore,
    pub world: Arc<World>,
    /// What `line_front` reads (see `line_index`).
    replica: Mutex<LineReplica>,
}

fn event_key(event: &EventId) -> String {
    format!("EVENT#{event}")
}

fn line_key(event: &EventId, shard: u16) -> String {
    format!("LINE#{event}#{shard}")
}

fn head_key(event: &EventId, shard: u16) -> String {
    format!("HEAD#{event}#{shard}")
}

fn session_key(id: &SessionId) -> String {
    format!("SESSION#{id}")
}

fn claim_key(event: &EventId, user: &UserId) -> String {
    format!("CLAIM#{event}#{user}")
}

/// The line index partition of a shard.
fn index_key(event: &EventId, shard: u16) -> String {
    format!("line-index#{event}#{shard}")
}

/// The expiry index partition of an active session.
fn expiry_key(id: &SessionId) -> String {
    format!("expiry-index#{}", expiry_bucket(id))
}

const EVENT_INDEX_KEY: &str = "event-index#events";

/// What one request touches and costs.
struct Cost {
    /// The port operation, for the report's tally.
    operation: &'static str,
    call: Call,
    /// Hot partitions: (key, units, units per second the partition takes).
    hot: Vec<(String, f64, f64)>,
    write_units: f64,
    read_units: f64,
    /// Items written: a transaction holds them while in flight; a plain
    /// write fails if a transaction holds its item.
    items: Vec<String>,
    transactional: bool,
}

impl Cost {
    fn new(operation: &'static str, call: Call) -> Self {
        Self {
            operation,
            call,
            hot: Vec::new(),
            write_units: 0.0,
            read_units: 0.0,
            items: Vec::new(),
            transactional: matches!(call, Call::Transaction { .. }),
        }
    }

    fn transaction(operation: &'static str, items: usize) -> Self {
        Self::new(operation, Call::Transaction { items })
    }

    /// A written item: transaction units, held while in flight; `hot` when
    /// its partition is a shared one.
    fn item(mut self, key: String, hot: bool) -> Self {
        let units = if self.transactional {
            TRANSACTION_UNITS
        } else {
            WRITE_UNIT
        };
        self.write_units += units;
        if hot {
            self.hot.push((key.clone(), units, PARTITION_WRITE_UNITS));
        }
        self.items.push(key);
        self
    }

    /// An index entry written or removed (asynchronously, but a throttled
    /// index partition throttles the table's writes).
    fn index(mut self, key: String) -> Self {
        self.write_units += WRITE_UNIT;
        self.hot.push((key, WRITE_UNIT, PARTITION_WRITE_UNITS));
        self
    }

    fn read(mut self, key: Option<String>, units: f64) -> Self {
        self.read_units += units;
        if let Some(key) = key {
            self.hot.push((key, units, PARTITION_READ_UNITS));
        }
        self
    }
}

/// Items a transaction in flight holds; given back when dropped, whether
/// the request finished or its caller went away.
struct Held {
    world: Arc<World>,
    items: Vec<String>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.world.state();
        for item in &self.items {
            if let Some(count) = state.locks.get_mut(item) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.locks.remove(item);
                }
            }
        }
    }
}

impl SimStore {
    /// An in-memory store on the world's time and index lag.
    pub fn new(world: Arc<World>) -> Self {
        Self {
            inner: MemoryStore::modelled(Arc::new(SimModel(world.clone()))),
            world,
            replica: Mutex::default(),
        }
    }

    /// The operator's set-up of an event (not a request the run counts).
    pub async fn set_up_event(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        let outcome = self.inner.set_capacity(event, capacity).await;
        self.sync(false);
        outcome
    }

    /// TTL at work: ended sessions whose retention is over vanish, each
    /// with probability one half per call. Returns how many went.
    pub fn delete_expired(&self, now: Timestamp) -> usize {
        let world = self.world.clone();
        let deleted = self
            .inner
            .delete_expired(now, || world.state().rng.below(2) == 0);
        self.sync(false);
        deleted
    }

    fn replica(&self) -> MutexGuard<'_, LineReplica> {
        match self.replica.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Brings the line index replica up to the store's last write: its
    /// session writes, each with the due time the store drew for it
    /// (`session_writes`), or none (writes of other items only, whose draws
    /// are for other indexes).
    fn sync(&self, session_writes: bool) {
        let dues = std::mem::take(&mut self.world.state().index_dues);
        let mut replica = self.replica();
        let (records, next) = self.inner.stream_since(replica.position);
        replica.position = next;
        if !session_writes {
            return;
        }
        let mut dues = dues.into_iter();
        let missing = replica.follow(&records, &mut dues);
        let unmatched = missing + dues.count() as u64;
        drop(replica);
        if unmatched > 0 {
            self.world.state().counters.line_index_mismatches += unmatched;
        }
    }

    /// `result` of a store write, once the replica has seen it.
    fn synced<T>(&self, result: T, session_writes: bool) -> T {
        self.sync(session_writes);
        result
    }

    /// One DynamoDB request: half its latency to reach the partition, the
    /// quota (throttled: the SDK retries after a backoff), the items'
    /// locks, then the other half. Returns what it holds until the caller
    /// has applied it.
    async fn charge(&self, cost: Cost) -> Result<Held, StoreError> {
        for attempt in 0..SDK_ATTEMPTS {
            let latency = self.world.latency(cost.call);
            self.world.state().counters.dynamodb_calls += 1;
            tokio::time::sleep(latency / 2).await;
            let taken = {
                let mut state = self.world.state();
                let now = tokio::time::Instant::now();
                if !state.quotas.take_all(&cost.hot, now) {
                    state.counters.dynamodb_throttles += 1;
                    None
                } else if cost.items.iter().any(|item| state.locks.contains_key(item)) {
                    state.counters.transaction_contention += 1;
                    state
                        .counters
                        .operations
                        .entry(cost.operation)
                        .or_default()
                        .contention += 1;
                    Some(false)
                } else {
                    if cost.transactional {
                        for item in &cost.items {
                            *state.locks.entry(item.clone()).or_default() += 1;
                        }
                    }
                    state.counters.write_units += cost.write_units;
                    state.counters.read_units += cost.read_units;
                    let tally = state.counters.operations.entry(cost.operation).or_default();
                    tally.calls += 1;
                    tally.write_units += cost.write_units;
                    tally.read_units += cost.read_units;
                    Some(true)
                }
            };
            let held = Held {
                world: self.world.clone(),
                items: match taken {
                    Some(true) if cost.transactional => cost.items.clone(),
                    _ => Vec::new(),
                },
            };
            tokio::time::sleep(latency / 2).await;
            match taken {
                Some(true) => return Ok(held),
                Some(false) => {
                    return Err(StoreError::Contention(
                        "transaction conflict: an item is part of a transaction in flight".into(),
                    ));
                }
                None => {
                    drop(held);
                    tokio::time::sleep(self.world.throttle_backoff(attempt)).await;
                }
            }
        }
        Err(StoreError::Unavailable("throttled".into()))
    }

    fn conflicted(&self, operation: &'static str, conflicted: bool) {
        if conflicted {
            let mut state = self.world.state();
            state.counters.transactions_conflicted += 1;
            state
                .counters
                .operations
                .entry(operation)
                .or_default()
                .conflicts += 1;
        }
    }

    fn after_admission(&self, plan: &AdmissionPlan) {
        let admitted: Vec<SessionId> = plan.admitted.iter().map(|a| a.session_id.clone()).collect();
        {
            let mut state = self.world.state();
            state.record_admissions(&admitted);
            for abandon in &plan.abandoned {
                state.waiting.remove(&abandon.session_id);
            }
        }
        for admit in &plan.admitted {
            let _ = self.world.admitted.send(Admitted {
                session: admit.session_id.clone(),
                admission_no: admit.admission_no,
            });
        }
        self.check_capacity(&plan.event_id);
    }

    /// Capacity is checked on the sessions themselves (admitted and not
    /// yet out), and on the counter the writes maintain.
    fn check_capacity(&self, event: &EventId) {
        let counted = self
            .inner
            .all_counters()
            .into_iter()
            .find(|(id, _)| id == event)
            .map_or(0, |(_, counters)| counters.active);
        let mut state = self.world.state();
        let active = state.active_sessions.len() as u64;
        state.counters.max_active = state.counters.max_active.max(active);
        if active > self.world.capacity || counted > self.world.capacity {
            state.counters.capacity_violations += 1;
        }
    }

    /// The line index entries of a query of up to `limit` entries.
    fn query_units(limit: usize) -> f64 {
        let pages = (limit as f64 * LINE_ENTRY_BYTES / 4096.0).ceil().max(1.0);
        pages * INDEX_READ_UNIT
    }

    fn ended_in_line(&self, id: &SessionId) {
        self.world.state().waiting.remove(id);
    }
}

impl PuzzleLedger for SimStore {
    async fn spend(
        &self,
        digest: &[u8; 32],
        key: &KeyDigest,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let item = format!(
            "PUZZLE#{}",
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let cost = Cost::new("spend_puzzle", Call::UpdateItem).item(item, true);
        let _held = self.charge(cost).await?;
        self.inner.spend(digest, key, until).await
    }
}

impl SessionStore for SimStore {
    async fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> Result<Claim, StoreError> {
        // Claim and session in one transaction; the waiting session enters
        // its shard's line index partition.
        let cost = Cost::transaction("create_session", 2)
            .item(claim_key(&session.event_id, &session.user_id), false)
            .item(session_key(&session.id), false)
            .index(index_key(&session.event_id, session.shard));
        let _held = self.charge(cost).await?;
        let claim = self.synced(
            self.inner
                .create_session(session, replacing, claim_ttl)
                .await,
            true,
        )?;
        if claim == Claim::Created {
            let mut state = self.world.state();
            if !state.ever_admitted.contains(&session.id) {
                state.waiting.insert(&session.id, session.joined_at);
            }
        }
        Ok(claim)
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let _held = self
            .charge(Cost::new("get_session", Call::GetItem).read(None, READ_UNIT))
            .await?;
        self.inner.get_session(id).await
    }

    async fn block(&self, event: &EventId, user: &UserId) -> Result<(), StoreError> {
        let cost = Cost::new("block", Call::UpdateItem).item(claim_key(event, user), true);
        let _held = self.charge(cost).await?;
        self.synced(self.inner.block(event, user).await, false)
    }

    async fn discard(&self, session: &Session) -> Result<Discard, StoreError> {
        let cost = Cost::transaction("discard", 2)
            .item(session_key(&session.id), false)
            .item(claim_key(&session.event_id, &session.user_id), false)
            .index(index_key(&session.event_id, session.shard));
        let _held = self.charge(cost).await?;
        let outcome = self.synced(self.inner.discard(session).await, true)?;
        if outcome == Discard::Discarded {
            self.ended_in_line(&session.id);
        }
        Ok(outcome)
    }

    async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Touch, StoreError> {
        // The presence time is projected into the line index: a waiting
        // session's touch rewrites its entry there too.
        let shard = self
            .inner
            .get_session(id)
            .await?
            .filter(|s| s.status() == waiting_room::domain::SessionStatus::Waiting)
            .map(|s| s.shard);
        let mut cost = Cost::new("touch", Call::UpdateItem).item(session_key(id), false);
        if let Some(shard) = shard {
            cost = cost.index(index_key(&id.event_id(), shard));
        }
        let _held = self.charge(cost).await?;
        self.synced(self.inner.touch(id, now).await, true)
    }

    async fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> Result<EndOutcome, StoreError> {
        let event = id.event_id();
        let cost = Cost::transaction("end_session", 2).item(session_key(id), false);
        let cost = match from {
            // The slot goes back on the event item; the session leaves the
            // expiry index.
            EndFrom::Active | EndFrom::ActiveOverdue { .. } => {
                cost.item(event_key(&event), true).index(expiry_key(id))
            }
            // The shard's ticket counter counts it; it leaves the line index.
            EndFrom::Waiting { shard } => cost
                .item(line_key(&event, shard), true)
                .index(index_key(&event, shard)),
        };
        let _held = self.charge(cost).await?;
        let outcome = self.synced(
            self.inner.end_session(id, from, ending, retain_until).await,
            true,
        )?;
        if outcome == EndOutcome::Ended {
            match from {
                EndFrom::Active | EndFrom::ActiveOverdue { .. } => {
                    self.world.state().active_sessions.remove(id);
                }
                EndFrom::Waiting { .. } => self.ended_in_line(id),
            }
        }
        Ok(outcome)
    }

    async fn record_late_completion(
        &self,
        id: &SessionId,
        was: EndReason,
        ending: &Ending,
    ) -> Result<bool, StoreError> {
        let cost = Cost::transaction("record_late_completion", 2)
            .item(session_key(id), false)
            .item(event_key(&id.event_id()), true);
        let _held = self.charge(cost).await?;
        self.synced(
            self.inner.record_late_completion(id, was, ending).await,
            true,
        )
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // The end of stay is the expiry index's sort key: its entry moves
        // (a removal and a write).
        let cost = Cost::new("extend_stay", Call::UpdateItem)
            .item(session_key(id), false)
            .index(expiry_key(id))
            .index(expiry_key(id));
        let _held = self.charge(cost).await?;
        self.synced(self.inner.extend_stay(id, from, to, now).await, true)
    }
}

impl EventStore for SimStore {
    async fn event_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        let _held = self
            .charge(
                Cost::new("event_counters", Call::GetItem).read(Some(event_key(event)), READ_UNIT),
            )
            .await?;
        self.inner.event_counters(event, shard_count).await
    }

    async fn register_event(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        let cost = Cost::new("register_event", Call::UpdateItem)
            .item(event_key(event), true)
            .index(EVENT_INDEX_KEY.to_owned());
        let _held = self.charge(cost).await?;
        self.synced(
            self.inner
                .register_event(event, default_capacity, shard_count)
                .await,
            false,
        )
    }

    async fn list_event(&self, event: &EventId) -> Result<(), StoreError> {
        // An update of the event item (it carries the listing attribute).
        let cost = Cost::new("list_event", Call::UpdateItem)
            .item(event_key(event), true)
            .index(EVENT_INDEX_KEY.to_owned());
        let _held = self.charge(cost).await?;
        self.synced(self.inner.list_event(event).await, false)
    }

    async fn events(&self) -> Result<Vec<EventId>, StoreError> {
        let cost = Cost::new("events", Call::Query)
            .read(Some(EVENT_INDEX_KEY.to_owned()), INDEX_READ_UNIT);
        let _held = self.charge(cost).await?;
        self.inner.events().await
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        let cost = Cost::new("set_capacity", Call::UpdateItem)
            .item(event_key(event), true)
            .index(EVENT_INDEX_KEY.to_owned());
        let _held = self.charge(cost).await?;
        self.synced(self.inner.set_capacity(event, capacity).await, false)
    }

    async fn set_event_state(&self, change: &StateChange) -> Result<bool, StoreError> {
        let cost = Cost::new("set_event_state", Call::Transaction { items: 2 })
            .item(event_key(&change.event_id), true)
            .index(EVENT_INDEX_KEY.to_owned());
        let _held = self.charge(cost).await?;
        self.synced(self.inner.set_event_state(change).await, false)
    }

    async fn configure_event(
        &self,
        event: &EventId,
        settings: &EventSettings,
    ) -> Result<(), StoreError> {
        let cost = Cost::new("configure_event", Call::UpdateItem)
            .item(event_key(event), true)
            .index(EVENT_INDEX_KEY.to_owned());
        let _held = self.charge(cost).await?;
        self.synced(self.inner.configure_event(event, settings).await, false)
    }
}

impl LineStore for SimStore {
    async fn waiting_among(&self, ids: &[SessionId]) -> Result<Vec<LineEntry>, StoreError> {
        // The adapter reads them in BatchGetItem requests of 100 keys.
        for chunk in ids.chunks(BATCH_GET_KEYS) {
            let units = chunk.len() as f64 * READ_UNIT;
            let _held = self
                .charge(Cost::new("waiting_among", Call::BatchGetItem).read(None, units))
                .await?;
        }
        self.inner.waiting_among(ids).await
    }

    async fn line_front(
        &self,
        event: &EventId,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        let cost = Cost::new("line_front", Call::Query)
            .read(Some(index_key(event, shard)), Self::query_units(limit));
        let _held = self.charge(cost).await?;
        let now = self.world.now();
        let front = {
            let mut replica = self.replica();
            replica.catch_up(now);
            replica.front(event, shard, limit)
        };
        if cfg!(debug_assertions) {
            let theirs = self.inner.line_front(event, shard, limit).await?;
            let mut state = self.world.state();
            state.counters.line_index_checks += 1;
            if theirs != front {
                state.counters.line_index_mismatches += 1;
            }
        }
        Ok(front)
    }

    async fn line_after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        let cost = Cost::new("line_after", Call::Query)
            .read(Some(index_key(event, shard)), Self::query_units(limit));
        let _held = self.charge(cost).await?;
        let now = self.world.now();
        let mut replica = self.replica();
        replica.catch_up(now);
        Ok(replica.after(event, shard, after, limit))
    }

    async fn shard_head(&self, event: &EventId, shard: u16) -> Result<u64, StoreError> {
        let cost =
            Cost::new("shard_head", Call::GetItem).read(Some(head_key(event, shard)), READ_UNIT);
        let _held = self.charge(cost).await?;
        self.inner.shard_head(event, shard).await
    }

    async fn ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> Result<Vec<TicketCounter>, StoreError> {
        for chunk in shards.chunks(BATCH_GET_KEYS) {
            let mut cost = Cost::new("ticket_counters", Call::BatchGetItem);
            for &shard in chunk {
                cost = cost.read(Some(line_key(event, shard)), READ_UNIT);
            }
            let _held = self.charge(cost).await?;
        }
        self.inner.ticket_counters(event, shards).await
    }

    async fn number_sessions(&self, plan: &NumberingPlan) -> Result<WriteOutcome, StoreError> {
        // The sessions and the shard's ticket counter; each ticket is
        // projected into the line index, so every entry is rewritten there.
        let mut cost = Cost::transaction("number_sessions", plan.tickets.len() + 1);
        for numbered in &plan.tickets {
            cost = cost
                .item(session_key(&numbered.session_id), false)
                .index(index_key(&plan.event_id, plan.shard));
        }
        let cost = cost.item(line_key(&plan.event_id, plan.shard), true);
        let _held = self.charge(cost).await?;
        let outcome = self.synced(self.inner.number_sessions(plan).await, true)?;
        self.conflicted(
            "number_sessions",
            matches!(outcome, WriteOutcome::Conflict { .. }),
        );
        Ok(outcome)
    }

    async fn admit(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let event_item = plan.counters.is_some() || plan.arm.is_some();
        let items =
            plan.admitted.len() + plan.abandoned.len() + plan.heads.len() + usize::from(event_item);
        if items == 0 {
            // The adapter makes no request for an empty plan.
            return self.synced(self.inner.admit(plan, retain_until).await, true);
        }
        let mut cost = Cost::transaction("admit", items);
        for admit in &plan.admitted {
            // Out of the line index, into the expiry index.
            cost = cost
                .item(session_key(&admit.session_id), false)
                .index(index_key(&plan.event_id, admit.shard))
                .index(expiry_key(&admit.session_id));
        }
        for abandon in &plan.abandoned {
            cost = cost
                .item(session_key(&abandon.session_id), false)
                .index(index_key(&plan.event_id, abandon.shard));
        }
        for moved in &plan.heads {
            cost = cost.item(head_key(&plan.event_id, moved.shard), true);
        }
        if event_item {
            cost = cost.item(event_key(&plan.event_id), true);
        }
        let _held = self.charge(cost).await?;
        let outcome = self.synced(self.inner.admit(plan, retain_until).await, true)?;
        match &outcome {
            WriteOutcome::Applied => self.after_admission(plan),
            WriteOutcome::Conflict { .. } => self.conflicted("admit", true),
        }
        Ok(outcome)
    }

    async fn update_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> Result<bool, StoreError> {
        let cost = Cost::new("update_backlog", Call::UpdateItem).item(event_key(event), true);
        let _held = self.charge(cost).await?;
        let applied = self.synced(self.inner.update_backlog(event, change).await, false)?;
        self.conflicted("update_backlog", !applied);
        Ok(applied)
    }
}

impl ExpiryStore for SimStore {
    async fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        let key = format!("expiry-index#{bucket}");
        let _held = self
            .charge(Cost::new("overdue_sessions", Call::Query).read(Some(key), INDEX_READ_UNIT))
            .await?;
        self.inner.overdue_sessions(bucket, now, limit).await
    }

    async fn expire_overdue(
        &self,
        event: &EventId,
        ids: &[SessionId],
        now: Timestamp,
        retain_until: Timestamp,
    ) -> Result<Expiry, StoreError> {
        if ids.is_empty() {
            return Ok(Expiry::default());
        }
        let mut cost = Cost::transaction("expire_overdue", ids.len() + 1);
        for id in ids {
            cost = cost.item(session_key(id), false).index(expiry_key(id));
        }
        let _held = self.charge(cost.item(event_key(event), true)).await?;
        let expiry = self.synced(
            self.inner
                .expire_overdue(event, ids, now, retain_until)
                .await,
            true,
        )?;
        let mut state = self.world.state();
        for id in &expiry.expired {
            state.active_sessions.remove(id);
        }
        Ok(expiry)
    }
}
