//! Every call the services make to AWS goes through a gate: it takes a
//! random latency (which is how schedules interleave), may fail the call or
//! kill the caller before or after it applies, and hands the store's new
//! stream records to the checker. A killed caller never gets an answer: its
//! future hangs until whatever runs it gives up (the Lambda timeout, an
//! HTTP client's), as a dead function would.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use waiting_room::adapters::memory::MemoryStore;
use waiting_room::domain::admission::{AdmissionPlan, BacklogChange, NumberingPlan};
use waiting_room::domain::events::DomainEvent;
use waiting_room::domain::{
    EndReason, Ending, EventCounters, EventId, EventState, KeyDigest, LineEntry, Place, Session,
    SessionId, StateChange, TicketCounter, Timestamp, UserId,
};
use waiting_room::ports::{
    Arrival, Claim, Delivery, Discard, EndFrom, EndOutcome, EventSettings, EventSink, EventStore,
    Expiry, ExpiryStore, JoinQueue, LineStore, PuzzleLedger, Quarantine, QueueError, Redelivery,
    SessionStore, StoreError, Touch, WakeQueue, WriteOutcome,
};

use super::scenario::Switch;
use super::world::{Actor, Fault, World};

/// The store as one actor reaches it.
#[derive(Clone)]
pub struct GatedStore {
    pub world: Arc<World>,
    pub actor: Actor,
}

impl GatedStore {
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        event: Option<&EventId>,
        transactional: bool,
        apply: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<MemoryStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        tokio::time::sleep(self.world.latency()).await;
        let fault = self.world.fault_for(&self.actor, op, event, transactional);
        let label = || event.map_or_else(|| op.to_owned(), |e| format!("{op} {e}"));
        match fault {
            Fault::CrashBefore => {
                self.world
                    .note(format!("{} {} CRASH before", self.actor, label()));
                return std::future::pending().await;
            }
            Fault::Unavailable => {
                self.world
                    .note(format!("{} {} unavailable", self.actor, label()));
                return Err(StoreError::Unavailable("injected".into()));
            }
            Fault::Contention => {
                self.world
                    .note(format!("{} {} transaction conflict", self.actor, label()));
                return Err(StoreError::Contention("injected".into()));
            }
            _ => {}
        }
        let result = apply(self.world.store.clone()).await;
        self.world.after_store_call(&self.actor, op);
        match fault {
            Fault::CrashAfter => {
                self.world
                    .note(format!("{} {} applied, then CRASH", self.actor, label()));
                std::future::pending().await
            }
            Fault::LostAnswer => {
                self.world
                    .note(format!("{} {} applied, answer lost", self.actor, label()));
                Err(StoreError::Unavailable("answer lost".into()))
            }
            _ => {
                if matches!(
                    op,
                    "admit"
                        | "number"
                        | "end"
                        | "expire"
                        | "backlog"
                        | "create"
                        | "discard"
                        | "capacity"
                        | "late"
                ) {
                    self.world
                        .note(format!("{} {} → {}", self.actor, label(), outcome(&result)));
                }
                result
            }
        }
    }
}

fn outcome<T>(result: &Result<T, StoreError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(_) => "error",
    }
}

fn event_of(ids: &[SessionId]) -> Option<EventId> {
    ids.first().map(SessionId::event_id)
}

impl PuzzleLedger for GatedStore {
    async fn spend(
        &self,
        digest: &[u8; 32],
        key: &KeyDigest,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let (digest, key) = (*digest, key.clone());
        self.call("spend", None, false, move |s| async move {
            s.spend(&digest, &key, until).await
        })
        .await
    }
}

impl SessionStore for GatedStore {
    async fn create_session(
        &self,
        session: &Session,
        replacing: Option<&SessionId>,
        claim_ttl: Timestamp,
    ) -> Result<Claim, StoreError> {
        let (session, replacing) = (session.clone(), replacing.cloned());
        self.call(
            "create",
            Some(&session.event_id.clone()),
            true,
            move |s| async move {
                s.create_session(&session, replacing.as_ref(), claim_ttl)
                    .await
            },
        )
        .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let id = id.clone();
        self.call("get", None, false, move |s| async move {
            s.get_session(&id).await
        })
        .await
    }

    async fn discard(&self, session: &Session) -> Result<Discard, StoreError> {
        let session = session.clone();
        self.call(
            "discard",
            Some(&session.event_id.clone()),
            true,
            move |s| async move { s.discard(&session).await },
        )
        .await
    }

