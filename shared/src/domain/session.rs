//! A fan's session and the only ways its status may change.
//!
//! ```text
//!   WAITING ──admit──▶ ACTIVE ──leave, evict───▶ LEFT
//!      │                  ├──window over──────▶ EXPIRED
//!      │                  ├──checkout done────▶ COMPLETED
//!      │                  └──checkout failed──▶ FAILED
//!      ├──leave, evict───▶ LEFT
//!      └──stopped polling▶ EXPIRED (reason timeout)
//! ```
//! Ended statuses are final. Every transition out of `ACTIVE` gives the slot
//! back, in the same DynamoDB transaction as the status change.

use std::time::Duration;

use super::draw::pre_queue_time;
use super::ids::{EventId, KeyDigest, SessionId, UserId};
use super::line::{EventCounters, LineEntry, Place};
use super::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Waiting,
    Active,
    Left,
    Expired,
    Completed,
    Failed,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 6] = [
        Self::Waiting,
        Self::Active,
        Self::Left,
        Self::Expired,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Active => "ACTIVE",
            Self::Left => "LEFT",
            Self::Expired => "EXPIRED",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    pub fn is_ended(self) -> bool {
        !matches!(self, Self::Waiting | Self::Active)
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended; shown to the user and carried by `QUEUE_LEFT` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The user called `:leave`.
    UserLeft,
    /// A waiting user stopped polling for longer than the abandonment limit
    /// (`WAITING_ABANDON_SECONDS`): abandoned, the place given up.
    Abandoned,
    /// An admitted user's stay ran out.
    Expired,
    CheckoutCompleted,
    CheckoutFailed,
    CheckoutExpired,
    /// An operator removed the session (`waiting-room-admin evict`).
    Evicted,
}

impl EndReason {
    pub const ALL: [EndReason; 7] = [
        Self::UserLeft,
        Self::Abandoned,
        Self::Expired,
        Self::CheckoutCompleted,
        Self::CheckoutFailed,
        Self::CheckoutExpired,
        Self::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserLeft => "user_left",
            Self::Abandoned => "abandoned",
            Self::Expired => "expired",
            Self::CheckoutCompleted => "checkout_completed",
            Self::CheckoutFailed => "checkout_failed",
            Self::CheckoutExpired => "checkout_expired",
            Self::Evicted => "evicted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            // Its earlier name, still on sessions stored before the rename
            // until their retention ends.
            "timeout" => Some(Self::Abandoned),
            _ => Self::ALL.into_iter().find(|r| r.as_str() == value),
        }
    }

    /// The status a session ends in for this reason.
    pub fn final_status(self) -> SessionStatus {
        match self {
            Self::UserLeft | Self::Evicted => SessionStatus::Left,
            Self::Abandoned | Self::Expired | Self::CheckoutExpired => SessionStatus::Expired,
            Self::CheckoutCompleted => SessionStatus::Completed,
            Self::CheckoutFailed => SessionStatus::Failed,
        }
    }
}

/// Active sessions are spread over this many partitions of the expiry
/// index, so the index takes admissions and exits of any rate.
pub const EXPIRY_BUCKETS: u16 = 16;

/// The expiry index partition of a session.
pub fn expiry_bucket(id: &SessionId) -> u16 {
    // Other bits than the line shard uses, so the two spreads are independent.
    u16::try_from((id.stable_hash() >> 32) % u64::from(EXPIRY_BUCKETS)).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub admitted_at: Timestamp,
    /// 1 for the first user admitted to the event, 2 for the next, ...
    pub admission_no: u64,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub ended_at: Timestamp,
    pub reason: EndReason,
    /// The order a checkout outcome reported, if any.
    pub order_id: Option<String>,
    /// Free text from a failed checkout (its `reason`), if any.
    pub detail: Option<String>,
}

impl Ending {
    pub fn new(reason: EndReason, at: Timestamp) -> Self {
        Self {
            ended_at: at,
            reason,
            order_id: None,
            detail: None,
        }
    }
}

/// Where a session stands, carrying what only that stage has: an admission
/// exists only once admitted, an ending only once ended, so no reader has
/// to re-check that a status and its parts agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Waiting,
    Active(Admission),
    /// Final. The status follows from the reason (`EndReason::final_status`);
    /// `admission` stays for a session that was admitted before it ended.
    Ended {
        ending: Ending,
        admission: Option<Admission>,
    },
}

