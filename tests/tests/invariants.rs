//! The contract's six invariants, each proven against the emulator with real
//! concurrency: several granters polling one queue, duplicate and redelivered
//! messages, concurrent leaves, two events with one full.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use integration_tests::{Stack, eventually, lifecycle};
use waiting_room::domain::{EventId, Session, SessionId, SessionStatus, UserId};
use waiting_room::ports::{Arrival, EventStore};
use waiting_room::service::ServiceError;

const PATIENCE: Duration = Duration::from_secs(60);

fn event(name: &str) -> EventId {
    EventId::parse(name).unwrap()
}

fn user(n: usize) -> UserId {
    UserId::parse(&format!("fan-{n}")).unwrap()
}

/// Joins `count` users, `parallel` at a time; returns sessions in join order.
async fn join_many(stack: &Stack, event: &EventId, count: usize, parallel: usize) -> Vec<Session> {
    let service = Arc::new(stack.join_service(1));
    let mut sessions = Vec::new();
    let users: Vec<usize> = (0..count).collect();
    for chunk in users.chunks(parallel.max(1)) {
        let joins = chunk.iter().map(|&n| {
            let service = service.clone();
            let event = event.clone();
            async move { integration_tests::join_as_fan(&service, &event, &user(n)).await }
        });
        sessions.extend(futures::future::join_all(joins).await);
    }
    sessions
}

