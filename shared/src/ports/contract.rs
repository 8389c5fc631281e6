//! The store contract (`Store`: every store port) as executable checks. The in-memory store runs
//! them in unit tests and the DynamoDB store against the emulator, so the two
//! cannot drift apart: whatever the services rely on, both do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::domain::admission::{
    AdmissionPlan, AdmissionPolicy, BacklogChange, plan_admissions, plan_numbering,
};
use crate::domain::line::ShardView;
use crate::domain::{
    EndReason, Ending, EventId, EventState, LineEntry, Session, SessionId, SessionStatus,
    StateChange, Timestamp, UserId,
};
use crate::ports::{Claim, Discard, EndFrom, EndOutcome, Store, Touch, WriteOutcome};

const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn later(ms: u64) -> Timestamp {
    T0.plus(Duration::from_millis(ms))
}

/// A random-enough event per run so reruns against one table do not collide.
pub fn fresh_event(tag: &str) -> EventId {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    EventId::parse(&format!("{tag}-{}", u32::from_le_bytes(random))).unwrap()
}

/// A fan who joins `n` ms after T0, in shard 0.
fn session(event: &EventId, n: u8, user: &str) -> Session {
    let mut random = [n; 16];
    let _ = getrandom::fill(&mut random[..8]);
    Session::new_waiting(
        SessionId::new(event, random),
        UserId::parse(user).unwrap(),
        0,
        later(u64::from(n)),
    )
}

fn policy(capacity: u32) -> AdmissionPolicy {
    AdmissionPolicy {
        default_capacity: capacity,
        active_stay: Duration::from_secs(900),
        abandon_after: Some(Duration::from_secs(60)),
        max_changes_per_write: 50,
    }
}

async fn created<S: Store>(store: &S, s: &Session) {
    assert_eq!(
        store
            .create_session(s, None, later(1_000_000))
            .await
            .unwrap(),
        Claim::Created
    );
}

async fn joined<S: Store>(store: &S, event: &EventId, count: u8) -> Vec<Session> {
    let mut fans = Vec::new();
    for n in 1..=count {
        let fan = session(event, n, &format!("fan{n}"));
        created(store, &fan).await;
        fans.push(fan);
    }
    fans
}

/// An admitted session leaves at `later(at)`.
async fn leave_active<S: Store>(store: &S, id: &SessionId, at: u64) -> EndOutcome {
    store
        .end_session(
            id,
            EndFrom::Active,
            &Ending::new(EndReason::UserLeft, later(at)),
            later(9_999),
        )
        .await
        .unwrap()
}

fn change(event: &EventId, from: EventState, to: EventState, at: Timestamp) -> StateChange {
    StateChange::plain(event.clone(), from, to, at)
}

/// The front of shard 0 as the granter would read it at `now`.
async fn view<S: Store>(store: &S, event: &EventId, now: Timestamp) -> ShardView {
    let entries = store.line_front(event, 0, 50).await.unwrap();
    ShardView {
        shard: 0,
        complete: entries.len() < 50,
        entries,
        read_at: now,
    }
}

/// Plan an admission exactly as the granter would.
pub async fn plan<S: Store>(
    store: &S,
    event: &EventId,
    capacity: u32,
    now: Timestamp,
) -> AdmissionPlan {
    let counters = store.register_event(event, capacity, 1).await.unwrap();
    let views = [view(store, event, now).await];
    plan_admissions(event, &counters, &views, &[], &policy(capacity), now)
}

async fn admit<S: Store>(
    store: &S,
    event: &EventId,
    capacity: u32,
    now: Timestamp,
) -> WriteOutcome {
    let plan = plan(store, event, capacity, now).await;
    store
        .admit(&plan, now.plus(Duration::from_secs(3600)))
        .await
        .unwrap()
}

fn ids(entries: &[LineEntry]) -> Vec<SessionId> {
    entries.iter().map(|e| e.session_id.clone()).collect()
}

pub async fn claims_make_join_idempotent<S: Store>(store: &S) {
    let event = fresh_event("claims");
    let first = session(&event, 1, "fan");
    created(store, &first).await;
    let second = session(&event, 2, "fan");
    let held = store.create_session(&second, None, later(1)).await.unwrap();
    assert_eq!(held, Claim::HeldBy(first.id.clone()));
    assert_eq!(
        store.get_session(&second.id).await.unwrap(),
        None,
        "a refused join stores nothing"
    );
    let third = session(&event, 3, "fan");
    assert_eq!(
        store
            .create_session(&third, Some(&second.id), later(1))
            .await
            .unwrap(),
        Claim::HeldBy(first.id.clone()),
        "replacing a claim held by someone else is refused"
    );
    assert_eq!(
        store
            .create_session(&third, Some(&first.id), later(1))
            .await
            .unwrap(),
        Claim::Created,
        "replacing the holder takes the claim over"
    );
    assert_eq!(
        store.get_session(&third.id).await.unwrap(),
        Some(third.clone())
    );
    let other = session(&event, 4, "someone-else");
    assert_eq!(
        store
            .create_session(&other, Some(&first.id), later(1))
            .await
            .unwrap(),
        Claim::Vacant
    );
}