    async fn block(&self, event: &EventId, user: &UserId) -> Result<(), StoreError> {
        let (event, user) = (event.clone(), user.clone());
        self.call("block", Some(&event.clone()), false, move |s| async move {
            s.block(&event, &user).await
        })
        .await
    }

    async fn touch(&self, id: &SessionId, now: Timestamp) -> Result<Touch, StoreError> {
        let id = id.clone();
        let drop =
            self.world.scenario.switch == Switch::DropWaiting && self.world.rng().chance(0.3);
        let revive = self.world.scenario.switch == Switch::ReviveStays;
        let stay = self.world.scenario.stay;
        self.call("touch", None, false, move |s| async move {
            let touched = s.touch(&id, now).await?;
            if let (true, Touch::Touched(session)) = (drop, &touched) {
                // The broken variant: a waiting user vanishes.
                s.discard(session).await?;
            }
            if let (true, Touch::Touched(session)) = (revive, &touched) {
                // The broken variant (break 6b): the heartbeat extends a stay
                // that is over, before the sweeper gets to it.
                if let Some(end) = session.expires_at().filter(|end| *end <= now) {
                    let to = now.plus(stay);
                    if s.extend_stay(&id, end, to, Timestamp::from_millis(0))
                        .await?
                    {
                        return s.touch(&id, now).await;
                    }
                }
            }
            Ok(touched)
        })
        .await
    }

    async fn end_session(
        &self,
        id: &SessionId,
        from: EndFrom,
        ending: &Ending,
        retain_until: Timestamp,
    ) -> Result<EndOutcome, StoreError> {
        let (id, ending) = (id.clone(), ending.clone());
        let double = self.world.scenario.switch == Switch::DoubleRelease;
        let event = id.event_id();
        self.call("end", Some(&event), true, move |s| async move {
            let outcome = s.end_session(&id, from, &ending, retain_until).await?;
            if double && outcome == EndOutcome::Ended && from == EndFrom::Active {
                // The broken variant: the slot goes back a second time.
                s.set_active_for_tests(&id.event_id(), -1);
            }
            Ok(outcome)
        })
        .await
    }

    async fn record_late_completion(
        &self,
        id: &SessionId,
        was: EndReason,
        ending: &Ending,
    ) -> Result<bool, StoreError> {
        let (id, ending) = (id.clone(), ending.clone());
        let event = id.event_id();
        self.call("late", Some(&event), true, move |s| async move {
            s.record_late_completion(&id, was, &ending).await
        })
        .await
    }

    async fn extend_stay(
        &self,
        id: &SessionId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.call("extend", None, false, move |s| async move {
            s.extend_stay(&id, from, to, now).await
        })
        .await
    }
}

impl EventStore for GatedStore {
    async fn event_counters(
        &self,
        event: &EventId,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        let event = event.clone();
        self.call(
            "counters",
            Some(&event.clone()),
            false,
            move |s| async move { s.event_counters(&event, shard_count).await },
        )
        .await
        .map(|mut counters| {
            // The broken variants: everyone but the operator misses the
            // pause; fans' joins miss the close.
            let switch = self.world.scenario.switch;
            let misses_pause = switch == Switch::AdmitWhilePaused && self.actor != Actor::Admin;
            let misses_close =
                switch == Switch::IgnoreClose && matches!(self.actor, Actor::User(_));
            if misses_pause || misses_close {
                counters.state = EventState::Open;
            }
            if switch == Switch::AdmitBeforeDraw && self.actor.grants() {
                counters.admits_from = None;
            }
            counters
        })
    }

    async fn register_event(
        &self,
        event: &EventId,
        default_capacity: u32,
        shard_count: u16,
    ) -> Result<EventCounters, StoreError> {
        let event = event.clone();
        self.call(
            "register",
            Some(&event.clone()),
            false,
            move |s| async move {
                s.register_event(&event, default_capacity, shard_count)
                    .await
            },
        )
        .await
    }

    async fn list_event(&self, event: &EventId) -> Result<(), StoreError> {
        let event = event.clone();
        self.call("list", None, false, move |s| async move {
            s.list_event(&event).await
        })
        .await
    }

    async fn events(&self) -> Result<Vec<EventId>, StoreError> {
        self.call(
            "events",
            None,
            false,
            move |s| async move { s.events().await },
        )
        .await
    }

    async fn set_capacity(&self, event: &EventId, capacity: u32) -> Result<(), StoreError> {
        let event = event.clone();
        self.call(
            "capacity",
            Some(&event.clone()),
            false,
            move |s| async move { s.set_capacity(&event, capacity).await },
        )
        .await
    }

