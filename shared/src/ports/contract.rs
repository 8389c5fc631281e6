//! The `SessionStore` contract as executable checks. The in-memory store runs
//! them in unit tests and the DynamoDB store against the emulator, so the two
//! cannot drift apart: whatever the granter relies on, both do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use crate::domain::admission::{AdmissionPolicy, Arrival, KnownEntries, plan_line_advance};
use crate::domain::{
    EndReason, Ending, EventId, Session, SessionId, SessionStatus, Timestamp, UserId,
};
use crate::ports::{AdvanceOutcome, Claim, Discard, EndFrom, EndOutcome, SessionStore, Touch};

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

async fn created<S: SessionStore>(store: &S, s: &Session) {
    assert_eq!(
        store
            .create_session(s, None, later(1_000_000))
            .await
            .unwrap(),
        Claim::Created
    );
}

/// An admitted session leaves at `later(at)`.
async fn leave_active<S: SessionStore>(store: &S, id: &SessionId, at: u64) -> EndOutcome {
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

/// File and admit `arrivals` exactly as the granter would.
pub async fn advance<S: SessionStore>(
    store: &S,
    event: &EventId,
    arrivals: &[&Session],
    capacity: u32,
    now: Timestamp,
) -> AdvanceOutcome {
    let state = store.line_state(event, 1).await.unwrap();
    let front = if state.shards[0].has_backlog() {
        store
            .line_entries(event, 0, state.shards[0].head_ticket, 50)
            .await
            .unwrap()
    } else {
        Vec::new()
    };
    let arrivals: Vec<Arrival> = arrivals
        .iter()
        .map(|s| Arrival {
            session_id: s.id.clone(),
            shard: 0,
            joined_at: s.joined_at,
        })
        .collect();
    let plan = plan_line_advance(
        &state,
        &arrivals,
        &KnownEntries {
            by_shard: vec![front],
        },
        &policy(capacity),
        now,
    );
    store
        .advance_line(&plan, now.plus(Duration::from_secs(3600)))
        .await
        .unwrap()
}

pub async fn claims_make_join_idempotent<S: SessionStore>(store: &S) {
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

    // Replacing a claim held by someone else is refused.
    let third = session(&event, 3, "fan");
    assert_eq!(
        store
            .create_session(&third, Some(&second.id), later(1))
            .await
            .unwrap(),
        Claim::HeldBy(first.id.clone())
    );
    // Replacing the holder takes the claim over.
    assert_eq!(
        store
            .create_session(&third, Some(&first.id), later(1))
            .await
            .unwrap(),
        Claim::Created
    );
    assert_eq!(
        store.get_session(&third.id).await.unwrap(),
        Some(third.clone())
    );
    // Replacing a claim that does not exist says so.
    let other = session(&event, 4, "someone-else");
    assert_eq!(
        store
            .create_session(&other, Some(&first.id), later(1))
            .await
            .unwrap(),
        Claim::Vacant
    );
}

pub async fn unfiled_sessions_can_be_discarded<S: SessionStore>(store: &S) {
    let event = fresh_event("discard");
    let lost = session(&event, 1, "fan");
    created(store, &lost).await;
    assert_eq!(
        store.discard_unfiled(&lost).await.unwrap(),
        Discard::Discarded
    );
    assert_eq!(store.get_session(&lost.id).await.unwrap(), None);
    let again = session(&event, 2, "fan");
    assert_eq!(
        store.create_session(&again, None, later(1)).await.unwrap(),
        Claim::Created,
        "the claim went with it"
    );

    assert!(matches!(
        advance(store, &event, &[&again], 0, later(10)).await,
        AdvanceOutcome::Applied
    ));
    assert_eq!(
        store.discard_unfiled(&again).await.unwrap(),
        Discard::AlreadyFiled
    );
    assert!(
        store.get_session(&again.id).await.unwrap().is_some(),
        "a filed session is kept"
    );
}

pub async fn touch_records_presence_of_live_sessions_only<S: SessionStore>(store: &S) {
    let event = fresh_event("touch");
    let s = session(&event, 1, "fan");
    created(store, &s).await;
    match store.touch(&s.id, later(500)).await.unwrap() {
        Touch::Touched(now) => assert_eq!(now.last_seen_at, later(500)),
        other => panic!("expected Touched, got {other:?}"),
    }
    let outcome = store
        .end_session(
            &s.id,
            EndFrom::WaitingUnfiled,
            &Ending::new(EndReason::UserLeft, later(600)),
            later(9_999),
        )
        .await
        .unwrap();
    assert_eq!(outcome, EndOutcome::Ended);
    assert!(
        matches!(store.touch(&s.id, later(700)).await.unwrap(), Touch::Ended(e) if e.status == SessionStatus::Left)
    );
    let missing = session(&event, 2, "nobody");
    assert_eq!(
        store.touch(&missing.id, later(700)).await.unwrap(),
        Touch::NotFound
    );
}

pub async fn the_line_files_admits_and_counts_exactly<S: SessionStore>(store: &S) {
    let event = fresh_event("line");
    let fans: Vec<Session> = (1..=4)
        .map(|n| session(&event, n, &format!("fan{n}")))
        .collect();
    for fan in &fans {
        created(store, fan).await;
    }
    let refs: Vec<&Session> = fans.iter().collect();
    assert_eq!(
        advance(store, &event, &refs, 2, later(100)).await,
        AdvanceOutcome::Applied
    );

    let state = store.line_state(&event, 1).await.unwrap();
    assert_eq!((state.counters.active, state.counters.admitted), (2, 2));
    assert_eq!(
        (state.shards[0].head_ticket, state.shards[0].next_ticket),
        (2, 4)
    );
    let admitted = store.get_session(&fans[1].id).await.unwrap().unwrap();
    assert_eq!(admitted.status, SessionStatus::Active);
    assert_eq!(admitted.admission.as_ref().map(|a| a.admission_no), Some(2));
    let waiting = store.get_session(&fans[3].id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status, waiting.ticket),
        (SessionStatus::Waiting, Some(3))
    );

    // Only filed, not-yet-admitted sessions are in the line, in ticket order.
    let line = store.line_entries(&event, 0, 0, 10).await.unwrap();
    let tickets: Vec<u64> = line.iter().map(|e| e.ticket).collect();
    assert_eq!(tickets, vec![2, 3]);
    assert_eq!(store.line_entries(&event, 0, 3, 10).await.unwrap().len(), 1);

    // A redelivered arrival is rejected, and nothing else is written.
    let again = advance(store, &event, &[&fans[0]], 2, later(200)).await;
    assert_eq!(
        again,
        AdvanceOutcome::Conflict {
            rejected: vec![fans[0].id.clone()]
        }
    );
    assert_eq!(store.line_state(&event, 1).await.unwrap(), state);

    // Leaving while active frees exactly one slot; the next is admitted.
    let left = leave_active(store, &fans[0].id, 300).await;
    assert_eq!(left, EndOutcome::Ended);
    let twice = leave_active(store, &fans[0].id, 301).await;
    assert!(matches!(twice, EndOutcome::NotAsExpected(Some(s)) if s.status == SessionStatus::Left));
    assert_eq!(store.event_counters(&event).await.unwrap().active, 1);
    assert_eq!(
        advance(store, &event, &[], 2, later(400)).await,
        AdvanceOutcome::Applied
    );
    let third = store.get_session(&fans[2].id).await.unwrap().unwrap();
    assert_eq!(third.admission.map(|a| a.admission_no), Some(3));

    // Leaving while waiting is counted on the shard; the head passes it.
    let out = store
        .end_session(
            &fans[3].id,
            EndFrom::WaitingFiled {
                shard: 0,
                ticket: 3,
            },
            &Ending::new(EndReason::UserLeft, later(500)),
            later(9_999),
        )
        .await
        .unwrap();
    assert_eq!(out, EndOutcome::Ended);
    let shard = &store.line_state(&event, 1).await.unwrap().shards[0];
    assert_eq!(
        (shard.ended_in_line, shard.left_waiting, shard.waiting()),
        (1, 1, 0)
    );
    leave_active(store, &fans[1].id, 550).await;
    assert_eq!(
        advance(store, &event, &[], 2, later(600)).await,
        AdvanceOutcome::Applied
    );
    let state = store.line_state(&event, 1).await.unwrap();
    assert_eq!(
        (state.shards[0].head_ticket, state.shards[0].ended_in_line),
        (4, 0)
    );
    assert_eq!(
        (
            state.counters.active,
            state.counters.admitted,
            state.counters.left
        ),
        (1, 3, 2)
    );
}

