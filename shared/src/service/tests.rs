//! Unit tests of the services on the in-memory adapters.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::memory::{MemoryQueue, MemoryStore};
use crate::domain::admission::AdmissionPolicy;
use crate::domain::token::AdmissionSigner;
use crate::domain::{
    Clock, EventId, IdempotencyKey, ManualClock, SessionId, SessionStatus, Stage, StayPolicy,
    Timestamp, UserId,
};
use crate::ports::{
    Delivery, EventStore, JoinQueueMessage, LineStore, OsRandom, QueueConsumer, SessionStore,
};

use super::ServiceError;
use super::admin::AdminService;
use super::granter::{Granter, Wake};
use super::join::{JoinOutcome, JoinService};
use super::session_command::{Ended, SessionCommands};
use super::status::StatusService;

/// The services on one in-memory store and queue, with a hand-set clock
/// (the page's tests use it too).
pub(crate) struct World {
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) queue: Arc<MemoryQueue>,
    pub(crate) clock: ManualClock,
}

impl World {
    pub(crate) fn new() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            queue: Arc::new(MemoryQueue::new()),
            clock: ManualClock::starting_at(Timestamp::from_millis(1_800_000_000_000)),
        }
    }

    pub(crate) fn join(&self, shards: u16) -> JoinService<Arc<MemoryStore>, Arc<MemoryQueue>> {
        JoinService {
            store: self.store.clone(),
            queue: self.queue.clone(),
            clock: Arc::new(self.clock.clone()),
            ids: Arc::new(OsRandom),
            line_shards: shards,
            listed: Default::default(),
            states: Default::default(),
            join_keys: Default::default(),
        }
    }

    fn granter(&self, capacity: u32, shards: u16) -> Granter<Arc<MemoryStore>> {
        Granter {
            store: self.store.clone(),
            clock: Arc::new(self.clock.clone()),
            policy: AdmissionPolicy {
                default_capacity: capacity,
                active_stay: Duration::from_secs(900),
                abandon_after: None,
                max_changes_per_write: 50,
            },
            line_shards: shards,
            ended_retention: Duration::from_secs(3600),
            fronts: Default::default(),
        }
    }

    pub(crate) fn commands(&self) -> SessionCommands<Arc<MemoryStore>> {
        SessionCommands {
            store: self.store.clone(),
            clock: Arc::new(self.clock.clone()),
            ended_retention: Duration::from_secs(3600),
            stay: StayPolicy {
                stay: Duration::from_secs(900),
                max_stay: Duration::from_secs(1800),
            },
        }
    }

    /// The operators' service, as the admin API runs it (default capacity 1).
    fn admin(&self, shards: u16) -> AdminService<Arc<MemoryStore>> {
        AdminService {
            store: self.store.clone(),
            commands: self.commands(),
            clock: Arc::new(self.clock.clone()),
            ids: Arc::new(OsRandom),
            line_shards: shards,
            default_capacity: 1,
        }
    }

    pub(crate) fn status(&self, shards: u16) -> StatusService<Arc<MemoryStore>> {
        StatusService::new(
            self.store.clone(),
            Arc::new(self.clock.clone()),
            shards,
            signer(),
            Some(Duration::from_secs(300)),
            Duration::ZERO,
        )
    }

    /// Receives and handles everything in the queue, deleting what is done.
    async fn drain_queue(&self, granter: &Granter<Arc<MemoryStore>>) {
        loop {
            let batch = self.queue.receive(10, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                return;
            }
            let report = granter.handle_deliveries(&batch).await;
            let done: Vec<Delivery> = batch
                .into_iter()
                .filter(|d| report.handled.contains(&d.message_id))
                .collect();
            self.queue.delete(&done).await.unwrap();
        }
    }

    async fn status_of(&self, id: &SessionId) -> SessionStatus {
        self.store.get_session(id).await.unwrap().unwrap().status()
    }

    async fn joins(&self, shards: u16, users: std::ops::Range<usize>) -> Vec<SessionId> {
        let join = self.join(shards);
        let mut ids = Vec::new();
        for n in users {
            ids.push(
                join.join(event(), user(n), None)
                    .await
                    .unwrap()
                    .session()
                    .id
                    .clone(),
            );
            self.clock.advance(Duration::from_millis(1));
        }
        ids
    }
}

fn signer() -> AdmissionSigner {
    AdmissionSigner::generate("unit", [5; 32]).unwrap_or_else(|e| panic!("{e}"))
}

fn event() -> EventId {
    EventId::parse("E").unwrap()
}

fn user(n: usize) -> UserId {
    UserId::parse(&format!("u{n}")).unwrap()
}

