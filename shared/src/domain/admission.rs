//! Planning one step of an event's line: file new arrivals (give them
//! tickets) and admit from the front while there are free slots.
//!
//! The plan is pure data. A store applies it as one atomic, conditional write
//! (a DynamoDB transaction), so two granters planning from the same snapshot
//! cannot both succeed: the loser re-reads and plans again.

use std::time::Duration;

use super::estimate::AdmissionRate;
use super::ids::{EventId, SessionId};
use super::line::{LineEntry, LineShard, LineState};
use super::session::SessionStatus;
use super::time::Timestamp;

/// A join message received from the queue, not yet filed in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub session_id: SessionId,
    pub shard: u16,
    pub joined_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    pub default_capacity: u32,
    /// How long an admitted user may stay before the slot is taken back.
    pub active_stay: Duration,
    /// A waiting user silent for longer than this is skipped and expired.
    pub abandon_after: Option<Duration>,
    /// Admissions and expiries per write; DynamoDB allows 100 items in one
    /// transaction and the event and shard items need room too.
    pub max_changes_per_write: usize,
}

/// What the write must find on the event item for the plan to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterExpectation {
    /// The capacity seen; `None` means the item had none and the default
    /// (`capacity`) is written along with the admissions.
    pub capacity_seen: Option<u32>,
    pub capacity: u32,
    /// Active sessions may be at most this before the admissions (capacity
    /// minus admissions), so concurrent leaves never cause a conflict.
    pub active_at_most: u64,
    pub admitted_seen: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardAdvance {
    pub shard: u16,
    /// Whether the shard item existed, and its `next`/`head` as seen.
    pub stored: bool,
    pub next_seen: u64,
    pub head_seen: u64,
    pub next: u64,
    pub head: u64,
    /// Ended sessions the head moved past (taken off `ended_in_line`).
    pub passed_ended: u64,
    /// Waiting sessions expired for not polling (counted on the shard).
    pub abandoned: u64,
    /// The shard's `filed_through` once this write applies.
    pub filed_through: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChangeKind {
    /// An arrival gets its ticket and stays waiting.
    File,
    /// Admitted; `filed_now` when it is an arrival filed in the same write.
    Admit {
        filed_now: bool,
        admission_no: u64,
        expires_at: Timestamp,
    },
    /// Skipped for not polling: expired with reason `timeout`.
    Abandon { silent_since: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    pub session_id: SessionId,
    pub shard: u16,
    pub ticket: u64,
    pub kind: SessionChangeKind,
    /// For sessions filed by this write: people ahead once it applies.
    pub ahead_at_filing: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineAdvance {
    pub event_id: EventId,
    pub now: Timestamp,
    /// Present when the write admits anyone (it takes slots).
    pub counters: Option<CounterExpectation>,
    pub admitted: u64,
    /// The event's admission rate including this write's admissions.
    pub rate: AdmissionRate,
    pub shards: Vec<ShardAdvance>,
    pub sessions: Vec<SessionChange>,
    /// Whether anyone waits in the line once this write applies, and
    /// whether the event item's hint (`EventCounters::backlog`) must change.
    pub backlog: BacklogHint,
    /// Shards this write does not advance but whose state the plan relied
    /// on: when it admits (someone filed meanwhile in another shard may have
    /// joined before those admitted) or clears the backlog hint. The write
    /// checks they did not move.
    pub unchanged_shards: Vec<ShardSeen>,
    /// The walk stopped with slots free and people waiting: it hit the
    /// per-write limit or a front it could not see. Plan again after this.
    pub unfinished: bool,
}

/// The event item's "someone is waiting" hint, which decides whether a freed
/// slot wakes the granter at all (docs/decisions/0014-fewer-calls.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BacklogHint {
    Unchanged,
    /// Set it: this write leaves people waiting. Before, nobody woke the
    /// granter on a freed slot, so the write must prove it missed none:
    /// `active` did not drop and capacity did not change since the snapshot.
    Set {
        active_seen: u64,
        capacity_seen: Option<u32>,
    },
    /// Clear it: the line is empty. Only valid if no shard moved since the
    /// snapshot (see `LineAdvance::unchanged_shards`).
    Clear,
}

/// A shard as the snapshot saw it, for a condition-only check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSeen {
    pub shard: u16,
    pub stored: bool,
    /// Nobody was filed there since: `next` is still this.
    pub next_seen: u64,
}

impl LineAdvance {
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.shards.iter().all(|s| s.head == s.head_seen)
            && self.backlog == BacklogHint::Unchanged
    }

    /// The hint's value once this write applies.
    pub fn backlog_after(&self, before: bool) -> bool {
        match self.backlog {
            BacklogHint::Unchanged => before,
            BacklogHint::Set { .. } => true,
            BacklogHint::Clear => false,
        }
    }

    pub fn admitted_sessions(&self) -> impl Iterator<Item = &SessionChange> {
        self.sessions
            .iter()
            .filter(|c| matches!(c.kind, SessionChangeKind::Admit { .. }))
    }
}

