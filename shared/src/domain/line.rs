//! The line of one event, the counters of the event, and the rules that
//! order the line (docs/decisions/0017-join-takes-the-place.md).
//!
//! A session takes its **place** in line when it joins: the join writes the
//! session with its join time, and the line is every waiting session of the
//! event ordered by place (join time, then session id). Nothing a granter
//! does or fails to do changes anyone's place.
//!
//! The line is split into shards (one SQS message group and one partition
//! of the line index each) so that one event takes more joins per second
//! than one group or one index partition allows. Within a shard the granter
//! hands out consecutive **tickets** in queue order; tickets only tell people
//! how many are ahead of them (`head` is the first ticket of a shard not yet
//! passed). They never decide who goes first.

use std::time::Duration;

use super::estimate::AdmissionRate;
use super::event_state::EventState;
use super::ids::{EventId, SessionId};
use super::time::Timestamp;

/// The SQS message group of a shard's join messages: one group per shard
/// keeps a shard's tickets in queue order while letting shards (and events)
/// flow independently.
pub fn message_group_id(event: &EventId, shard: u16) -> String {
    format!("{}#{}", event.as_str(), shard)
}

/// The SQS message group of a shard's pre-queue join messages: apart from
/// the shard's own, so that holding them until the opening (they wake the
/// granter for it) never holds up a join after it; one per shard, as for
/// the shard's joins, so that a hot pre-queue is not one group's
/// throughput.
pub fn pre_queue_group_id(event: &EventId, shard: u16) -> String {
    format!("{}#prequeue#{}", event.as_str(), shard)
}

/// The SQS message group of an event's wake-up messages (a freed slot whose
/// admission failed is retried there, apart from every other event).
pub fn wake_group_id(event: &EventId) -> String {
    format!("{}#wake", event.as_str())
}

/// The line shard a session belongs to, fixed when it joins.
pub fn shard_for(session: &SessionId, shard_count: u16) -> u16 {
    let count = u64::from(shard_count.max(1));
    u16::try_from(session.stable_hash() % count).unwrap_or(0)
}

/// How long after stamping its join time a join may still write its session.
/// The join gives up (and says so) rather than take a place older than its
/// write: a place must be visible soon after the time it claims.
pub const JOIN_WRITE_WINDOW: Duration = Duration::from_secs(2);

/// How far behind the table the line index may fall and still be counted on
/// for order. DynamoDB propagates to a global secondary index in well under
/// a second normally; the allowance covers a slow moment.
pub const INDEX_LAG_ALLOWANCE: Duration = Duration::from_secs(3);

/// The fairness bound: nobody is admitted after someone who joined more than
/// this much later. A session joined at `t` is visible in the line index by
/// `t + JOIN_WRITE_WINDOW + INDEX_LAG_ALLOWANCE`, and a granter admits only
/// people who joined before its reads of every shard, so whoever it could
/// not see joined less than this before the people it admits.
pub const FAIRNESS_WINDOW: Duration =
    Duration::from_secs(JOIN_WRITE_WINDOW.as_secs() + INDEX_LAG_ALLOWANCE.as_secs());

/// How long after an opening before anyone is admitted (see `draw`): a
/// join that read the event as scheduled (a join instance's copy of the
/// event is up to a second old) is written and visible in the line index
/// by then, so the draw is complete before its front is let in.
pub const DRAW_SETTLES: Duration = Duration::from_secs(FAIRNESS_WINDOW.as_secs() + 1);

/// A place in line: who joined first goes first; ties (the same
/// millisecond) go by session id, which is random, so nobody can aim for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    pub joined_at: Timestamp,
    pub session_id: SessionId,
}

/// A waiting session as the line index shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEntry {
    pub session_id: SessionId,
    pub shard: u16,
    /// The place's time: the join time, or a pre-queue session's draw
    /// place (`Session::place`).
    pub joined_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Its ticket, once the granter has numbered it.
    pub ticket: Option<u64>,
}

impl LineEntry {
    pub fn place(&self) -> Place {
        Place {
            joined_at: self.joined_at,
            session_id: self.session_id.clone(),
        }
    }
}

/// The front of one shard's line as one read of the line index saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub shard: u16,
    /// In place order, from the front.
    pub entries: Vec<LineEntry>,
    /// The read reached the end of the shard's line: nobody else was
    /// visible there. Otherwise only `entries` are known.
    pub complete: bool,
    /// When the index was read. Whoever joined after this may be missing
    /// from the view, so nobody who joined after it may be admitted on it.
    pub read_at: Timestamp,
}

/// The ticket counter of one shard (its own item: the granter numbers a
/// shard's joins in batches, one message group at a time).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TicketCounter {
    pub shard: u16,
    /// False until the granter first numbers someone here.
    pub stored: bool,
    pub next_ticket: u64,
    /// All-time count of sessions of this shard that left while waiting.
    pub left_waiting: u64,
    /// The pre-queue of this shard has its tickets, in draw order (only
    /// events with a draw need it): nobody who joined after the opening is
    /// numbered before that, or they would be told of people ahead of the
    /// pre-queue who are behind it.
    pub drawn: bool,
    /// How far the draw's numbering got (the last place it numbered), so
    /// that it resumes there.
    pub drawn_through: Option<Place>,
}