    async fn set_event_state(&self, change: &StateChange) -> Result<bool, StoreError> {
        let change = change.clone();
        self.call(
            "event state",
            Some(&change.event_id.clone()),
            false,
            move |s| async move { s.set_event_state(&change).await },
        )
        .await
    }

    async fn configure_event(
        &self,
        event: &EventId,
        settings: &EventSettings,
    ) -> Result<(), StoreError> {
        let (event, settings) = (event.clone(), settings.clone());
        self.call(
            "configure",
            Some(&event.clone()),
            false,
            move |s| async move { s.configure_event(&event, &settings).await },
        )
        .await
    }
}

impl LineStore for GatedStore {
    async fn waiting_among(&self, ids: &[SessionId]) -> Result<Vec<LineEntry>, StoreError> {
        let ids = ids.to_vec();
        let event = event_of(&ids);
        self.call(
            "waiting-among",
            event.as_ref(),
            false,
            move |s| async move { s.waiting_among(&ids).await },
        )
        .await
    }

    async fn line_front(
        &self,
        event: &EventId,
        shard: u16,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        let event = event.clone();
        let reverse = self.world.scenario.switch == Switch::ReverseOrder;
        self.call("front", Some(&event.clone()), false, move |s| async move {
            let mut front = s.line_front(&event, shard, limit).await?;
            if reverse {
                // The broken variant: the latest joiners appear first.
                front.reverse();
                let mut shifted: Vec<LineEntry> = Vec::with_capacity(front.len());
                let places: Vec<_> = front.iter().rev().map(|e| e.joined_at).collect();
                for (entry, joined_at) in front.iter().zip(places) {
                    shifted.push(LineEntry {
                        joined_at,
                        ..entry.clone()
                    });
                }
                front = shifted;
            }
            Ok(front)
        })
        .await
    }

    async fn line_after(
        &self,
        event: &EventId,
        shard: u16,
        after: &Place,
        limit: usize,
    ) -> Result<Vec<LineEntry>, StoreError> {
        let (event, after) = (event.clone(), after.clone());
        self.call("front", Some(&event.clone()), false, move |s| async move {
            s.line_after(&event, shard, &after, limit).await
        })
        .await
    }

    async fn shard_head(&self, event: &EventId, shard: u16) -> Result<u64, StoreError> {
        let event = event.clone();
        let stale = self.world.scenario.switch == Switch::StaleHeads;
        let world = self.world.clone();
        self.call("head", None, false, move |s| async move {
            let head = s.shard_head(&event, shard).await?;
            if stale && world.rng().chance(0.5) {
                // The broken variant: an old copy of the head, from a
                // cache of another instance.
                return Ok(head.saturating_sub(world.rng().between(1, 3)));
            }
            Ok(head)
        })
        .await
    }

    async fn ticket_counters(
        &self,
        event: &EventId,
        shards: &[u16],
    ) -> Result<Vec<TicketCounter>, StoreError> {
        let (event, shards) = (event.clone(), shards.to_vec());
        self.call(
            "tickets",
            Some(&event.clone()),
            false,
            move |s| async move { s.ticket_counters(&event, &shards).await },
        )
        .await
    }

    async fn number_sessions(&self, plan: &NumberingPlan) -> Result<WriteOutcome, StoreError> {
        let plan = plan.clone();
        self.call(
            "number",
            Some(&plan.event_id.clone()),
            true,
            move |s| async move { s.number_sessions(&plan).await },
        )
        .await
    }

    async fn admit(
        &self,
        plan: &AdmissionPlan,
        retain_until: Timestamp,
    ) -> Result<WriteOutcome, StoreError> {
        let mut plan = plan.clone();
        let switch = self.world.scenario.switch;
        let world = self.world.clone();
        self.call(
            "admit",
            Some(&plan.event_id.clone()),
            true,
            move |s| async move {
                if switch == Switch::OverAdmit {
                    // The broken variant: the capacity check is written out of
                    // the condition (read the counters just before).
                    if let (Some(expect), Ok(now)) = (
                        plan.counters.as_mut(),
                        s.event_counters(&plan.event_id, 1).await,
                    ) {
                        if let Some(slots) = expect.slots.as_mut() {
                            slots.capacity = now.capacity.unwrap_or(slots.capacity);
                            slots.active_at_most = now.active;
                        }
                        expect.admitted_seen = now.admitted;
                        expect.abandoned_seen = now.abandoned;
                    }
                }
                if switch == Switch::AdmitTwice && world.rng().chance(0.3) {
                    return s.admit_ignoring_status_for_tests(&plan, retain_until).await;
                }
                s.admit(&plan, retain_until).await
            },
        )
        .await
    }

