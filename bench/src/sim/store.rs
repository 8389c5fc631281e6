//! DynamoDB as the simulator sees it: the in-memory store's semantics, plus
//! call latencies, per-partition throughput limits on the hot items
//! (an event's counter item, each line shard item, each line index
//! partition) with the SDK's retries on throttling, and hooks that tell the
//! run about admissions and freed slots.

use std::sync::Arc;

use waiting_room::adapters::memory::MemoryStore;
use waiting_room::domain::admission::{BacklogHint, LineAdvance, SessionChangeKind};
use waiting_room::domain::{
    Ending, EventCounters, EventId, LineEntry, LineShard, LineState, Session, SessionId, Timestamp,
};
use waiting_room::ports::{
    AdvanceOutcome, Claim, Discard, EndFrom, EndOutcome, SessionStore, StoreError, Touch,
};

use super::quota::{PARTITION_READ_UNITS, PARTITION_WRITE_UNITS};
use super::world::{Admitted, Call, SDK_ATTEMPTS, World};

/// The SDK's standard retry: three attempts, exponential backoff.
/// A transactional write costs two write units per item.
const TRANSACTION_UNITS: f64 = 2.0;

pub struct SimStore {
    pub inner: MemoryStore,
    pub world: Arc<World>,
}

fn write(key: String, units: f64) -> (String, f64, f64) {
    (key, units, PARTITION_WRITE_UNITS)
}

fn read(key: String, units: f64) -> (String, f64, f64) {
    (key, units, PARTITION_READ_UNITS)
}

fn event_key(event: &EventId) -> String {
    format!("EVENT#{event}")
}

fn line_key(event: &EventId, shard: u16) -> String {
    format!("LINE#{event}#{shard}")
}

fn index_key(event: &EventId, shard: u16) -> String {
    format!("line-index#{event}#{shard}")
}

impl SimStore {
    /// One DynamoDB call: latency, quota, retries; `Unavailable` when all
    /// attempts were throttled.
    async fn charge(&self, call: Call, charges: Vec<(String, f64, f64)>) -> Result<(), StoreError> {
        for attempt in 0..SDK_ATTEMPTS {
            self.world.state().counters.dynamodb_calls += 1;
            if self.world.call(call, &charges).await {
                return Ok(());
            }
            self.world.state().counters.dynamodb_throttles += 1;
            tokio::time::sleep(self.world.throttle_backoff(attempt)).await;
        }
        Err(StoreError::Unavailable("throttled".into()))
    }

    fn advance_charges(plan: &LineAdvance) -> Vec<(String, f64, f64)> {
        let mut charges = Vec::new();
        for advance in &plan.shards {
            charges.push(write(
                line_key(&plan.event_id, advance.shard),
                TRANSACTION_UNITS,
            ));
        }
        // A condition check in a transaction costs as much as a write.
        for seen in &plan.unchanged_shards {
            charges.push(write(
                line_key(&plan.event_id, seen.shard),
                TRANSACTION_UNITS,
            ));
        }
        if plan.counters.is_some() || plan.backlog != BacklogHint::Unchanged {
            charges.push(write(event_key(&plan.event_id), TRANSACTION_UNITS));
        }
        for change in &plan.sessions {
            // Filing adds to the shard's index partition; admitting from the
            // index removes from it. Sessions themselves are spread out.
            let touches_index = !matches!(
                change.kind,
                SessionChangeKind::Admit {
                    filed_now: true,
                    ..
                }
            );
            if touches_index {
                charges.push(write(index_key(&plan.event_id, change.shard), 1.0));
            }
        }
        charges
    }

    fn after_advance(&self, plan: &LineAdvance) {
        for change in plan.admitted_sessions() {
            {
                let mut state = self.world.state();
                if !state.ever_admitted.insert(change.session_id.clone()) {
                    state.counters.duplicate_admissions += 1;
                }
                state.active_sessions.insert(change.session_id.clone());
            }
            if let SessionChangeKind::Admit { admission_no, .. } = change.kind {
                let _ = self.world.admitted.send(Admitted {
                    session: change.session_id.clone(),
                    admission_no,
                });
            }
        }
        self.check_capacity(&plan.event_id);
    }

