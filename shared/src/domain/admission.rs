//! Planning the granter's writes: numbering new joins (tickets, for the
//! position shown to users) and admitting from the front of the line while
//! the event has free slots.
//!
//! Plans are pure data. A store applies each as one atomic, conditional
//! write (a DynamoDB transaction), so two granters planning from the same
//! snapshot cannot both succeed: the loser reads again and plans again.

use std::time::Duration;

use super::estimate::AdmissionRate;
use super::event_state::EventState;
use super::ids::{EventId, SessionId};
use super::line::{
    Backlog, EventCounters, LineEntry, Place, ShardView, TicketCounter, people_ahead,
};
use super::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    pub default_capacity: u32,
    /// How long an admitted user may stay before the slot is taken back.
    pub active_stay: Duration,
    /// A waiting user silent for longer than this is abandoned (expired).
    pub abandon_after: Option<Duration>,
    /// Admissions and expiries per write; DynamoDB allows 100 items in one
    /// transaction and the event and head items need room too.
    pub max_changes_per_write: usize,
}

impl AdmissionPolicy {
    /// The policy for one event: its own stay and abandonment limit where
    /// an operator set them.
    pub fn for_event(&self, counters: &EventCounters) -> AdmissionPolicy {
        AdmissionPolicy {
            active_stay: counters.stay.unwrap_or(self.active_stay),
            abandon_after: counters.abandon_limit(self.abandon_after),
            ..self.clone()
        }
    }
}

/// What the write must find on the event item for the plan to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterExpectation {
    /// Present when the write takes slots.
    pub slots: Option<SlotCheck>,
    /// No other admission or abandonment since the snapshot: admission numbers stay
    /// unique, and the stored heads are the ones the plan moved on from (so
    /// they never move back).
    pub admitted_seen: u64,
    pub abandoned_seen: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotCheck {
    pub capacity: u32,
    /// Active sessions may be at most this before the admissions (capacity
    /// minus admissions), so concurrent exits never cause a conflict.
    pub active_at_most: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admit {
    pub session_id: SessionId,
    pub shard: u16,
    pub ticket: Option<u64>,
    /// 1 for the first user admitted to the event, 2 for the next, ...
    pub admission_no: u64,
    pub expires_at: Timestamp,
}

/// A waiting user abandoned for not polling: expired with reason `abandoned`,
/// conditioned on not having polled since `silent_since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandon {
    pub session_id: SessionId,
    pub shard: u16,
    pub silent_since: Timestamp,
}

/// A shard's head after the write: everyone of the shard with a lower
/// ticket has been passed (admitted, abandoned or gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadMove {
    pub shard: u16,
    pub head: u64,
}

/// Someone waits: arm the hint and cancel any clearing under way. Before
/// this, an exit might have woken nobody, so the write must prove none
/// happened since the snapshot: `active` did not drop, `capacity` did not
/// change, and the event was not paused or resumed. If one did, the write fails and the granter, reading again, sees
/// the free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arm {
    pub active_seen: u64,
    pub capacity_seen: Option<u32>,
    /// The state the snapshot saw, when it held the line (paused or
    /// scheduled): a resume or opening since must fail the write too, or it
    /// would have woken nobody. `None`: the event admitted.
    pub held_seen: Option<EventState>,
}

impl Arm {
    /// Arm from what the snapshot saw.
    pub fn from_snapshot(counters: &EventCounters) -> Self {
        Self {
            active_seen: counters.active,
            capacity_seen: counters.capacity,
            held_seen: (!counters.state.admits()).then_some(counters.state),
        }
    }
}

/// A change to the event item's backlog hint (see `Backlog`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BacklogChange {
    Arm(Arm),
    /// The reconciliation found nobody waiting: start clearing.
    MarkEmpty {
        at: Timestamp,
    },
    /// Still nobody, `BACKLOG_CLEAR_DELAY` after `MarkEmpty { at }`, and no
    /// granter armed the hint since: exits stop waking the granter.
    Clear {
        marked_at: Timestamp,
    },
}