    async fn update_backlog(
        &self,
        event: &EventId,
        change: BacklogChange,
    ) -> Result<bool, StoreError> {
        let event = event.clone();
        self.call(
            "backlog",
            Some(&event.clone()),
            false,
            move |s| async move { s.update_backlog(&event, change).await },
        )
        .await
    }
}

impl ExpiryStore for GatedStore {
    async fn overdue_sessions(
        &self,
        bucket: u16,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.call("overdue", None, false, move |s| async move {
            s.overdue_sessions(bucket, now, limit).await
        })
        .await
    }

    async fn expire_overdue(
        &self,
        event: &EventId,
        ids: &[SessionId],
        now: Timestamp,
        retain_until: Timestamp,
    ) -> Result<Expiry, StoreError> {
        let (event, ids) = (event.clone(), ids.to_vec());
        self.call("expire", Some(&event.clone()), true, move |s| async move {
            s.expire_overdue(&event, &ids, now, retain_until).await
        })
        .await
    }
}

/// The join queue (sending side) as one actor reaches it.
#[derive(Clone)]
pub struct GatedQueue {
    pub world: Arc<World>,
    pub actor: Actor,
}

impl GatedQueue {
    async fn gate(&self, op: &str) -> Result<Fault, QueueError> {
        tokio::time::sleep(self.world.latency()).await;
        match self.world.fault_for(&self.actor, op, None, false) {
            Fault::CrashBefore => {
                self.world.note(format!("{} {op} CRASH before", self.actor));
                std::future::pending().await
            }
            Fault::Unavailable | Fault::Contention => {
                self.world.note(format!("{} {op} unavailable", self.actor));
                Err(QueueError::Unavailable("injected".into()))
            }
            other => Ok(other),
        }
    }

    async fn after(&self, op: &str, fault: Fault) -> Result<(), QueueError> {
        match fault {
            Fault::CrashAfter => {
                self.world
                    .note(format!("{} {op} sent, then CRASH", self.actor));
                std::future::pending().await
            }
            Fault::LostAnswer => {
                self.world
                    .note(format!("{} {op} sent, answer lost", self.actor));
                Err(QueueError::Unavailable("answer lost".into()))
            }
            _ => Ok(()),
        }
    }
}

impl JoinQueue for GatedQueue {
    async fn send(&self, arrival: &Arrival) -> Result<(), QueueError> {
        let fault = self.gate("send").await?;
        self.world.join_queue.send(arrival).await?;
        self.after("send", fault).await
    }
}

impl WakeQueue for GatedQueue {
    async fn wake(
        &self,
        event: &EventId,
        arrivals: &[Arrival],
        deduplication_id: &str,
    ) -> Result<(), QueueError> {
        let fault = self.gate("wake").await?;
        self.world
            .note(format!("{} wake-up for {event} queued", self.actor));
        self.world
            .join_queue
            .wake(event, arrivals, deduplication_id)
            .await?;
        self.after("wake", fault).await
    }
}

impl Redelivery for GatedQueue {
    async fn redeliver_after(
        &self,
        deliveries: &[Delivery],
        pause: Duration,
    ) -> Result<(), QueueError> {
        let fault = self.gate("redeliver").await?;
        self.world
            .join_queue
            .redeliver_after(deliveries, pause)
            .await?;
        self.after("redeliver", fault).await
    }
}

/// The events topic as the publisher reaches it.
#[derive(Clone)]
pub struct GatedSink(pub GatedQueue);

impl EventSink for GatedSink {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), QueueError> {
        let fault = self.0.gate("publish").await?;
        if self.0.world.scenario.switch == Switch::DropEvents {
            // The broken variant: the topic loses some events.
            let kept: Vec<DomainEvent> = events
                .iter()
                .filter(|_| !self.0.world.rng().chance(0.2))
                .cloned()
                .collect();
            self.0.world.sink.publish(&kept).await?;
        } else {
            self.0.world.sink.publish(events).await?;
        }
        self.0.after("publish", fault).await
    }
}

/// A dead-letter queue as a function reaches it.
#[derive(Clone)]
pub struct GatedQuarantine {
    pub queue: GatedQueue,
    pub target: Arc<waiting_room::adapters::memory::MemoryQuarantine>,
}

impl Quarantine for GatedQuarantine {
    async fn quarantine(&self, id: &str, body: &str, reason: &str) -> Result<(), QueueError> {
        let fault = self.queue.gate("quarantine").await?;
        self.target.quarantine(id, body, reason).await?;
        self.queue.after("quarantine", fault).await
    }
}

/// How long a Lambda invocation may run before it is killed.
pub const LAMBDA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fan's browser waits for an answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