impl TicketCounter {
    pub fn empty(shard: u16) -> Self {
        Self {
            shard,
            ..Self::default()
        }
    }
}

/// The "someone is waiting" hint on the event item. Exits wake the granter
/// only while it is armed (docs/decisions/0014-fewer-calls.md): an exit with
/// nobody in line costs one write. Granters only ever arm it; clearing takes
/// two steps of the reconciliation, at least `BACKLOG_CLEAR_DELAY` apart, so
/// that anyone who joined while the line looked empty is visible by then
/// (docs/decisions/0017-join-takes-the-place.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub armed: bool,
    /// Set by a reconciliation that found the line empty; a granter that sees
    /// someone waiting takes it away again.
    pub empty_since: Option<Timestamp>,
}

impl Backlog {
    /// Armed with no clearing under way: every exit wakes the granter until
    /// a reconciliation finds the line empty twice.
    pub fn is_firm(&self) -> bool {
        self.armed && self.empty_since.is_none()
    }
}

/// How long the line must look empty before the hint is cleared: far longer
/// than a join takes to become visible (`FAIRNESS_WINDOW`).
pub const BACKLOG_CLEAR_DELAY: Duration = Duration::from_secs(30);

/// The admission counters of one event, kept on one item so that taking a
/// slot and checking capacity are one conditional write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventCounters {
    /// `None` until the event is first used; then the deployment's default
    /// capacity is stored, so a later change of the default (or two versions
    /// live during a deploy) never changes a running event.
    pub capacity: Option<u32>,
    /// Scheduled, open, paused or closed (see `event_state`); open until an
    /// operator acts.
    pub state: EventState,
    /// When the state last changed (absent until an operator acted).
    pub state_changed_at: Option<Timestamp>,
    /// When a scheduled event opens (kept after the opening, for reports).
    pub opens_at: Option<Timestamp>,
    /// When the event stops taking joins by itself (optional).
    pub closes_at: Option<Timestamp>,
    /// Where an admitted fan is sent (the fan page uses it).
    pub origin_url: Option<String>,
    /// The pre-queue draw's seed: set when the event is scheduled, secret
    /// until it opens (see `draw`).
    pub draw_seed: Option<u64>,
    /// After an opening with a pre-queue, nobody is admitted before this
    /// (`draw::DRAW_SETTLES` after the opening).
    pub admits_from: Option<Timestamp>,
    /// This event's admitted stay, its longest, and its abandonment limit
    /// (zero: off), where an operator set them; else the deployment's.
    pub stay: Option<Duration>,
    pub max_stay: Option<Duration>,
    pub abandon_after: Option<Duration>,
    /// Joins must carry the ticketing site's signature (`signed_join`).
    pub signed_joins: bool,
    /// Joins must carry a solved puzzle this hard, in bits (0: none).
    pub puzzle_difficulty: u8,
    /// The event is known: a join, the granter or an operator listed it.
    /// Controls apply only to known events, so a mistyped id cannot close
    /// an event before its sale.
    pub listed: bool,
    pub active: u64,
    pub admitted: u64,
    pub left: u64,
    pub expired: u64,
    pub completed: u64,
    pub failed: u64,
    /// Waiting sessions expired for not polling.
    pub abandoned: u64,
    pub rate: AdmissionRate,
    pub backlog: Backlog,
    /// Per shard, the first ticket not yet passed (see `people_ahead`).
    pub heads: Vec<u64>,
}

impl EventCounters {
    pub fn effective_capacity(&self, default_capacity: u32) -> u32 {
        self.capacity.unwrap_or(default_capacity)
    }

    pub fn free_slots(&self, default_capacity: u32) -> u64 {
        u64::from(self.effective_capacity(default_capacity)).saturating_sub(self.active)
    }

    /// Slots the line may take now: none while paused or scheduled, nor
    /// while an opening's draw settles.
    pub fn admittable(&self, default_capacity: u32, now: Timestamp) -> u64 {
        if self.held_until(now).is_none() && self.state.admits() {
            self.free_slots(default_capacity)
        } else {
            0
        }
    }

    /// The abandonment limit of this event: its own, or `default`.
    pub fn abandon_limit(&self, default: Option<Duration>) -> Option<Duration> {
        match self.abandon_after {
            Some(limit) if limit.is_zero() => None,
            Some(limit) => Some(limit),
            None => default,
        }
    }

    /// A scheduled event whose opening time has come: whoever sees this
    /// opens it.
    pub fn opening_due(&self, now: Timestamp) -> bool {
        self.state == EventState::Scheduled && self.opens_at.is_some_and(|at| at <= now)
    }

