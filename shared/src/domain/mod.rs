//! The waiting room's domain: identifiers, sessions, the line and admission
//! planning. Nothing here knows about AWS.

pub mod admission;
pub mod estimate;
pub mod ids;
pub mod line;
pub mod session;
pub mod time;

pub use admission::{AdmissionPolicy, Arrival, LineAdvance, SessionChange, SessionChangeKind};
pub use ids::{EventId, InvalidId, SessionId, UserId};
pub use line::{EventCounters, LineEntry, LineShard, LineState};
pub use session::{Admission, EndReason, Ending, LinePlace, Session, SessionStatus, StayPolicy};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};
