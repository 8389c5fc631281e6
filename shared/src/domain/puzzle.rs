//! The join puzzle, a proof of work (docs/decisions/0036-signed-joins-and-the-puzzle.md).
//!
//! An event under a bot wave can ask every join to carry a solved puzzle:
//! a nonce such that SHA-256 of `wr-puzzle-v1 \n event \n user \n issuedAt
//! \n nonce` starts with `difficulty` zero bits. Solving takes about
//! 2^difficulty hashes; checking takes one. The puzzle names the user and
//! a recent time, so a solution buys one place for one user within
//! minutes, and the store spends each solution once.

use std::time::Duration;

use sha2::Digest;

use super::ids::{EventId, UserId};
use super::time::Timestamp;

/// The hardest puzzle an operator may set: about 2^20 hashes, a few
/// seconds for the waiting page on a desktop, many more on a phone
/// (bench/PUZZLE.md); harder would outlast a solution's lifetime.
pub const MAX_DIFFICULTY: u8 = 20;
/// How long a solution stays good after the time it names.
pub const PUZZLE_LIFETIME: Duration = Duration::from_secs(300);
/// How far ahead of the server's clock a solution's time may be.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A solution as the join carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solution {
    /// Epoch seconds the solver started at.
    pub issued_at: u64,
    pub nonce: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PuzzleError {
    #[error("this event asks every join to solve a puzzle first (the waiting page does it)")]
    Missing,
    #[error("the puzzle's time is more than five minutes old, or in the future")]
    Stale,
    #[error("the solution does not reach the event's difficulty of {0} bits")]
    Unsolved(u8),
    #[error("this solution was used already")]
    Reused,
}

/// The hash of a solution for `user` at `event`.
pub fn digest(event: &EventId, user: &UserId, solution: Solution) -> [u8; 32] {
    sha2::Sha256::new()
        .chain_update(
            format!(
                "wr-puzzle-v1\n{event}\n{user}\n{}\n{}",
                solution.issued_at, solution.nonce
            )
            .as_bytes(),
        )
        .finalize()
        .into()
}

pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Checks a solution (one hash) and returns its digest, the key the store
/// spends it under.
pub fn check(
    event: &EventId,
    user: &UserId,
    solution: Option<Solution>,
    difficulty: u8,
    now: Timestamp,
) -> Result<[u8; 32], PuzzleError> {
    let solution = solution.ok_or(PuzzleError::Missing)?;
    let now = now.as_secs();
    let fresh = solution.issued_at.saturating_add(PUZZLE_LIFETIME.as_secs()) >= now
        && solution.issued_at <= now.saturating_add(CLOCK_SKEW.as_secs());
    if !fresh {
        return Err(PuzzleError::Stale);
    }
    let hash = digest(event, user, solution);
    if leading_zero_bits(&hash) < u32::from(difficulty) {
        return Err(PuzzleError::Unsolved(difficulty));
    }
    Ok(hash)
}

/// When a spent solution may be forgotten: it is stale by then.
pub fn spent_until(solution: Solution) -> Timestamp {
    let seconds = solution
        .issued_at
        .saturating_add(PUZZLE_LIFETIME.as_secs() + 1);
    Timestamp::from_millis(seconds.saturating_mul(1000))
}

/// Solves the puzzle as the waiting page does (for tests and the bench).
pub fn solve(event: &EventId, user: &UserId, issued_at: u64, difficulty: u8) -> Solution {
    let mut nonce = 0u64;
    loop {
        let solution = Solution { issued_at, nonce };
        if leading_zero_bits(&digest(event, user, solution)) >= u32::from(difficulty) {
            return solution;
        }
        nonce += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    #[test]
    fn a_solution_is_checked_for_its_user_its_time_and_its_difficulty() {
        let event = EventId::parse("E1").unwrap();
        let user = UserId::parse("fan-1").unwrap();
        let solved = solve(&event, &user, NOW.as_secs(), 12);
        let hash = check(&event, &user, Some(solved), 12, NOW).unwrap();
        assert!(leading_zero_bits(&hash) >= 12);
        let other = UserId::parse("fan-2").unwrap();
        // Another user's puzzle: 1 in 4096 would pass by chance; this one does not.
        assert_eq!(
            check(&event, &other, Some(solved), 12, NOW),
            Err(PuzzleError::Unsolved(12))
        );
        assert_eq!(
            check(&event, &user, Some(solved), 30, NOW).map(drop),
            Err(PuzzleError::Unsolved(30))
        );
        let far = Solution {
            issued_at: u64::MAX,
            nonce: u64::MAX,
        };
        assert_eq!(
            check(&event, &user, Some(far), 1, NOW),
            Err(PuzzleError::Stale)
        );
        assert!(spent_until(far) > NOW);
        let late = NOW.plus(PUZZLE_LIFETIME + Duration::from_secs(1));
        assert_eq!(
            check(&event, &user, Some(solved), 12, late),
            Err(PuzzleError::Stale)
        );
        let early = NOW.minus(CLOCK_SKEW + Duration::from_secs(1));
        assert_eq!(
            check(&event, &user, Some(solved), 12, early),
            Err(PuzzleError::Stale)
        );
        assert_eq!(
            check(&event, &user, None, 12, NOW),
            Err(PuzzleError::Missing)
        );
        assert!(spent_until(solved) > late.minus(Duration::from_secs(1)));
    }

    #[test]
    fn zero_bits_are_counted_across_bytes() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x10, 0xff]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }
}