    /// An event whose closing time has come and that is still open or
    /// paused: whoever sees this closes it.
    pub fn closing_due(&self, now: Timestamp) -> bool {
        matches!(self.state, EventState::Open | EventState::Paused)
            && self.closes_at.is_some_and(|at| at <= now)
    }

    /// Until when the line is held for the draw: a scheduled event until
    /// its opening has settled, an opened one until `admits_from`. `None`
    /// once admissions may start (a pause holds the line in its own way).
    pub fn held_until(&self, now: Timestamp) -> Option<Timestamp> {
        let until = match self.state {
            EventState::Scheduled => self.opens_at.map(|at| at.plus(DRAW_SETTLES)),
            _ => self.admits_from,
        }?;
        (until > now).then_some(until)
    }

    /// When the event opens, while it is scheduled.
    pub fn scheduled_opening(&self) -> Option<Timestamp> {
        self.opens_at
            .filter(|_| self.state == EventState::Scheduled)
    }

    /// A join at `now` goes into the pre-queue.
    pub fn pre_queue_at(&self, now: Timestamp) -> bool {
        self.scheduled_opening().is_some_and(|at| now < at)
    }

    /// The shard counters of this event must take the draw's order before
    /// numbering anyone after the opening.
    pub fn has_draw(&self) -> bool {
        self.draw_seed.is_some()
    }

    /// How many wait, as an estimate from the shards' `tickets`: numbered
    /// and not yet passed, minus those who left while waiting (a join
    /// counts once numbered; a pre-queue once the draw numbers it).
    pub fn waiting(&self, tickets: &[TicketCounter]) -> u64 {
        let numbered: u64 = tickets.iter().map(|t| t.next_ticket).sum();
        let left_while_waiting: u64 = tickets.iter().map(|t| t.left_waiting).sum();
        numbered.saturating_sub(self.admitted + self.abandoned + left_while_waiting)
    }

    /// Since when `entry` could have been admitted: its join, or for a
    /// pre-queue place the end of the opening's settling.
    pub fn eligible_since(&self, entry: &LineEntry) -> Timestamp {
        self.admits_from
            .map_or(entry.joined_at, |from| entry.joined_at.max(from))
    }

    pub fn head(&self, shard: u16) -> u64 {
        self.heads.get(usize::from(shard)).copied().unwrap_or(0)
    }
}

/// How many people are ahead of a numbered session, as an honest upper
/// bound: people of its shard with lower tickets who have not been passed
/// (some may have left; we cannot tell where they stood, so we do not
/// guess), scaled by the shard count (shards fill at the same rate by
/// construction). `head` only moves forward, so the answer never goes up.
pub fn people_ahead(ticket: u64, head: u64, shard_count: u16) -> u64 {
    ticket
        .saturating_sub(head)
        .saturating_mul(u64::from(shard_count.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        let event = EventId::parse("E").unwrap();
        let mut counts = [0u32; 4];
        for i in 0..4000u32 {
            let mut random = [0u8; 16];
            random[..4].copy_from_slice(&i.to_le_bytes());
            let id = SessionId::new(&event, random);
            let shard = shard_for(&id, 4);
            assert_eq!(shard, shard_for(&id, 4));
            counts[usize::from(shard)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "uneven spread {counts:?}");
        let id = SessionId::new(&event, [9; 16]);
        assert_eq!(shard_for(&id, 1), 0);
        assert_eq!(shard_for(&id, 0), 0);
    }

    #[test]
    fn places_order_by_join_time_then_session() {
        let event = EventId::parse("E").unwrap();
        let at = |ms: u64, n: u8| Place {
            joined_at: Timestamp::from_millis(ms),
            session_id: SessionId::new(&event, [n; 16]),
        };
        assert!(at(1, 9) < at(2, 1), "earlier join first");
        assert!(at(5, 1) < at(5, 2), "same millisecond: by id");
    }

    #[test]
    fn people_ahead_never_grows_as_the_head_moves() {
        let mut last = people_ahead(50, 10, 1);
        assert_eq!(last, 40);
        for head in 11..=60 {
            let now = people_ahead(50, head, 1);
            assert!(now <= last);
            last = now;
        }
        assert_eq!(last, 0);
        assert_eq!(people_ahead(12, 10, 4), 8);
    }

    #[test]
    fn free_slots_use_the_default_until_capacity_is_stored() {
        let mut counters = EventCounters {
            active: 3,
            ..EventCounters::default()
        };
        assert_eq!(counters.free_slots(5), 2);
        counters.capacity = Some(2);
        assert_eq!(counters.free_slots(5), 0);
    }

    #[test]
    fn only_an_armed_hint_without_a_clearing_is_firm() {
        let armed = Backlog {
            armed: true,
            empty_since: None,
        };
        assert!(armed.is_firm());
        assert!(
            !Backlog {
                empty_since: Some(Timestamp::from_millis(1)),
                ..armed
            }
            .is_firm()
        );
        assert!(!Backlog::default().is_firm());
    }
}
