//! Unit tests of the services on the in-memory adapters.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::memory::{MemoryQueue, MemoryStore};
use crate::domain::admission::AdmissionPolicy;
use crate::domain::{Clock, EventId, ManualClock, SessionStatus, Timestamp, UserId};
use crate::ports::{Delivery, JoinQueueConsumer, OsRandom, SessionStore};

use super::ServiceError;
use super::granter::Granter;
use super::join::{JoinOutcome, JoinService};
use super::session_command::{LeaveOutcome, SessionCommands};
use super::status::{LineCache, StatusService};

struct World {
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
    clock: ManualClock,
}

impl World {
    fn new() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            queue: Arc::new(MemoryQueue::new()),
            clock: ManualClock::starting_at(Timestamp::from_millis(1_800_000_000_000)),
        }
    }

    fn join(&self, shards: u16) -> JoinService<Arc<MemoryStore>, Arc<MemoryQueue>> {
        JoinService {
            store: self.store.clone(),
            queue: self.queue.clone(),
            clock: Arc::new(self.clock.clone()),
            ids: Arc::new(OsRandom),
            line_shards: shards,
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
        }
    }

    fn commands(&self) -> SessionCommands<Arc<MemoryStore>> {
        SessionCommands {
            store: self.store.clone(),
            clock: Arc::new(self.clock.clone()),
            ended_retention: Duration::from_secs(3600),
        }
    }

    fn status(&self, shards: u16) -> StatusService<Arc<MemoryStore>> {
        StatusService {
            store: self.store.clone(),
            clock: Arc::new(self.clock.clone()),
            line_shards: shards,
            line_cache: LineCache::new(Duration::ZERO),
        }
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
}

fn event() -> EventId {
    EventId::parse("E").unwrap()
}

fn user(n: usize) -> UserId {
    UserId::parse(&format!("u{n}")).unwrap()
}

#[tokio::test]
async fn a_join_is_stored_and_sent_once_and_a_repeat_gets_the_same_session() {
    let world = World::new();
    let join = world.join(1);
    let first = join.join(event(), user(1)).await.unwrap();
    let again = join.join(event(), user(1)).await.unwrap();
    assert!(matches!(first, JoinOutcome::Created(_)));
    assert_eq!(again, JoinOutcome::Existing(first.session().clone()));
    assert_eq!(
        world.queue.sent().len(),
        1,
        "the repeat is deduplicated by session id"
    );
}

#[tokio::test]
async fn a_join_whose_send_fails_is_undone() {
    let world = World::new();
    world.queue.fail_next(1);
    let failed = world.join(1).join(event(), user(1)).await;
    assert!(matches!(failed, Err(ServiceError::Unavailable(_))));
    assert!(
        world.store.all_sessions().is_empty(),
        "no session holds a place"
    );
    let retried = world.join(1).join(event(), user(1)).await.unwrap();
    assert!(matches!(retried, JoinOutcome::Created(_)));
}

#[tokio::test]
async fn a_join_whose_undo_also_fails_is_resent_by_the_retry() {
    let world = World::new();
    let join = world.join(1);
    // The session is stored, the send fails, and so does taking it back.
    world.queue.fail_next(1);
    world.store.fail_after(1, 1);
    assert!(join.join(event(), user(1)).await.is_err());
    let stranded = world.store.all_sessions();
    assert_eq!(
        stranded.len(),
        1,
        "the session stays, unfiled: no place, no slot"
    );
    assert_eq!(stranded[0].ticket, None);
    assert!(world.queue.sent().is_empty());

    let again = join.join(event(), user(1)).await.unwrap();
    assert_eq!(
        again.session().id,
        stranded[0].id,
        "the retry finds the same session..."
    );
    assert_eq!(world.queue.sent().len(), 1, "...and sends its message");
}