/// Where the front of each shard stands, for one planning step.
#[derive(Debug, Clone, Default)]
pub struct KnownEntries {
    /// Per shard: line entries from the head, in ticket order, as read from
    /// the line index (possibly lagging, possibly stale).
    pub by_shard: Vec<Vec<LineEntry>>,
}

struct Cursor<'a> {
    entries: Vec<Candidate<'a>>,
    position: usize,
    /// True when `entries` reach the shard's end, so nothing unseen can be
    /// ahead of the next shard's candidates.
    complete: bool,
}

#[derive(Clone, Copy)]
enum Candidate<'a> {
    Filed(&'a LineEntry),
    Arriving(&'a Arrival, u64),
}

impl Candidate<'_> {
    fn key(&self) -> (Timestamp, u64) {
        match self {
            Candidate::Filed(e) => (e.joined_at, e.ticket),
            Candidate::Arriving(a, ticket) => (a.joined_at, *ticket),
        }
    }
}

/// Plan one step: file `arrivals` (all of one shard, in queue order) and then
/// walk the merged front of all shards in join order, passing sessions that
/// ended, expiring the abandoned, and admitting while slots are free.
pub fn plan_line_advance(
    state: &LineState,
    arrivals: &[Arrival],
    known: &KnownEntries,
    policy: &AdmissionPolicy,
    now: Timestamp,
) -> LineAdvance {
    let arrivals = &new_arrivals(arrivals, known);
    let mut cursors = build_cursors(state, arrivals, known);
    let capacity = state.counters.effective_capacity(policy.default_capacity);
    let free = state.counters.free_slots(policy.default_capacity);
    let budget = change_budget(state, arrivals, policy);
    let abandon_before = policy.abandon_after.map(|d| now.minus(d));

    let mut heads: Vec<u64> = state.shards.iter().map(|s| s.head_ticket).collect();
    let mut passed_ended = vec![0u64; state.shards.len()];
    let mut abandoned = vec![0u64; state.shards.len()];
    let mut changes: Vec<SessionChange> = Vec::new();
    let mut admitted = 0u64;
    let mut latest_admitted: Option<Timestamp> = None;
    let mut front_changes = 0usize;
    let mut unfinished = false;

    loop {
        let Some(shard) = next_in_join_order(&cursors) else {
            unfinished = admitted < free && cursors.iter().any(|c| !c.complete);
            break;
        };
        let cursor = &mut cursors[shard];
        let candidate = cursor.entries[cursor.position];
        let ticket = candidate.key().1;
        let shard_no = state.shards[shard].shard;
        match candidate {
            Candidate::Filed(entry) if entry.status != SessionStatus::Waiting => {
                passed_ended[shard] += 1;
            }
            Candidate::Filed(entry)
                if abandon_before.is_some_and(|cutoff| entry.last_seen_at < cutoff) =>
            {
                if front_changes >= budget {
                    unfinished = true;
                    break;
                }
                front_changes += 1;
                abandoned[shard] += 1;
                changes.push(SessionChange {
                    session_id: entry.session_id.clone(),
                    shard: shard_no,
                    ticket,
                    kind: SessionChangeKind::Abandon {
                        silent_since: entry.last_seen_at,
                    },
                    ahead_at_filing: None,
                });
            }
            _ => {
                if admitted >= free {
                    break;
                }
                if front_changes >= budget {
                    unfinished = true;
                    break;
                }
                front_changes += 1;
                admitted += 1;
                latest_admitted = latest_admitted.max(Some(candidate.key().0));
                let (session_id, filed_now) = match candidate {
                    Candidate::Filed(e) => (e.session_id.clone(), false),
                    Candidate::Arriving(a, _) => (a.session_id.clone(), true),
                };
                changes.push(SessionChange {
                    session_id,
                    shard: shard_no,
                    ticket,
                    kind: SessionChangeKind::Admit {
                        filed_now,
                        admission_no: state.counters.admitted + admitted,
                        expires_at: now.plus(policy.active_stay),
                    },
                    ahead_at_filing: filed_now.then_some(0),
                });
            }
        }
        heads[shard] = ticket + 1;
        cursor.position += 1;
    }

    file_remaining_arrivals(state, arrivals, &heads, &mut changes);
    let shards = shard_advances(state, arrivals, &heads, &passed_ended, &abandoned);
    let backlog = backlog_hint(state, &shards);
    let unchanged_shards = match (&backlog, latest_admitted) {
        (BacklogHint::Clear, _) => unchanged_shards(state, &shards, None),
        (_, Some(latest)) => unchanged_shards(state, &shards, Some(latest)),
        (_, None) => Vec::new(),
    };
    let counters = (admitted > 0).then(|| CounterExpectation {
        capacity_seen: state.counters.capacity,
        capacity,
        active_at_most: u64::from(capacity).saturating_sub(admitted),
        admitted_seen: state.counters.admitted,
    });
    LineAdvance {
        event_id: state.event_id.clone(),
        now,
        counters,
        admitted,
        rate: if admitted > 0 {
            state.counters.rate.after(admitted, now)
        } else {
            state.counters.rate
        },
        shards,
        sessions: changes,
        backlog,
        unchanged_shards,
        unfinished,
    }
}