pub async fn a_join_is_in_line_at_once_in_place_order<S: Store>(store: &S) {
    let event = fresh_event("line");
    let fans = joined(store, &event, 4).await;
    let front = store.line_front(&event, 0, 10).await.unwrap();
    assert_eq!(ids(&front), ids_of(&fans), "in line before any granter ran");
    assert_eq!(store.line_front(&event, 0, 2).await.unwrap().len(), 2);
    assert!(store.line_front(&event, 1, 10).await.unwrap().is_empty());
    let waiting = store
        .waiting_among(&[fans[2].id.clone(), SessionId::new(&event, [99; 16])])
        .await
        .unwrap();
    assert_eq!(
        ids(&waiting),
        vec![fans[2].id.clone()],
        "the unknown one is not waiting"
    );
}

fn ids_of(sessions: &[Session]) -> Vec<SessionId> {
    sessions.iter().map(|s| s.id.clone()).collect()
}

pub async fn a_waiting_session_can_be_discarded<S: Store>(store: &S) {
    let event = fresh_event("discard");
    let lost = session(&event, 1, "fan");
    created(store, &lost).await;
    assert_eq!(store.discard(&lost).await.unwrap(), Discard::Discarded);
    assert_eq!(store.get_session(&lost.id).await.unwrap(), None);
    assert!(
        store.line_front(&event, 0, 10).await.unwrap().is_empty(),
        "out of line"
    );
    let again = session(&event, 2, "fan");
    assert_eq!(
        store.create_session(&again, None, later(1)).await.unwrap(),
        Claim::Created,
        "the claim went with it"
    );
    assert_eq!(
        admit(store, &event, 1, later(10)).await,
        WriteOutcome::Applied
    );
    assert_eq!(
        store.discard(&again).await.unwrap(),
        Discard::NoLongerWaiting,
        "an admitted session is not taken back"
    );
    assert!(store.get_session(&again.id).await.unwrap().is_some());
}

pub async fn touch_records_presence_of_live_sessions_only<S: Store>(store: &S) {
    let event = fresh_event("touch");
    let s = session(&event, 1, "fan");
    created(store, &s).await;
    match store.touch(&s.id, later(500)).await.unwrap() {
        Touch::Touched(now) => assert_eq!(now.last_seen_at, later(500)),
        other => panic!("expected Touched, got {other:?}"),
    }
    let front = store.line_front(&event, 0, 10).await.unwrap();
    assert_eq!(
        front[0].last_seen_at,
        later(500),
        "the line index carries presence"
    );
    let outcome = store
        .end_session(
            &s.id,
            EndFrom::Waiting { shard: 0 },
            &Ending::new(EndReason::UserLeft, later(600)),
            later(9_999),
        )
        .await
        .unwrap();
    assert_eq!(outcome, EndOutcome::Ended);
    assert!(
        store.line_front(&event, 0, 10).await.unwrap().is_empty(),
        "left the line"
    );
    let counters = store.ticket_counters(&event, &[0]).await.unwrap();
    assert_eq!(counters[0].left_waiting, 1, "counted on its shard");
    assert!(
        matches!(store.touch(&s.id, later(700)).await.unwrap(), Touch::Ended(e) if e.status() == SessionStatus::Left)
    );
    let missing = session(&event, 2, "nobody");
    assert_eq!(
        store.touch(&missing.id, later(700)).await.unwrap(),
        Touch::NotFound
    );
}

