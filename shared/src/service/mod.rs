//! The use cases, written against the ports. Each function's `main.rs` wires
//! real adapters into one of these; tests wire the in-memory ones.

pub mod admin;
pub mod admission_check;
pub mod cache;
pub mod checkout;
pub mod demo_origin;
pub mod granter;
pub mod join;
mod patience;
pub mod publisher;
pub mod session_command;
pub mod status;
pub mod sweeper;

use crate::domain::puzzle::PuzzleError;
use crate::domain::signed_join::SignatureError;
use crate::domain::{IdempotencyKey, RefusedControl, Session, Timestamp};
use crate::ports::{QueueError, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("session not found")]
    SessionNotFound,
    #[error("session has ended")]
    SessionEnded(Box<Session>),
    /// The operation needs an admitted session and this one is not.
    #[error("session is not active")]
    NotActive(Box<Session>),
    /// The user already holds a live place in the event's line, taken by a
    /// join with another idempotency key (or none).
    #[error("the user already has a place in this line")]
    AlreadyJoined,
    /// An operator blocked this user from the event.
    #[error("this user may not join this event")]
    Blocked,
    /// No join, granter or operator ever listed this event.
    #[error("no event has this id")]
    EventNotFound,
    /// The join lacks the ticketing site's signature or the solved puzzle
    /// its event asks for: nothing stored.
    #[error(transparent)]
    JoinRefused(#[from] JoinRefusal),
    /// The event is closed: no new places, the line drains.
    #[error("the event is closed to new joins")]
    EventClosed,
    /// An operator's control the event's state does not allow.
    #[error(transparent)]
    RefusedControl(#[from] RefusedControl),
    /// A configuration the event cannot take (a time in the past, an
    /// opening for an event that took joins already): nothing changed.
    #[error("{0}")]
    Misconfigured(String),
    /// The line waits for its pre-queue draw to settle until `until`: the
    /// granter comes back then (never shown to a fan).
    #[error("the line is held for its draw until {}", until.to_rfc3339())]
    Held { until: Timestamp },
    /// A join failed at a point where its place may have been stored: the
    /// same join with `key` finds out, and keeps that place if it was.
    #[error("join not confirmed: {detail}")]
    JoinUnconfirmed { key: IdempotencyKey, detail: String },
    /// A dependency is down or throttling; the caller may retry.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// Too many concurrent writers on the same items; the caller may retry.
    #[error("too much contention, try again")]
    Contention,
    /// Stored data or configuration is wrong: a bug or an operator error.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a join was refused before anything was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Puzzle(#[from] PuzzleError),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) | StoreError::Contention(detail) => {
                Self::Unavailable(detail)
            }
            StoreError::Rejected(detail) | StoreError::Corrupt(detail) => Self::Internal(detail),
        }
    }
}

impl From<QueueError> for ServiceError {
    fn from(err: QueueError) -> Self {
        match err {
            QueueError::Unavailable(detail) => Self::Unavailable(detail),
            QueueError::Rejected(detail) => Self::Internal(detail),
        }
    }
}

/// Optimistic writes retry this many times against fresh reads before the
/// request gives up with `Contention`.
pub(crate) const MAX_ATTEMPTS: usize = 8;

#[cfg(test)]
pub(crate) mod tests;