pub async fn a_stale_plan_writes_nothing<S: SessionStore>(store: &S) {
    let event = fresh_event("stale");
    let a = session(&event, 1, "a");
    let b = session(&event, 2, "b");
    created(store, &a).await;
    created(store, &b).await;
    let state = store.line_state(&event, 1).await.unwrap();
    let arrival = |s: &Session| Arrival {
        session_id: s.id.clone(),
        shard: 0,
        joined_at: s.joined_at,
    };
    let plan_a = plan_line_advance(
        &state,
        &[arrival(&a)],
        &KnownEntries {
            by_shard: vec![vec![]],
        },
        &policy(5),
        later(10),
    );
    let plan_b = plan_line_advance(
        &state,
        &[arrival(&b)],
        &KnownEntries {
            by_shard: vec![vec![]],
        },
        &policy(5),
        later(10),
    );
    assert_eq!(
        store.advance_line(&plan_a, later(99)).await.unwrap(),
        AdvanceOutcome::Applied
    );
    // Same snapshot, same ticket: the second writer must lose, untouched.
    assert_eq!(
        store.advance_line(&plan_b, later(99)).await.unwrap(),
        AdvanceOutcome::Conflict { rejected: vec![] }
    );
    assert_eq!(
        store.get_session(&b.id).await.unwrap().unwrap().ticket,
        None
    );
    assert_eq!(store.event_counters(&event).await.unwrap().admitted, 1);
}