pub async fn admission_takes_slots_moves_heads_and_counts_exactly<S: Store>(store: &S) {
    let event = fresh_event("admit");
    let fans = joined(store, &event, 4).await;
    let counters = store.register_event(&event, 100, 1).await.unwrap();
    let numbering = plan_numbering(
        &event,
        &store.ticket_counters(&event, &[0]).await.unwrap()[0],
        &ids_of(&fans),
        0,
        1,
    );
    assert_eq!(
        store.number_sessions(&numbering).await.unwrap(),
        WriteOutcome::Applied
    );
    assert_eq!(
        counters.capacity,
        Some(100),
        "the default is stored on first use"
    );

    let now = later(1_000);
    let before_change = plan(store, &event, 2, now).await;
    assert!(before_change.counters.is_some());
    store.set_capacity(&event, 2).await.unwrap();
    assert!(
        matches!(
            store.admit(&before_change, later(5_000)).await.unwrap(),
            WriteOutcome::Conflict { .. }
        ),
        "capacity changed since the plan: nothing is written"
    );
    assert_eq!(admit(store, &event, 2, now).await, WriteOutcome::Applied);
    let counters = store.event_counters(&event, 1).await.unwrap();
    assert_eq!((counters.active, counters.admitted), (2, 2));
    assert_eq!(counters.heads, vec![2]);
    assert_eq!(
        store.shard_head(&event, 0).await.unwrap(),
        2,
        "mirrored for polls"
    );
    for (n, fan) in fans.iter().enumerate() {
        let stored = store.get_session(&fan.id).await.unwrap().unwrap();
        let expected = if n < 2 {
            SessionStatus::Active
        } else {
            SessionStatus::Waiting
        };
        assert_eq!(stored.status(), expected, "fan {n}");
        assert_eq!(stored.ticket, Some(n as u64));
        if n < 2 {
            let admission = stored.admission().unwrap();
            assert_eq!(
                (admission.admission_no, admission.admitted_at),
                (n as u64 + 1, now)
            );
        }
    }
    assert_eq!(
        ids(&store.line_front(&event, 0, 10).await.unwrap()),
        ids_of(&fans[2..])
    );

    // Full: planning admits nobody. A leave frees one slot: exactly one more.
    let full = plan(store, &event, 2, later(1_100)).await;
    assert!(full.admitted.is_empty());
    assert_eq!(
        leave_active(store, &fans[0].id, 1_200).await,
        EndOutcome::Ended
    );
    assert_eq!(
        leave_active(store, &fans[0].id, 1_300).await,
        EndOutcome::NotAsExpected(Some(Box::new(
            store.get_session(&fans[0].id).await.unwrap().unwrap()
        ))),
        "a second leave changes nothing"
    );
    assert_eq!(
        admit(store, &event, 2, later(1_400)).await,
        WriteOutcome::Applied
    );
    let counters = store.event_counters(&event, 1).await.unwrap();
    assert_eq!(
        (counters.active, counters.admitted, counters.left),
        (2, 3, 1)
    );
    assert_eq!(
        store
            .get_session(&fans[2].id)
            .await
            .unwrap()
            .unwrap()
            .status(),
        SessionStatus::Active
    );
}

pub async fn a_stale_plan_writes_nothing<S: Store>(store: &S) {
    let event = fresh_event("stale");
    let fans = joined(store, &event, 3).await;
    let first = self::plan(store, &event, 1, later(100)).await;
    let second = self::plan(store, &event, 1, later(100)).await;
    assert_eq!(
        store.admit(&first, later(5_000)).await.unwrap(),
        WriteOutcome::Applied
    );
    match store.admit(&second, later(5_000)).await.unwrap() {
        WriteOutcome::Conflict { rejected } => {
            assert_eq!(
                rejected,
                vec![fans[0].id.clone()],
                "the admitted one is named"
            )
        }
        WriteOutcome::Applied => panic!("two plans from one snapshot both applied"),
    }
    let counters = store.event_counters(&event, 1).await.unwrap();
    assert_eq!((counters.active, counters.admitted), (1, 1));

    // Another plan for a session that left since: refused, and named.
    assert_eq!(
        leave_active(store, &fans[0].id, 200).await,
        EndOutcome::Ended
    );
    let stale = plan(store, &event, 1, later(300)).await;
    store
        .end_session(
            &fans[1].id,
            EndFrom::Waiting { shard: 0 },
            &Ending::new(EndReason::UserLeft, later(310)),
            later(9_999),
        )
        .await
        .unwrap();
    assert_eq!(
        store.admit(&stale, later(5_000)).await.unwrap(),
        WriteOutcome::Conflict {
            rejected: vec![fans[1].id.clone()]
        }
    );
    assert_eq!(store.event_counters(&event, 1).await.unwrap().active, 0);
}

