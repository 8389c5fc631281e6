//! How fast an event admits, and what that means for someone in its line.
//!
//! The granter measures admissions over windows of at least a minute and
//! keeps a smoothed rate on the event's counter item, in the same write that
//! admits. Readers turn it into a wait estimate and a poll interval. When
//! admissions stall, the open window's own rate takes over, so a frozen line
//! shows a growing wait instead of a stale, optimistic one.

use std::time::Duration;

use super::time::Timestamp;

pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// A rate older than this tells nothing about the present.
const RATE_RELEVANCE: Duration = Duration::from_secs(15 * 60);

/// The admission rate as stored on the event item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionRate {
    /// Smoothed admissions per hour over closed windows; `None` until the
    /// first window closes.
    pub per_hour: Option<u64>,
    pub window_start: Option<Timestamp>,
    pub window_admitted: u64,
}

impl AdmissionRate {
    /// The rate after `admitted` more admissions at `now`.
    pub fn after(self, admitted: u64, now: Timestamp) -> Self {
        let Some(start) = self.window_start else {
            return Self {
                per_hour: self.per_hour,
                window_start: Some(now),
                window_admitted: admitted,
            };
        };
        let elapsed = now.since(start);
        let counted = self.window_admitted + admitted;
        if elapsed < RATE_WINDOW {
            return Self {
                window_admitted: counted,
                ..self
            };
        }
        let measured = per_hour(counted, elapsed);
        // Half old, half new: follows a change within a few minutes
        // without jumping on one burst.
        let smoothed = self.per_hour.map_or(measured, |old| (old + measured) / 2);
        Self {
            per_hour: Some(smoothed),
            window_start: Some(now),
            window_admitted: 0,
        }
    }

    /// Admissions per hour as of `now`, if anything recent is known.
    pub fn current_per_hour(&self, now: Timestamp) -> Option<u64> {
        let start = self.window_start?;
        let open_for = now.since(start);
        if open_for > RATE_RELEVANCE {
            return None;
        }
        match self.per_hour {
            // A window open longer than usual shows a slowdown: believe it.
            Some(rate) if open_for > RATE_WINDOW * 2 => {
                Some(rate.min(per_hour(self.window_admitted, open_for)))
            }
            Some(rate) => Some(rate),
            None if open_for >= RATE_WINDOW => Some(per_hour(self.window_admitted, open_for)),
            None => None,
        }
    }
}

fn per_hour(count: u64, over: Duration) -> u64 {
    let millis = u64::try_from(over.as_millis()).unwrap_or(u64::MAX).max(1);
    count.saturating_mul(3_600_000) / millis
}

/// The expected wait of someone with `people_ahead`, at the current rate.
pub fn estimated_wait(people_ahead: u64, rate_per_hour: Option<u64>) -> Option<Duration> {
    let rate = rate_per_hour.filter(|&r| r > 0)?;
    // Their own admission counts too: the first in line waits one interval.
    let seconds = (people_ahead + 1).saturating_mul(3600) / rate;
    Some(Duration::from_secs(seconds))
}

/// When a waiting user should poll again: every two seconds near the front,
/// rarely far back (polls are most of a waiting room's cost), and always
/// often enough that a polling user is never taken for gone. Three
/// quarters of the estimated wait: each poll refines the estimate, so the
/// number of polls grows with the log of the wait (about 9 for 10 minutes),
/// and an estimate that turns out long costs the user a quarter of it at most.
pub fn poll_interval(
    people_ahead: Option<u64>,
    wait: Option<Duration>,
    abandon_after: Option<Duration>,
) -> Duration {
    const NEAR: Duration = Duration::from_secs(2);
    const FAR: Duration = Duration::from_secs(180);
    let interval = match (people_ahead, wait) {
        (None, _) => Duration::from_secs(1),
        (Some(ahead), _) if ahead < 10 => NEAR,
        (Some(_), Some(wait)) => (wait * 3 / 4).clamp(NEAR, FAR),
        (Some(ahead), None) => match ahead {
            0..=200 => Duration::from_secs(5),
            201..=2_000 => Duration::from_secs(15),
            _ => Duration::from_secs(30),
        },
    };
    match abandon_after {
        Some(limit) => interval.min(limit / 3).max(Duration::from_secs(1)),
        None => interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_millis(1_000_000_000);

    fn at(seconds: u64) -> Timestamp {
        T.plus(Duration::from_secs(seconds))
    }

    #[test]
    fn the_rate_is_measured_over_closed_windows_and_smoothed() {
        let mut rate = AdmissionRate::default();
        rate = rate.after(10, at(0));
        assert_eq!(rate.current_per_hour(at(30)), None, "no closed window yet");
        rate = rate.after(50, at(30));
        rate = rate.after(0, at(60));
        assert_eq!(rate.per_hour, Some(3_600), "60 in a minute");
        rate = rate.after(120, at(90));
        rate = rate.after(0, at(120));
        assert_eq!(rate.per_hour, Some((3_600 + 7_200) / 2));
        assert_eq!(rate.current_per_hour(at(130)), Some(5_400));
    }

    #[test]
    fn a_stalled_line_shows_its_slowdown_then_nothing() {
        let rate = AdmissionRate {
            per_hour: Some(3_600),
            window_start: Some(at(0)),
            window_admitted: 1,
        };
        assert_eq!(rate.current_per_hour(at(60)), Some(3_600));
        assert_eq!(
            rate.current_per_hour(at(600)),
            Some(6),
            "one admission in ten minutes"
        );
        assert_eq!(rate.current_per_hour(at(3_600)), None, "too old to say");
    }

    #[test]
    fn waits_follow_the_rate_and_polls_the_position() {
        assert_eq!(
            estimated_wait(59, Some(3_600)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(estimated_wait(5, None), None);
        assert_eq!(estimated_wait(5, Some(0)), None);
        let far = poll_interval(Some(50_000), Some(Duration::from_secs(3_000)), None);
        let near = poll_interval(Some(3), Some(Duration::from_secs(4)), None);
        assert_eq!(
            (near, far),
            (Duration::from_secs(2), Duration::from_secs(180))
        );
        assert_eq!(
            poll_interval(None, None, None),
            Duration::from_secs(1),
            "not filed yet: soon"
        );
        let capped = poll_interval(Some(50_000), None, Some(Duration::from_secs(60)));
        assert_eq!(
            capped,
            Duration::from_secs(20),
            "never long enough to be abandoned"
        );
    }
}