fn backlog_hint(state: &LineState, advances: &[ShardAdvance]) -> BacklogHint {
    let waiting_after =
        state.shards.iter().any(
            |shard| match advances.iter().find(|a| a.shard == shard.shard) {
                Some(advance) => advance.head < advance.next,
                None => shard.has_backlog(),
            },
        );
    match (state.counters.backlog, waiting_after) {
        (false, true) => BacklogHint::Set {
            active_seen: state.counters.active,
            capacity_seen: state.counters.capacity,
        },
        (true, false) => BacklogHint::Clear,
        _ => BacklogHint::Unchanged,
    }
}

/// How far out of join order messages may reach one shard: two joins race
/// between stamping `joined_at` and sending, by the join's latency at most
/// (seconds, with the SDK's retries).
pub const FILING_SKEW: Duration = Duration::from_secs(5);

/// The other shards the plan relied on: those where someone who joined
/// before `latest_admitted` could still be filed. A shard already filed
/// through a later join (by more than `FILING_SKEW`) cannot get anyone
/// earlier, so admitting does not depend on it; during a rush that is every
/// shard, which keeps admissions from colliding with the filing of others.
/// `None`: every shard counts (clearing the hint relies on all).
fn unchanged_shards(
    state: &LineState,
    advances: &[ShardAdvance],
    latest_admitted: Option<Timestamp>,
) -> Vec<ShardSeen> {
    let settled = |shard: &LineShard| match (latest_admitted, shard.filed_through) {
        (Some(latest), Some(through)) => through.minus(FILING_SKEW) > latest,
        _ => false,
    };
    state
        .shards
        .iter()
        .filter(|shard| advances.iter().all(|a| a.shard != shard.shard))
        .filter(|shard| !settled(shard))
        .map(|shard| ShardSeen {
            shard: shard.shard,
            stored: shard.stored,
            next_seen: shard.next_ticket,
        })
        .collect()
}

