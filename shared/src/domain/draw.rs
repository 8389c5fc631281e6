//! The pre-queue draw (docs/decisions/0034-scheduled-opening-and-the-draw.md).
//!
//! Before a scheduled event opens, everyone who joins goes into its
//! pre-queue. At the opening the pre-queue is let in in a uniformly random
//! order, ahead of everyone who joins after: the fastest script at
//! 10:00:00.000 gains nothing over a fan who came at 9:40.
//!
//! The order is fixed by a seed drawn when the event is scheduled and kept
//! on the event (never shown before the opening, published in
//! `EVENT_OPENED` after): a session's **draw** is a keyed hash of the seed
//! and its id, and its place is a time in the first decades of the epoch
//! taken from the draw. Every real join is later than every such time, so
//! the whole pre-queue stands ahead of the line, in draw order, with no
//! write at the opening. Anyone with the seed and the ids can replay the
//! order (`draw_order`).

use std::time::Duration;

use sha2::Digest;

use super::ids::SessionId;
pub use super::line::DRAW_SETTLES;
use super::line::Place;
use super::time::Timestamp;

/// Draw places lie in `1 ..= PRE_QUEUE_SPAN` milliseconds after the epoch
/// (before 2001), so before any real join; this many keeps two of a
/// hundred thousand people from sharing one millisecond (ties go by
/// session id, as for any place).
pub const PRE_QUEUE_SPAN: u64 = 1_000_000_000_000;

/// The draw of one session under `seed`: uniform over `u64`, unknowable
/// without the seed.
pub fn draw(seed: u64, session: &SessionId) -> u64 {
    let hash = sha2::Sha256::new()
        .chain_update(seed.to_be_bytes())
        .chain_update(session.as_str().as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

/// The place time of a drawn session.
pub fn pre_queue_time(draw: u64) -> Timestamp {
    Timestamp::from_millis(1 + draw % PRE_QUEUE_SPAN)
}

/// Whether a place is a draw's (before any real join could be).
pub fn is_drawn(place_time: Timestamp) -> bool {
    place_time.as_millis() <= PRE_QUEUE_SPAN
}

/// The order in which `seed` lets the pre-queue `sessions` in: what an
/// auditor with the published seed recomputes.
pub fn draw_order(seed: u64, sessions: &[SessionId]) -> Vec<SessionId> {
    let mut places: Vec<Place> = sessions
        .iter()
        .map(|id| Place {
            joined_at: pre_queue_time(draw(seed, id)),
            session_id: id.clone(),
        })
        .collect();
    places.sort();
    places.into_iter().map(|p| p.session_id).collect()
}

/// When someone in a pre-queue should poll again: just after the draw has
/// settled if that is soon, else as rarely as staying present allows (a
/// pre-queue has no position to refine).
pub fn poll_before_opening(until_open: Duration, abandon_after: Option<Duration>) -> Duration {
    let interval =
        (until_open + DRAW_SETTLES).clamp(Duration::from_secs(2), Duration::from_secs(180));
    match abandon_after {
        Some(limit) => interval.min(limit / 3).max(Duration::from_secs(1)),
        None => interval,
    }
}

/// When someone of a pre-queue should poll again once the event has
/// opened but before the draw's numbering reached them: every few seconds,
/// not every second (the whole pre-queue polls at the opening).
pub fn poll_while_numbered(abandon_after: Option<Duration>) -> Duration {
    let interval = Duration::from_secs(5);
    match abandon_after {
        Some(limit) => interval.min(limit / 3).max(Duration::from_secs(1)),
        None => interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventId;

    #[test]
    fn a_pre_queue_polls_after_the_draw_settles_or_as_presence_needs() {
        let abandon = Some(Duration::from_secs(450));
        assert_eq!(
            poll_before_opening(Duration::from_secs(4), abandon),
            Duration::from_secs(4) + DRAW_SETTLES
        );
        assert_eq!(
            poll_before_opening(Duration::from_secs(3_600), abandon),
            Duration::from_secs(150)
        );
        assert_eq!(
            poll_before_opening(Duration::from_secs(3_600), None),
            Duration::from_secs(180)
        );
    }

    fn ids(n: u8) -> Vec<SessionId> {
        let event = EventId::parse("E").unwrap();
        (0..n)
            .map(|i| SessionId::new(&event, [i.wrapping_mul(37); 16]))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_order_and_another_seed_another() {
        let people = ids(50);
        let first = draw_order(7, &people);
        let mut reversed = people.clone();
        reversed.reverse();
        assert_eq!(draw_order(7, &reversed), first, "order of input ignored");
        assert_ne!(draw_order(8, &people), first);
        assert_ne!(first, people, "not join order");
    }

    #[test]
    fn every_drawn_place_is_before_any_real_join() {
        for (seed, id) in [(0, &ids(1)[0]), (u64::MAX, &ids(2)[1])] {
            let at = pre_queue_time(draw(seed, id));
            assert!(is_drawn(at));
            assert!(at < Timestamp::from_millis(PRE_QUEUE_SPAN + 1));
        }
        let worst = pre_queue_time(PRE_QUEUE_SPAN - 1);
        assert!(worst < Timestamp::from_millis(1_600_000_000_000));
        assert!(!is_drawn(Timestamp::from_millis(1_600_000_000_000)));
    }

    #[test]
    fn the_draw_is_spread_evenly() {
        // Who goes first among 4, over many seeds: each about a quarter.
        let people = ids(4);
        let mut first = [0u32; 4];
        for seed in 0..4000 {
            let winner = draw_order(seed, &people).remove(0);
            let index = people.iter().position(|p| *p == winner).unwrap();
            first[index] += 1;
        }
        assert!(first.iter().all(|&n| (850..1150).contains(&n)), "{first:?}");
    }
}