/// Leaves every active session after a short stay, until stopped: slots
/// keep being freed while the granters admit.
fn churn(stack: &Stack, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let (commands, stack) = (Arc::new(stack.commands()), stack.clone());
    tokio::spawn(async move {
        let mut round = 0u64;
        while !stop.load(Ordering::SeqCst) {
            round += 1;
            let active = stack
                .sessions()
                .await
                .into_iter()
                .filter(|s| s.status() == SessionStatus::Active);
            let leaves = active.enumerate().map(|(i, session)| {
                let commands = commands.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis((i as u64 * 7 + round) % 40)).await;
                    commands.leave(&session.id).await.unwrap();
                }
            });
            futures::future::join_all(leaves).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

async fn assert_quiet_counters_match(stack: &Stack, event: &EventId) {
    let counters = stack.store().event_counters(event, 1).await.unwrap();
    let sessions = stack.sessions().await;
    let active = sessions
        .iter()
        .filter(|s| &s.event_id == event && s.status() == SessionStatus::Active)
        .count();
    let admitted = sessions
        .iter()
        .filter(|s| &s.event_id == event && s.admission().is_some())
        .count();
    assert_eq!(
        counters.active, active as u64,
        "the slot counter must equal the ACTIVE sessions"
    );
    assert_eq!(
        counters.admitted, admitted as u64,
        "every admission is counted once"
    );
}

/// Invariant 1: at no instant are more than `capacity` sessions ACTIVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn hard_capacity_holds_with_concurrent_granters_and_leaves() {
    const CAPACITY: u32 = 6;
    const USERS: usize = 42;
    let stack = Stack::new("capacity").await;
    let e = event("E-capacity");
    stack.store().set_capacity(&e, CAPACITY).await.unwrap();
    let granters = stack.start_granters(4, &lifecycle(1_000), 1).await;

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let monitor = {
        let (stop, peak, stack) = (stop.clone(), peak.clone(), stack.clone());
        tokio::spawn(async move {
            // One scan page is one DynamoDB request: an instant of the table.
            while !stop.load(Ordering::SeqCst) {
                let active = stack
                    .sessions()
                    .await
                    .iter()
                    .filter(|s| s.status() == SessionStatus::Active)
                    .count();
                peak.fetch_max(active as u64, Ordering::SeqCst);
                // The emulator serves one request at a time: a scan back to
                // back would starve the granters it watches.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let churn = churn(&stack, stop.clone());
    join_many(&stack, &e, USERS, 12).await;

    // Thousands of calls, each served one at a time by the emulator beside
    // the rest of the suite: a hang guard, not a speed check.
    eventually(
        PATIENCE * 3,
        "every user admitted once and gone",
        || async { stack.store().event_counters(&e, 1).await.unwrap().left == USERS as u64 },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    monitor.await.unwrap();
    churn.await.unwrap();
    granters.stop().await;

    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= u64::from(CAPACITY),
        "{peak} sessions were ACTIVE at once, capacity {CAPACITY}"
    );
    assert!(
        peak >= 2,
        "the test did not reach any concurrency (peak {peak})"
    );
    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    assert_eq!((counters.admitted, counters.active), (USERS as u64, 0));
    assert_quiet_counters_match(&stack, &e).await;
    stack.tear_down().await;
}

/// Invariant 2: every way out of ACTIVE gives its slot back exactly once,
/// however often and concurrently it is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn concurrent_repeated_leaves_release_each_slot_exactly_once() {
    let stack = Stack::new("leaks").await;
    let e = event("E-leaks");
    stack.store().set_capacity(&e, 5).await.unwrap();
    let granters = stack.start_granters(2, &lifecycle(1_000), 1).await;
    let sessions = join_many(&stack, &e, 12, 12).await;
    eventually(PATIENCE, "five admitted", || async {
        stack.store().event_counters(&e, 1).await.unwrap().active == 5
    })
    .await;

    // Everyone leaves, each eight times at once: active and waiting alike.
    let commands = Arc::new(stack.commands());
    let leaves = sessions
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.id.clone(), 8))
        .map(|id| {
            let commands = commands.clone();
            async move {
                // A 503 says "try again" (96 leaves at once queue up in the
                // emulator past the SDK's timeout); a client does.
                let mut attempts = 0;
                loop {
                    match commands.leave(&id).await {
                        Err(ServiceError::Unavailable(_)) if attempts < 5 => attempts += 1,
                        outcome => break outcome,
                    }
                }
            }
        });
    for outcome in futures::future::join_all(leaves).await {
        outcome.unwrap();
    }
    // Anyone admitted in between by the freed slots leaves too.
    eventually(PATIENCE, "everyone has left", || async {
        let mut all_left = true;
        for s in stack.sessions().await {
            if s.status() != SessionStatus::Left {
                all_left = false;
                match commands.leave(&s.id).await {
                    Ok(_) | Err(ServiceError::Unavailable(_)) => {}
                    Err(other) => panic!("leave failed: {other}"),
                }
            }
        }
        all_left
    })
    .await;
    granters.stop().await;

    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    let admitted = stack
        .sessions()
        .await
        .iter()
        .filter(|s| s.admission().is_some())
        .count() as u64;
    assert_eq!(counters.active, 0, "a slot was leaked or given back twice");
    assert_eq!(
        counters.left, admitted,
        "each admitted session gave its slot back exactly once"
    );
    let report = waiting_room::service::admin::event_report(&stack.store(), &e, 1, 1_000)
        .await
        .unwrap();
    assert_eq!(
        report.left, 12,
        "left while active plus left while waiting counts everyone once"
    );
    assert_eq!(report.waiting, 0);
    assert_quiet_counters_match(&stack, &e).await;
    stack.tear_down().await;
}

/// Invariant 3: duplicate and redelivered join messages never admit twice
/// or count twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn duplicates_and_redeliveries_admit_exactly_once() {
    let stack = Stack::new("once").await;
    stack.set_visibility_timeout(1).await;
    let e = event("E-once");
    let sessions = join_many(&stack, &e, 30, 10).await;

    // The same sessions again under new deduplication ids, as a send retried
    // after SQS's five-minute window would arrive.
    for session in &sessions {
        let body = serde_json::to_string(&Arrival::for_session(session)).unwrap();
        stack
            .sqs
            .send_message()
            .queue_url(&stack.resources.join_queue_url)
            .message_body(body)
            .message_group_id(waiting_room::domain::line::message_group_id(&e, 0))
            .message_deduplication_id(format!("{}-again", session.id))
            .send()
            .await
            .unwrap();
    }
    // A granter that crashes after its write and before its delete: what it
    // handled comes back after the visibility timeout.
    let crashing = stack.granter(&lifecycle(1_000), 1);
    let consumer = stack.queue();
    let first = waiting_room::ports::QueueConsumer::receive(&consumer, 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!first.is_empty());
    crashing.handle_deliveries(&first).await;

    let granters = stack.start_granters(3, &lifecycle(1_000), 1).await;
    eventually(PATIENCE, "the queue drains", || async {
        stack.messages_in(&stack.resources.join_queue_url).await == 0
    })
    .await;
    granters.stop().await;

    let all = stack.sessions().await;
    assert!(
        all.iter().all(|s| s.status() == SessionStatus::Active),
        "everyone fits: all active"
    );
    let mut numbers: Vec<u64> = all
        .iter()
        .filter_map(|s| s.admission().map(|a| a.admission_no))
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=30).collect::<Vec<_>>(),
        "admission numbers are unique and gapless"
    );
    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    assert_eq!((counters.admitted, counters.active), (30, 30));
    assert_eq!(
        stack
            .messages_in(&stack.resources.join_dead_letter_queue_url)
            .await,
        0
    );
    stack.tear_down().await;
}