pub async fn capacity_is_checked_in_the_write<S: SessionStore>(store: &S) {
    let event = fresh_event("cap");
    let a = session(&event, 1, "a");
    created(store, &a).await;
    let state = store.line_state(&event, 1).await.unwrap();
    let arrival = Arrival {
        session_id: a.id.clone(),
        shard: 0,
        joined_at: a.joined_at,
    };
    let plan = plan_line_advance(
        &state,
        &[arrival],
        &KnownEntries {
            by_shard: vec![vec![]],
        },
        &policy(5),
        later(10),
    );
    // An operator lowers capacity between the read and the write.
    store.set_capacity(&event, 0).await.unwrap();
    assert_eq!(
        store.advance_line(&plan, later(99)).await.unwrap(),
        AdvanceOutcome::Conflict { rejected: vec![] }
    );
    assert_eq!(store.event_counters(&event).await.unwrap().active, 0);
    assert_eq!(
        store.event_counters(&event).await.unwrap().capacity,
        Some(0)
    );
}

pub async fn abandoned_sessions_expire_only_if_still_silent<S: SessionStore>(store: &S) {
    let event = fresh_event("abandon");
    let quiet = session(&event, 1, "quiet");
    let next = session(&event, 2, "next");
    created(store, &quiet).await;
    created(store, &next).await;
    assert_eq!(
        advance(store, &event, &[&quiet, &next], 0, later(10)).await,
        AdvanceOutcome::Applied
    );
    store.set_capacity(&event, 1).await.unwrap();
    // Two minutes on, the first has been silent past the limit; the second polled.
    store.touch(&next.id, later(100_000)).await.unwrap();
    assert_eq!(
        advance(store, &event, &[], 1, later(120_000)).await,
        AdvanceOutcome::Applied
    );
    let quiet = store.get_session(&quiet.id).await.unwrap().unwrap();
    assert_eq!(quiet.status, SessionStatus::Expired);
    assert_eq!(quiet.ending.map(|e| e.reason), Some(EndReason::Timeout));
    assert_eq!(
        store.get_session(&next.id).await.unwrap().unwrap().status,
        SessionStatus::Active
    );
    let state = store.line_state(&event, 1).await.unwrap();
    assert_eq!((state.shards[0].abandoned, state.counters.active), (1, 1));
}

