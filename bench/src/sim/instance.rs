//! Granter instances that may die mid-batch, as a Lambda instance can
//! (out of memory, a timeout, the host going away): the instance's calls go
//! through a fuse; once it blows, the call in progress either reached AWS or
//! did not, and nothing after it ever happens. The run drops the instance's
//! work, leaves its batch undeleted and starts a fresh instance (with an
//! empty front cache).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waiting_room::domain::admission::{AdmissionPlan, BacklogChange, NumberingPlan};
use waiting_room::domain::{
    EndReason, Ending, EventCounters, EventId, KeyDigest, LineEntry, Place, Session, SessionId,
    StateChange, TicketCounter, Timestamp, UserId,
};
use waiting_room::ports::{
    Arrival, Claim, Delivery, Discard, EndFrom, EndOutcome, EventSettings, EventStore, Expiry,
    ExpiryStore, LineStore, PuzzleLedger, QueueError, Redelivery, SessionStore, StoreError, Touch,
    WakeQueue, WriteOutcome,
};

use super::queue::SimQueue;
use super::store::SimStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Intact,
    /// Dies at the call after `calls_left` more; `applied`: that call
    /// reaches AWS before the instance dies.
    Armed {
        calls_left: u32,
        applied: bool,
    },
    /// Its last call is on its way; nothing else will be.
    Dying,
    Blown,
}

/// Where an instance dies, if it does.
#[derive(Debug)]
pub struct Fuse(Mutex<State>);

enum Step {
    Go,
    /// The instance is dead (or about to be): the call is never made.
    Never,
    /// The call is made, then the instance dies.
    DieAfter,
}

impl Fuse {
    pub fn intact() -> Arc<Self> {
        Arc::new(Self(Mutex::new(State::Intact)))
    }

    /// The instance dies at its `calls`-th call from now (0: at the first);
    /// `applied` says whether that call takes effect.
    pub fn arm(&self, calls: u32, applied: bool) {
        *self.lock() = State::Armed {
            calls_left: calls,
            applied,
        };
    }

    pub fn is_armed(&self) -> bool {
        matches!(*self.lock(), State::Armed { .. })
    }

    pub fn is_blown(&self) -> bool {
        *self.lock() == State::Blown
    }