/// Invariant 4: within an event, users are admitted in join order — even
/// across shards, and even while a granter that died holds the first
/// joiner's message (its message group is blocked for the visibility
/// timeout). Before joins took their place themselves, the first joiner
/// was admitted after everyone the other shards filed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn admission_follows_join_order_across_shards_and_a_dead_granter() {
    const SHARDS: u16 = 4;
    const USERS: usize = 16;
    let stack = Stack::new("order").await;
    let e = event("E-order");
    stack.store().set_capacity(&e, 1).await.unwrap();
    let join = stack.join_service(SHARDS);
    let first = join
        .join(e.clone(), user(0), None)
        .await
        .unwrap()
        .session()
        .clone();
    // A granter receives the first joiner's message and dies with it.
    let held =
        waiting_room::ports::QueueConsumer::receive(&stack.queue(), 10, Duration::from_secs(2))
            .await
            .unwrap();
    assert!(
        held.iter().any(|d| d.body.contains(first.id.as_str())),
        "the dead granter holds the first joiner's message"
    );
    // Everyone else joins later, one at a time so join order is clear.
    let mut joined = vec![first];
    for n in 1..USERS {
        tokio::time::sleep(Duration::from_millis(20)).await;
        joined.push(
            join.join(e.clone(), user(n), None)
                .await
                .unwrap()
                .session()
                .clone(),
        );
    }
    let granters = stack.start_granters(3, &lifecycle(1), SHARDS).await;
    let stop = Arc::new(AtomicBool::new(false));
    let churn = churn(&stack, stop.clone());
    eventually(PATIENCE, "all admitted", || async {
        stack.store().event_counters(&e, 1).await.unwrap().admitted == USERS as u64
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    churn.await.unwrap();
    granters.stop().await;

    let by_id: HashMap<SessionId, Session> = stack
        .sessions()
        .await
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let admission_order: Vec<u64> = joined
        .iter()
        .map(|s| by_id[&s.id].admission().map(|a| a.admission_no).unwrap())
        .collect();
    assert_eq!(
        admission_order,
        (1..=USERS as u64).collect::<Vec<_>>(),
        "the n-th to join is the n-th admitted"
    );
    let shards: HashSet<u16> = joined.iter().map(|s| s.shard).collect();
    assert!(shards.len() > 1, "the line spread over shards");
    stack.tear_down().await;
}

/// Invariant 5: a join answered 202 is admitted, or ends by a rule the user
/// sees; nobody goes to the dead-letter queue for waiting; a join that fails
/// leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn nobody_is_lost() {
    let stack = Stack::new("lost").await;
    // A message handed back three times, five seconds apart, goes to the
    // dead-letter queue: a granter that gave back the messages of a full
    // event (the event is full for most of the test) would put its waiting
    // users there, while a granter merely slowed by a loaded emulator has
    // time to finish.
    stack.set_redrive(3, 5).await;
    let e = event("E-lost");
    stack.store().set_capacity(&e, 4).await.unwrap();
    let granters = stack.start_granters(3, &lifecycle(1_000), 1).await;
    let sessions = join_many(&stack, &e, 40, 8).await;
    let commands = stack.commands();
    // Some give up while waiting.
    let quitters: HashSet<SessionId> = sessions
        .iter()
        .skip(20)
        .step_by(5)
        .map(|s| s.id.clone())
        .collect();
    for id in &quitters {
        commands.leave(id).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churn = churn(&stack, stop.clone());
    eventually(PATIENCE, "every session ended", || async {
        stack
            .sessions()
            .await
            .iter()
            .all(|s| s.status() == SessionStatus::Left)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    churn.await.unwrap();
    // A session is in line from its join write (decision 0017), so wake-ups
    // can admit it, and it can leave, before a granter has taken its join
    // message; on a loaded machine those messages are still queued (or back
    // from a failed batch) when the last session ends. They must drain
    // without a granter giving up on them: a message that keeps failing ends
    // in the dead-letter queue, asserted below.
    eventually(PATIENCE, "the join queue drained", || async {
        stack.messages_in(&stack.resources.join_queue_url).await == 0
    })
    .await;
    granters.stop().await;

    for session in stack.sessions().await {
        if !quitters.contains(&session.id) {
            assert!(
                session.admission().is_some(),
                "{} left without ever being admitted",
                session.id
            );
        }
    }
    assert_eq!(
        stack
            .messages_in(&stack.resources.join_dead_letter_queue_url)
            .await,
        0,
        "nobody in the dead-letter queue"
    );
    assert_quiet_counters_match(&stack, &e).await;
    stack.tear_down().await;
}

#[tokio::test]
async fn a_join_whose_message_cannot_be_sent_leaves_nothing_behind() {
    let stack = Stack::new("unsent").await;
    let e = event("E-unsent");
    let mut broken = stack.join_service(1);
    let dead_sqs =
        aws_sdk_sqs::Client::new(&integration_tests::sdk_config_for("http://127.0.0.1:9").await);
    broken.queue =
        waiting_room::adapters::sqs::SqsQueue::new(dead_sqs, &stack.resources.join_queue_url);

    let failed = broken.join(e.clone(), user(1), None).await;
    assert!(
        matches!(failed, Err(ServiceError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(
        stack.sessions().await.is_empty(),
        "no session holds a place"
    );
    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    assert_eq!(
        (counters.active, counters.admitted),
        (0, 0),
        "no slot is held"
    );

    // The user's retry starts afresh: the failed attempt held no claim.
    let retried = stack
        .join_service(1)
        .join(e.clone(), user(1), None)
        .await
        .unwrap();
    assert!(matches!(
        retried,
        waiting_room::service::join::JoinOutcome::Created(_)
    ));
    stack.tear_down().await;
}

/// Invariant 6: a full event never delays admissions of another.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn a_full_event_does_not_delay_another() {
    let stack = Stack::new("isolation").await;
    let full = event("E-full");
    let open = event("E-open");
    stack.store().set_capacity(&full, 1).await.unwrap();
    stack.store().set_capacity(&open, 5).await.unwrap();
    let granters = stack.start_granters(2, &lifecycle(1_000), 1).await;
    join_many(&stack, &full, 40, 10).await;
    let open_sessions = join_many(&stack, &open, 5, 5).await;

    // Isolation, not speed: the open event fills while the full one's line
    // is still waiting (the explorer bounds the delay in virtual time).
    eventually(PATIENCE, "the open event's users admitted", || async {
        stack.store().event_counters(&open, 1).await.unwrap().active == 5
    })
    .await;
    eventually(
        PATIENCE,
        "the full event's line filed, none of it left in the queue",
        || async { stack.messages_in(&stack.resources.join_queue_url).await == 0 },
    )
    .await;
    granters.stop().await;

    let full_report = waiting_room::service::admin::event_report(&stack.store(), &full, 1, 1)
        .await
        .unwrap();
    assert_eq!((full_report.active, full_report.waiting), (1, 39));
    for s in &open_sessions {
        assert_eq!(stack.status_of(&s.id).await, Some(SessionStatus::Active));
    }
    assert_eq!(
        stack
            .messages_in(&stack.resources.join_dead_letter_queue_url)
            .await,
        0
    );
    stack.tear_down().await;
}

/// Invariant 6 on the stream path: an event whose every advance fails (a
/// damaged item in its line) never holds back another event's freed slot.
/// Before, the stream handler returned at the first failing event and the
/// mapping retried the batch forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn a_failing_event_never_holds_back_another_on_the_stream() {
    let stack = Stack::new("stream-isolation").await;
    let broken = event("E-a-broken");
    let healthy = event("E-b-healthy");
    for e in [&broken, &healthy] {
        stack.store().set_capacity(e, 1).await.unwrap();
    }
    let granters = stack.start_granters(1, &lifecycle(1), 1).await;
    let broken_fans = join_many(&stack, &broken, 2, 1).await;
    let healthy_fans = join_many(&stack, &healthy, 2, 1).await;
    eventually(PATIENCE, "one in, one waiting, in each event", || async {
        let mut ready = true;
        for e in [&broken, &healthy] {
            let counters = stack.store().event_counters(e, 1).await.unwrap();
            ready &= counters.active == 1 && counters.backlog.is_firm();
        }
        ready
    })
    .await;
    // Damage the broken event's waiting session as the line index shows it
    // (its place, the index's sort key): every read of that line fails from
    // now on.
    stack
        .dynamodb
        .update_item()
        .table_name(&stack.resources.table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("SESSION#{}", broken_fans[1].id)),
        )
        .update_expression("SET place = :bad")
        .expression_attribute_values(
            ":bad",
            aws_sdk_dynamodb::types::AttributeValue::S("bad".into()),
        )
        .send()
        .await
        .unwrap();
    // Both first fans leave: two freed slots on the stream, the broken one
    // first (events are handled in name order).
    let commands = stack.commands();
    commands.leave(&broken_fans[0].id).await.unwrap();
    commands.leave(&healthy_fans[0].id).await.unwrap();
    eventually(
        Duration::from_secs(45),
        "the healthy event's next fan admitted",
        || async { stack.status_of(&healthy_fans[1].id).await == Some(SessionStatus::Active) },
    )
    .await;
    // The broken event's wake-up was handed to the join queue, to be retried
    // there in its own message group.
    eventually(
        Duration::from_secs(45),
        "the broken event's wake-up on the join queue",
        || async { stack.messages_in(&stack.resources.join_queue_url).await > 0 },
    )
    .await;
    granters.stop().await;
    stack.tear_down().await;
}