    /// Capacity is checked on the sessions themselves (admitted and not
    /// yet out), not only on the counter the writes maintain.
    fn check_capacity(&self, event: &EventId) {
        let counters =
            futures::executor::block_on(self.inner.event_counters(event)).unwrap_or_default();
        let mut state = self.world.state();
        let active = state.active_sessions.len() as u64;
        state.counters.max_active = state.counters.max_active.max(active);
        if active > self.world.capacity || counters.active > self.world.capacity {
            state.counters.capacity_violations += 1;
        }
    }
}

impl SessionStore for SimStore {
    async fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.charge(Call::Transaction { items: 2 }, Vec::new())
            .await?;
        self.inner
            .create_session(session, replacing, claim_ttl)
            .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.charge(Call::GetItem, Vec::new()).await?;
        self.inner.get_session(id).await
    }

    async fn discard_unfiled(&self, session: &Session) -> Result<Discard, StoreError> {
        self.charge(Call::Transaction { items: 2 }, Vec::new())
            .await?;
        self.inner.discard_unfiled(session).await
    }

    async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Touch, StoreError> {
        self.charge(Call::UpdateItem, Vec::new()).await?;
        self.inner.touch(id, now).await
    }

    async fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> Result<EndOutcome, StoreError> {
        let event = id.event_id();
        let charges = match from {
            EndFrom::Active | EndFrom::ActiveOverdue { .. } => {
                vec![write(event_key(&event), TRANSACTION_UNITS)]
            }
            EndFrom::WaitingFiled { shard, .. } => {
                vec![write(line_key(&event, shard), TRANSACTION_UNITS)]
            }
            EndFrom::WaitingUnfiled => Vec::new(),
        };
        self.charge(Call::Transaction { items: 2 }, charges).await?;
        let outcome = self
            .inner
            .end_session(id, from, ending, retain_until)
            .await?;
        if outcome == EndOutcome::Ended {
            if matches!(from, EndFrom::Active | EndFrom::ActiveOverdue { .. }) {
                self.world.state().active_sessions.remove(id);
            }
            let counters = self.inner.event_counters(&event).await?;
            if counters.backlog {
                self.world.state().wake.insert(event);
            }
        }
        Ok(outcome)
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<bool, StoreError> {
        self.charge(Call::UpdateItem, Vec::new()).await?;
        self.inner.extend_stay(id, from, to).await
    }

    async fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.charge(Call::Query, Vec::new()).await?;
        self.inner.overdue_sessions(bucket, now, limit).await
    }

    async fn line_shard(&self, event: &EventId, shard: u16) -> Result<LineShard, StoreError> {
        self.charge(Call::GetItem, vec![read(line_key(event, shard), 0.5)])
            .await?;
        self.inner.line_shard(event, shard).await
    }

    async fn line_state(&self, event: &EventId, shard_count: u16) -> Result<LineState, StoreError> {
        let mut charges = vec![read(event_key(event), 1.0)];
        charges.extend((0..shard_count).map(|shard| read(line_key(event, shard), 1.0)));
        self.charge(Call::BatchGetItem, charges).await?;
        self.inner.line_state(event, shard_count).await
    }

    async fn line_entries(
        &self,
        event: &EventId,
        shard: u16,
        from_ticket: u64,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        let units = (limit as f64 * 100.0 / 4096.0).max(0.5);
        self.charge(Call::Query, vec![read(index_key(event, shard), units)])
            .await?;
        self.inner
            .line_entries(event, shard, from_ticket, limit)
            .await
    }

    async fn advance_line(
        &self,
        plan: &LineAdvance,
        retain_until: Timestamp,
    ) -> Result<AdvanceOutcome, StoreError> {
        let items = plan.sessions.len() + plan.shards.len() + plan.unchanged_shards.len() + 1;
        self.charge(Call::Transaction { items }, Self::advance_charges(plan))
            .await?;
        let outcome = self.inner.advance_line(plan, retain_until).await?;
        match &outcome {
            AdvanceOutcome::Applied => self.after_advance(plan),
            AdvanceOutcome::Conflict { .. } => {
                self.world.state().counters.transactions_conflicted += 1
            }
        }
        Ok(outcome)
    }

    async fn event_counters(&self, event: &EventId) -> Result<EventCounters, StoreError> {
        self.charge(Call::GetItem, vec![read(event_key(event), 1.0)])
            .await?;
        self.inner.event_counters(event).await
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        self.charge(Call::UpdateItem, vec![write(event_key(event), 1.0)])
            .await?;
        self.inner.set_capacity(event, capacity).await
    }
}