impl BacklogChange {
    /// Arm from what the snapshot saw.
    pub fn arm(counters: &EventCounters) -> Self {
        Self::Arm(Arm::from_snapshot(counters))
    }

    /// The hint once this change applies.
    pub fn applied_to(self, before: Backlog) -> Backlog {
        match self {
            Self::Arm(_) => Backlog {
                armed: true,
                empty_since: None,
            },
            Self::MarkEmpty { at } => Backlog {
                empty_since: Some(at),
                ..before
            },
            Self::Clear { .. } => Backlog::default(),
        }
    }
}

/// One admitting write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPlan {
    pub event_id: EventId,
    pub now: Timestamp,
    /// Present when the write admits or abandons anyone.
    pub counters: Option<CounterExpectation>,
    pub admitted: Vec<Admit>,
    pub abandoned: Vec<Abandon>,
    pub heads: Vec<HeadMove>,
    /// Every shard's head once this write applies (stored on the event).
    pub heads_after: Vec<u64>,
    /// The event's admission rate including this write's admissions.
    pub rate: AdmissionRate,
    /// Set when the write leaves people waiting and the hint is not firm
    /// (only the reconciliation ever clears it).
    pub arm: Option<Arm>,
    /// The walk stopped with slots free and maybe someone waiting: the
    /// write limit, a shard read only in part, or someone who joined after a
    /// read. Plan again (with fresh reads) after this.
    pub unfinished: bool,
    /// Someone visibly waits once this write applies.
    pub waiting_after: bool,
}

impl AdmissionPlan {
    pub fn is_empty(&self) -> bool {
        self.admitted.is_empty()
            && self.abandoned.is_empty()
            && self.heads.is_empty()
            && self.arm.is_none()
    }

    pub fn admitted_count(&self) -> u64 {
        self.admitted.len() as u64
    }

    /// The counters as this write leaves them, had nothing else changed.
    pub fn counters_after(&self, before: &EventCounters) -> EventCounters {
        let mut after = before.clone();
        after.active += self.admitted_count();
        after.admitted += self.admitted_count();
        after.abandoned += self.abandoned.len() as u64;
        after.rate = self.rate;
        after.heads = self.heads_after.clone();
        if let Some(arm) = self.arm {
            after.backlog = BacklogChange::Arm(arm).applied_to(before.backlog);
        }
        after
    }
}

/// A DynamoDB transaction takes at most 100 items.
pub const TRANSACTION_ITEM_LIMIT: usize = 100;