pub async fn abandoned_sessions_expire_only_if_still_silent<S: Store>(store: &S) {
    let event = fresh_event("abandon");
    let fans = joined(store, &event, 2).await;
    // Both silent since joining; a minute later both count as gone.
    let now = later(61_000);
    let silent = plan(store, &event, 5, now).await;
    assert_eq!(silent.abandoned.len(), 2);
    store.touch(&fans[1].id, later(60_500)).await.unwrap();
    assert_eq!(
        store.admit(&silent, later(99_000)).await.unwrap(),
        WriteOutcome::Conflict {
            rejected: vec![fans[1].id.clone()]
        },
        "the one who polled meanwhile is not abandoned"
    );
    let replanned = self::plan(store, &event, 5, now).await;
    assert_eq!(
        store.admit(&replanned, later(99_000)).await.unwrap(),
        WriteOutcome::Applied
    );
    let gone = store.get_session(&fans[0].id).await.unwrap().unwrap();
    assert_eq!(gone.status(), SessionStatus::Expired);
    assert_eq!(gone.ending().unwrap().reason, EndReason::Abandoned);
    let counters = store.event_counters(&event, 1).await.unwrap();
    assert_eq!(
        (counters.abandoned, counters.active),
        (1, 1),
        "no slot for the abandoned one"
    );
}

pub async fn numbering_is_consecutive_and_once<S: Store>(store: &S) {
    let event = fresh_event("number");
    let fans = joined(store, &event, 3).await;
    let counter = store.ticket_counters(&event, &[0]).await.unwrap().remove(0);
    assert!(!counter.stored);
    let first = plan_numbering(&event, &counter, &ids_of(&fans[..2]), 0, 1);
    let racing = first.clone();
    assert_eq!(
        store.number_sessions(&first).await.unwrap(),
        WriteOutcome::Applied
    );
    match store.number_sessions(&racing).await.unwrap() {
        WriteOutcome::Conflict { rejected } => {
            assert_eq!(rejected, ids_of(&fans[..2]), "numbered already: named")
        }
        WriteOutcome::Applied => panic!("a session was numbered twice"),
    }
    let counter = store.ticket_counters(&event, &[0]).await.unwrap().remove(0);
    assert_eq!((counter.stored, counter.next_ticket), (true, 2));
    let stale = plan_numbering(
        &event,
        &crate::domain::TicketCounter::empty(0),
        &ids_of(&fans[2..]),
        0,
        1,
    );
    assert_eq!(
        store.number_sessions(&stale).await.unwrap(),
        WriteOutcome::Conflict { rejected: vec![] },
        "the counter moved since it was read"
    );
    // A shard where someone left before anyone was numbered: its counter
    // exists without a ticket, and numbering starts at zero all the same.
    let other = fresh_event("number-after-leave");
    let fans2 = joined(store, &other, 2).await;
    store
        .end_session(
            &fans2[0].id,
            EndFrom::Waiting { shard: 0 },
            &Ending::new(EndReason::UserLeft, later(5)),
            later(9_999),
        )
        .await
        .unwrap();
    let counter2 = store.ticket_counters(&other, &[0]).await.unwrap().remove(0);
    assert_eq!((counter2.next_ticket, counter2.left_waiting), (0, 1));
    let after_leave = plan_numbering(&other, &counter2, &ids_of(&fans2[1..]), 0, 1);
    assert_eq!(
        store.number_sessions(&after_leave).await.unwrap(),
        WriteOutcome::Applied
    );
    let next = plan_numbering(&event, &counter, &ids_of(&fans[2..]), 0, 1);
    assert_eq!(
        store.number_sessions(&next).await.unwrap(),
        WriteOutcome::Applied
    );
    let third = store.get_session(&fans[2].id).await.unwrap().unwrap();
    assert_eq!((third.ticket, third.ahead_at_filing), (Some(2), Some(2)));
}