/// Arrivals that are not filed already. A redelivered message of a session
/// the index shows in line must not get a second ticket: the session keeps
/// its place, and the ticket would be a hole nobody fills. (Filed sessions
/// beyond the front the index showed are caught by the write's condition.)
pub fn new_arrivals(arrivals: &[Arrival], known: &KnownEntries) -> Vec<Arrival> {
    let mut fresh: Vec<Arrival> = Vec::with_capacity(arrivals.len());
    for arrival in arrivals {
        let filed = known
            .by_shard
            .iter()
            .flatten()
            .any(|e| e.session_id == arrival.session_id);
        let repeated = fresh.iter().any(|a| a.session_id == arrival.session_id);
        if !filed && !repeated {
            fresh.push(arrival.clone());
        }
    }
    fresh
}

fn build_cursors<'a>(
    state: &LineState,
    arrivals: &'a [Arrival],
    known: &'a KnownEntries,
) -> Vec<Cursor<'a>> {
    state
        .shards
        .iter()
        .enumerate()
        .map(|(index, shard)| {
            let listed = known.by_shard.get(index).map(Vec::as_slice).unwrap_or(&[]);
            // Only an unbroken run from the head counts: a gap means the index
            // has not caught up yet, and skipping it would let someone overtake.
            // Entries behind the head were read before the head moved past them.
            let mut entries: Vec<Candidate<'a>> = listed
                .iter()
                .skip_while(|entry| entry.ticket < shard.head_ticket)
                .zip(shard.head_ticket..)
                .take_while(|(entry, expected)| entry.ticket == *expected)
                .map(|(entry, _)| Candidate::Filed(entry))
                .collect();
            let seen_to = shard.head_ticket + entries.len() as u64;
            let complete = seen_to >= shard.next_ticket;
            if complete {
                let mine = arrivals.iter().filter(|a| a.shard == shard.shard);
                entries.extend(
                    mine.zip(shard.next_ticket..)
                        .map(|(arrival, ticket)| Candidate::Arriving(arrival, ticket)),
                );
            }
            Cursor {
                entries,
                position: 0,
                complete,
            }
        })
        .collect()
}