/// Walk the merged front of every shard in place order, skipping the
/// abandoned and admitting while slots are free.
///
/// `views` has one view per shard. `known` are waiting sessions the granter
/// heard of directly (join messages, the table stream) that the index may
/// not show yet. Nobody who joined after the oldest read is admitted: they
/// might have been overtaken by someone the reads could not see yet.
pub fn plan_admissions(
    event_id: &EventId,
    counters: &EventCounters,
    views: &[ShardView],
    known: &[LineEntry],
    policy: &AdmissionPolicy,
    now: Timestamp,
) -> AdmissionPlan {
    let policy = &policy.for_event(counters);
    let capacity = counters.effective_capacity(policy.default_capacity);
    let free = counters.admittable(policy.default_capacity, now);
    let mut cursors: Vec<Cursor> = views.iter().map(|view| Cursor::new(view, known)).collect();
    let budget = TRANSACTION_ITEM_LIMIT
        .saturating_sub(1 + views.len())
        .min(policy.max_changes_per_write);
    let read_before = views.iter().map(|v| v.read_at).min().unwrap_or(now);
    let abandon_before = policy.abandon_after.map(|limit| now.minus(limit));

    let mut admitted: Vec<Admit> = Vec::new();
    let mut abandoned: Vec<Abandon> = Vec::new();
    let mut unfinished = false;
    loop {
        let Some(index) = next_in_place_order(&cursors) else {
            // Out of candidates: complete shards are done; a shard read only
            // in part may hide someone who joined before everyone else left.
            unfinished = (admitted.len() as u64) < free && cursors.iter().any(|c| !c.complete);
            break;
        };
        let entry = cursors[index].peek().clone();
        let silent = abandon_before.is_some_and(|cutoff| entry.last_seen_at < cutoff);
        if !silent && admitted.len() as u64 >= free {
            break;
        }
        if admitted.len() + abandoned.len() >= budget {
            unfinished = true;
            break;
        }
        if entry.joined_at > read_before {
            // Joined after some shard was read: read again before deciding.
            unfinished = true;
            break;
        }
        if silent {
            abandoned.push(Abandon {
                session_id: entry.session_id,
                shard: entry.shard,
                silent_since: entry.last_seen_at,
            });
        } else {
            admitted.push(Admit {
                session_id: entry.session_id,
                shard: entry.shard,
                ticket: entry.ticket,
                admission_no: counters.admitted + admitted.len() as u64 + 1,
                expires_at: now.plus(policy.active_stay),
            });
        }
        cursors[index].position += 1;
    }

    let waiting_after = cursors.iter().any(|c| !c.is_exhausted() || !c.complete);
    let shard_count = views.len();
    let mut heads_after: Vec<u64> = (0..shard_count)
        .map(|s| counters.head(u16::try_from(s).unwrap_or(u16::MAX)))
        .collect();
    let passed = admitted.iter().map(|a| (a.shard, a.ticket)).chain(
        abandoned
            .iter()
            .map(|a| (a.shard, ticket_of(views, known, &a.session_id))),
    );
    for (shard, ticket) in passed {
        if let (Some(head), Some(ticket)) = (heads_after.get_mut(usize::from(shard)), ticket) {
            *head = (*head).max(ticket + 1);
        }
    }
    let heads = heads_after
        .iter()
        .enumerate()
        .filter_map(|(index, &head)| {
            let shard = u16::try_from(index).ok()?;
            (head != counters.head(shard)).then_some(HeadMove { shard, head })
        })
        .collect();
    let arm = (waiting_after && !counters.backlog.is_firm()).then(|| Arm::from_snapshot(counters));
    let count = admitted.len() as u64;
    AdmissionPlan {
        event_id: event_id.clone(),
        now,
        counters: (count > 0 || !abandoned.is_empty()).then(|| CounterExpectation {
            slots: (count > 0).then(|| SlotCheck {
                capacity,
                active_at_most: u64::from(capacity).saturating_sub(count),
            }),
            admitted_seen: counters.admitted,
            abandoned_seen: counters.abandoned,
        }),
        rate: if count > 0 {
            counters.rate.after(count, now)
        } else {
            counters.rate
        },
        admitted,
        abandoned,
        heads,
        heads_after,
        arm,
        unfinished,
        waiting_after,
    }
}

fn ticket_of(views: &[ShardView], known: &[LineEntry], id: &SessionId) -> Option<u64> {
    views
        .iter()
        .flat_map(|v| v.entries.iter())
        .chain(known)
        .find(|e| &e.session_id == id)
        .and_then(|e| e.ticket)
}

struct Cursor {
    entries: Vec<LineEntry>,
    position: usize,
    complete: bool,
}

impl Cursor {
    /// The view's entries plus the known ones it does not show, in place
    /// order. Known entries beyond the end of a partial view are left out:
    /// someone unseen may stand between.
    fn new(view: &ShardView, known: &[LineEntry]) -> Self {
        let mut entries = view.entries.clone();
        let last_seen = view.entries.last().map(LineEntry::place);
        for entry in known.iter().filter(|e| e.shard == view.shard) {
            if let Some(shown) = entries
                .iter_mut()
                .find(|e| e.session_id == entry.session_id)
            {
                // The index may lag on the ticket and presence of someone
                // known first-hand: take the newer of each.
                shown.ticket = shown.ticket.or(entry.ticket);
                shown.last_seen_at = shown.last_seen_at.max(entry.last_seen_at);
                continue;
            }
            let within =
                view.complete || last_seen.as_ref().is_some_and(|last| entry.place() < *last);
            if within {
                entries.push(entry.clone());
            }
        }
        entries.sort_by_key(LineEntry::place);
        Self {
            entries,
            position: 0,
            complete: view.complete,
        }
    }

    fn is_exhausted(&self) -> bool {
        self.position >= self.entries.len()
    }

