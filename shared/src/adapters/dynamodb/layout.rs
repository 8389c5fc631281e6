//! The single-table layout (docs/decisions/0003-table-layout.md).
//!
//! | item            | `pk`                           | written by            |
//! |-----------------|--------------------------------|-----------------------|
//! | session         | `SESSION#<sessionId>`          | join, granter, leave… |
//! | claim           | `CLAIM#<eventId>#<userId>`     | join                  |
//! | event counters  | `EVENT#<eventId>`              | granter, leave, admin |
//! | line shard      | `LINE#<eventId>#<shard>`       | granter, leave        |
//!
//! Active sessions carry `expiryBucket`/`expiresAt`, which puts them in the
//! sparse `expiry-index` the sweeper reads.
//!
//! Every hot item has its own partition key: an event's counters and each of
//! its line shards are separate partitions, so sharding the line spreads the
//! writes. Filed, not-yet-admitted sessions carry `lineKey`/`ticket`, which
//! puts them in the sparse `line-index`, the line in ticket order.

use crate::domain::{EventId, SessionId, UserId};

pub const PARTITION_KEY: &str = "pk";
pub const LINE_INDEX: &str = "line-index";
pub const LINE_INDEX_PARTITION: &str = "lineKey";
pub const LINE_INDEX_SORT: &str = "ticket";
/// Attributes the line index carries besides its keys (and the table key).
pub const LINE_INDEX_PROJECTION: &[&str] = &["sessionId", "status", "joinedAt", "lastSeenAt"];
pub const EXPIRY_INDEX: &str = "expiry-index";
pub const EXPIRY_INDEX_PARTITION: &str = "expiryBucket";
pub const EXPIRY_INDEX_SORT: &str = "expiresAt";
/// The sweeper needs only the key to end a session.
pub const EXPIRY_INDEX_PROJECTION: &[&str] = &["sessionId"];
/// Epoch seconds after which DynamoDB may delete an ended session or a claim.
pub const TTL_ATTRIBUTE: &str = "ttl";

pub fn session_key(id: &SessionId) -> String {
    format!("SESSION#{id}")
}

pub fn claim_key(event: &EventId, user: &UserId) -> String {
    format!("CLAIM#{event}#{user}")
}

pub fn event_key(event: &EventId) -> String {
    format!("EVENT#{event}")
}

pub fn line_key(event: &EventId, shard: u16) -> String {
    format!("LINE#{event}#{shard}")
}

/// The line index partition of a shard.
pub fn line_index_key(event: &EventId, shard: u16) -> String {
    format!("{event}#{shard}")
}
