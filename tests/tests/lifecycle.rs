//! The session lifecycle against the emulator: expiry, abandonment, tokens,
//! checkout outcomes and domain events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use integration_tests::{Stack, eventually, lifecycle};
use serde_json::{Value, json};
use waiting_room::adapters::streams::StartAt;
use waiting_room::domain::token::{AdmissionClaims, AdmissionSigner};
use waiting_room::domain::{EndReason, EventId, Session, SessionId, SessionStatus, UserId};
use waiting_room::ports::{EventStore, SessionStore};
use waiting_room::runtime::authorizer::authorize;
use waiting_room::runtime::publisher::poll_table_stream;
use waiting_room::setup::config::LifecycleSettings;

const PATIENCE: Duration = Duration::from_secs(60);

fn event(name: &str) -> EventId {
    EventId::parse(name).unwrap()
}

async fn join(stack: &Stack, event: &EventId, users: std::ops::Range<usize>) -> Vec<SessionId> {
    let service = stack.join_service(1);
    let mut ids = Vec::new();
    for n in users {
        let user = UserId::parse(&format!("fan-{n}")).unwrap();
        ids.push(
            integration_tests::join_as_fan(&service, event, &user)
                .await
                .id,
        );
    }
    ids
}

async fn session(stack: &Stack, id: &SessionId) -> Session {
    stack.store().get_session(id).await.unwrap().unwrap()
}