    fn peek(&self) -> &LineEntry {
        &self.entries[self.position]
    }
}

/// The cursor whose next entry has the earliest place; `None` when every
/// cursor is used up, or when a partial view is used up (whoever it did not
/// show may stand before the others' next entries).
fn next_in_place_order(cursors: &[Cursor]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (index, cursor) in cursors.iter().enumerate() {
        if cursor.is_exhausted() {
            if !cursor.complete {
                return None;
            }
            continue;
        }
        if best.is_none_or(|b| cursor.peek().place() < cursors[b].peek().place()) {
            best = Some(index);
        }
    }
    best
}

/// Numbering a batch of one shard's joins: consecutive tickets in queue
/// order, from the shard's counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberingPlan {
    pub event_id: EventId,
    pub shard: u16,
    /// The counter as read; the write is conditioned on it.
    pub counter_seen: TicketCounter,
    pub tickets: Vec<Numbered>,
    /// This write gives the shard's pre-queue its last tickets (see
    /// `TicketCounter::drawn`).
    pub completes_draw: bool,
    /// For the draw's numbering: the last place this write covers, stored
    /// on the counter so that the numbering resumes after it.
    pub draw_cursor: Option<Place>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    pub session_id: SessionId,
    pub ticket: u64,
    /// People ahead when numbered (what `QUEUE_JOINED` reports).
    pub ahead: u64,
}

impl NumberingPlan {
    pub fn next_ticket(&self) -> u64 {
        self.counter_seen.next_ticket + self.tickets.len() as u64
    }
}