/// A transition the lifecycle above does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} session cannot {action}")]
pub struct RefusedTransition {
    pub from: SessionStatus,
    pub action: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub event_id: EventId,
    pub user_id: UserId,
    pub stage: Stage,
    /// The line shard (and SQS message group) the session was sent to.
    pub shard: u16,
    /// When the join was stamped: the session's place in line, unless it
    /// joined a pre-queue.
    pub joined_at: Timestamp,
    /// Joined a scheduled event's pre-queue: its place is this draw's
    /// (`domain::draw`), not its join time.
    pub draw: Option<u64>,
    pub last_seen_at: Timestamp,
    /// Set by the granter when it numbers the join message; `None` until
    /// then. Only for telling the user where they stand.
    pub ticket: Option<u64>,
    /// People ahead when the session was numbered (what `QUEUE_JOINED` reports).
    pub ahead_at_filing: Option<u64>,
    /// The digest of the idempotency key of the join that created it: the
    /// only join of the same user that may see this session again.
    pub idempotency_key: Option<KeyDigest>,
}

impl Session {
    pub fn new_waiting(id: SessionId, user_id: UserId, shard: u16, now: Timestamp) -> Self {
        Self {
            event_id: id.event_id(),
            id,
            user_id,
            stage: Stage::Waiting,
            shard,
            joined_at: now,
            draw: None,
            last_seen_at: now,
            ticket: None,
            ahead_at_filing: None,
            idempotency_key: None,
        }
    }

    pub fn status(&self) -> SessionStatus {
        match &self.stage {
            Stage::Waiting => SessionStatus::Waiting,
            Stage::Active(_) => SessionStatus::Active,
            Stage::Ended { ending, .. } => ending.reason.final_status(),
        }
    }

    /// The admission, for an active session and for one that ended after it.
    pub fn admission(&self) -> Option<&Admission> {
        match &self.stage {
            Stage::Waiting => None,
            Stage::Active(admission) => Some(admission),
            Stage::Ended { admission, .. } => admission.as_ref(),
        }
    }

    pub fn ending(&self) -> Option<&Ending> {
        match &self.stage {
            Stage::Ended { ending, .. } => Some(ending),
            _ => None,
        }
    }

    /// Where the session stands: its join time, or its draw's place.
    pub fn place(&self) -> Place {
        Place {
            joined_at: self.draw.map_or(self.joined_at, pre_queue_time),
            session_id: self.id.clone(),
        }
    }

    /// The session as the line index shows it (its place's time, not its
    /// join time, for a pre-queue session).
    pub fn line_entry(&self) -> LineEntry {
        LineEntry {
            session_id: self.id.clone(),
            shard: self.shard,
            joined_at: self.place().joined_at,
            last_seen_at: self.last_seen_at,
            ticket: self.ticket,
        }
    }

    pub fn is_live(&self) -> bool {
        !matches!(self.stage, Stage::Ended { .. })
    }

    /// When an active session's stay ends.
    pub fn expires_at(&self) -> Option<Timestamp> {
        match &self.stage {
            Stage::Active(admission) => Some(admission.expires_at),
            _ => None,
        }
    }

    /// A waiting session is admitted.
    pub fn admit(&mut self, admission: Admission) -> Result<(), RefusedTransition> {
        match self.stage {
            Stage::Waiting => {
                self.stage = Stage::Active(admission);
                Ok(())
            }
            _ => Err(self.refused("be admitted")),
        }
    }

    /// A live session ends; an admitted one keeps its admission on record.
    pub fn end(&mut self, ending: Ending) -> Result<(), RefusedTransition> {
        let admission = match &self.stage {
            Stage::Waiting => None,
            Stage::Active(admission) => Some(admission.clone()),
            Stage::Ended { .. } => return Err(self.refused("end again")),
        };
        self.stage = Stage::Ended { ending, admission };
        Ok(())
    }

    /// A checkout that completed after the session expired replaces the
    /// ending (the only change an ended session takes).
    pub fn record_late_ending(&mut self, ending: Ending) -> Result<(), RefusedTransition> {
        match &mut self.stage {
            Stage::Ended { ending: was, .. } => {
                *was = ending;
                Ok(())
            }
            _ => Err(self.refused("take a late ending")),
        }
    }

    /// An active session's stay moves to `expires_at`.
    pub fn extend_stay(&mut self, expires_at: Timestamp) -> Result<(), RefusedTransition> {
        match &mut self.stage {
            Stage::Active(admission) => {
                admission.expires_at = expires_at;
                Ok(())
            }
            _ => Err(self.refused("extend its stay")),
        }
    }

    fn refused(&self, action: &'static str) -> RefusedTransition {
        RefusedTransition {
            from: self.status(),
            action,
        }
    }
}

/// How long an admitted user may stay: `stay` from admission, extended by
/// heartbeats to `stay` from the latest one, never past `max_stay` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StayPolicy {
    pub stay: Duration,
    pub max_stay: Duration,
}

