//! Unit tests of the services on the in-memory adapters.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::memory::{MemoryQueue, MemoryStore};
use crate::domain::admission::AdmissionPolicy;
use crate::domain::{Clock, EventId, ManualClock, SessionStatus, StayPolicy, Timestamp, UserId};
use crate::ports::{Delivery, OsRandom, QueueConsumer, SessionStore};
use crate::token::AdmissionSigner;

use super::ServiceError;
use super::granter::Granter;
use super::join::{JoinOutcome, JoinService};
use super::session_command::{LeaveOutcome, SessionCommands};
use super::status::StatusService;

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
            cache: Default::default(),
        }
    }

    fn commands(&self) -> SessionCommands<Arc<MemoryStore>> {
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

    fn status(&self, shards: u16) -> StatusService<Arc<MemoryStore>> {
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

mod lifecycle {
    use super::*;
    use crate::adapters::dynamodb::items::session_item;
    use crate::adapters::memory::MemoryEventSink;
    use crate::adapters::streams::ItemChange;
    use crate::service::admission_check::{AdmissionCheck, Refusal};
    use crate::service::cache::TtlCache;
    use crate::service::checkout::{CheckoutOutcomes, OutcomeResult};
    use crate::service::publisher::Publisher;
    use crate::service::sweeper::Sweeper;
    use crate::token::TokenVerifier;

    async fn admitted(world: &World, n: usize, capacity: u32) -> Vec<crate::domain::SessionId> {
        let join = world.join(1);
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(
                join.join(event(), user(i))
                    .await
                    .unwrap()
                    .session()
                    .id
                    .clone(),
            );
        }
        world.drain_queue(&world.granter(capacity, 1)).await;
        ids
    }

    #[tokio::test]
    async fn a_heartbeat_extends_an_active_stay_up_to_the_maximum() {
        let world = World::new();
        let id = admitted(&world, 1, 1).await.remove(0);
        let start = world.clock.now();
        world.clock.advance(Duration::from_secs(600));
        let session = world.commands().heartbeat(&id).await.unwrap();
        assert_eq!(
            session.expires_at(),
            Some(world.clock.now().plus(Duration::from_secs(900)))
        );
        world.clock.advance(Duration::from_secs(1000));
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
    async fn the_sweeper_expires_overdue_sessions_once_and_frees_their_slots() {
        let world = World::new();
        let ids = admitted(&world, 3, 2).await;
        let sweeper = Sweeper {
            commands: world.commands(),
            page: 1,
        };
        assert_eq!(
            sweeper.sweep().await.unwrap().expired,
            0,
            "nobody is overdue yet"
        );
        world.clock.advance(Duration::from_secs(901));
        let report = sweeper.sweep().await.unwrap();
        assert_eq!(
            report.expired, 2,
            "paging through the index finds all of them"
        );
        assert_eq!(sweeper.sweep().await.unwrap().expired, 0, "and only once");
        let counters = world.store.event_counters(&event()).await.unwrap();
        assert_eq!((counters.active, counters.expired), (0, 2));
        world
            .granter(2, 1)
            .advance(&event(), Vec::new())
            .await
            .unwrap();
        assert_eq!(
            world
                .store
                .get_session(&ids[2])
                .await
                .unwrap()
                .unwrap()
                .status,
            SessionStatus::Active
        );
    }

    #[tokio::test]
    async fn status_tells_the_wait_keeps_pollers_present_and_hands_out_the_token() {
        let world = World::new();
        let ids = admitted(&world, 3, 1).await;
        let status = world.status(1);
        let active = status.status(&ids[0]).await.unwrap();
        let token = active.admission_token.clone().unwrap();
        let claims = TokenVerifier::new(vec![signer().public_key()])
            .verify(&token, world.clock.now())
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
    async fn the_wait_estimate_follows_the_measured_admission_rate() {
        let world = World::new();
        let join = world.join(1);
        let mut ids = Vec::new();
        for i in 0..16 {
            ids.push(
                join.join(event(), user(i))
                    .await
                    .unwrap()
                    .session()
                    .id
                    .clone(),
            );
        }
        let granter = world.granter(2, 1);
        world.drain_queue(&granter).await;
        let commands = world.commands();
        // One admission every 30 s for five minutes: 120 an hour, which the
        // smoothed rate approaches from the first burst of two.
        for id in &ids[..10] {
            world.clock.advance(Duration::from_secs(30));
            commands.leave(id).await.unwrap();
            granter.advance(&event(), Vec::new()).await.unwrap();
        }
        let report = world.status(1).status(&ids[15]).await.unwrap();
        let ahead = report.people_ahead.unwrap();
        assert_eq!(ahead, 3);
        let wait = report.estimated_wait.unwrap().as_secs();
        assert!((100..=130).contains(&wait), "about 4 × 30 s, got {wait} s");
    }

    #[tokio::test]
    async fn checkout_outcomes_apply_once_whatever_the_order() {
        let world = World::new();
        let ids = admitted(&world, 3, 2).await;
        let outcomes = CheckoutOutcomes {
            commands: world.commands(),
        };
        let message = |kind: &str, id: &crate::domain::SessionId, extra: &str| {
            format!(
                r#"{{"type":"{kind}","session_id":"{id}","event_id":"E","user_id":"u0","order_id":"o-1"{extra}}}"#
            )
        };
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
        assert_eq!(completed.status, SessionStatus::Completed);
        assert_eq!(completed.ending.unwrap().order_id.as_deref(), Some("o-1"));

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
            failed.ending.unwrap().detail.as_deref(),
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

        let counters = world.store.event_counters(&event()).await.unwrap();
        assert_eq!(
            (counters.completed, counters.failed, counters.active),
            (1, 1, 0),
            "both slots given back once"
        );
    }

    fn change_of(
        old: Option<&crate::domain::Session>,
        new: Option<&crate::domain::Session>,
    ) -> ItemChange {
        let id = old.or(new).map(|s| s.id.clone()).unwrap();
        ItemChange {
            pk: format!("SESSION#{id}"),
            old: old.map(session_item),
            new: new.map(session_item),
        }
    }

    #[tokio::test]
    async fn the_publisher_turns_session_changes_into_events_and_fails_whole() {
        let world = World::new();
        let ids = admitted(&world, 2, 1).await;
        let first = world.store.get_session(&ids[0]).await.unwrap().unwrap();
        let mut joined = first.clone();
        joined.status = SessionStatus::Waiting;
        joined.admission = None;
        joined.ticket = None;
        let sink = MemoryEventSink::default();
        let publisher = Publisher {
            sink,
            signer: signer(),
        };
        let changes = vec![
            change_of(Some(&joined), Some(&first)),
            ItemChange {
                pk: "EVENT#E".into(),
                old: None,
                new: None,
            },
        ];
        publisher.sink.fail_next(1);
        assert!(publisher.publish(&changes).await.is_err());
        assert!(publisher.sink.published().is_empty());
        let events = publisher.publish(&changes).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["QUEUE_JOINED", "QUEUE_READY"]);
        assert_eq!(publisher.sink.published(), events);
        let mut broken = change_of(Some(&first), Some(&first));
        if let Some(image) = broken.new.as_mut() {
            image.remove("status");
        }
        assert!(
            publisher.publish(&[broken]).await.is_err(),
            "an unreadable change is not skipped"
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
        assert_eq!(check.check(&token).await.unwrap().sid, ids[0].to_string());
        world.commands().leave(&ids[0]).await.unwrap();
        assert_eq!(
            check.check(&token).await,
            Err(Refusal::SessionNotActive("LEFT"))
        );
        assert!(matches!(
            check.check("nonsense").await,
            Err(Refusal::Token(_))
        ));
    }
}