/// Tickets for `sessions` (one shard's join messages, in queue order, each
/// once), given the shard's counter and head.
pub fn plan_numbering(
    event_id: &EventId,
    counter: &TicketCounter,
    sessions: &[SessionId],
    head: u64,
    shard_count: u16,
) -> NumberingPlan {
    let mut tickets: Vec<Numbered> = Vec::with_capacity(sessions.len());
    for session_id in sessions {
        if tickets.iter().any(|t| &t.session_id == session_id) {
            continue;
        }
        let ticket = counter.next_ticket + tickets.len() as u64;
        tickets.push(Numbered {
            session_id: session_id.clone(),
            ticket,
            ahead: people_ahead(ticket, head, shard_count),
        });
    }
    NumberingPlan {
        event_id: event_id.clone(),
        shard: counter.shard,
        counter_seen: counter.clone(),
        tickets,
        completes_draw: false,
        draw_cursor: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::line::Backlog;

    const NOW: u64 = 1_000_000;

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

    fn entry(n: u8, shard: u16, joined: u64, ticket: Option<u64>) -> LineEntry {
        LineEntry {
            session_id: sid(n),
            shard,
            joined_at: Timestamp::from_millis(joined),
            last_seen_at: Timestamp::from_millis(NOW),
            ticket,
        }
    }

    fn view(shard: u16, entries: Vec<LineEntry>, complete: bool) -> ShardView {
        ShardView {
            shard,
            entries,
            complete,
            read_at: Timestamp::from_millis(NOW),
        }
    }

    fn counters(active: u64, shards: usize) -> EventCounters {
        EventCounters {
            capacity: Some(100),
            active,
            admitted: active,
            heads: vec![0; shards],
            backlog: Backlog {
                armed: true,
                empty_since: None,
            },
            ..EventCounters::default()
        }
    }

    fn plan(
        counters: &EventCounters,
        views: &[ShardView],
        known: &[LineEntry],
        capacity: u32,
    ) -> AdmissionPlan {
        let mut counters = counters.clone();
        counters.capacity = Some(capacity);
        plan_admissions(
            &event(),
            &counters,
            views,
            known,
            &policy(capacity),
            Timestamp::from_millis(NOW),
        )
    }

    fn admitted(plan: &AdmissionPlan) -> Vec<SessionId> {
        plan.admitted.iter().map(|a| a.session_id.clone()).collect()
    }

    #[test]
    fn shards_are_merged_in_place_order_up_to_capacity() {
        let views = [
            view(
                0,
                vec![entry(1, 0, 10, Some(0)), entry(3, 0, 30, Some(1))],
                true,
            ),
            view(
                1,
                vec![entry(2, 1, 20, Some(0)), entry(4, 1, 40, Some(1))],
                true,
            ),
        ];
        let plan = plan(&counters(0, 2), &views, &[], 3);
        assert_eq!(admitted(&plan), vec![sid(1), sid(2), sid(3)]);
        let numbers: Vec<u64> = plan.admitted.iter().map(|a| a.admission_no).collect();
        assert_eq!(numbers, vec![1, 2, 3]);
        let expect = plan.counters.clone().unwrap();
        let slots = expect.slots.unwrap();
        assert_eq!(
            (slots.capacity, slots.active_at_most, expect.admitted_seen),
            (3, 0, 0)
        );
        assert_eq!(
            plan.heads_after,
            vec![2, 1],
            "heads move past the admitted tickets"
        );
        assert!(plan.waiting_after && !plan.unfinished);
        assert_eq!(plan.arm, None, "the hint is firm already");
    }

    #[test]
    fn a_shard_read_only_in_part_stops_the_walk_at_its_end() {
        // Shard 1 shows one entry of more: whoever comes after it there may
        // have joined before shard 0's second.
        let views = [
            view(0, vec![entry(1, 0, 10, None), entry(3, 0, 30, None)], true),
            view(1, vec![entry(2, 1, 20, None)], false),
        ];
        let plan = plan(&counters(0, 2), &views, &[], 10);
        assert_eq!(admitted(&plan), vec![sid(1), sid(2)]);
        assert!(plan.unfinished, "read further and plan again");
    }

    #[test]
    fn nobody_who_joined_after_a_read_is_admitted_on_it() {
        let mut late = view(1, vec![], true);
        late.read_at = Timestamp::from_millis(15);
        let views = [
            view(0, vec![entry(1, 0, 10, None), entry(2, 0, 20, None)], true),
            late,
        ];
        let plan = plan(&counters(0, 2), &views, &[], 10);
        assert_eq!(
            admitted(&plan),
            vec![sid(1)],
            "shard 1 was read at 15: someone who joined at 16 may be missing there"
        );
        assert!(plan.unfinished);
    }

    #[test]
    fn the_silent_are_abandoned_without_a_slot_and_the_head_passes_them() {
        let mut silent = entry(1, 0, 10, Some(4));
        silent.last_seen_at = Timestamp::from_millis(NOW - 61_000);
        let views = [view(0, vec![silent, entry(2, 0, 20, Some(5))], true)];
        let plan = plan(&counters(0, 1), &views, &[], 1);
        assert_eq!(admitted(&plan), vec![sid(2)]);
        assert_eq!(plan.abandoned.len(), 1);
        assert_eq!(plan.abandoned[0].session_id, sid(1));
        assert_eq!(plan.heads, vec![HeadMove { shard: 0, head: 6 }]);
        assert!(!plan.waiting_after);
    }

    #[test]
    fn sessions_heard_of_directly_are_candidates_where_the_view_can_place_them() {
        // The index lags: sid(2) is known from its join message only.
        let views = [
            view(0, vec![entry(1, 0, 10, None)], true),
            view(1, vec![entry(3, 1, 30, None)], false),
        ];
        let known = [entry(2, 0, 20, None), entry(4, 1, 40, None)];
        let plan = plan(&counters(0, 2), &views, &known, 10);
        assert_eq!(
            admitted(&plan),
            vec![sid(1), sid(2), sid(3)],
            "sid(4) lies beyond what shard 1's partial view shows"
        );
        let again = plan_admissions(
            &event(),
            &EventCounters {
                capacity: Some(10),
                ..counters(0, 2)
            },
            &views,
            &[entry(1, 0, 10, None)],
            &policy(10),
            Timestamp::from_millis(NOW),
        );
        assert_eq!(
            again.admitted.len(),
            2,
            "a session both shown and known counts once"
        );
    }

    #[test]
    fn a_full_event_admits_nobody_and_arms_a_hint_that_is_not_firm() {
        let mut full = counters(5, 1);
        full.capacity = Some(5);
        full.backlog = Backlog::default();
        let views = [view(0, vec![entry(1, 0, 10, None)], true)];
        let armed = plan(&full, &views, &[], 5);
        assert!(armed.admitted.is_empty() && armed.counters.is_none());
        assert_eq!(
            armed.arm,
            Some(Arm {
                active_seen: 5,
                capacity_seen: Some(5),
                held_seen: None,
            })
        );
        full.backlog.armed = true;
        full.backlog.empty_since = Some(Timestamp::from_millis(1));
        let clearing = plan_admissions(
            &event(),
            &full,
            &views,
            &[],
            &policy(5),
            Timestamp::from_millis(NOW),
        );
        assert!(clearing.arm.is_some(), "a clearing under way is called off");
        let empty = plan(&full, &[view(0, vec![], true)], &[], 5);
        assert!(empty.is_empty(), "nobody waits: nothing to write");
    }

    #[test]
    fn a_paused_event_admits_nobody_abandons_the_silent_and_arms_the_hint() {
        let mut paused = counters(0, 1);
        paused.capacity = Some(5);
        paused.state = EventState::Paused;
        paused.backlog = Backlog::default();
        let mut silent = entry(1, 0, 10, None);
        silent.last_seen_at = Timestamp::from_millis(0);
        let views = [view(0, vec![silent, entry(2, 0, 20, None)], true)];
        let mut abandoning = policy(5);
        abandoning.abandon_after = Some(Duration::from_secs(60));
        let held = plan_admissions(
            &event(),
            &paused,
            &views,
            &[],
            &abandoning,
            Timestamp::from_millis(NOW),
        );
        assert!(held.admitted.is_empty(), "five free slots, none taken");
        assert_eq!(
            held.abandoned
                .iter()
                .map(|a| a.session_id.clone())
                .collect::<Vec<_>>(),
            vec![sid(1)]
        );
        assert_eq!(
            held.arm.map(|arm| arm.held_seen),
            Some(Some(EventState::Paused)),
            "resume must find the hint armed, or fail this write"
        );
        paused.state = EventState::Closed;
        let draining = plan(&paused, &views[..], &[], 5);
        assert_eq!(
            (admitted(&draining), draining.abandoned.len()),
            (vec![sid(2)], 1),
            "a closed event drains"
        );
    }

    #[test]
    fn a_write_never_exceeds_the_transaction_item_limit() {
        let entries: Vec<LineEntry> = (0..120).map(|n| entry(n, 0, u64::from(n), None)).collect();
        let views = [view(0, entries, true)];
        let mut counters = counters(0, 1);
        counters.capacity = Some(1000);
        let mut wide = policy(1000);
        wide.max_changes_per_write = 500;
        let plan = plan_admissions(
            &event(),
            &counters,
            &views,
            &[],
            &wide,
            Timestamp::from_millis(NOW),
        );
        assert_eq!(plan.admitted.len(), TRANSACTION_ITEM_LIMIT - 2);
        assert!(plan.unfinished);
    }

    #[test]
    fn heads_never_move_back() {
        let mut counters = counters(0, 1);
        counters.heads = vec![9];
        let views = [view(0, vec![entry(1, 0, 10, Some(3))], true)];
        let plan = plan(&counters, &views, &[], 1);
        assert_eq!(plan.heads_after, vec![9]);
        assert!(plan.heads.is_empty());
    }

    #[test]
    fn numbering_hands_out_consecutive_tickets_once_each() {
        let counter = TicketCounter {
            shard: 2,
            stored: true,
            next_ticket: 7,
            left_waiting: 0,
            drawn: false,
            drawn_through: None,
        };
        let plan = plan_numbering(&event(), &counter, &[sid(1), sid(2), sid(1)], 5, 4);
        let tickets: Vec<(SessionId, u64, u64)> = plan
            .tickets
            .iter()
            .map(|t| (t.session_id.clone(), t.ticket, t.ahead))
            .collect();
        assert_eq!(tickets, vec![(sid(1), 7, 8), (sid(2), 8, 12)]);
        assert_eq!(plan.next_ticket(), 9);
    }
}