/// An event of capacity 1 scheduled to open at `opens_at`.
fn opening_at(opens_at: Timestamp) -> crate::service::admin::Configuration {
    crate::service::admin::Configuration {
        capacity: Some(1),
        opens_at: Some(opens_at),
        ..Default::default()
    }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

/// The key a join that could not be confirmed tells its client to come back with.
fn unconfirmed_key(outcome: Result<JoinOutcome, ServiceError>) -> IdempotencyKey {
    match outcome {
        Err(ServiceError::JoinUnconfirmed { key, .. }) => key,
        other => panic!("expected an unconfirmed join, got {other:?}"),
    }
}

#[tokio::test]
async fn a_join_takes_its_place_at_once_and_its_retry_gets_the_same_session() {
    let world = World::new();
    let join = world.join(1);
    let first = join.join(event(), user(1), Some(key("k1"))).await.unwrap();
    assert_eq!(
        world.store.line_front(&event(), 0, 10).await.unwrap()[0].session_id,
        first.session().id,
        "in line before any granter ran"
    );
    let again = join.join(event(), user(1), Some(key("k1"))).await.unwrap();
    assert!(matches!(first, JoinOutcome::Created(_)));
    assert_eq!(again, JoinOutcome::Existing(first.session().clone()));
    assert_eq!(
        world.queue.sent().len(),
        1,
        "the repeat is deduplicated by session id"
    );
}

#[tokio::test]
async fn a_user_id_alone_opens_nobody_s_place() {
    // Whoever knows a fan's user id (often an e-mail address) must not get
    // their session: without the key of the join that took the place, a
    // join is refused and learns nothing about it.
    let world = World::new();
    let join = world.join(1);
    let victim = join.join(event(), user(1), None).await.unwrap();
    for attempt in [None, Some(key("guess")), Some(key("k1"))] {
        let taken = join.join(event(), user(1), attempt).await;
        assert_eq!(taken, Err(ServiceError::AlreadyJoined));
    }
    let keyed = join.join(event(), user(2), Some(key("k1"))).await.unwrap();
    for attempt in [None, Some(key("k2"))] {
        assert_eq!(
            join.join(event(), user(2), attempt).await,
            Err(ServiceError::AlreadyJoined)
        );
    }
    let sessions = world.store.all_sessions();
    assert_eq!(sessions.len(), 2, "no refused join stored anything");
    assert!(
        sessions
            .iter()
            .all(|s| s.status() == SessionStatus::Waiting)
    );
    assert_eq!(world.queue.sent().len(), 2);
    assert_ne!(victim.session().id, keyed.session().id);
}

#[tokio::test]
async fn a_join_whose_answer_was_lost_keeps_its_place_when_retried_with_its_key() {
    let world = World::new();
    let join = world.join(1);
    world.store.lose_next_join_answers(1);
    // Stored, but the store's answer never came: the client is told so, with
    // a key to come back with (it sent none).
    let key = unconfirmed_key(join.join(event(), user(1), None).await);
    let stored = world.store.all_sessions();
    assert_eq!(stored.len(), 1, "the place was taken");
    world.clock.advance(Duration::from_secs(20));
    let later = join.join(event(), user(2), None).await.unwrap();

    assert_eq!(
        join.join(event(), user(1), None).await,
        Err(ServiceError::AlreadyJoined),
        "a retry without the key cannot see it"
    );
    let again = join.join(event(), user(1), Some(key)).await.unwrap();
    assert_eq!(again, JoinOutcome::Existing(stored[0].clone()));
    assert!(
        again.session().place() < later.session().place(),
        "the retry keeps the place of the first attempt"
    );
}

#[tokio::test]
async fn a_join_whose_send_fails_is_undone() {
    let world = World::new();
    world.queue.fail_next(1);
    let failed = world.join(1).join(event(), user(1), None).await;
    assert!(matches!(failed, Err(ServiceError::Unavailable(_))));
    assert!(
        world.store.all_sessions().is_empty(),
        "no session holds a place"
    );
    let retried = world.join(1).join(event(), user(1), None).await.unwrap();
    assert!(matches!(retried, JoinOutcome::Created(_)));
}

#[tokio::test]
async fn a_join_whose_undo_also_fails_keeps_its_place_and_the_retry_resends() {
    let world = World::new();
    let join = world.join(1);
    world.queue.fail_next(1);
    // The event's state read, stored and listed; then the send fails, and
    // so does taking it back.
    world.store.fail_after(3, 1);
    let key = unconfirmed_key(join.join(event(), user(1), None).await);
    let kept = world.store.all_sessions();
    assert_eq!(kept.len(), 1, "the session stays, in line");
    assert_eq!(kept[0].ticket, None);
    assert!(world.queue.sent().is_empty());

    let again = join.join(event(), user(1), Some(key)).await.unwrap();
    assert_eq!(
        again.session().id,
        kept[0].id,
        "the retry finds the same session"
    );
    assert_eq!(
        again.session().joined_at,
        kept[0].joined_at,
        "and keeps its place"
    );
    assert_eq!(world.queue.sent().len(), 1, "and sends its message");
}

#[tokio::test]
async fn a_join_that_cannot_be_written_says_how_to_find_out() {
    let world = World::new();
    world.store.fail_after(1, 1);
    // The event's state is read; then the store could not say whether the write landed: the answer says
    // the place may exist and gives the key that finds out.
    let key = unconfirmed_key(world.join(1).join(event(), user(1), None).await);
    assert!(world.store.all_sessions().is_empty());
    // It had not: the retry with that key takes a place.
    let retried = world.join(1).join(event(), user(1), Some(key)).await;
    assert!(
        matches!(retried, Ok(JoinOutcome::Created(_))),
        "{retried:?}"
    );
}

#[tokio::test]
async fn the_granter_admits_up_to_capacity_in_join_order_and_numbers_the_rest() {
    let world = World::new();
    let ids = world.joins(1, 0..25).await;
    let granter = world.granter(10, 1);
    world.drain_queue(&granter).await;
    assert_eq!(
        world.queue.visible_len(),
        0,
        "every message finished, none left waiting in SQS"
    );
    let counters = world.store.event_counters(&event(), 1).await.unwrap();
    assert_eq!(
        (counters.active, counters.capacity),
        (10, Some(10)),
        "the default is stored"
    );
    let status = world.status(1);
    for (place, id) in ids.iter().enumerate().skip(10) {
        let report = status.status(id).await.unwrap();
        assert_eq!(
            report.people_ahead,
            Some(place as u64 - 10),
            "position of {place}"
        );
    }

    // Five leave; the stream would wake the granter: the next five go in.
    let commands = world.commands();
    for id in &ids[..5] {
        assert_eq!(commands.leave(id).await.unwrap(), Ended::Now);
    }
    granter.advance(&event(), Wake::default()).await.unwrap();
    for (place, id) in ids.iter().enumerate() {
        let expected = match place {
            0..5 => SessionStatus::Left,
            5..15 => SessionStatus::Active,
            _ => SessionStatus::Waiting,
        };
        assert_eq!(world.status_of(id).await, expected, "place {place}");
    }
}

#[tokio::test]
async fn sharded_lines_admit_across_shards_in_join_order() {
    let world = World::new();
    let ids = world.joins(4, 0..40).await;
    let granter = world.granter(0, 4);
    world.drain_queue(&granter).await;
    world.store.set_capacity(&event(), 40).await.unwrap();
    granter.advance(&event(), Wake::default()).await.unwrap();
    for (place, id) in ids.iter().enumerate() {
        let session = world.store.get_session(id).await.unwrap().unwrap();
        assert_eq!(
            session.admission().map(|a| a.admission_no),
            Some(place as u64 + 1),
            "place {place}"
        );
    }
}

#[tokio::test]
async fn a_batch_stuck_in_a_crashed_granter_overtakes_nobody() {
    // The first design's flaw: U0's message is held by a granter that died; later joiners of
    // other shards must not go first (their messages, a freed slot and the
    // reconciliation all admit from the line, where U0 already stands).
    let world = World::new();
    let join = world.join(8);
    let first = join
        .join(event(), user(0), None)
        .await
        .unwrap()
        .session()
        .clone();
    let stuck = world.queue.receive(1, Duration::ZERO).await.unwrap();
    assert_eq!(stuck.len(), 1, "the crashed granter holds U0's message");
    world.clock.advance(Duration::from_secs(30));
    let later = world.joins(8, 1..8).await;
    let granter = world.granter(1, 8);
    world.drain_queue(&granter).await;
    assert_eq!(
        world.status_of(&first.id).await,
        SessionStatus::Active,
        "U0 first"
    );
    for id in &later {
        assert_eq!(world.status_of(id).await, SessionStatus::Waiting);
    }
}

#[tokio::test]
async fn unreadable_messages_are_set_aside_and_store_failures_retried() {
    let world = World::new();
    world.join(1).join(event(), user(1), None).await.unwrap();
    let granter = world.granter(5, 1);
    let mut batch = world.queue.receive(10, Duration::ZERO).await.unwrap();
    batch.push(Delivery {
        message_id: "junk".into(),
        receipt_handle: "junk".into(),
        body: "{\"not\":\"a join message\"}".into(),
        receive_count: 1,
    });
    world.store.fail_next(1);
    let report = granter.handle_deliveries(&batch).await;
    assert_eq!(report.failed, vec![batch[0].message_id.clone()]);
    assert_eq!(report.unreadable.len(), 1);
    assert!(report.handled.is_empty());

    let report = granter.handle_deliveries(&batch[..1]).await;
    assert_eq!((report.handled.len(), report.admitted), (1, 1));
    let report = granter.handle_deliveries(&batch[..1]).await;
    assert_eq!(
        (report.handled.len(), report.admitted),
        (1, 0),
        "a redelivery is finished, not admitted again"
    );
    let counters = world.store.event_counters(&event(), 1).await.unwrap();
    assert_eq!((counters.admitted, counters.active), (1, 1));
}

#[tokio::test]
async fn one_failing_event_does_not_hold_up_another_in_a_batch() {
    let world = World::new();
    let granter = world.granter(5, 1);
    world.join(1).join(event(), user(1), None).await.unwrap();
    let other = EventId::parse("F").unwrap();
    world
        .join(1)
        .join(other.clone(), user(2), None)
        .await
        .unwrap();
    let batch = world.queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(batch.len(), 2);
    // Every read of event E fails; F goes on.
    world.store.fail_next(1);
    let report = granter.handle_deliveries(&batch).await;
    assert_eq!(report.handled.len(), 1);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.admitted, 1);
}