pub async fn expiry_is_found_by_index_and_happens_once<S: SessionStore>(store: &S) {
    use crate::domain::session::expiry_bucket;
    let event = fresh_event("expiry");
    let fans: Vec<Session> = (1..=3)
        .map(|n| session(&event, n, &format!("x{n}")))
        .collect();
    for fan in &fans {
        created(store, fan).await;
    }
    let refs: Vec<&Session> = fans.iter().collect();
    assert_eq!(
        advance(store, &event, &refs, 3, later(100)).await,
        AdvanceOutcome::Applied
    );
    let ends_at = later(100).plus(Duration::from_secs(900));
    let overdue_at = ends_at.plus(Duration::from_millis(1));
    let in_bucket = |id: &SessionId| expiry_bucket(id);

    // Not yet overdue a moment before the end.
    for fan in &fans {
        let early = store
            .overdue_sessions(in_bucket(&fan.id), later(200), 10)
            .await
            .unwrap();
        assert!(!early.contains(&fan.id));
        let due = store
            .overdue_sessions(in_bucket(&fan.id), overdue_at, 10)
            .await
            .unwrap();
        assert!(
            due.contains(&fan.id),
            "an overdue active session is in its bucket"
        );
    }

    // A heartbeat's extension wins over an expiry based on the old end.
    let extended = ends_at.plus(Duration::from_secs(600));
    assert!(
        store
            .extend_stay(&fans[0].id, ends_at, extended)
            .await
            .unwrap()
    );
    assert!(
        !store
            .extend_stay(&fans[0].id, ends_at, extended)
            .await
            .unwrap(),
        "stale end: refused"
    );
    let ending = Ending::new(EndReason::Expired, overdue_at);
    let overdue = EndFrom::ActiveOverdue { at: overdue_at };
    let kept = store
        .end_session(&fans[0].id, overdue, &ending, later(9_999_999))
        .await
        .unwrap();
    assert!(
        matches!(kept, EndOutcome::NotAsExpected(Some(s)) if s.status == SessionStatus::Active)
    );

    // The others expire exactly once.
    for fan in &fans[1..] {
        let first = store
            .end_session(&fan.id, overdue, &ending, later(9_999_999))
            .await
            .unwrap();
        assert_eq!(first, EndOutcome::Ended);
        let again = store
            .end_session(&fan.id, overdue, &ending, later(9_999_999))
            .await
            .unwrap();
        assert!(
            matches!(again, EndOutcome::NotAsExpected(Some(s)) if s.status == SessionStatus::Expired)
        );
        let due = store
            .overdue_sessions(in_bucket(&fan.id), overdue_at, 10)
            .await
            .unwrap();
        assert!(
            !due.contains(&fan.id),
            "an ended session leaves the expiry index"
        );
    }
    let counters = store.event_counters(&event).await.unwrap();
    assert_eq!((counters.active, counters.expired), (1, 2));
}