impl StayPolicy {
    /// The policy for one event: its own stay and longest stay where an
    /// operator set them.
    pub fn for_event(&self, counters: &EventCounters) -> StayPolicy {
        StayPolicy {
            stay: counters.stay.unwrap_or(self.stay),
            max_stay: counters.max_stay.unwrap_or(self.max_stay),
        }
    }

    /// The later end a heartbeat at `now` earns, if any.
    pub fn extended_expiry(&self, session: &Session, now: Timestamp) -> Option<Timestamp> {
        let current = session.expires_at()?;
        let admitted_at = session.admission()?.admitted_at;
        let target = now.plus(self.stay).min(admitted_at.plus(self.max_stay));
        (target > current).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_extend_a_stay_up_to_the_maximum_only() {
        let policy = StayPolicy {
            stay: Duration::from_secs(900),
            max_stay: Duration::from_secs(1800),
        };
        let event = EventId::parse("E").unwrap();
        let mut session = Session::new_waiting(
            SessionId::new(&event, [1; 16]),
            UserId::parse("u").unwrap(),
            0,
            Timestamp::from_millis(0),
        );
        assert_eq!(
            policy.extended_expiry(&session, Timestamp::from_millis(1)),
            None,
            "waiting: nothing to extend"
        );
        session
            .admit(Admission {
                admitted_at: Timestamp::from_millis(0),
                admission_no: 1,
                expires_at: Timestamp::from_millis(900_000),
            })
            .unwrap();
        let at = |s: u64| Timestamp::from_millis(s * 1000);
        assert_eq!(policy.extended_expiry(&session, at(600)), Some(at(1500)));
        assert_eq!(
            policy.extended_expiry(&session, at(1200)),
            Some(at(1800)),
            "capped"
        );
        session.extend_stay(at(1800)).unwrap();
        assert_eq!(
            policy.extended_expiry(&session, at(1500)),
            None,
            "already at the cap"
        );
    }

    #[test]
    fn statuses_and_reasons_round_trip_through_their_wire_names() {
        for status in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
        }
        for reason in EndReason::ALL {
            assert_eq!(EndReason::parse(reason.as_str()), Some(reason));
            assert!(reason.final_status().is_ended());
        }
        assert_eq!(SessionStatus::parse("waiting"), None);
        assert_eq!(
            EndReason::parse("timeout"),
            Some(EndReason::Abandoned),
            "sessions stored under the earlier name still read"
        );
        assert_eq!(EndReason::Abandoned.as_str(), "abandoned");
    }

    #[test]
    fn a_session_moves_only_along_its_lifecycle() {
        let event = EventId::parse("E").unwrap();
        let at = Timestamp::from_millis;
        let admission = Admission {
            admitted_at: at(1),
            admission_no: 1,
            expires_at: at(2),
        };
        let mut session = Session::new_waiting(
            SessionId::new(&event, [2; 16]),
            UserId::parse("u").unwrap(),
            0,
            at(0),
        );
        assert_eq!(
            session.extend_stay(at(3)),
            Err(RefusedTransition {
                from: SessionStatus::Waiting,
                action: "extend its stay"
            })
        );
        session.admit(admission.clone()).unwrap();
        assert_eq!(session.status(), SessionStatus::Active);
        assert_eq!(session.expires_at(), Some(at(2)));
        assert_eq!(
            session.admit(admission.clone()).unwrap_err().from,
            SessionStatus::Active,
            "admitted once only"
        );
        session
            .end(Ending::new(EndReason::CheckoutExpired, at(4)))
            .unwrap();
        assert_eq!(session.status(), SessionStatus::Expired);
        assert_eq!(session.admission(), Some(&admission), "kept on record");
        assert_eq!(session.expires_at(), None, "no stay once ended");
        assert!(!session.is_live());
        assert_eq!(
            session
                .end(Ending::new(EndReason::UserLeft, at(5)))
                .unwrap_err()
                .to_string(),
            "a EXPIRED session cannot end again"
        );
        session
            .record_late_ending(Ending::new(EndReason::CheckoutCompleted, at(6)))
            .unwrap();
        assert_eq!(session.status(), SessionStatus::Completed);
        assert_eq!(session.ending().map(|e| e.ended_at), Some(at(6)));
    }

    #[test]
    fn only_waiting_and_active_are_live() {
        let live: Vec<_> = SessionStatus::ALL
            .into_iter()
            .filter(|s| !s.is_ended())
            .collect();
        assert_eq!(live, vec![SessionStatus::Waiting, SessionStatus::Active]);
    }
}