pub async fn expiry_is_found_by_index_and_happens_once<S: Store>(store: &S) {
    let event = fresh_event("expiry");
    let fans = joined(store, &event, 3).await;
    assert_eq!(
        admit(store, &event, 3, later(100)).await,
        WriteOutcome::Applied
    );
    let ends: Vec<_> = fans
        .iter()
        .map(|f| store.get_session(&f.id))
        .collect::<Vec<_>>();
    let mut buckets = Vec::new();
    for end in ends {
        let s = end.await.unwrap().unwrap();
        buckets.push(crate::domain::session::expiry_bucket(&s.id));
    }
    let stay_over = later(900_101);
    let mut overdue = Vec::new();
    for bucket in 0..crate::domain::session::EXPIRY_BUCKETS {
        overdue.extend(
            store
                .overdue_sessions(bucket, stay_over, 100)
                .await
                .unwrap(),
        );
    }
    // Other checks of this contract share the table.
    overdue.retain(|id| id.event_id() == event);
    overdue.sort();
    let mut expected = ids_of(&fans);
    expected.sort();
    assert_eq!(overdue, expected);
    assert!(
        store
            .overdue_sessions(buckets[0], later(1_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "nobody is overdue before their stay ends"
    );
    // A heartbeat extends one stay: the batch is refused, naming it.
    let from = later(900_100);
    assert!(
        store
            .extend_stay(&fans[0].id, from, later(1_500_000), later(600_000))
            .await
            .unwrap()
    );
    let expiry = store
        .expire_overdue(&event, &ids_of(&fans), stay_over, later(9_999_999))
        .await
        .unwrap();
    assert_eq!(
        (expiry.expired.clone(), expiry.skipped.clone()),
        (vec![], vec![fans[0].id.clone()])
    );
    let expiry = store
        .expire_overdue(&event, &ids_of(&fans[1..]), stay_over, later(9_999_999))
        .await
        .unwrap();
    assert_eq!(expiry.expired, ids_of(&fans[1..]));
    let again = store
        .expire_overdue(&event, &ids_of(&fans[1..]), stay_over, later(9_999_999))
        .await
        .unwrap();
    assert!(again.expired.is_empty(), "once only");
    let counters = store.event_counters(&event, 1).await.unwrap();
    assert_eq!((counters.active, counters.expired), (1, 2));
}

pub async fn an_overdue_stay_is_never_extended<S: Store>(store: &S) {
    let event = fresh_event("overdue");
    let fans = joined(store, &event, 1).await;
    assert_eq!(
        admit(store, &event, 1, later(100)).await,
        WriteOutcome::Applied
    );
    let end = later(900_100);
    assert!(
        !store
            .extend_stay(&fans[0].id, end, later(1_800_000), later(900_101))
            .await
            .unwrap(),
        "the stay is over: a heartbeat does not revive it"
    );
    assert!(
        store
            .extend_stay(&fans[0].id, end, later(1_000_000), later(900_099))
            .await
            .unwrap()
    );
    assert!(
        !store
            .extend_stay(&fans[0].id, end, later(1_100_000), later(900_099))
            .await
            .unwrap(),
        "extended meanwhile: the end seen is stale"
    );
}

pub async fn the_backlog_hint_never_hides_a_freed_slot<S: Store>(store: &S) {
    let event = fresh_event("hint");
    let fans = joined(store, &event, 2).await;
    assert_eq!(
        admit(store, &event, 1, later(100)).await,
        WriteOutcome::Applied
    );
    let snapshot = store.event_counters(&event, 1).await.unwrap();
    assert!(
        snapshot.backlog.is_firm(),
        "the admitting write armed it: someone still waits"
    );

    // Clearing takes two steps, and arming in between calls it off.
    assert!(
        !store
            .update_backlog(
                &event,
                BacklogChange::Clear {
                    marked_at: later(5)
                }
            )
            .await
            .unwrap(),
        "nothing marked: nothing to clear"
    );
    assert!(
        store
            .update_backlog(&event, BacklogChange::MarkEmpty { at: later(10) })
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_backlog(&event, BacklogChange::MarkEmpty { at: later(20) })
            .await
            .unwrap(),
        "marked once"
    );
    let marked = store.event_counters(&event, 1).await.unwrap();
    assert!(marked.backlog.armed && !marked.backlog.is_firm());
    assert!(
        store
            .update_backlog(&event, BacklogChange::arm(&marked))
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_backlog(
                &event,
                BacklogChange::Clear {
                    marked_at: later(10)
                }
            )
            .await
            .unwrap(),
        "a granter armed it again meanwhile"
    );

    // Arming on a snapshot taken before an exit is refused.
    let before_exit = store.event_counters(&event, 1).await.unwrap();
    assert!(
        store
            .update_backlog(&event, BacklogChange::MarkEmpty { at: later(30) })
            .await
            .unwrap()
    );
    assert!(
        store
            .update_backlog(
                &event,
                BacklogChange::Clear {
                    marked_at: later(30)
                }
            )
            .await
            .unwrap()
    );
    assert!(!store.event_counters(&event, 1).await.unwrap().backlog.armed);
    assert_eq!(
        leave_active(store, &fans[0].id, 40).await,
        EndOutcome::Ended
    );
    assert!(
        !store
            .update_backlog(&event, BacklogChange::arm(&before_exit))
            .await
            .unwrap(),
        "an exit since the snapshot woke nobody: arming must fail so the slot is seen"
    );
}

pub async fn events_are_listed_and_their_capacity_stored_once<S: Store>(store: &S) {
    let event = fresh_event("listed");
    assert!(
        !store.event_counters(&event, 2).await.unwrap().listed,
        "nobody used it yet"
    );
    let first = store.register_event(&event, 7, 2).await.unwrap();
    assert!(first.listed);
    assert_eq!((first.capacity, first.heads.len()), (Some(7), 2));
    let again = store.register_event(&event, 9, 2).await.unwrap();
    assert_eq!(
        again.capacity,
        Some(7),
        "a later default never changes a live event"
    );
    let set = fresh_event("set");
    store.set_capacity(&set, 3).await.unwrap();
    let joined_only = fresh_event("joined");
    store.list_event(&joined_only).await.unwrap();
    let listed = store.events().await.unwrap();
    for event in [&event, &set, &joined_only] {
        assert!(listed.contains(event), "{event} not in {listed:?}");
    }
    assert_eq!(
        store
            .event_counters(&joined_only, 1)
            .await
            .unwrap()
            .capacity,
        None,
        "listing stores no capacity: the granter stores its default"
    );
}

pub async fn a_late_purchase_is_recorded_once<S: Store>(store: &S) {
    let event = fresh_event("late");
    let fans = joined(store, &event, 1).await;
    assert_eq!(
        admit(store, &event, 1, later(100)).await,
        WriteOutcome::Applied
    );
    let expiry = store
        .expire_overdue(&event, &ids_of(&fans), later(900_101), later(9_999_999))
        .await
        .unwrap();
    assert_eq!(expiry.expired.len(), 1);
    let mut completed = Ending::new(EndReason::CheckoutCompleted, later(900_500));
    completed.order_id = Some("o-1".into());
    assert!(
        !store
            .record_late_completion(&fans[0].id, EndReason::UserLeft, &completed)
            .await
            .unwrap(),
        "not how it ended"
    );
    assert!(
        store
            .record_late_completion(&fans[0].id, EndReason::Expired, &completed)
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_late_completion(&fans[0].id, EndReason::Expired, &completed)
            .await
            .unwrap(),
        "once"
    );
    let session = store.get_session(&fans[0].id).await.unwrap().unwrap();
    assert_eq!(session.status(), SessionStatus::Completed);
    assert_eq!(session.ending().unwrap().order_id.as_deref(), Some("o-1"));
    let counters = store.event_counters(&event, 1).await.unwrap();
    assert_eq!(
        (counters.active, counters.expired, counters.completed),
        (0, 0, 1),
        "no slot moves; the purchase is counted instead of the expiry"
    );
}

pub async fn a_paused_event_admits_nobody_until_it_resumes<S: Store>(store: &S) {
    let event = fresh_event("paused");
    let fans = joined(store, &event, 2).await;
    assert_eq!(
        store.event_counters(&event, 1).await.unwrap().state,
        EventState::Open,
        "an event nobody controlled is open"
    );
    // A plan made while open, written after the pause: refused whole.
    let before_pause = plan(store, &event, 2, later(100)).await;
    assert_eq!(before_pause.admitted.len(), 2);
    assert!(
        !store
            .set_event_state(&change(
                &event,
                EventState::Paused,
                EventState::Open,
                later(150)
            ))
            .await
            .unwrap(),
        "not paused: nothing to resume from"
    );
    assert!(
        store
            .set_event_state(&change(
                &event,
                EventState::Open,
                EventState::Paused,
                later(150)
            ))
            .await
            .unwrap()
    );
    assert!(matches!(
        store.admit(&before_pause, later(5_000)).await.unwrap(),
        WriteOutcome::Conflict { .. }
    ));
    let counters = store.event_counters(&event, 1).await.unwrap();
    assert_eq!(
        (counters.state, counters.active, counters.admitted),
        (EventState::Paused, 0, 0)
    );
    // Planned while paused: nobody admitted, the hint armed, and that arm
    // fails once the event resumes (a resume must never find it unarmed).
    let while_paused = plan(store, &event, 2, later(200)).await;
    assert!(while_paused.admitted.is_empty());
    let arm = BacklogChange::arm(&store.event_counters(&event, 1).await.unwrap());
    assert!(
        store
            .set_event_state(&change(
                &event,
                EventState::Paused,
                EventState::Open,
                later(150)
            ))
            .await
            .unwrap()
    );
    assert!(
        !store.update_backlog(&event, arm).await.unwrap(),
        "armed from a paused snapshot after a resume"
    );
    assert_eq!(
        admit(store, &event, 2, later(300)).await,
        WriteOutcome::Applied
    );
    for fan in &fans {
        assert_eq!(
            store.get_session(&fan.id).await.unwrap().unwrap().status(),
            SessionStatus::Active
        );
    }
    // Closed is kept, and a closed event still admits (it drains).
    assert!(
        store
            .set_event_state(&change(
                &event,
                EventState::Open,
                EventState::Closed,
                later(150)
            ))
            .await
            .unwrap()
    );
    let closed = store.event_counters(&event, 1).await.unwrap();
    assert_eq!(
        (closed.state, closed.active, closed.state_changed_at),
        (EventState::Closed, 2, Some(later(150)))
    );
}

pub async fn a_scheduled_event_holds_its_pre_queue_until_the_opening<S: Store>(store: &S) {
    let event = fresh_event("scheduled");
    let opens_at = later(60_000);
    let schedule = |from, opens_at, seed| StateChange {
        opens_at: Some(opens_at),
        seed: Some(seed),
        ..change(&event, from, EventState::Scheduled, later(1))
    };
    assert!(
        store
            .set_event_state(&schedule(EventState::Open, later(50_000), 7))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_event_state(&schedule(EventState::Scheduled, opens_at, 8))
            .await
            .unwrap(),
        "a new opening time"
    );
    let scheduled = store.event_counters(&event, 1).await.unwrap();
    assert_eq!(
        (scheduled.state, scheduled.opens_at, scheduled.draw_seed),
        (EventState::Scheduled, Some(opens_at), Some(7)),
        "the first seed is kept"
    );
    // Three fans in the pre-queue: their places are their draws'.
    let mut fans = Vec::new();
    for n in 1..=3u8 {
        let mut fan = session(&event, n, &format!("fan{n}"));
        fan.draw = Some(crate::domain::draw::draw(7, &fan.id));
        created(store, &fan).await;
        fans.push(fan);
    }
    let front = store.line_front(&event, 0, 10).await.unwrap();
    let drawn: Vec<SessionId> = fans.iter().map(|f| f.id.clone()).collect();
    assert_eq!(
        ids(&front),
        crate::domain::draw::draw_order(7, &drawn),
        "the line index orders the pre-queue by draw"
    );
    assert_eq!(
        ids(&store
            .line_after(&event, 0, &front[0].place(), 10)
            .await
            .unwrap()),
        ids(&front[1..]),
        "a page from just behind a place"
    );
    // Scheduled: nobody admitted; an arm from this snapshot fails once open.
    let held = plan(store, &event, 5, later(70_000)).await;
    assert!(held.admitted.is_empty());
    let arm = BacklogChange::arm(&store.event_counters(&event, 1).await.unwrap());
    // An opening on time holds only while its time is still the stored one.
    let stale = StateChange {
        on_time: true,
        ..StateChange::opening(&event, &scheduled, later(50_000))
    };
    assert!(
        !store.set_event_state(&stale).await.unwrap(),
        "opened at a time an operator changed"
    );
    let opening = StateChange {
        on_time: true,
        ..StateChange::opening(&event, &scheduled, opens_at)
    };
    assert!(store.set_event_state(&opening).await.unwrap());
    assert!(
        !store
            .set_event_state(&schedule(EventState::Open, later(90_000), 9))
            .await
            .unwrap(),
        "an event that opened cannot be scheduled again"
    );
    assert!(
        !store.update_backlog(&event, arm).await.unwrap(),
        "armed from a scheduled snapshot after the opening"
    );
    let opened = store.event_counters(&event, 1).await.unwrap();
    assert_eq!(
        (opened.state, opened.admits_from, opened.backlog.armed),
        (
            EventState::Open,
            Some(opens_at.plus(crate::domain::line::DRAW_SETTLES)),
            true
        ),
        "the opening arms the hint, so that the stream wakes a granter"
    );
    // The draw's numbering marks the shard drawn.
    let counter = store.ticket_counters(&event, &[0]).await.unwrap().remove(0);
    let mut numbering = plan_numbering(&event, &counter, &ids(&front), 0, 1);
    numbering.completes_draw = true;
    numbering.draw_cursor = Some(front[2].place());
    assert_eq!(
        store.number_sessions(&numbering).await.unwrap(),
        WriteOutcome::Applied
    );
    let drawn = store.ticket_counters(&event, &[0]).await.unwrap().remove(0);
    assert!(drawn.drawn);
    assert_eq!(
        drawn.drawn_through,
        Some(front[2].place()),
        "where it got to"
    );
    // An event that took a join cannot be scheduled.
    let joined_event = fresh_event("joined");
    store.list_event(&joined_event).await.unwrap();
    assert!(
        !store
            .set_event_state(&StateChange {
                opens_at: Some(opens_at),
                seed: Some(1),
                ..change(
                    &joined_event,
                    EventState::Open,
                    EventState::Scheduled,
                    later(1)
                )
            })
            .await
            .unwrap()
    );
}

pub async fn a_puzzle_solution_is_spent_once<S: Store>(store: &S) {
    use crate::domain::puzzle::{Solution, digest, spent_until};
    let event = fresh_event("puzzle");
    let user = UserId::parse("solver").unwrap();
    let solution = Solution {
        issued_at: later(0).as_secs(),
        nonce: 7,
    };
    let spent = digest(&event, &user, solution);
    let until = spent_until(solution);
    let key = crate::domain::IdempotencyKey::parse("join-1")
        .unwrap()
        .digest();
    let other_key = crate::domain::IdempotencyKey::parse("join-2")
        .unwrap()
        .digest();
    assert!(
        store.spend(&spent, &key, until).await.unwrap(),
        "the first use"
    );
    assert!(
        store.spend(&spent, &key, until).await.unwrap(),
        "a retry of the same join"
    );
    assert!(
        !store.spend(&spent, &other_key, until).await.unwrap(),
        "a replay by another join"
    );
    let other = digest(
        &event,
        &user,
        Solution {
            nonce: 8,
            ..solution
        },
    );
    assert!(
        store.spend(&other, &other_key, until).await.unwrap(),
        "another solution"
    );
}

pub async fn a_blocked_user_takes_no_place_again<S: Store>(store: &S) {
    let event = fresh_event("blocked");
    let fans = joined(store, &event, 2).await;
    store.block(&event, &fans[0].user_id).await.unwrap();
    store
        .end_session(
            &fans[0].id,
            EndFrom::Waiting { shard: 0 },
            &Ending::new(EndReason::Evicted, later(10)),
            later(9_999),
        )
        .await
        .unwrap();
    let again = session(&event, 7, fans[0].user_id.as_str());
    assert_eq!(
        store
            .create_session(&again, None, later(1_000_000))
            .await
            .unwrap(),
        Claim::Blocked
    );
    assert_eq!(
        store
            .create_session(&again, Some(&fans[0].id), later(1_000_000))
            .await
            .unwrap(),
        Claim::Blocked,
        "not by taking over the ended session's claim either"
    );
    assert_eq!(
        store.get_session(&again.id).await.unwrap(),
        None,
        "nothing stored"
    );
    // A user nobody blocked, and one blocked before any join.
    let other = session(&event, 8, "fan-other");
    created(store, &other).await;
    let never = UserId::parse("never-joined").unwrap();
    store.block(&event, &never).await.unwrap();
    assert_eq!(
        store
            .create_session(&session(&event, 9, "never-joined"), None, later(1_000_000))
            .await
            .unwrap(),
        Claim::Blocked
    );
}

/// One test per check of the contract, so a failure of one hides none of
/// the others. `$store` makes a fresh store (an async expression), `$of`
/// turns what it made into the store checked, and `$done` tidies up after a
/// check that passed (a failed one leaves its resources for a look).
///
/// ```ignore
/// waiting_room::store_contract_tests!(async { Arc::new(MemoryStore::new()) }, Arc::clone, |_| async {});
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    ($store:expr, $of:expr, $done:expr) => {
        $crate::store_contract_tests!(@each $store, $of, $done;
            claims_make_join_idempotent,
            a_join_is_in_line_at_once_in_place_order,
            a_waiting_session_can_be_discarded,
            touch_records_presence_of_live_sessions_only,
            admission_takes_slots_moves_heads_and_counts_exactly,
            a_stale_plan_writes_nothing,
            abandoned_sessions_expire_only_if_still_silent,
            numbering_is_consecutive_and_once,
            expiry_is_found_by_index_and_happens_once,
            an_overdue_stay_is_never_extended,
            the_backlog_hint_never_hides_a_freed_slot,
            events_are_listed_and_their_capacity_stored_once,
            a_late_purchase_is_recorded_once,
            a_paused_event_admits_nobody_until_it_resumes,
            a_scheduled_event_holds_its_pre_queue_until_the_opening,
            a_puzzle_solution_is_spent_once,
            a_blocked_user_takes_no_place_again,
        );
    };
    (@each $store:expr, $of:expr, $done:expr; $($check:ident,)*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let made = ($store).await;
                $crate::ports::contract::$check(&($of)(&made)).await;
                ($done)(made).await;
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::adapters::memory::MemoryStore;

    crate::store_contract_tests!(
        async { Arc::new(MemoryStore::new()) },
        Arc::clone,
        |_| async {}
    );

    /// A check written but left out of the macro's list would run nowhere.
    #[test]
    fn every_check_is_in_the_list() {
        let source = include_str!("contract.rs");
        let written: Vec<&str> = source
            .lines()
            .filter(|l| l.ends_with("<S: Store>(store: &S) {"))
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|l| l.split('<').next().unwrap())
            .collect();
        let listed: Vec<&str> = source
            .split_once("(@each $store, $of, $done;\n")
            .unwrap()
            .1
            .split_once(");")
            .unwrap()
            .0
            .lines()
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(written.len(), 17);
        assert_eq!(written, listed);
    }
}