pub async fn the_backlog_hint_never_hides_a_freed_slot<S: SessionStore>(store: &S) {
    let event = fresh_event("backlog");
    let fans: Vec<Session> = (1..=3)
        .map(|n| session(&event, n, &format!("b{n}")))
        .collect();
    for fan in &fans {
        created(store, fan).await;
    }
    store.set_capacity(&event, 1).await.unwrap();
    assert_eq!(
        advance(store, &event, &[&fans[0]], 1, later(10)).await,
        AdvanceOutcome::Applied
    );
    assert!(
        !store.event_counters(&event).await.unwrap().backlog,
        "nobody waits yet"
    );

    // Plan to file the second behind a full event; the first leaves before
    // the write. The write must not land: its "nobody can be admitted" is stale.
    let state = store.line_state(&event, 1).await.unwrap();
    let arrival = Arrival {
        session_id: fans[1].id.clone(),
        shard: 0,
        joined_at: fans[1].joined_at,
    };
    let stale = plan_line_advance(
        &state,
        std::slice::from_ref(&arrival),
        &KnownEntries {
            by_shard: vec![vec![]],
        },
        &policy(1),
        later(20),
    );
    assert!(matches!(
        stale.backlog,
        crate::domain::admission::BacklogHint::Set { .. }
    ));
    let left = leave_active(store, &fans[0].id, 15).await;
    assert_eq!(left, EndOutcome::Ended);
    assert_eq!(
        store.advance_line(&stale, later(99)).await.unwrap(),
        AdvanceOutcome::Conflict { rejected: vec![] }
    );

    // Planned again, the second is admitted; the third waits and the hint is set.
    assert_eq!(
        advance(store, &event, &[&fans[1], &fans[2]], 1, later(30)).await,
        AdvanceOutcome::Applied
    );
    let counters = store.event_counters(&event).await.unwrap();
    assert_eq!((counters.active, counters.backlog), (1, true));

    // Once the line is empty again the hint is cleared.
    leave_active(store, &fans[1].id, 40).await;
    assert_eq!(
        advance(store, &event, &[], 1, later(50)).await,
        AdvanceOutcome::Applied
    );
    let counters = store.event_counters(&event).await.unwrap();
    assert_eq!((counters.active, counters.backlog), (1, false));
}

pub async fn filing_does_not_collide_with_admitting<S: SessionStore>(store: &S) {
    let event = fresh_event("file-admit");
    let fans: Vec<Session> = (1..=3)
        .map(|n| session(&event, n, &format!("f{n}")))
        .collect();
    for fan in &fans {
        created(store, fan).await;
    }
    store.set_capacity(&event, 1).await.unwrap();
    // Full with the first; the second waits.
    assert_eq!(
        advance(store, &event, &[&fans[0], &fans[1]], 1, later(10)).await,
        AdvanceOutcome::Applied
    );
    // A granter plans to file the third (only) from this snapshot...
    let state = store.line_state(&event, 1).await.unwrap();
    let filing = plan_line_advance(
        &state,
        &[Arrival {
            session_id: fans[2].id.clone(),
            shard: 0,
            joined_at: fans[2].joined_at,
        }],
        &KnownEntries {
            by_shard: vec![vec![]],
        },
        &policy(1),
        later(20),
    );
    assert_eq!(filing.admitted, 0);
    // ...while a slot frees and another granter admits the second.
    leave_active(store, &fans[0].id, 15).await;
    assert_eq!(
        advance(store, &event, &[], 1, later(16)).await,
        AdvanceOutcome::Applied
    );
    // Filing does not depend on the head, so it still lands, behind.
    assert_eq!(
        store.advance_line(&filing, later(99)).await.unwrap(),
        AdvanceOutcome::Applied
    );
    let shard = store.line_shard(&event, 0).await.unwrap();
    assert_eq!((shard.head_ticket, shard.next_ticket), (2, 3));
    assert_eq!(shard.filed_through, Some(fans[2].joined_at));
    let second = store.get_session(&fans[1].id).await.unwrap().unwrap();
    assert_eq!(second.status, SessionStatus::Active);
    let third = store.get_session(&fans[2].id).await.unwrap().unwrap();
    assert_eq!(
        (third.status, third.ticket),
        (SessionStatus::Waiting, Some(2))
    );
}

/// Every check above, in order.
pub async fn run_all<S: SessionStore>(store: &S) {
    claims_make_join_idempotent(store).await;
    unfiled_sessions_can_be_discarded(store).await;
    touch_records_presence_of_live_sessions_only(store).await;
    the_line_files_admits_and_counts_exactly(store).await;
    a_stale_plan_writes_nothing(store).await;
    filing_does_not_collide_with_admitting(store).await;
    capacity_is_checked_in_the_write(store).await;
    abandoned_sessions_expire_only_if_still_silent(store).await;
    expiry_is_found_by_index_and_happens_once(store).await;
    the_backlog_hint_never_hides_a_freed_slot(store).await;
}

#[cfg(test)]
mod tests {
    use crate::adapters::memory::MemoryStore;

    #[tokio::test]
    async fn the_memory_store_keeps_the_contract() {
        super::run_all(&MemoryStore::new()).await;
    }
}
