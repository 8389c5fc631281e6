//! Wall-clock time as epoch milliseconds, and the clock port that supplies it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(duration)))
    }

    pub fn minus(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(duration_millis(duration)))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 in UTC with millisecond precision, as the API shows times.
    pub fn to_rfc3339(self) -> String {
        let time = UNIX_EPOCH + Duration::from_millis(self.0);
        humantime::format_rfc3339_millis(time).to_string()
    }
}

impl Timestamp {
    /// A time as `to_rfc3339` writes it (UTC, `Z`, optional fraction).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let time = humantime::parse_rfc3339(text).ok()?;
        let since = time.duration_since(UNIX_EPOCH).ok()?;
        Some(Self(duration_millis(since)))
    }
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Where handlers get "now" from, so tests can move time by hand.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(duration_millis)
            .unwrap_or(0);
        Timestamp(millis)
    }
}

/// A clock that only moves when told to; cloned handles share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn starting_at(start: Timestamp) -> Self {
        Self(Arc::new(AtomicU64::new(start.0)))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(duration_millis(by), Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.0.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_in_utc_with_millis() {
        assert_eq!(
            Timestamp::from_millis(1_767_225_600_123).to_rfc3339(),
            "2026-01-01T00:00:00.123Z"
        );
    }

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!(t.minus(Duration::from_secs(5)).as_millis(), 0);
        assert_eq!(t.since(t.plus(Duration::from_secs(1))), Duration::ZERO);
        assert_eq!(
            t.plus(Duration::from_secs(1)).since(t),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_at(Timestamp::from_millis(10));
        let shared = clock.clone();
        assert_eq!(shared.now().as_millis(), 10);
        clock.advance(Duration::from_millis(5));
        assert_eq!(shared.now().as_millis(), 15);
    }
}