#[tokio::test]
async fn wake_up_messages_advance_their_event() {
    let world = World::new();
    let ids = world.joins(1, 0..2).await;
    let granter = world.granter(1, 1);
    world.drain_queue(&granter).await;
    world.commands().leave(&ids[0]).await.unwrap();
    crate::ports::WakeQueue::wake(world.queue.as_ref(), &event(), &[], "E:1")
        .await
        .unwrap();
    assert!(matches!(
        world.queue.pending()[0],
        JoinQueueMessage::Wake(_)
    ));
    world.drain_queue(&granter).await;
    assert_eq!(world.status_of(&ids[1]).await, SessionStatus::Active);
}

#[tokio::test]
async fn concurrent_leaves_end_a_session_once() {
    let world = World::new();
    let id = world.joins(1, 1..2).await.remove(0);
    let granter = world.granter(1, 1);
    world.drain_queue(&granter).await;
    let commands = Arc::new(world.commands());
    let leaves = (0..10).map(|_| {
        let (commands, id) = (commands.clone(), id.clone());
        tokio::spawn(async move { commands.leave(&id).await.unwrap() })
    });
    let outcomes = futures::future::join_all(leaves).await;
    let left = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Ended::Now)))
        .count();
    assert_eq!(left, 1);
    let counters = world.store.event_counters(&event(), 1).await.unwrap();
    assert_eq!((counters.active, counters.left), (0, 1));
}

#[tokio::test]
async fn heartbeat_and_leave_answer_for_unknown_and_ended_sessions() {
    let world = World::new();
    let commands = world.commands();
    let id = world.joins(1, 1..2).await.remove(0);
    world.clock.advance(Duration::from_secs(5));
    let touched = commands.heartbeat(&id).await.unwrap();
    assert_eq!(touched.last_seen_at, world.clock.now());
    assert_eq!(commands.leave(&id).await.unwrap(), Ended::Now);
    assert!(matches!(
        commands.leave(&id).await.unwrap(),
        Ended::Before(_)
    ));
    assert!(matches!(
        commands.heartbeat(&id).await,
        Err(ServiceError::SessionEnded(_))
    ));
    let unknown = SessionId::new(&event(), [1; 16]);
    assert_eq!(
        commands.leave(&unknown).await,
        Err(ServiceError::SessionNotFound)
    );
    assert_eq!(
        commands.heartbeat(&unknown).await,
        Err(ServiceError::SessionNotFound)
    );
}

#[tokio::test]
async fn a_waiting_user_who_left_and_was_deleted_by_ttl_holds_up_nobody() {
    // The first design's flaw: a leaver's record vanishing must not stop the line behind it.
    let world = World::new();
    let ids = world.joins(1, 0..3).await;
    let granter = world.granter(1, 1);
    world.drain_queue(&granter).await;
    world.commands().leave(&ids[1]).await.unwrap();
    world.clock.advance(Duration::from_secs(7200));
    assert_eq!(
        world.store.delete_expired(world.clock.now(), || true),
        1,
        "only the leaver's ended session is past its TTL"
    );
    assert!(
        world.store.get_session(&ids[1]).await.unwrap().is_none(),
        "gone"
    );
    world.commands().leave(&ids[0]).await.unwrap();
    granter.advance(&event(), Wake::default()).await.unwrap();
    assert_eq!(world.status_of(&ids[2]).await, SessionStatus::Active);
}

mod lifecycle {
    use super::*;
    use crate::adapters::memory::{MemoryEventSink, MemoryQuarantine};
    use crate::domain::Control;
    use crate::domain::changes::UnreadableRecord;
    use crate::domain::token::{TokenError, TokenVerifier};
    use crate::domain::{Change, StreamRecord};
    use crate::service::admin;
    use crate::service::admission_check::{AdmissionCheck, Refusal};
    use crate::service::cache::TtlCache;
    use crate::service::checkout::{CheckoutOutcomes, OutcomeResult};
    use crate::service::publisher::Publisher;
    use crate::service::sweeper::{Reconciler, SERVED_WITHIN, Sweeper};

    async fn admitted(world: &World, n: usize, capacity: u32) -> Vec<SessionId> {
        let ids = world.joins(1, 0..n).await;
        world.drain_queue(&world.granter(capacity, 1)).await;
        ids
    }

    #[tokio::test]
    async fn a_heartbeat_extends_an_active_stay_up_to_the_maximum() {
        let world = World::new();
        let id = admitted(&world, 1, 1).await.remove(0);
        let start = world
            .store
            .get_session(&id)
            .await
            .unwrap()
            .unwrap()
            .admission()
            .unwrap()
            .admitted_at;
        world.clock.advance(Duration::from_secs(600));
        let session = world.commands().heartbeat(&id).await.unwrap();
        assert_eq!(
            session.expires_at(),
            Some(world.clock.now().plus(Duration::from_secs(900)))
        );
        world.clock.advance(Duration::from_secs(800));
        let session = world.commands().heartbeat(&id).await.unwrap();
        assert_eq!(
            session.expires_at(),
            Some(start.plus(Duration::from_secs(1800))),
            "capped at the maximum"
        );
        assert_eq!(
            world
                .store
                .get_session(&id)
                .await
                .unwrap()
                .unwrap()
                .expires_at(),
            session.expires_at()
        );
    }

    #[tokio::test]
    async fn a_heartbeat_after_the_stay_ended_expires_the_session_and_says_so() {
        // Break 6b: a stay that is over is not revived by a heartbeat that
        // comes before the sweeper.
        let world = World::new();
        let ids = admitted(&world, 2, 1).await;
        world.clock.advance(Duration::from_secs(901));
        let answer = world.commands().heartbeat(&ids[0]).await;
        assert!(
            matches!(answer, Err(ServiceError::SessionEnded(_))),
            "{answer:?}"
        );
        assert_eq!(world.status_of(&ids[0]).await, SessionStatus::Expired);
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert_eq!(
            (counters.active, counters.expired),
            (0, 1),
            "its slot went back"
        );
    }

    #[tokio::test]
    async fn the_sweeper_expires_every_overdue_session_once_and_frees_their_slots() {
        let world = World::new();
        let ids = admitted(&world, 130, 120).await;
        let sweeper = Sweeper {
            commands: world.commands(),
            page: 7,
        };
        assert_eq!(sweeper.sweep().await.expired, 0, "nobody is overdue yet");
        world.clock.advance(Duration::from_secs(901));
        let report = sweeper.sweep().await;
        assert_eq!(report.expired, 120, "every bucket, every page");
        assert_eq!(sweeper.sweep().await.expired, 0, "and only once");
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert_eq!((counters.active, counters.expired), (0, 120));
        world
            .granter(120, 1)
            .advance(&event(), Wake::default())
            .await
            .unwrap();
        assert_eq!(world.status_of(&ids[125]).await, SessionStatus::Active);
    }