    /// Blow it now (the instance dies after all its calls).
    pub fn blow(&self) {
        *self.lock() = State::Blown;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn step(&self) -> Step {
        let mut state = self.lock();
        match *state {
            State::Intact => Step::Go,
            State::Dying | State::Blown => Step::Never,
            State::Armed {
                calls_left: 0,
                applied: true,
            } => {
                *state = State::Dying;
                Step::DieAfter
            }
            State::Armed {
                calls_left: 0,
                applied: false,
            } => {
                *state = State::Blown;
                Step::Never
            }
            State::Armed {
                calls_left,
                applied,
            } => {
                *state = State::Armed {
                    calls_left: calls_left - 1,
                    applied,
                };
                Step::Go
            }
        }
    }

    /// Runs `call` unless the instance is dead or dies at it; a dead
    /// instance never gets an answer.
    async fn guard<T>(&self, call: impl Future<Output = T>) -> T {
        match self.step() {
            Step::Go => call.await,
            Step::Never => std::future::pending().await,
            Step::DieAfter => {
                let _lost = call.await;
                self.blow();
                std::future::pending().await
            }
        }
    }
}

/// Runs an instance's `work` until it finishes, or until its fuse blows
/// (`None`: the instance died; its work is dropped where it stood).
pub async fn unless_dead<T>(fuse: &Fuse, work: impl Future<Output = T>) -> Option<T> {
    let died = std::future::poll_fn(|_| {
        // A fuse blows inside a call of `work`, which then never finishes;
        // `select` polls this right after, in the same pass.
        if fuse.is_blown() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    match futures::future::select(std::pin::pin!(work), std::pin::pin!(died)).await {
        futures::future::Either::Left((done, _)) => Some(done),
        futures::future::Either::Right(((), _)) => None,
    }
}

/// The store as one granter instance reaches it.
pub struct InstanceStore {
    pub store: Arc<SimStore>,
    pub fuse: Arc<Fuse>,
}

/// The join queue as one granter instance reaches it (for wake-ups).
pub struct InstanceWakes {
    pub queue: Arc<SimQueue>,
    pub fuse: Arc<Fuse>,
}

impl WakeQueue for InstanceWakes {
    async fn wake(
        &self,
        event: &EventId,
        arrivals: &[Arrival],
        deduplication_id: &str,
    ) -> Result<(), QueueError> {
        self.fuse
            .guard(self.queue.wake(event, arrivals, deduplication_id))
            .await
    }
}

impl Redelivery for InstanceWakes {
    async fn redeliver_after(
        &self,
        deliveries: &[Delivery],
        pause: Duration,
    ) -> Result<(), QueueError> {
        self.fuse
            .guard(self.queue.redeliver_after(deliveries, pause))
            .await
    }
}

impl PuzzleLedger for InstanceStore {
    async fn spend(
        &self,
        digest: &[u8; 32],
        key: &KeyDigest,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fuse.guard(self.store.spend(digest, key, until)).await
    }
}

impl SessionStore for InstanceStore {
    async fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.fuse
            .guard(self.store.create_session(session, replacing, claim_ttl))
            .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.fuse.guard(self.store.get_session(id)).await
    }

    async fn discard(&self, session: &Session) -> Result<Discard, StoreError> {
        self.fuse.guard(self.store.discard(session)).await
    }

    async fn block(&self, event: &EventId, user: &UserId) -> Result<(), StoreError> {
        self.fuse.guard(self.store.block(event, user)).await
    }

    async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Touch, StoreError> {
        self.fuse.guard(self.store.touch(id, now)).await
    }

    async fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> Result<EndOutcome, StoreError> {
        self.fuse
            .guard(self.store.end_session(id, from, ending, retain_until))
            .await
    }

    async fn record_late_completion(
        &self,
        id: &SessionId,
        was: EndReason,
        ending: &Ending,
    ) -> Result<bool, StoreError> {
        self.fuse
            .guard(self.store.record_late_completion(id, was, ending))
            .await
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.fuse
            .guard(self.store.extend_stay(id, from, to, now))
            .await
    }
}

impl EventStore for InstanceStore {
    async fn event_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        self.fuse
            .guard(self.store.event_counters(event, shard_count))
            .await
    }

    async fn register_event(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        self.fuse
            .guard(
                self.store
                    .register_event(event, default_capacity, shard_count),
            )
            .await
    }

    async fn list_event(&self, event: &EventId) -> Result<(), StoreError> {
        self.fuse.guard(self.store.list_event(event)).await
    }

    async fn events(&self) -> Result<Vec<EventId>, StoreError> {
        self.fuse.guard(self.store.events()).await
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        self.fuse
            .guard(self.store.set_capacity(event, capacity))
            .await
    }

    async fn set_event_state(&self, change: &StateChange) -> Result<bool, StoreError> {
        self.fuse.guard(self.store.set_event_state(change)).await
    }

    async fn configure_event(
        &self,
        event: &EventId,
        settings: &EventSettings,
    ) -> Result<(), StoreError> {
        self.fuse
            .guard(self.store.configure_event(event, settings))
            .await
    }
}

impl LineStore for InstanceStore {
    async fn waiting_among(&self, ids: &[SessionId]) -> Result<Vec<LineEntry>, StoreError> {
        self.fuse.guard(self.store.waiting_among(ids)).await
    }

    async fn line_front(
        &self,
        event: &EventId,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        self.fuse
            .guard(self.store.line_front(event, shard, limit))
            .await
    }

    async fn line_after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        self.fuse
            .guard(self.store.line_after(event, shard, after, limit))
            .await
    }

    async fn shard_head(&self, event: &EventId, shard: u16) -> Result<u64, StoreError> {
        self.fuse.guard(self.store.shard_head(event, shard)).await
    }

    async fn ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> Result<Vec<TicketCounter>, StoreError> {
        self.fuse
            .guard(self.store.ticket_counters(event, shards))
            .await
    }

    async fn number_sessions(&self, plan: &NumberingPlan) -> Result<WriteOutcome, StoreError> {
        self.fuse.guard(self.store.number_sessions(plan)).await
    }

    async fn admit(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        self.fuse.guard(self.store.admit(plan, retain_until)).await
    }

    async fn update_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> Result<bool, StoreError> {
        self.fuse
            .guard(self.store.update_backlog(event, change))
            .await
    }
}

impl ExpiryStore for InstanceStore {
    async fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.fuse
            .guard(self.store.overdue_sessions(bucket, now, limit))
            .await
    }

    async fn expire_overdue(
        &self,
        event: &EventId,
        ids: &[SessionId],
        now: Timestamp,
        retain_until: Timestamp,
    ) -> Result<Expiry, StoreError> {
        self.fuse
            .guard(self.store.expire_overdue(event, ids, now, retain_until))
            .await
    }
}