fn short_stays() -> LifecycleSettings {
    LifecycleSettings {
        active_stay: Duration::from_secs(1),
        active_max_stay: Duration::from_secs(2),
        ..lifecycle(100)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn expiry_returns_each_slot_once_under_concurrent_sweepers_and_leaves() {
    let stack = Stack::new("expiry").await;
    let e = event("E-expiry");
    let settings = short_stays();
    let granters = stack.start_granters(2, &settings, 1).await;
    let ids = join(&stack, &e, 0..12).await;
    eventually(PATIENCE, "all admitted", || async {
        stack.store().event_counters(&e, 1).await.unwrap().active == 12
    })
    .await;
    granters.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // Three sweepers race each other and six users leaving, twice each.
    let sweepers = (0..3).map(|_| {
        let sweeper = stack.sweeper(&settings);
        tokio::spawn(async move {
            for _ in 0..3 {
                sweeper.sweep().await;
            }
        })
    });
    let commands = Arc::new(stack.commands_with(&settings));
    let leaves = ids
        .iter()
        .take(6)
        .flat_map(|id| [id.clone(), id.clone()])
        .map(|id| {
            let commands = commands.clone();
            tokio::spawn(async move {
                commands.leave(&id).await.unwrap();
            })
        });
    let tasks: Vec<_> = sweepers.chain(leaves).collect();
    for task in tasks {
        task.await.unwrap();
    }

    let sessions: Vec<Session> =
        futures::future::join_all(ids.iter().map(|id| session(&stack, id))).await;
    let expired = sessions
        .iter()
        .filter(|s| s.status() == SessionStatus::Expired)
        .count() as u64;
    let left = sessions
        .iter()
        .filter(|s| s.status() == SessionStatus::Left)
        .count() as u64;
    assert_eq!(expired + left, 12, "every overdue session ended");
    assert!(expired >= 6, "the six who never left expired");
    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    assert_eq!(
        (counters.active, counters.expired, counters.left),
        (0, expired, left),
        "each slot given back once"
    );
    for s in sessions
        .iter()
        .filter(|s| s.status() == SessionStatus::Expired)
    {
        assert_eq!(s.ending().map(|e| e.reason), Some(EndReason::Expired));
    }
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn an_abandoned_waiting_user_gives_up_the_place_and_the_next_is_admitted() {
    let stack = Stack::new("abandon").await;
    let e = event("E-abandon");
    stack.store().set_capacity(&e, 1).await.unwrap();
    let settings = LifecycleSettings {
        abandon_after: Some(Duration::from_secs(2)),
        ..lifecycle(1)
    };
    let granters = stack.start_granters(1, &settings, 1).await;
    let ids = join(&stack, &e, 0..3).await;
    let (first, silent, polling) = (&ids[0], &ids[1], &ids[2]);
    // The first and the third keep polling from the start; the second goes
    // quiet. (However slow the emulator is, only the second can be skipped:
    // at the first admission or when it reaches the front.)
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let status = stack.status_with(&settings);
        let (ids, stop) = ([first.clone(), polling.clone()], stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for id in &ids {
                    status.status(id).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    eventually(PATIENCE, "the first admitted", || async {
        session(&stack, first).await.status() == SessionStatus::Active
    })
    .await;
    // Long enough for the silent user to be over the abandonment limit.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stack.commands().leave(first).await.unwrap();
    eventually(PATIENCE, "the polling user admitted", || async {
        session(&stack, polling).await.status() == SessionStatus::Active
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    poller.await.unwrap();
    granters.stop().await;

    let abandoned = session(&stack, silent).await;
    assert_eq!(abandoned.status(), SessionStatus::Expired);
    assert_eq!(
        abandoned.ending().map(|e| e.reason),
        Some(EndReason::Abandoned)
    );
    let report = waiting_room::service::admin::event_report(&stack.store(), &e, 1, 1)
        .await
        .unwrap();
    assert_eq!((report.active, report.abandoned, report.waiting), (1, 1, 0));
    stack.tear_down().await;
}

/// An authorizer request for `GET /events/{eventId}/checkout` of `event`
/// (`None`: a route that names no event).
fn authorizer_request(token: Option<&str>, event: Option<&str>) -> Value {
    let path = format!("/events/{}/checkout", event.unwrap_or("-"));
    let parameters = match event {
        Some(event) => json!({ "eventId": event }),
        None => json!({}),
    };
    json!({
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": format!("arn:aws:execute-api:us-east-1:123456789012:api/$default/GET{path}"),
        "identitySource": token.map(|t| vec![format!("Bearer {t}")]),
        "routeKey": "GET /events/{eventId}/checkout",
        "rawPath": path,
        "rawQueryString": "",
        "pathParameters": parameters,
        "headers": {},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "example.com",
            "domainPrefix": "example",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "r1",
            "routeKey": "GET /events/{eventId}/checkout",
            "stage": "$default",
            "time": "23/Nov/2026:20:00:00 +0000",
            "timeEpoch": 1_795_000_000_000u64
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_authorizer_admits_valid_tokens_of_active_sessions_only() {
    let stack = Stack::new("tokens").await;
    let e = event("E-tokens");
    let granters = stack.start_granters(1, &lifecycle(5), 1).await;
    let ids = join(&stack, &e, 0..1).await;
    eventually(PATIENCE, "admitted", || async {
        session(&stack, &ids[0]).await.status() == SessionStatus::Active
    })
    .await;
    granters.stop().await;
    let token = stack
        .status_service(1)
        .status(&ids[0])
        .await
        .unwrap()
        .admission_token
        .unwrap();
    let check = stack.admission_check();
    let allowed = |answer: &Value| answer["isAuthorized"] == json!(true);

    let here = Some(e.as_str());
    let answer = authorize(&check, authorizer_request(Some(&token), here)).await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(answer["context"]["session_id"], json!(ids[0].to_string()));
    assert_eq!(answer["context"]["user_id"], json!("fan-0"));
    // A token opens the event it was issued for, on a route that says so.
    for (what, route) in [("another event's", Some("E-other")), ("no event's", None)] {
        assert!(
            !allowed(&authorize(&check, authorizer_request(Some(&token), route)).await),
            "a token of {e} opened {what} route"
        );
    }

    let claims: AdmissionClaims = stack
        .verifier()
        .verify(&token, &e, waiting_room::domain::Timestamp::from_millis(0))
        .unwrap();
    assert_eq!(
        claims.sub,
        ids[0].to_string(),
        "the subject is the session, not the user"
    );
    let mut tampered: Vec<char> = token.chars().collect();
    let middle = token.find('.').unwrap() + 5;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let expired = stack.signer.sign(&AdmissionClaims {
        exp: 1,
        ..claims.clone()
    });
    let foreign = AdmissionSigner::generate("test-key", [7; 32])
        .unwrap()
        .sign(&claims);
    let unknown_key = AdmissionSigner::generate("other-key", [7; 32])
        .unwrap()
        .sign(&claims);
    for (what, bad) in [
        ("tampered", Some(tampered.as_str())),
        ("expired", Some(&expired)),
        ("wrong key", Some(&foreign)),
        ("unknown key", Some(&unknown_key)),
        ("missing", None),
    ] {
        assert!(
            !allowed(&authorize(&check, authorizer_request(bad, here)).await),
            "{what} token let in"
        );
    }

    stack.commands().leave(&ids[0]).await.unwrap();
    assert!(
        !allowed(&authorize(&check, authorizer_request(Some(&token), here)).await),
        "a session that left is refused"
    );
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_outcomes_apply_once_duplicated_and_out_of_order() {
    let stack = Stack::new("checkout").await;
    stack
        .sqs
        .set_queue_attributes()
        .queue_url(&stack.resources.checkout_queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .unwrap();
    let e = event("E-checkout");
    let granters = stack.start_granters(1, &lifecycle(3), 1).await;
    let ids = join(&stack, &e, 0..3).await;
    eventually(PATIENCE, "three admitted", || async {
        stack.store().event_counters(&e, 1).await.unwrap().active == 3
    })
    .await;

    let outcome = |kind: &str, n: usize, extra: Value| {
        let mut body = json!({"type": kind, "session_id": ids[n].to_string(), "event_id": "E-checkout", "user_id": format!("fan-{n}"), "order_id": format!("order-{n}"), "timestamp": "2026-11-23T20:00:00Z"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body.to_string()
    };
    let unknown = json!({"type": "CHECKOUT_COMPLETED", "session_id": format!("E-checkout.{}", "a".repeat(26)), "event_id": "E-checkout", "user_id": "nobody"}).to_string();
    let messages = [
        outcome("CHECKOUT_COMPLETED", 0, json!({})),
        outcome("CHECKOUT_COMPLETED", 0, json!({})),
        outcome("CHECKOUT_FAILED", 1, json!({"reason": "card declined"})),
        outcome("CHECKOUT_COMPLETED", 1, json!({})),
        outcome("CHECKOUT_EXPIRED", 2, json!({})),
        "not json at all".to_owned(),
        unknown,
    ];
    for body in messages {
        stack
            .sqs
            .send_message()
            .queue_url(&stack.resources.checkout_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let worker = stack.start_checkout_outcomes();
    eventually(
        PATIENCE,
        "the two poison messages in the dead-letter queue",
        || async {
            stack
                .messages_in(&stack.resources.checkout_dead_letter_queue_url)
                .await
                == 2
        },
    )
    .await;
    worker.stop().await;
    granters.stop().await;

    let statuses: Vec<SessionStatus> =
        futures::future::join_all(ids.iter().map(|id| session(&stack, id)))
            .await
            .iter()
            .map(|s| s.status())
            .collect();
    assert_eq!(
        statuses,
        vec![
            SessionStatus::Completed,
            SessionStatus::Failed,
            SessionStatus::Expired
        ]
    );
    let failed = session(&stack, &ids[1]).await.ending().cloned().unwrap();
    assert_eq!(
        (failed.order_id.as_deref(), failed.detail.as_deref()),
        (Some("order-1"), Some("card declined"))
    );
    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    assert_eq!(
        (
            counters.completed,
            counters.failed,
            counters.expired,
            counters.active
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(
        stack.messages_in(&stack.resources.checkout_queue_url).await,
        0
    );
    stack.tear_down().await;
}

/// The events every session's final state implies, one per change.
fn expected_events(sessions: &[Session]) -> HashSet<String> {
    let mut expected = HashSet::new();
    for s in sessions {
        if s.ticket.is_some() {
            expected.insert(format!("{}/QUEUE_JOINED", s.id));
        }
        if s.admission().is_some() {
            expected.insert(format!("{}/QUEUE_READY", s.id));
        }
        if let Some(ending) = s.ending() {
            let kind = match ending.reason {
                EndReason::CheckoutCompleted => "CHECKOUT_COMPLETED",
                EndReason::CheckoutFailed => "CHECKOUT_FAILED",
                EndReason::CheckoutExpired => "CHECKOUT_EXPIRED",
                _ => "QUEUE_LEFT",
            };
            expected.insert(format!("{}/{kind}", s.id));
        }
    }
    expected
}

/// What each consumer queue receives, read until each has seen exactly the
/// event ids expected of it.
async fn receive_all(stack: &Stack, queues: &[(&str, &HashSet<String>)]) -> Vec<Vec<Value>> {
    let mut received: Vec<Vec<Value>> = vec![Vec::new(); queues.len()];
    let started = std::time::Instant::now();
    loop {
        for ((queue, _), events) in queues.iter().zip(received.iter_mut()) {
            events.extend(stack.consume(queue).await);
        }
        let complete = queues.iter().zip(&received).all(|((_, expected), events)| {
            let ids: HashSet<String> = events
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            &ids == *expected
        });
        if complete {
            return received;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "not every change reached every consumer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn events_are_published_once_per_change_across_a_publisher_crash() {
    let stack = Stack::new("events").await;
    let e = event("E-events");
    stack.store().set_capacity(&e, 2).await.unwrap();
    // Two independent consumers, each with its own subscription.
    let consumers = [
        stack.subscribe_consumer("audit").await,
        stack.subscribe_consumer("crm").await,
    ];
    let checkout = stack.subscribe_checkout().await;
    let granters = stack.start_granters(2, &lifecycle(2), 1).await;
    let spawn_publisher = || {
        let (publisher, stack) = (stack.publisher(), stack.clone());
        tokio::spawn(async move {
            let mut reader = stack.stream_reader("publisher").await;
            poll_table_stream(&publisher, &mut reader, std::future::pending()).await;
        })
    };
    let crashing = spawn_publisher();
    let ids = join(&stack, &e, 0..10).await;
    let commands = stack.commands();
    let outcomes = stack.checkout_outcomes();
    for (n, id) in ids.iter().enumerate() {
        eventually(PATIENCE, "admitted in turn", || async {
            session(&stack, id).await.status() == SessionStatus::Active
        })
        .await;
        if n == 4 {
            // The publisher dies mid-work; a new one starts over from the
            // stream and publishes everything again.
            crashing.abort();
            spawn_publisher();
        }
        if n % 3 == 0 {
            let body = json!({"type": "CHECKOUT_COMPLETED", "session_id": id.to_string(), "event_id": "E-events", "user_id": format!("fan-{n}"), "order_id": "o"}).to_string();
            outcomes.apply(&body).await;
        } else {
            commands.leave(id).await.unwrap();
        }
    }
    granters.stop().await;
    let sessions: Vec<Session> =
        futures::future::join_all(ids.iter().map(|id| session(&stack, id))).await;
    let expected = expected_events(&sessions);
    assert_eq!(expected.len(), 30, "ten sessions: joined, ready, ended");

    let expected_ready: HashSet<String> = expected
        .iter()
        .filter(|id| id.ends_with("/QUEUE_READY"))
        .cloned()
        .collect();
    let mut received = receive_all(
        &stack,
        &[
            (consumers[0].as_str(), &expected),
            (consumers[1].as_str(), &expected),
            (checkout.as_str(), &expected_ready),
        ],
    )
    .await;
    let admissions = received.pop().unwrap();
    for events in &received {
        let mut copies: HashMap<&str, Vec<&Value>> = HashMap::new();
        for event in events {
            copies
                .entry(event["id"].as_str().unwrap())
                .or_default()
                .push(event);
        }
        for (id, same) in &copies {
            assert!(
                same.windows(2).all(|w| w[0] == w[1]),
                "republished {id} differs from the first copy"
            );
        }
        // Per session, the events arrive in the order they happened.
        for s in &sessions {
            let kinds: Vec<&str> = events
                .iter()
                .filter(|e| e["session_id"] == json!(s.id.to_string()))
                .map(|e| e["type"].as_str().unwrap())
                .collect();
            let mut first_seen: Vec<&str> = Vec::new();
            for kind in kinds {
                if !first_seen.contains(&kind) {
                    first_seen.push(kind);
                }
            }
            assert_eq!(
                &first_seen[..2],
                &["QUEUE_JOINED", "QUEUE_READY"],
                "{}",
                s.id
            );
        }
        // One message group per session: its events stay in order, and
        // a busy event is not limited to one group's throughput.
        for e in events {
            assert_eq!(e["_partition"], e["session_id"], "{e}");
        }
    }
    // The token is a bearer credential: no subscriber of the events topic
    // gets it, only the checkout's subscription to the admissions topic.
    for event in received.iter().flatten() {
        assert!(event.get("admission_token").is_none(), "{event}");
    }
    for ready in &admissions {
        assert_eq!(ready["type"], "QUEUE_READY", "only admissions: {ready}");
        assert!(
            stack
                .verifier()
                .verify(
                    ready["admission_token"].as_str().unwrap(),
                    &EventId::parse(ready["event_id"].as_str().unwrap()).unwrap(),
                    waiting_room::domain::Timestamp::from_millis(0)
                )
                .is_ok(),
            "{ready}"
        );
    }
    stack.tear_down().await;
}

/// A local worker that restarts must not replay the stream from its start:
/// on the emulator each read of that history holds every DynamoDB request
/// for seconds. With a checkpoint it continues where it stopped; without
/// one it reads only what is written from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_stream_poller_reads_no_history() {
    let stack = Stack::new("restart").await;
    let e = event("E-restart");
    let store = stack.store();
    for capacity in 1..=5 {
        store.set_capacity(&e, capacity).await.unwrap();
    }
    let history = stack
        .stream_reader("granter")
        .await
        .next_records()
        .await
        .unwrap();
    assert!(history.len() >= 5, "the stream holds the five writes");

    let checkpoint = std::env::temp_dir().join(format!("{}.stream", stack.resources.table));
    let _ = std::fs::remove_file(&checkpoint);
    let at_checkpoint =
        || stack.stream_reader_at("granter", StartAt::Checkpoint(checkpoint.clone()));
    let mut first_run = at_checkpoint().await;
    assert_eq!(
        first_run.next_records().await.unwrap().len(),
        history.len(),
        "with nothing saved yet, a checkpointed reader starts at the oldest record"
    );
    first_run.save_checkpoint();
    drop(first_run);

    let mut newest = stack.stream_reader_at("granter", StartAt::Newest).await;
    let mut restarted = at_checkpoint().await;
    assert!(newest.next_records().await.unwrap().is_empty());
    assert!(
        restarted.next_records().await.unwrap().is_empty(),
        "a restart after a checkpoint replays nothing"
    );

    store.set_capacity(&e, 6).await.unwrap();
    for (name, reader) in [("newest", &mut newest), ("restarted", &mut restarted)] {
        let fresh = reader.next_records().await.unwrap();
        assert_eq!(fresh.len(), 1, "{name} reads the new write");
        assert!(
            history.iter().all(|r| r.id != fresh[0].id),
            "{name} reads a record it had not seen"
        );
    }
    let _ = std::fs::remove_file(&checkpoint);
}