    #[tokio::test]
    async fn a_failing_bucket_does_not_stop_the_others() {
        let world = World::new();
        // Enough that the first bucket holds someone (ids are random: with
        // 40, one run in 13 left it empty).
        let ids = admitted(&world, 200, 200).await;
        world.clock.advance(Duration::from_secs(901));
        let sweeper = Sweeper {
            commands: world.commands(),
            page: 100,
        };
        // The first call fails: the first bucket's query.
        world.store.fail_next(1);
        let report = sweeper.sweep().await;
        assert_eq!(report.failed, 1);
        let in_first_bucket = ids
            .iter()
            .filter(|id| crate::domain::session::expiry_bucket(id) == 0)
            .count() as u64;
        assert!(in_first_bucket > 0, "the failure hides someone");
        assert_eq!(
            report.expired,
            200 - in_first_bucket,
            "the other buckets went on: {report:?}"
        );
        assert_eq!(sweeper.sweep().await.expired, in_first_bucket);
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_whose_own_wake_up_is_still_on_its_way_is_served_but_not_counted_a_repair() {
        let world = World::new();
        // Joined a moment ago, their messages not yet handled: capacity 1.
        let ids = world.joins(1, 0..2).await;
        let reconciler = Reconciler {
            granter: world.granter(1, 1),
        };
        let report = reconciler.reconcile().await.unwrap();
        assert_eq!(
            (report.repaired, report.armed, report.stranded),
            (0, 0, 0),
            "{report:?}"
        );
        assert_eq!(world.status_of(&ids[0]).await, SessionStatus::Active);
        // The second still waits, and the next run finds the hint armed.
        world.clock.advance(SERVED_WITHIN);
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert!(counters.backlog.is_firm(), "{counters:?}");
        let report = reconciler.reconcile().await.unwrap();
        assert_eq!((report.repaired, report.armed), (0, 0), "{report:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reconciliation_admits_a_line_no_wake_up_served_and_clears_an_empty_one() {
        let world = World::new();
        // No granter ever saw these joins: their messages and stream
        // records were lost. The joins listed the event all the same.
        let ids = world.joins(1, 0..3).await;
        world.clock.advance(SERVED_WITHIN);
        let reconciler = Reconciler {
            granter: world.granter(2, 1),
        };
        let report = reconciler.reconcile().await.unwrap();
        assert_eq!(
            (report.events, report.repaired, report.stranded),
            (1, 1, 1),
            "{report:?}"
        );
        assert_eq!(world.status_of(&ids[0]).await, SessionStatus::Active);
        assert_eq!(world.status_of(&ids[2]).await, SessionStatus::Waiting);
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert!(
            counters.backlog.is_firm(),
            "someone waits behind a full event"
        );

        // The last one leaves: the line is empty; two runs clear the hint.
        world.commands().leave(&ids[2]).await.unwrap();
        assert_eq!(reconciler.reconcile().await.unwrap().cleared, 0);
        world.clock.advance(Duration::from_secs(29));
        assert_eq!(
            reconciler.reconcile().await.unwrap().cleared,
            0,
            "not long enough"
        );
        world.clock.advance(Duration::from_secs(2));
        assert_eq!(reconciler.reconcile().await.unwrap().cleared, 1);
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert!(!counters.backlog.armed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_a_wake_up_fills_while_the_reconciliation_looks_is_no_strand() {
        let world = World::new();
        let ids = world.joins(1, 0..2).await;
        world.clock.advance(SERVED_WITHIN);
        let reconciler = Reconciler {
            granter: world.granter(1, 1),
        };
        // A working wake-up admits the front a second after the first look.
        let wake_up = {
            let granter = world.granter(1, 1);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                granter.advance(&event(), Wake::default()).await
            })
        };
        let report = reconciler.reconcile().await.unwrap();
        wake_up.await.unwrap().unwrap();
        assert_eq!(report.stranded, 0, "{report:?}");
        assert_eq!(
            report.gauges[0].free, 0,
            "the second look is the one reported"
        );
        assert_eq!(world.status_of(&ids[0]).await, SessionStatus::Active);

        // Paused: free slots and a fan waiting long, yet nothing stranded.
        admin::control(&world.store, &event(), Control::Pause, 1, world.clock.now())
            .await
            .unwrap();
        world.commands().leave(&ids[0]).await.unwrap();
        world.clock.advance(SERVED_WITHIN);
        let report = reconciler.reconcile().await.unwrap();
        assert_eq!((report.stranded, report.repaired), (0, 0), "{report:?}");
        assert_eq!(world.status_of(&ids[1]).await, SessionStatus::Waiting);
    }

    #[tokio::test]
    async fn status_tells_the_wait_keeps_pollers_present_and_hands_out_the_token() {
        let world = World::new();
        let ids = admitted(&world, 3, 1).await;
        let status = world.status(1);
        let active = status.status(&ids[0]).await.unwrap();
        let token = active.admission_token.clone().unwrap();
        let claims = TokenVerifier::new(vec![signer().public_key()])
            .verify(&token, &event(), world.clock.now())
            .unwrap();
        assert_eq!(claims.sid, ids[0].to_string());

        let waiting = status.status(&ids[2]).await.unwrap();
        assert_eq!(
            (waiting.people_ahead, waiting.position()),
            (Some(1), Some(2))
        );
        assert_eq!(
            waiting.estimated_wait, None,
            "no admission rate measured yet"
        );
        assert!(waiting.admission_token.is_none());

        // Presence is written only once half the abandonment limit passed.
        let seen = world
            .store
            .get_session(&ids[2])
            .await
            .unwrap()
            .unwrap()
            .last_seen_at;
        world.clock.advance(Duration::from_secs(100));
        status.status(&ids[2]).await.unwrap();
        assert_eq!(
            world
                .store
                .get_session(&ids[2])
                .await
                .unwrap()
                .unwrap()
                .last_seen_at,
            seen
        );
        world.clock.advance(Duration::from_secs(60));
        status.status(&ids[2]).await.unwrap();
        assert_eq!(
            world
                .store
                .get_session(&ids[2])
                .await
                .unwrap()
                .unwrap()
                .last_seen_at,
            world.clock.now()
        );
    }

    #[tokio::test]
    async fn the_position_never_goes_up_whichever_instance_answers() {
        // Break 6e: two status instances, one of which read the event before
        // the line moved, must still never show a higher position.
        let world = World::new();
        let ids = admitted(&world, 6, 1).await;
        let fresh = world.status(1);
        let cached = StatusService::new(
            world.store.clone(),
            Arc::new(world.clock.clone()),
            1,
            signer(),
            Some(Duration::from_secs(300)),
            Duration::from_secs(3600),
        );
        let before = cached.status(&ids[5]).await.unwrap().position().unwrap();
        world.commands().leave(&ids[0]).await.unwrap();
        world
            .granter(1, 1)
            .advance(&event(), Wake::default())
            .await
            .unwrap();
        let moved = fresh.status(&ids[5]).await.unwrap().position().unwrap();
        let from_cache = cached.status(&ids[5]).await.unwrap().position().unwrap();
        assert_eq!(moved, before - 1, "one admitted ahead");
        assert_eq!(
            from_cache, moved,
            "a cached read never shows a place already passed"
        );
    }

    #[tokio::test]
    async fn the_wait_estimate_follows_the_measured_admission_rate() {
        let world = World::new();
        let ids = world.joins(1, 0..16).await;
        let granter = world.granter(2, 1);
        world.drain_queue(&granter).await;
        let commands = world.commands();
        // One admission every 30 s for five minutes: 120 an hour, which the
        // smoothed rate approaches from the first burst of two.
        for id in &ids[..10] {
            world.clock.advance(Duration::from_secs(30));
            commands.leave(id).await.unwrap();
            granter.advance(&event(), Wake::default()).await.unwrap();
        }
        let report = world.status(1).status(&ids[15]).await.unwrap();
        let ahead = report.people_ahead.unwrap();
        assert_eq!(ahead, 3);
        let wait = report.estimated_wait.unwrap().as_secs();
        assert!((100..=130).contains(&wait), "about 4 × 30 s, got {wait} s");
    }

    fn outcome_message(kind: &str, id: &SessionId, extra: &str) -> String {
        format!(
            r#"{{"type":"{kind}","session_id":"{id}","event_id":"E","user_id":"u0","order_id":"o-1"{extra}}}"#
        )
    }

    #[tokio::test]
    async fn an_outcome_that_can_never_apply_is_set_aside_at_once_with_its_reason() {
        let world = World::new();
        let ids = admitted(&world, 2, 1).await;
        let waiting = ids[1].clone();
        let outcomes = CheckoutOutcomes {
            commands: world.commands(),
            quarantine: MemoryQuarantine::default(),
        };
        let delivery = |id: &str, body: String| Delivery {
            message_id: id.into(),
            receipt_handle: id.into(),
            body,
            receive_count: 1,
        };
        let batch = [
            delivery("m-garbage", "not json".into()),
            delivery(
                "m-applies",
                outcome_message("CHECKOUT_COMPLETED", &ids[0], ""),
            ),
            delivery(
                "m-waiting",
                outcome_message("CHECKOUT_COMPLETED", &waiting, ""),
            ),
        ];
        let failed = outcomes.handle_batch(&batch).await;
        assert_eq!(failed, Vec::<String>::new(), "nothing is left to retry");
        let held: Vec<(String, String)> = outcomes
            .quarantine
            .held()
            .into_iter()
            .map(|(id, _, reason)| (id, reason))
            .collect();
        assert_eq!(held.len(), 2, "{held:?}");
        assert_eq!(held[0].0, "m-garbage");
        assert!(held[0].1.starts_with("not an outcome message"), "{held:?}");
        assert_eq!(
            held[1],
            (
                "m-waiting".into(),
                format!("session {waiting} is WAITING, not admitted")
            )
        );
        let applied = world.store.get_session(&ids[0]).await.unwrap().unwrap();
        assert_eq!(applied.status(), SessionStatus::Completed);
        let untouched = world.store.get_session(&waiting).await.unwrap().unwrap();
        assert_eq!(untouched.status(), SessionStatus::Waiting);
    }

    #[tokio::test]
    async fn checkout_outcomes_apply_once_whatever_the_order() {
        let world = World::new();
        let ids = admitted(&world, 3, 2).await;
        let outcomes = CheckoutOutcomes {
            commands: world.commands(),
            quarantine: MemoryQuarantine::default(),
        };
        let message = outcome_message;
        assert_eq!(
            outcomes
                .apply(&message("CHECKOUT_COMPLETED", &ids[0], ""))
                .await,
            OutcomeResult::Applied
        );
        assert_eq!(
            outcomes
                .apply(&message("CHECKOUT_COMPLETED", &ids[0], ""))
                .await,
            OutcomeResult::AlreadyEnded
        );
        assert_eq!(
            outcomes
                .apply(&message("CHECKOUT_FAILED", &ids[0], ""))
                .await,
            OutcomeResult::AlreadyEnded,
            "a later outcome changes nothing"
        );
        let completed = world.store.get_session(&ids[0]).await.unwrap().unwrap();
        assert_eq!(completed.status(), SessionStatus::Completed);
        assert_eq!(completed.ending().unwrap().order_id.as_deref(), Some("o-1"));

        assert_eq!(
            outcomes
                .apply(&message(
                    "CHECKOUT_FAILED",
                    &ids[1],
                    r#","reason":"card declined""#
                ))
                .await,
            OutcomeResult::Applied
        );
        let failed = world.store.get_session(&ids[1]).await.unwrap().unwrap();
        assert_eq!(
            failed.ending().unwrap().detail.as_deref(),
            Some("card declined")
        );

        assert!(
            matches!(
                outcomes
                    .apply(&message("CHECKOUT_EXPIRED", &ids[2], ""))
                    .await,
                OutcomeResult::Rejected(_)
            ),
            "not admitted"
        );
        for garbage in [
            "{",
            "{}",
            r#"{"type":"CHECKOUT_WON","session_id":"x","event_id":"E","user_id":"u"}"#,
        ] {
            assert!(
                matches!(outcomes.apply(garbage).await, OutcomeResult::Rejected(_)),
                "{garbage}"
            );
        }
        let elsewhere = message("CHECKOUT_COMPLETED", &ids[2], "")
            .replace(r#""event_id":"E""#, r#""event_id":"F""#);
        assert!(
            matches!(outcomes.apply(&elsewhere).await, OutcomeResult::Rejected(_)),
            "event must match the session"
        );
        world.store.fail_next(1);
        assert!(matches!(
            outcomes
                .apply(&message("CHECKOUT_COMPLETED", &ids[2], ""))
                .await,
            OutcomeResult::Retry(_)
        ));

        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert_eq!(
            (counters.completed, counters.failed, counters.active),
            (1, 1, 0),
            "both slots given back once"
        );
    }

    #[tokio::test]
    async fn a_purchase_completed_after_the_stay_ran_out_is_recorded() {
        // Break 6d: the purchase happened; the record must say so.
        let world = World::new();
        let ids = admitted(&world, 1, 1).await;
        world.clock.advance(Duration::from_secs(901));
        let sweeper = Sweeper {
            commands: world.commands(),
            page: 10,
        };
        assert_eq!(sweeper.sweep().await.expired, 1);
        let outcomes = CheckoutOutcomes {
            commands: world.commands(),
            quarantine: MemoryQuarantine::default(),
        };
        let completed = outcome_message("CHECKOUT_COMPLETED", &ids[0], "");
        assert_eq!(outcomes.apply(&completed).await, OutcomeResult::AppliedLate);
        assert_eq!(
            outcomes.apply(&completed).await,
            OutcomeResult::AlreadyEnded
        );
        assert_eq!(
            outcomes
                .apply(&outcome_message("CHECKOUT_FAILED", &ids[0], ""))
                .await,
            OutcomeResult::AlreadyEnded
        );
        let session = world.store.get_session(&ids[0]).await.unwrap().unwrap();
        assert_eq!(session.status(), SessionStatus::Completed);
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert_eq!(
            (counters.active, counters.expired, counters.completed),
            (0, 0, 1)
        );
    }

    fn record(id: &str, change: Result<Change, UnreadableRecord>) -> StreamRecord {
        StreamRecord {
            id: id.into(),
            change,
            written_at: None,
        }
    }

    #[tokio::test]
    async fn the_publisher_sets_aside_what_it_cannot_read_and_reports_what_it_could_not_send() {
        // Break 6c: one undecodable record must not hold back the others.
        let world = World::new();
        let ids = admitted(&world, 1, 1).await;
        let first = world.store.get_session(&ids[0]).await.unwrap().unwrap();
        let mut joined = first.clone();
        joined.stage = Stage::Waiting;
        joined.ticket = None;
        let publisher = Publisher {
            sink: MemoryEventSink::default(),
            quarantine: MemoryQuarantine::default(),
            signer: signer(),
        };
        let records = vec![
            record(
                "1",
                Err(UnreadableRecord {
                    reason: "bad".into(),
                    raw: "{}".into(),
                }),
            ),
            record(
                "2",
                Ok(Change::Session {
                    old: Some(Box::new(joined)),
                    new: Some(Box::new(first.clone())),
                }),
            ),
            record("3", Ok(Change::Other)),
        ];
        publisher.sink.fail_next(1);
        let report = publisher.publish(&records).await;
        assert_eq!(report.quarantined, vec!["1".to_owned()]);
        assert_eq!(
            report.failed,
            vec!["2".to_owned(), "3".to_owned()],
            "from the first unsent"
        );
        assert!(publisher.sink.published().is_empty());
        let report = publisher.publish(&records[1..]).await;
        let kinds: Vec<&str> = report.published.iter().map(|e| e.kind.name()).collect();
        assert_eq!(kinds, vec!["QUEUE_JOINED", "QUEUE_READY"]);
        assert!(report.failed.is_empty());
        assert_eq!(publisher.quarantine.held().len(), 1);
        assert_eq!(
            report.published[0].partition,
            ids[0].to_string(),
            "ordered per session"
        );
    }

    #[tokio::test]
    async fn the_admission_check_wants_a_valid_token_of_an_active_session() {
        let world = World::new();
        let ids = admitted(&world, 1, 1).await;
        let check = AdmissionCheck {
            verifier: TokenVerifier::new(vec![signer().public_key()]),
            store: world.store.clone(),
            clock: Arc::new(world.clock.clone()),
            sessions: TtlCache::new(Duration::ZERO),
        };
        let token = world
            .status(1)
            .status(&ids[0])
            .await
            .unwrap()
            .admission_token
            .unwrap();
        let admitted = check.check(&token, &event()).await.unwrap();
        assert_eq!(admitted.claims.sid, ids[0].to_string());
        assert_eq!(admitted.user_id, user(0));
        let other = EventId::parse("F").unwrap();
        assert_eq!(
            check.check(&token, &other).await,
            Err(Refusal::Token(TokenError::WrongAudience)),
            "a token opens its own event only"
        );
        world.commands().leave(&ids[0]).await.unwrap();
        assert_eq!(
            check.check(&token, &event()).await,
            Err(Refusal::SessionNotActive("LEFT"))
        );
        assert!(matches!(
            check.check("nonsense", &event()).await,
            Err(Refusal::Token(_))
        ));
    }
}

#[tokio::test]
async fn a_cached_front_never_hides_who_joined_after_it_was_read() {
    // Found by the emulator tests: a granter's cached "complete" front,
    // emptied by other granters' admissions, claimed that nobody waited.
    let world = World::new();
    let ids = world.joins(1, 0..2).await;
    let stream_granter = world.granter(1, 1);
    let queue_granter = world.granter(1, 1);
    world.drain_queue(&queue_granter).await;
    // The stream granter reads (and caches) the front: ids[1] waits.
    world.commands().leave(&ids[0]).await.unwrap();
    let slot_freed = |world: &World| {
        let store = world.store.clone();
        async move { store.event_counters(&event(), 1).await.unwrap() }
    };
    let freed = Wake {
        counters: Some(slot_freed(&world).await),
        use_cache: true,
        ..Wake::default()
    };
    stream_granter.advance(&event(), freed).await.unwrap();
    assert_eq!(world.status_of(&ids[1]).await, SessionStatus::Active);
    // A newcomer joins; the queue granter is busy elsewhere. ids[1] leaves:
    // the stream granter's cache still holds its old front.
    let newcomer = world.joins(1, 2..3).await.remove(0);
    world.commands().leave(&ids[1]).await.unwrap();
    let freed = Wake {
        counters: Some(slot_freed(&world).await),
        use_cache: true,
        ..Wake::default()
    };
    stream_granter.advance(&event(), freed).await.unwrap();
    assert_eq!(world.status_of(&newcomer).await, SessionStatus::Active);
}

/// A store model whose indexes show every change `lag` after it, on the
/// world's clock.
struct LaggingIndexes {
    clock: ManualClock,
    lag: Duration,
}

impl crate::adapters::memory::StoreModel for LaggingIndexes {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn index_lag(&self) -> Duration {
        self.lag
    }
}

#[tokio::test]
async fn sessions_the_lagging_index_still_shows_waiting_are_passed_over() {
    // Found by the simulator: at 10,000 joins a second the line index, a
    // second or two behind the table, shows dozens of sessions other
    // granters have just admitted. A granter planned them, found them gone,
    // read the index again, planned them again… and gave up after its
    // setbacks with slots free, so its join messages came back, failed the
    // same way, and in the end filled the dead-letter queue.
    let mut world = World::new();
    world.store = Arc::new(MemoryStore::modelled(Arc::new(LaggingIndexes {
        clock: world.clock.clone(),
        lag: Duration::from_secs(1),
    })));
    let early = world.joins(1, 0..5).await;
    world.clock.advance(Duration::from_secs(2));
    // One granter numbers and admits them; the index will not show that
    // for a second.
    let first = world.granter(10, 1);
    world.drain_queue(&first).await;
    for id in &early {
        assert_eq!(world.status_of(id).await, SessionStatus::Active);
    }
    let late = world.joins(1, 5..6).await.remove(0);
    // Another instance, with nothing cached, handles the newcomer's join.
    let second = world.granter(10, 1);
    let batch = world.queue.receive(10, Duration::ZERO).await.unwrap();
    let report = second.handle_deliveries(&batch).await;
    assert_eq!(report.failed, Vec::<String>::new(), "{report:?}");
    assert!(report.unadvanced.is_empty(), "{report:?}");
    assert_eq!(report.admitted, 1);
    assert_eq!(world.status_of(&late).await, SessionStatus::Active);
}

#[tokio::test]
async fn a_join_batch_that_gives_up_under_contention_hands_its_event_to_a_wake_up() {
    // Found by the simulator: join batches that gave up under the first
    // minute's contention were retried as they were, holding their shard's
    // message group for a visibility timeout each time; they came back
    // together, failed together, and reached the dead-letter queue after
    // a hundred receives, while every later join of those shards waited
    // behind them.
    use crate::adapters::memory::MemoryQuarantine;
    use crate::runtime::granter::handle_batch;

    let world = World::new();
    let ids = world.joins(1, 0..3).await;
    let granter = world.granter(5, 1);
    let batch = world.queue.receive(10, Duration::ZERO).await.unwrap();
    assert_eq!(batch.len(), 3);
    world.store.contend_next_admits(1_000);
    let report = handle_batch(&granter, &MemoryQuarantine::default(), &world.queue, &batch).await;
    world.store.contend_next_admits(0);
    assert_eq!(report.failed, Vec::<String>::new());
    assert_eq!(report.handled.len(), 3);
    assert_eq!(report.handed_off, vec![event()]);
    world.queue.delete(&batch).await.unwrap();
    // Numbered, in line, and the event's wake-up is on the queue, carrying
    // the joins (the line index need not show them yet).
    for id in &ids {
        let session = world.store.get_session(id).await.unwrap().unwrap();
        assert_eq!(session.status(), SessionStatus::Waiting);
        assert!(session.ticket.is_some(), "{session:?}");
    }
    let carried: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    assert!(matches!(
        world.queue.pending().as_slice(),
        [JoinQueueMessage::Wake(wake)] if wake.wake_event_id == "E"
            && wake.arrivals.iter().map(|a| a.session_id.clone()).collect::<Vec<_>>() == carried
    ));
    world.drain_queue(&granter).await;
    for id in &ids {
        assert_eq!(world.status_of(id).await, SessionStatus::Active);
    }
}

mod scheduled {
    use super::*;
    use crate::domain::draw::draw_order;
    use crate::domain::line::DRAW_SETTLES;
    use crate::domain::{Control, EventState};
    use crate::service::admin::Configuration;

    /// Admits one at a time (capacity 1): each admitted fan leaves and the
    /// granter advances. The order they got in.
    async fn admission_order(
        world: &World,
        granter: &Granter<Arc<MemoryStore>>,
        n: usize,
    ) -> Vec<SessionId> {
        let commands = world.commands();
        let mut order = Vec::new();
        for _ in 0..n {
            granter.advance(&event(), Wake::default()).await.unwrap();
            let active: Vec<SessionId> = world
                .store
                .all_sessions()
                .into_iter()
                .filter(|s| s.event_id == event() && s.status() == SessionStatus::Active)
                .map(|s| s.id)
                .collect();
            assert_eq!(active.len(), 1, "capacity 1");
            commands.leave(&active[0]).await.unwrap();
            order.push(active[0].clone());
        }
        order
    }

    #[tokio::test]
    async fn the_pre_queue_goes_in_by_the_recorded_draw_before_anyone_who_joined_after() {
        let world = World::new();
        let shards = 2;
        let opens_at = world.clock.now().plus(Duration::from_secs(60));
        let admin = world.admin(shards);
        let report = admin
            .configure(&event(), &opening_at(opens_at))
            .await
            .unwrap();
        assert_eq!(
            (report.state, report.draw_seed),
            ("SCHEDULED", None),
            "the seed stays secret"
        );

        let early = world.joins(shards, 0..8).await;
        let status = world.status(shards);
        for id in &early {
            let report = status.status(id).await.unwrap();
            assert_eq!(
                (report.opens_at, report.people_ahead),
                (Some(opens_at), None),
                "WAITING with the opening time and no position"
            );
            assert!(report.poll_after.unwrap() >= Duration::from_secs(2));
        }
        let granter = world.granter(1, shards);
        world.drain_queue(&granter).await;
        let counters = world.store.event_counters(&event(), shards).await.unwrap();
        assert_eq!(
            (counters.state, counters.active),
            (EventState::Scheduled, 0)
        );

        // Two join just after the opening time: in line behind the whole
        // pre-queue. Their shards' messages wait behind the held ones.
        world.clock.advance(Duration::from_secs(61));
        let late = world.joins(shards, 8..10).await;
        for id in &late {
            let session = world.store.get_session(id).await.unwrap().unwrap();
            assert_eq!(session.draw, None);
        }
        world.drain_queue(&granter).await;
        assert_eq!(
            world
                .store
                .event_counters(&event(), shards)
                .await
                .unwrap()
                .active,
            0,
            "nobody admitted before the draw settles"
        );

        // The held messages come back once it has settled: the granter
        // opens the event (as of its opening time), numbers the pre-queue
        // in draw order and admits.
        world.clock.advance(DRAW_SETTLES);
        world.queue.expire_in_flight();
        world.drain_queue(&granter).await;
        assert_eq!(world.queue.visible_len(), 0, "every message done");
        let opened = world.store.event_counters(&event(), shards).await.unwrap();
        assert_eq!(
            (opened.state, opened.state_changed_at, opened.admits_from),
            (
                EventState::Open,
                Some(opens_at),
                Some(opens_at.plus(DRAW_SETTLES))
            )
        );
        let seed = opened.draw_seed.unwrap();
        for id in &early {
            let report = status.status(id).await.unwrap();
            assert!(report.opens_at.is_none());
            assert!(
                report.people_ahead.is_some() || report.session.status() != SessionStatus::Waiting,
                "numbered by the draw"
            );
        }

        let mut expected = draw_order(seed, &early);
        expected.extend(late.iter().cloned());
        let order = admission_order(&world, &granter, 10).await;
        assert_eq!(order, expected, "the draw's order, then join order");
        assert_ne!(order[..8], early[..], "not join order");
    }

    #[tokio::test]
    async fn opening_by_hand_draws_too_and_bad_configurations_change_nothing() {
        let world = World::new();
        let shards = 2;
        let admin = world.admin(shards);
        let now = world.clock.now();
        let refused = |r: Result<_, ServiceError>| matches!(r, Err(ServiceError::Misconfigured(_)));
        assert!(
            refused(admin.configure(&event(), &opening_at(now)).await),
            "not in the future"
        );
        let closes_first = Configuration {
            closes_at: Some(Some(now.plus(Duration::from_secs(30)))),
            ..opening_at(now.plus(Duration::from_secs(60)))
        };
        assert!(refused(admin.configure(&event(), &closes_first).await));
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert_eq!(
            (counters.state, counters.capacity),
            (EventState::Open, None),
            "nothing changed"
        );

        admin
            .configure(&event(), &opening_at(now.plus(Duration::from_secs(3600))))
            .await
            .unwrap();
        let early = world.joins(shards, 0..6).await;
        assert!(matches!(
            admin.control(&event(), Control::Pause).await,
            Err(ServiceError::RefusedControl(_))
        ));
        let opened = admin.control(&event(), Control::Open).await.unwrap();
        assert_eq!((opened.from, opened.state), ("SCHEDULED", "OPEN"));
        let counters = world.store.event_counters(&event(), shards).await.unwrap();
        assert_eq!(
            counters.admits_from,
            Some(world.clock.now().plus(DRAW_SETTLES))
        );
        world.clock.advance(DRAW_SETTLES);
        let granter = world.granter(1, shards);
        // A wake-up after the settle numbers every shard's line in draw
        // order, with the pre-queue's messages still held (they wait for
        // the old time): everyone waiting has a position at once.
        granter.advance(&event(), Wake::default()).await.unwrap();
        let status = world.status(shards);
        for id in &early {
            let report = status.status(id).await.unwrap();
            assert!(
                report.session.status() == SessionStatus::Active || report.position().is_some(),
                "{report:?}"
            );
        }
        let order = admission_order(&world, &granter, 6).await;
        assert_eq!(order, draw_order(counters.draw_seed.unwrap(), &early));

        // An event that took joins cannot be scheduled afterwards.
        let other = EventId::parse("F").unwrap();
        world
            .join(1)
            .join(other.clone(), user(1), None)
            .await
            .unwrap();
        assert!(refused(
            admin
                .configure(&other, &opening_at(now.plus(Duration::from_secs(7200))))
                .await
        ));
    }

    #[tokio::test]
    async fn joins_stop_at_the_closing_time_and_the_event_closes_itself() {
        let world = World::new();
        let admin = world.admin(1);
        let closes_at = world.clock.now().plus(Duration::from_secs(30));
        admin
            .configure(
                &event(),
                &Configuration {
                    closes_at: Some(Some(closes_at)),
                    origin_url: Some(Some("https://shop.example/buy".into())),
                    ..Configuration::default()
                },
            )
            .await
            .unwrap();
        world.joins(1, 0..2).await;
        world.clock.advance(Duration::from_secs(31));
        assert!(matches!(
            world.join(1).join(event(), user(5), None).await,
            Err(ServiceError::EventClosed)
        ));
        let granter = world.granter(1, 1);
        granter.advance(&event(), Wake::default()).await.unwrap();
        let counters = world.store.event_counters(&event(), 1).await.unwrap();
        assert_eq!(
            (counters.state, counters.state_changed_at, counters.active),
            (EventState::Closed, Some(closes_at), 1),
            "closed at its time, and draining"
        );
        assert_eq!(
            counters.origin_url.as_deref(),
            Some("https://shop.example/buy")
        );
    }
}

mod configured {
    use super::*;
    use crate::service::admin::Configuration;

    #[tokio::test]
    async fn an_events_own_stay_longest_stay_and_abandonment_limit_apply_to_it_alone() {
        let world = World::new();
        let admin = world.admin(1);
        // Longest stay shorter than the stay: refused, nothing written.
        let inverted = Configuration {
            stay: Some(Some(Duration::from_secs(120))),
            max_stay: Some(Some(Duration::from_secs(60))),
            ..Configuration::default()
        };
        assert!(matches!(
            admin.configure(&event(), &inverted).await,
            Err(ServiceError::Misconfigured(_))
        ));
        assert_eq!(
            world.store.event_counters(&event(), 1).await.unwrap().stay,
            None
        );
        let own = Configuration {
            stay: Some(Some(Duration::from_secs(60))),
            max_stay: Some(Some(Duration::from_secs(90))),
            abandon_after: Some(Some(Duration::from_secs(30))),
            ..Configuration::default()
        };
        let report = admin.configure(&event(), &own).await.unwrap();
        assert_eq!(
            (
                report.stay_seconds,
                report.max_stay_seconds,
                report.abandon_after_seconds
            ),
            (Some(60), Some(90), Some(30))
        );

        let ids = world.joins(1, 0..3).await;
        let granter = world.granter(1, 1);
        world.drain_queue(&granter).await;
        let admitted = world.store.get_session(&ids[0]).await.unwrap().unwrap();
        let admission = admitted.admission().unwrap();
        assert_eq!(
            admission.expires_at,
            admission.admitted_at.plus(Duration::from_secs(60)),
            "the event's stay, not the deployment's 900 s"
        );
        // A heartbeat extends up to the event's longest stay (90 s).
        world.clock.advance(Duration::from_secs(50));
        let extended = world.commands().heartbeat(&ids[0]).await.unwrap();
        assert_eq!(
            extended.expires_at(),
            Some(admission.admitted_at.plus(Duration::from_secs(90)))
        );
        // Status keeps a polling fan present within the event's 30 s, and
        // asks for polls within a third of it.
        let report = world.status(1).status(&ids[1]).await.unwrap();
        assert!(
            report.poll_after.unwrap() <= Duration::from_secs(10),
            "{report:?}"
        );
        // The silent one is abandoned after the event's 30 s.
        world.commands().leave(&ids[0]).await.unwrap();
        world.clock.advance(Duration::from_secs(31));
        world.status(1).status(&ids[1]).await.unwrap();
        granter.advance(&event(), Wake::default()).await.unwrap();
        assert_eq!(
            world.status_of(&ids[1]).await,
            SessionStatus::Active,
            "polled"
        );
        assert_eq!(
            world.status_of(&ids[2]).await,
            SessionStatus::Expired,
            "silent 81 s"
        );
    }
}

mod draw_numbering {
    use super::*;
    use crate::domain::draw::draw_order;
    use crate::domain::line::DRAW_SETTLES;
    use crate::domain::{Control, EventState, Session};

    #[tokio::test]
    async fn a_big_pre_queue_is_numbered_a_part_per_wake_up_resuming_where_it_stopped() {
        let world = World::new();
        let admin = world.admin(1);
        admin
            .configure(
                &event(),
                &opening_at(world.clock.now().plus(Duration::from_secs(3600))),
            )
            .await
            .unwrap();
        let early = world.joins(1, 0..1_000).await;
        admin.control(&event(), Control::Open).await.unwrap();
        world.clock.advance(DRAW_SETTLES);
        let granter = world.granter(1, 1);
        granter.advance(&event(), Wake::default()).await.unwrap();
        let counter = world
            .store
            .ticket_counters(&event(), &[0])
            .await
            .unwrap()
            .remove(0);
        assert!(!counter.drawn, "900 in the first call, not all 1,000");
        assert!(counter.drawn_through.is_some());
        // Another instance's wake-up resumes where the first stopped.
        world
            .granter(1, 1)
            .advance(&event(), Wake::default())
            .await
            .unwrap();
        let counter = world
            .store
            .ticket_counters(&event(), &[0])
            .await
            .unwrap()
            .remove(0);
        assert!(counter.drawn);
        let seed = world
            .store
            .event_counters(&event(), 1)
            .await
            .unwrap()
            .draw_seed
            .unwrap();
        let mut tickets = Vec::new();
        for id in draw_order(seed, &early) {
            tickets.push(world.store.get_session(&id).await.unwrap().unwrap().ticket);
        }
        let expected: Vec<Option<u64>> = (0..1_000).map(Some).collect();
        assert_eq!(tickets, expected, "consecutive, in draw order, each once");
    }

    #[tokio::test]
    async fn an_event_that_opened_or_has_someone_in_line_cannot_be_scheduled() {
        let world = World::new();
        let admin = world.admin(1);
        admin
            .configure(
                &event(),
                &opening_at(world.clock.now().plus(Duration::from_secs(60))),
            )
            .await
            .unwrap();
        admin.control(&event(), Control::Open).await.unwrap();
        assert!(matches!(
            admin
                .configure(
                    &event(),
                    &opening_at(world.clock.now().plus(Duration::from_secs(120)))
                )
                .await,
            Err(ServiceError::Misconfigured(_))
        ));
        // A fan in line whose join never marked the event (its listing
        // failed): the line itself says so.
        let other = EventId::parse("F").unwrap();
        let fan = Session::new_waiting(
            SessionId::new(&other, [3; 16]),
            user(1),
            0,
            world.clock.now(),
        );
        world
            .store
            .create_session(&fan, None, world.clock.now().plus(Duration::from_secs(60)))
            .await
            .unwrap();
        assert!(matches!(
            admin
                .configure(
                    &other,
                    &opening_at(world.clock.now().plus(Duration::from_secs(60)))
                )
                .await,
            Err(ServiceError::Misconfigured(_))
        ));
        assert_eq!(
            world.store.event_counters(&other, 1).await.unwrap().state,
            EventState::Open
        );
    }
}