/// The shard whose front joined first; `None` when the walk must stop: all
/// fronts are used up, or a shard whose rest is unknown ran out (anyone unseen
/// there may have joined before the others' fronts).
fn next_in_join_order(cursors: &[Cursor<'_>]) -> Option<usize> {
    let mut best: Option<(usize, (Timestamp, u64))> = None;
    for (index, cursor) in cursors.iter().enumerate() {
        match cursor.entries.get(cursor.position) {
            None if !cursor.complete => return None,
            None => {}
            Some(candidate) => {
                let key = candidate.key();
                // Ties on join time go to the lower shard: deterministic.
                if best.is_none_or(|(_, best_key)| key.0 < best_key.0) {
                    best = Some((index, key));
                }
            }
        }
    }
    best.map(|(index, _)| index)
}

fn change_budget(state: &LineState, arrivals: &[Arrival], policy: &AdmissionPolicy) -> usize {
    const TRANSACTION_ITEM_LIMIT: usize = 100;
    // The event item, every shard (advanced or checked) and the arrivals.
    let fixed = 1 + state.shards.len() + arrivals.len();
    TRANSACTION_ITEM_LIMIT
        .saturating_sub(fixed)
        .min(policy.max_changes_per_write)
}

/// Arrivals not admitted are filed; each learns how many are ahead of it
/// once this write applies (scaled by the shard count, see `people_ahead`).
fn file_remaining_arrivals(
    state: &LineState,
    arrivals: &[Arrival],
    heads: &[u64],
    changes: &mut Vec<SessionChange>,
) {
    let shard_count = u64::try_from(state.shards.len()).unwrap_or(1).max(1);
    for (index, shard) in state.shards.iter().enumerate() {
        let mine = arrivals.iter().filter(|a| a.shard == shard.shard);
        for (arrival, ticket) in mine.zip(shard.next_ticket..) {
            let already = changes.iter().any(|c| c.session_id == arrival.session_id);
            if !already {
                changes.push(SessionChange {
                    session_id: arrival.session_id.clone(),
                    shard: shard.shard,
                    ticket,
                    kind: SessionChangeKind::File,
                    ahead_at_filing: Some(ticket.saturating_sub(heads[index]) * shard_count),
                });
            }
        }
    }
}

fn shard_advances(
    state: &LineState,
    arrivals: &[Arrival],
    heads: &[u64],
    passed_ended: &[u64],
    abandoned: &[u64],
) -> Vec<ShardAdvance> {
    state
        .shards
        .iter()
        .enumerate()
        .filter_map(|(index, shard)| {
            let arriving = arrivals.iter().filter(|a| a.shard == shard.shard).count() as u64;
            let head = heads[index];
            if arriving == 0 && head == shard.head_ticket {
                return None;
            }
            let filed_through = arrivals
                .iter()
                .filter(|a| a.shard == shard.shard)
                .map(|a| a.joined_at)
                .max()
                .max(shard.filed_through);
            Some(ShardAdvance {
                shard: shard.shard,
                stored: shard.stored,
                next_seen: shard.next_ticket,
                head_seen: shard.head_ticket,
                next: shard.next_ticket + arriving,
                head,
                passed_ended: passed_ended[index],
                abandoned: abandoned[index],
                filed_through,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::line::{EventCounters, LineShard};

    fn event() -> EventId {
        EventId::parse("E").unwrap()
    }

    fn sid(n: u8) -> SessionId {
        SessionId::new(&event(), [n; 16])
    }

    fn policy(capacity: u32) -> AdmissionPolicy {
        AdmissionPolicy {
            default_capacity: capacity,
            active_stay: Duration::from_secs(900),
            abandon_after: Some(Duration::from_secs(60)),
            max_changes_per_write: 50,
        }
    }

    /// A consistent snapshot: the backlog hint is set when a shard has a line.
    fn state(shards: Vec<LineShard>, active: u64) -> LineState {
        LineState {
            event_id: event(),
            counters: EventCounters {
                active,
                admitted: active,
                backlog: shards.iter().any(LineShard::has_backlog),
                ..EventCounters::default()
            },
            shards,
        }
    }

    fn shard(no: u16, head: u64, next: u64) -> LineShard {
        LineShard {
            shard: no,
            stored: true,
            head_ticket: head,
            next_ticket: next,
            ..LineShard::empty(no)
        }
    }

    fn entry(n: u8, ticket: u64, joined: u64, status: SessionStatus) -> LineEntry {
        LineEntry {
            session_id: sid(n),
            ticket,
            status,
            joined_at: Timestamp::from_millis(joined),
            last_seen_at: Timestamp::from_millis(NOW),
        }
    }

    fn arrival(n: u8, shard: u16, joined: u64) -> Arrival {
        Arrival {
            session_id: sid(n),
            shard,
            joined_at: Timestamp::from_millis(joined),
        }
    }

    const NOW: u64 = 1_000_000;

    fn plan(
        state: &LineState,
        arrivals: &[Arrival],
        known: Vec<Vec<LineEntry>>,
        capacity: u32,
    ) -> LineAdvance {
        plan_line_advance(
            state,
            arrivals,
            &KnownEntries { by_shard: known },
            &policy(capacity),
            Timestamp::from_millis(NOW),
        )
    }

    fn admitted_ids(plan: &LineAdvance) -> Vec<SessionId> {
        plan.admitted_sessions()
            .map(|c| c.session_id.clone())
            .collect()
    }

    #[test]
    fn arrivals_to_an_empty_line_are_filed_and_admitted_up_to_capacity() {
        let state = state(vec![shard(0, 0, 0)], 0);
        let arrivals = [arrival(1, 0, 1), arrival(2, 0, 2), arrival(3, 0, 3)];
        let plan = plan(&state, &arrivals, vec![vec![]], 2);
        assert_eq!(admitted_ids(&plan), vec![sid(1), sid(2)]);
        assert_eq!(plan.admitted, 2);
        let filed: Vec<_> = plan
            .sessions
            .iter()
            .map(|c| (c.ticket, c.kind.clone()))
            .collect();
        assert_eq!(filed[2], (2, SessionChangeKind::File));
        assert_eq!(plan.shards[0].next, 3);
        assert_eq!(plan.shards[0].head, 2);
        let counters = plan.counters.unwrap();
        assert_eq!(counters.active_at_most, 0);
        assert_eq!(counters.capacity, 2);
        assert_eq!(counters.capacity_seen, None);
    }

    #[test]
    fn a_full_event_files_arrivals_without_taking_slots() {
        let state = state(vec![shard(0, 0, 0)], 5);
        let plan = plan(&state, &[arrival(1, 0, 1)], vec![vec![]], 5);
        assert_eq!(plan.admitted, 0);
        assert!(plan.counters.is_none());
        assert_eq!(plan.sessions[0].kind, SessionChangeKind::File);
        assert_eq!(plan.shards[0].head, 0);
        assert_eq!(plan.shards[0].next, 1);
    }

    #[test]
    fn the_front_of_the_line_goes_before_new_arrivals() {
        let state = state(vec![shard(0, 4, 6)], 0);
        let known = vec![vec![
            entry(4, 4, 10, SessionStatus::Waiting),
            entry(5, 5, 11, SessionStatus::Waiting),
        ]];
        let plan = plan(&state, &[arrival(6, 0, 12)], known, 2);
        assert_eq!(admitted_ids(&plan), vec![sid(4), sid(5)]);
        let filed = plan
            .sessions
            .iter()
            .find(|c| c.session_id == sid(6))
            .unwrap();
        assert_eq!((filed.ticket, &filed.kind), (6, &SessionChangeKind::File));
    }

    #[test]
    fn ended_sessions_are_passed_and_abandoned_ones_expired_without_slots() {
        let state = state(vec![shard(0, 0, 3)], 1);
        let mut silent = entry(2, 1, 2, SessionStatus::Waiting);
        silent.last_seen_at = Timestamp::from_millis(NOW - 61_000);
        let known = vec![vec![
            entry(1, 0, 1, SessionStatus::Left),
            silent,
            entry(3, 2, 3, SessionStatus::Waiting),
        ]];
        let plan = plan(&state, &[], known, 2);
        assert_eq!(admitted_ids(&plan), vec![sid(3)]);
        assert!(matches!(
            plan.sessions[0].kind,
            SessionChangeKind::Abandon { .. }
        ));
        let advance = &plan.shards[0];
        assert_eq!(
            (advance.head, advance.passed_ended, advance.abandoned),
            (3, 1, 1)
        );
    }

    #[test]
    fn a_gap_in_the_index_stops_the_walk_so_nobody_overtakes() {
        let state = state(vec![shard(0, 0, 3)], 0);
        let known = vec![vec![
            entry(1, 0, 1, SessionStatus::Waiting),
            entry(3, 2, 3, SessionStatus::Waiting),
        ]];
        let plan = plan(&state, &[arrival(4, 0, 4)], known, 10);
        assert_eq!(admitted_ids(&plan), vec![sid(1)]);
        let filed = plan
            .sessions
            .iter()
            .find(|c| c.session_id == sid(4))
            .unwrap();
        assert_eq!((filed.ticket, &filed.kind), (3, &SessionChangeKind::File));
    }

    #[test]
    fn shards_are_merged_in_join_order() {
        let state = state(vec![shard(0, 0, 2), shard(1, 0, 2)], 0);
        let known = vec![
            vec![
                entry(1, 0, 10, SessionStatus::Waiting),
                entry(3, 1, 30, SessionStatus::Waiting),
            ],
            vec![
                entry(2, 0, 20, SessionStatus::Waiting),
                entry(4, 1, 40, SessionStatus::Waiting),
            ],
        ];
        let plan = plan(&state, &[], known, 3);
        assert_eq!(admitted_ids(&plan), vec![sid(1), sid(2), sid(3)]);
        let numbers: Vec<u64> = plan
            .admitted_sessions()
            .map(|c| match c.kind {
                SessionChangeKind::Admit { admission_no, .. } => admission_no,
                _ => 0,
            })
            .collect();
        assert_eq!(numbers, vec![1, 2, 3]);
    }

    #[test]
    fn an_unread_shard_blocks_later_joiners_of_other_shards() {
        // Shard 1 has a backlog the index did not show; its people may have
        // joined before shard 0's, so shard 0 must not be admitted past it.
        let state = state(vec![shard(0, 0, 1), shard(1, 0, 1)], 0);
        let known = vec![vec![entry(1, 0, 10, SessionStatus::Waiting)], vec![]];
        let plan = plan(&state, &[], known, 3);
        assert!(admitted_ids(&plan).is_empty());
        assert!(plan.is_empty());
        assert!(plan.unfinished, "the granter must look again");
    }

    #[test]
    fn a_write_never_exceeds_the_transaction_item_limit() {
        let state = state(vec![shard(0, 0, 0)], 0);
        let arrivals: Vec<_> = (0..10).map(|n| arrival(n, 0, u64::from(n))).collect();
        let mut policy = policy(1000);
        policy.max_changes_per_write = 500;
        let plan = plan_line_advance(
            &state,
            &arrivals,
            &KnownEntries {
                by_shard: vec![vec![]],
            },
            &policy,
            Timestamp::from_millis(NOW),
        );
        assert_eq!(plan.admitted, 10);
        assert!(plan.sessions.len() + plan.shards.len() < 100);
        assert!(!plan.unfinished);

        policy.max_changes_per_write = 4;
        let plan = plan_line_advance(
            &state,
            &arrivals,
            &KnownEntries {
                by_shard: vec![vec![]],
            },
            &policy,
            Timestamp::from_millis(NOW),
        );
        assert_eq!(plan.admitted, 4);
        assert_eq!(plan.sessions.len(), 10, "the rest are still filed");
        assert!(plan.unfinished);
    }

    #[test]
    fn a_redelivered_arrival_already_in_line_keeps_its_place_and_leaves_no_hole() {
        let state = state(vec![shard(0, 4, 6)], 0);
        let known = vec![vec![
            entry(4, 4, 10, SessionStatus::Waiting),
            entry(5, 5, 11, SessionStatus::Waiting),
        ]];
        let redelivered = arrival(4, 0, 10);
        let plan = plan(
            &state,
            &[redelivered.clone(), arrival(6, 0, 12), redelivered],
            known,
            1,
        );
        assert_eq!(admitted_ids(&plan), vec![sid(4)]);
        assert_eq!(
            plan.shards[0].next, 7,
            "one new ticket, for the one new arrival"
        );
        let filed: Vec<_> = plan
            .sessions
            .iter()
            .filter(|c| c.kind == SessionChangeKind::File)
            .map(|c| (c.session_id.clone(), c.ticket))
            .collect();
        assert_eq!(filed, vec![(sid(6), 6)]);
        let ids: Vec<_> = plan.sessions.iter().map(|c| &c.session_id).collect();
        assert_eq!(
            ids.len(),
            ids.iter().collect::<std::collections::HashSet<_>>().len(),
            "one change per session"
        );
    }

    #[test]
    fn the_backlog_hint_follows_the_line() {
        let full = state(vec![shard(0, 0, 0), shard(1, 2, 2)], 5);
        let filing = plan(&full, &[arrival(1, 0, 1)], vec![vec![], vec![]], 5);
        let proof = BacklogHint::Set {
            active_seen: 5,
            capacity_seen: None,
        };
        assert_eq!(
            filing.backlog, proof,
            "someone now waits behind a full event"
        );

        let waiting = state(vec![shard(0, 0, 1), shard(1, 2, 2)], 0);
        let known = vec![vec![entry(1, 0, 1, SessionStatus::Waiting)], vec![]];
        let emptying = plan(&waiting, &[], known, 5);
        assert_eq!(emptying.backlog, BacklogHint::Clear, "emptied: clear it");
        let checked = vec![ShardSeen {
            shard: 1,
            stored: true,
            next_seen: 2,
        }];
        assert_eq!(
            emptying.unchanged_shards, checked,
            "checking the shard it does not write"
        );
        assert!(!emptying.backlog_after(true));

        let quiet = plan_line_advance(
            &state(vec![shard(0, 3, 3)], 0),
            &[],
            &KnownEntries {
                by_shard: vec![vec![]],
            },
            &policy(3),
            Timestamp::from_millis(NOW),
        );
        assert!(quiet.is_empty());
    }

    #[test]
    fn nothing_to_do_is_an_empty_plan() {
        let state = state(vec![shard(0, 3, 3)], 0);
        let plan = plan(&state, &[], vec![vec![]], 3);
        assert!(plan.is_empty());
        assert!(plan.counters.is_none());
        assert!(!plan.unfinished);
    }

    #[test]
    fn admitting_relies_only_on_shards_that_could_still_file_someone_earlier() {
        let skew = FILING_SKEW.as_millis() as u64;
        let filed_through = |mut shard: LineShard, at: u64| {
            shard.filed_through = Some(Timestamp::from_millis(at));
            shard
        };
        // Shard 0's front joined at 100 (one slot free, someone behind, so
        // the line stays). Shard 1 was filed through a join
        // well after it; shard 2 only just after (within the skew); shard 3
        // never filed anyone.
        let line = state(
            vec![
                filed_through(shard(0, 0, 2), 200),
                filed_through(shard(1, 5, 5), 100 + skew + 1),
                filed_through(shard(2, 5, 5), 100 + skew),
                shard(3, 0, 0),
            ],
            0,
        );
        let known = vec![
            vec![
                entry(1, 0, 100, SessionStatus::Waiting),
                entry(2, 1, 200, SessionStatus::Waiting),
            ],
            vec![],
            vec![],
            vec![],
        ];
        let admit = plan(&line, &[], known, 1);
        assert_eq!(admitted_ids(&admit), vec![sid(1)]);
        let checked: Vec<u16> = admit.unchanged_shards.iter().map(|s| s.shard).collect();
        assert_eq!(
            checked,
            vec![2, 3],
            "shard 1 cannot file anyone who joined before 100"
        );
    }

    #[test]
    fn entries_read_before_the_head_moved_are_passed_over() {
        // The index was read, then another granter admitted ticket 3 and
        // the head was read again: the stale entry is not a candidate.
        let line = state(vec![shard(0, 4, 6)], 0);
        let known = vec![vec![
            entry(1, 3, 10, SessionStatus::Waiting),
            entry(2, 4, 20, SessionStatus::Waiting),
            entry(3, 5, 30, SessionStatus::Waiting),
        ]];
        let admit = plan(&line, &[], known, 5);
        assert_eq!(admitted_ids(&admit), vec![sid(2), sid(3)]);
    }
}
