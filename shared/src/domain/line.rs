//! The line of one event, split into shards, and the counters of the event.
//!
//! Each shard is one SQS message group and one DynamoDB item, so one event's
//! line can take more joins per second than one group or one item allows
//! (docs/decisions/0004-line-and-shards.md). Inside a shard the granter hands
//! out consecutive tickets in queue order; `head` is the first ticket the
//! granter has not passed yet, `next` the ticket the next arrival gets.

use super::estimate::AdmissionRate;
use super::ids::{EventId, SessionId};
use super::session::SessionStatus;
use super::time::Timestamp;

/// The SQS message group of a shard: one group per shard keeps queue order
/// inside the shard while letting shards (and events) flow independently.
pub fn message_group_id(event: &EventId, shard: u16) -> String {
    format!("{}#{}", event.as_str(), shard)
}

/// The line shard a session belongs to, fixed when it joins.
pub fn shard_for(session: &SessionId, shard_count: u16) -> u16 {
    let count = u64::from(shard_count.max(1));
    u16::try_from(session.stable_hash() % count).unwrap_or(0)
}

/// One shard of an event's line, as stored on its own item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LineShard {
    pub shard: u16,
    /// False until the granter first writes the shard; conditions differ.
    pub stored: bool,
    pub next_ticket: u64,
    pub head_ticket: u64,
    /// Sessions in `[head, next)` that ended while waiting and that the head
    /// has not passed yet; they hold no place but still occupy tickets.
    pub ended_in_line: u64,
    /// All-time count of sessions that left this shard while waiting.
    pub left_waiting: u64,
    /// All-time count of waiting sessions expired for not polling.
    pub abandoned: u64,
    /// The latest `joined_at` filed in this shard. Messages reach a shard in
    /// join order (one FIFO message group), give or take `FILING_SKEW`, so
    /// nobody who joined well before this can still be filed here.
    pub filed_through: Option<Timestamp>,
}

impl LineShard {
    pub fn empty(shard: u16) -> Self {
        Self {
            shard,
            ..Self::default()
        }
    }

    /// Sessions still waiting in this shard (filed by the granter).
    pub fn waiting(&self) -> u64 {
        self.next_ticket
            .saturating_sub(self.head_ticket)
            .saturating_sub(self.ended_in_line)
    }

    pub fn has_backlog(&self) -> bool {
        self.head_ticket < self.next_ticket
    }
}

/// A filed session as the line index shows it, in ticket order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEntry {
    pub session_id: SessionId,
    pub ticket: u64,
    pub status: SessionStatus,
    pub joined_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// The admission counters of one event, kept on one item so that taking a
/// slot and checking capacity are one conditional write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventCounters {
    /// `None` until an operator sets it; the configured default applies.
    pub capacity: Option<u32>,
    pub active: u64,
    pub admitted: u64,
    pub left: u64,
    pub expired: u64,
    pub completed: u64,
    pub failed: u64,
    pub rate: AdmissionRate,
    /// A hint kept by the granter: someone waits in the line. Leaves and
    /// expiries wake the granter only when it is set.
    pub backlog: bool,
}

impl EventCounters {
    pub fn effective_capacity(&self, default_capacity: u32) -> u32 {
        self.capacity.unwrap_or(default_capacity)
    }

    pub fn free_slots(&self, default_capacity: u32) -> u64 {
        u64::from(self.effective_capacity(default_capacity)).saturating_sub(self.active)
    }
}

/// Everything the granter needs to advance one event's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineState {
    pub event_id: EventId,
    pub counters: EventCounters,
    /// Indexed by shard number; always `shard_count` long.
    pub shards: Vec<LineShard>,
}

impl LineState {
    pub fn waiting(&self) -> u64 {
        self.shards.iter().map(LineShard::waiting).sum()
    }

    pub fn has_backlog(&self) -> bool {
        self.shards.iter().any(LineShard::has_backlog)
    }
}

/// How many people are ahead of a filed session, as an honest upper bound.
///
/// Inside its shard the count is exact but for people who already left and
/// have not been passed yet (we cannot tell where they stood, so we do not
/// guess). Across shards, which fill at the same rate by construction, the
/// shard count scales it. Both factors only shrink as the line moves, so the
/// position a user sees never goes up.
pub fn people_ahead(place_ticket: u64, shard: &LineShard, shard_count: u16) -> u64 {
    place_ticket
        .saturating_sub(shard.head_ticket)
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
    fn waiting_excludes_passed_and_ended_sessions() {
        let shard = LineShard {
            next_ticket: 10,
            head_ticket: 4,
            ended_in_line: 2,
            ..LineShard::empty(0)
        };
        assert_eq!(shard.waiting(), 4);
        assert!(shard.has_backlog());
        assert!(!LineShard::empty(0).has_backlog());
    }

    #[test]
    fn people_ahead_never_grows_as_the_line_moves() {
        let mut shard = LineShard {
            next_ticket: 100,
            head_ticket: 10,
            ..LineShard::empty(0)
        };
        let mut last = people_ahead(50, &shard, 1);
        assert_eq!(last, 40);
        for _ in 0..40 {
            shard.next_ticket += 3;
            shard.ended_in_line += 1;
            shard.head_ticket += 1;
            let now = people_ahead(50, &shard, 1);
            assert!(now <= last);
            last = now;
        }
        assert_eq!(last, 0);
        assert_eq!(
            people_ahead(
                12,
                &LineShard {
                    head_ticket: 10,
                    ..LineShard::empty(1)
                },
                4
            ),
            8
        );
    }

    #[test]
    fn free_slots_use_the_default_until_capacity_is_set() {
        let mut counters = EventCounters {
            active: 3,
            ..EventCounters::default()
        };
        assert_eq!(counters.free_slots(5), 2);
        counters.capacity = Some(2);
        assert_eq!(counters.free_slots(5), 0);
    }
}
