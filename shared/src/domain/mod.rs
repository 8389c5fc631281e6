//! The waiting room's domain: identifiers, sessions, the line, admission
//! planning, the domain events and the admission token. Nothing here knows
//! about AWS.

pub mod admission;
pub mod changes;
pub mod draw;
pub mod estimate;
pub mod event_state;
pub mod events;
pub mod ids;
pub mod line;
pub mod puzzle;
pub mod session;
pub mod signed_join;
pub mod time;
pub mod token;

pub use admission::{AdmissionPlan, AdmissionPolicy, BacklogChange, NumberingPlan};
pub use changes::{Change, StateChange, StreamRecord};
pub use event_state::{Control, EventState, RefusedControl};
pub use ids::{EventId, IdempotencyKey, InvalidId, KeyDigest, SessionId, UserId};
pub use line::{Backlog, EventCounters, LineEntry, Place, ShardView, TicketCounter};
pub use session::{
    Admission, EndReason, Ending, RefusedTransition, Session, SessionStatus, Stage, StayPolicy,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