#[tokio::test]
async fn the_granter_admits_up_to_capacity_and_files_the_rest_in_join_order() {
    let world = World::new();
    let join = world.join(1);
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(
            join.join(event(), user(n))
                .await
                .unwrap()
                .session()
                .id
                .clone(),
        );
        world.clock.advance(Duration::from_millis(1));
    }
    let granter = world.granter(10, 1);
    world.drain_queue(&granter).await;
    assert_eq!(
        world.queue.visible_len(),
        0,
        "every message finished, none left waiting in SQS"
    );

    let state = world.store.line_state(&event(), 1).await.unwrap();
    assert_eq!((state.counters.active, state.waiting()), (10, 15));
    let status = world.status(1);
    for (place, id) in ids.iter().enumerate().skip(10) {
        let report = status.status(id).await.unwrap();
        assert_eq!(
            report.people_ahead,
            Some(place as u64 - 10),
            "position of {place}"
        );
    }

    // Five leave; exactly the next five in line are admitted.
    let commands = world.commands();
    for id in &ids[..5] {
        assert_eq!(commands.leave(id).await.unwrap(), LeaveOutcome::Left);
    }
    granter.advance(&event(), Vec::new()).await.unwrap();
    for (place, id) in ids.iter().enumerate() {
        let status = world.store.get_session(id).await.unwrap().unwrap().status;
        let expected = match place {
            0..5 => SessionStatus::Left,
            5..15 => SessionStatus::Active,
            _ => SessionStatus::Waiting,
        };
        assert_eq!(status, expected, "place {place}");
    }
}

#[tokio::test]
async fn sharded_lines_admit_across_shards_in_join_order() {
    let world = World::new();
    let join = world.join(4);
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(
            join.join(event(), user(n))
                .await
                .unwrap()
                .session()
                .id
                .clone(),
        );
        world.clock.advance(Duration::from_millis(1));
    }
    let granter = world.granter(0, 4);
    world.drain_queue(&granter).await;
    world.store.set_capacity(&event(), 40).await.unwrap();
    granter.advance(&event(), Vec::new()).await.unwrap();
    for (place, id) in ids.iter().enumerate() {
        let session = world.store.get_session(id).await.unwrap().unwrap();
        assert_eq!(
            session.admission.map(|a| a.admission_no),
            Some(place as u64 + 1),
            "place {place}"
        );
    }
}

#[tokio::test]
async fn unreadable_messages_are_set_aside_and_store_failures_retried() {
    let world = World::new();
    world.join(1).join(event(), user(1)).await.unwrap();
    let granter = world.granter(5, 1);
    let mut batch = world.queue.receive(10, Duration::ZERO).await.unwrap();
    batch.push(Delivery {
        message_id: "junk".into(),
        receipt_handle: "junk".into(),
        body: "{\"not\":\"a ticket\"}".into(),
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
}

#[tokio::test]
async fn concurrent_leaves_end_a_session_once() {
    let world = World::new();
    let id = world
        .join(1)
        .join(event(), user(1))
        .await
        .unwrap()
        .session()
        .id
        .clone();
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
        .filter(|o| matches!(o, Ok(LeaveOutcome::Left)))
        .count();
    assert_eq!(left, 1);
    let counters = world.store.event_counters(&event()).await.unwrap();
    assert_eq!((counters.active, counters.left), (0, 1));
}

#[tokio::test]
async fn heartbeat_and_leave_answer_for_unknown_and_ended_sessions() {
    let world = World::new();
    let commands = world.commands();
    let id = world
        .join(1)
        .join(event(), user(1))
        .await
        .unwrap()
        .session()
        .id
        .clone();
    world.clock.advance(Duration::from_secs(5));
    let touched = commands.heartbeat(&id).await.unwrap();
    assert_eq!(touched.last_seen_at, world.clock.now());
    assert_eq!(commands.leave(&id).await.unwrap(), LeaveOutcome::Left);
    assert!(matches!(
        commands.leave(&id).await.unwrap(),
        LeaveOutcome::AlreadyEnded(_)
    ));
    assert!(matches!(
        commands.heartbeat(&id).await,
        Err(ServiceError::SessionEnded(_))
    ));
    let unknown = crate::domain::SessionId::new(&event(), [1; 16]);
    assert_eq!(
        commands.leave(&unknown).await,
        Err(ServiceError::SessionNotFound)
    );
    assert_eq!(
        commands.heartbeat(&unknown).await,
        Err(ServiceError::SessionNotFound)
    );
}
