//! The single-table layout (docs/decisions/0003-table-layout.md).
//!
//! | item            | `pk`                           | written by                 |
//! |-----------------|--------------------------------|----------------------------|
//! | session         | `SESSION#<sessionId>`          | join, granter, leave…      |
//! | claim           | `CLAIM#<eventId>#<userId>`     | join                       |
//! | event counters  | `EVENT#<eventId>`              | granter, exits, admin      |
//! | state change    | `STATECHANGE#<event>#<ms>#<from>#<to>` | admin (with the state) |
//! | ticket counter  | `LINE#<eventId>#<shard>`       | granter (numbering), leave |
//! | shard head      | `HEAD#<eventId>#<shard>`       | granter (admitting)        |
//!
//! Waiting sessions carry `lineKey`/`place`, which puts them in the sparse
//! `line-index`: the line in place order, one partition per shard. Active
//! sessions carry `expiryBucket`/`expiresAt`, which puts them in the sparse
//! `expiry-index` the sweeper reads. Event items carry `listing`, which puts
//! them in the `event-index` the reconciliation walks.
//!
//! Every hot item has its own partition key: an event's counters, each
//! shard's ticket counter and head are separate partitions, so sharding
//! the line spreads the load.

use crate::domain::{EventId, Place, SessionId, Timestamp, UserId};

pub const PARTITION_KEY: &str = "pk";
pub const LINE_INDEX: &str = "line-index";
pub const LINE_INDEX_PARTITION: &str = "lineKey";
pub const LINE_INDEX_SORT: &str = "place";
/// Attributes the line index carries besides its keys (and the table key).
pub const LINE_INDEX_PROJECTION: &[&str] =
    &["sessionId", "shard", "joinedAt", "lastSeenAt", "ticket"];
pub const EXPIRY_INDEX: &str = "expiry-index";
pub const EXPIRY_INDEX_PARTITION: &str = "expiryBucket";
pub const EXPIRY_INDEX_SORT: &str = "expiresAt";
/// The sweeper needs only the key to end a session.
pub const EXPIRY_INDEX_PROJECTION: &[&str] = &["sessionId"];
pub const EVENT_INDEX: &str = "event-index";
pub const EVENT_INDEX_PARTITION: &str = "listing";
pub const EVENT_INDEX_SORT: &str = "eventId";
/// The one value of `listing`: every event is in the same partition (there
/// are few events, and the attribute is written once per event).
pub const EVENT_LISTING: &str = "events";
/// Epoch seconds after which DynamoDB may delete an ended session or a claim.
pub const TTL_ATTRIBUTE: &str = "ttl";

pub fn session_key(id: &SessionId) -> String {
    format!("SESSION#{id}")
}

pub fn claim_key(event: &EventId, user: &UserId) -> String {
    format!("CLAIM#{event}#{user}")
}

/// A spent join puzzle solution, by its SHA-256 (which names the event).
pub fn puzzle_key(digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("PUZZLE#{hex}")
}

pub fn event_key(event: &EventId) -> String {
    format!("EVENT#{event}")
}

/// The record of one change of an event's state (the publisher's outbox
/// entry for it), unique per change: two changes in one millisecond differ
/// in their states (each moves from the state the other left).
pub fn state_change_key(event: &EventId, at_millis: u64, from: &str, to: &str) -> String {
    format!("STATECHANGE#{event}#{at_millis}#{from}#{to}")
}

pub const STATE_CHANGE_PREFIX: &str = "STATECHANGE#";

pub fn line_key(event: &EventId, shard: u16) -> String {
    format!("LINE#{event}#{shard}")
}

pub fn head_key(event: &EventId, shard: u16) -> String {
    format!("HEAD#{event}#{shard}")
}

/// The line index partition of a shard.
pub fn line_index_key(event: &EventId, shard: u16) -> String {
    format!("{event}#{shard}")
}

/// A place as the line index sorts it: zero-padded join time, then the
/// session id, so string order is place order.
pub fn place_value(place: &Place) -> String {
    format!("{:015}#{}", place.joined_at.as_millis(), place.session_id)
}

/// A place from its value.
pub fn parse_place(value: &str) -> Option<Place> {
    let (millis, id) = value.split_once('#')?;
    Some(Place {
        joined_at: Timestamp::from_millis(millis.parse().ok()?),
        session_id: SessionId::parse(id).ok()?,
    })
}

/// The time part of a place value.
pub fn place_time(value: &str) -> Option<Timestamp> {
    let (millis, _) = value.split_once('#')?;
    millis.parse().ok().map(Timestamp::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_values_sort_as_places_do() {
        let event = EventId::parse("E").unwrap();
        let place = |ms: u64, n: u8| Place {
            joined_at: Timestamp::from_millis(ms),
            session_id: SessionId::new(&event, [n; 16]),
        };
        let places = [
            place(9, 1),
            place(10, 0),
            place(10, 3),
            place(1_800_000_000_000, 2),
        ];
        for pair in places.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(place_value(&pair[0]) < place_value(&pair[1]), "{pair:?}");
        }
        for place in &places {
            assert_eq!(place_time(&place_value(place)), Some(place.joined_at));
            assert_eq!(parse_place(&place_value(place)).as_ref(), Some(place));
        }
        assert_eq!(place_time("nonsense"), None);
    }
}
