//! Encoding domain values as DynamoDB items and back.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;

use super::layout::{self, PARTITION_KEY, TTL_ATTRIBUTE};
use crate::domain::estimate::AdmissionRate;
use crate::domain::{
    Admission, Backlog, EndReason, Ending, EventCounters, EventId, EventState, KeyDigest,
    LineEntry, Session, SessionId, SessionStatus, Stage, StateChange, TicketCounter, Timestamp,
    UserId,
};
use crate::ports::StoreError;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn ttl_value(at: Timestamp) -> AttributeValue {
    n(at.as_secs())
}

pub fn session_item(session: &Session) -> Item {
    let mut item = Item::from([
        (PARTITION_KEY.into(), s(layout::session_key(&session.id))),
        ("sessionId".into(), s(session.id.as_str())),
        ("eventId".into(), s(session.event_id.as_str())),
        ("userId".into(), s(session.user_id.as_str())),
        ("status".into(), s(session.status().as_str())),
        ("shard".into(), n(session.shard)),
        ("joinedAt".into(), n(session.joined_at.as_millis())),
        ("lastSeenAt".into(), n(session.last_seen_at.as_millis())),
    ]);
    if session.status() == SessionStatus::Waiting {
        // In line: the sparse line index holds waiting sessions only.
        item.insert(
            layout::LINE_INDEX_PARTITION.into(),
            s(layout::line_index_key(&session.event_id, session.shard)),
        );
        item.insert(
            layout::LINE_INDEX_SORT.into(),
            s(layout::place_value(&session.place())),
        );
    }
    if let Some(ticket) = session.ticket {
        item.insert("ticket".into(), n(ticket));
    }
    if let Some(draw) = session.draw {
        item.insert("draw".into(), n(draw));
    }
    if let Some(ahead) = session.ahead_at_filing {
        item.insert("aheadAtFiling".into(), n(ahead));
    }
    if let Some(key) = &session.idempotency_key {
        item.insert("idempotencyKey".into(), s(key.as_str()));
    }
    if let Some(admission) = session.admission() {
        item.insert("admittedAt".into(), n(admission.admitted_at.as_millis()));
        item.insert("admissionNo".into(), n(admission.admission_no));
        item.insert("expiresAt".into(), n(admission.expires_at.as_millis()));
    }
    if let Some(ending) = session.ending() {
        item.insert("endedAt".into(), n(ending.ended_at.as_millis()));
        item.insert("endReason".into(), s(ending.reason.as_str()));
        if let Some(order) = &ending.order_id {
            item.insert("orderId".into(), s(order));
        }
        if let Some(detail) = &ending.detail {
            item.insert("endDetail".into(), s(detail));
        }
    }
    item
}

fn corrupt(what: &str, item: &Item) -> StoreError {
    let pk = item
        .get(PARTITION_KEY)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("?");
    StoreError::Corrupt(format!("{what} on item {pk}"))
}

pub fn get_str<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(&format!("missing string {name}"), item))
}

pub fn opt_str(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub fn opt_num<T: FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(raw)) => raw
            .parse()
            .map(Some)
            .map_err(|_| corrupt(&format!("bad number {name}"), item)),
        Some(_) => Err(corrupt(&format!("{name} is not a number"), item)),
    }
}

pub fn num<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_num(item, name)?.ok_or_else(|| corrupt(&format!("missing number {name}"), item))
}

/// Counters are created by `ADD`, so a missing one is zero. Below zero is
/// a slot given back twice: the very thing the invariants forbid, reported
/// as a damaged item rather than hidden.
fn counter(item: &Item, name: &str) -> Result<u64, StoreError> {
    let value = opt_num::<i64>(item, name)?.unwrap_or(0);
    u64::try_from(value).map_err(|_| corrupt(&format!("negative counter {name} ({value})"), item))
}

fn millis(item: &Item, name: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(opt_num::<u64>(item, name)?.map(Timestamp::from_millis))
}

pub fn decode_session(item: &Item) -> Result<Session, StoreError> {
    let id = SessionId::parse(get_str(item, "sessionId")?)
        .map_err(|_| corrupt("bad sessionId", item))?;
    let user_id =
        UserId::parse(get_str(item, "userId")?).map_err(|_| corrupt("bad userId", item))?;
    let status = SessionStatus::parse(get_str(item, "status")?)
        .ok_or_else(|| corrupt("bad status", item))?;
    let admission = match (
        millis(item, "admittedAt")?,
        opt_num(item, "admissionNo")?,
        millis(item, "expiresAt")?,
    ) {
        (Some(admitted_at), Some(admission_no), Some(expires_at)) => Some(Admission {
            admitted_at,
            admission_no,
            expires_at,
        }),
        _ => None,
    };
    let ending = match (millis(item, "endedAt")?, item.get("endReason")) {
        (Some(ended_at), Some(reason)) => {
            let reason = reason
                .as_s()
                .ok()
                .and_then(|r| EndReason::parse(r))
                .ok_or_else(|| corrupt("bad endReason", item))?;
            Some(Ending {
                ended_at,
                reason,
                order_id: opt_str(item, "orderId"),
                detail: opt_str(item, "endDetail"),
            })
        }
        _ => None,
    };
    let stage = match (status, admission, ending) {
        (SessionStatus::Waiting, None, None) => Stage::Waiting,
        (SessionStatus::Active, Some(admission), None) => Stage::Active(admission),
        (status, admission, Some(ending)) if ending.reason.final_status() == status => {
            Stage::Ended { ending, admission }
        }
        _ => {
            return Err(corrupt(
                "status disagrees with its admission or ending",
                item,
            ));
        }
    };
    Ok(Session {
        event_id: id.event_id(),
        id,
        user_id,
        stage,
        shard: num(item, "shard")?,
        joined_at: Timestamp::from_millis(num(item, "joinedAt")?),
        draw: opt_num(item, "draw")?,
        last_seen_at: Timestamp::from_millis(num(item, "lastSeenAt")?),
        ticket: opt_num(item, "ticket")?,
        ahead_at_filing: opt_num(item, "aheadAtFiling")?,
        idempotency_key: match opt_str(item, "idempotencyKey") {
            Some(digest) => Some(
                KeyDigest::from_stored(&digest)
                    .ok_or_else(|| corrupt("bad idempotencyKey", item))?,
            ),
            None => None,
        },
    })
}

pub fn decode_counters(item: Option<&Item>, shard_count: u16) -> Result<EventCounters, StoreError> {
    let mut counters = match item {
        None => EventCounters::default(),
        Some(item) => EventCounters {
            capacity: opt_num(item, "capacity")?,
            state: match opt_str(item, "eventState") {
                None => EventState::Open,
                Some(state) => {
                    EventState::parse(&state).ok_or_else(|| corrupt("bad eventState", item))?
                }
            },
            state_changed_at: millis(item, "stateChangedAt")?,
            opens_at: millis(item, "opensAt")?,
            closes_at: millis(item, "closesAt")?,
            origin_url: opt_str(item, "originUrl"),
            draw_seed: opt_num(item, "drawSeed")?,
            admits_from: millis(item, "admitsFrom")?,
            stay: seconds(item, "staySeconds")?,
            max_stay: seconds(item, "maxStaySeconds")?,
            abandon_after: seconds(item, "abandonSeconds")?,
            signed_joins: counter(item, "signedJoins")? > 0,
            puzzle_difficulty: opt_num(item, "puzzleDifficulty")?.unwrap_or(0),
            listed: item.contains_key(layout::EVENT_INDEX_PARTITION),
            active: counter(item, "active")?,
            admitted: counter(item, "admitted")?,
            left: counter(item, "left")?,
            expired: counter(item, "expired")?,
            completed: counter(item, "completed")?,
            failed: counter(item, "failed")?,
            abandoned: counter(item, "abandoned")?,
            rate: AdmissionRate {
                per_hour: opt_num(item, "admitRatePerHour")?,
                window_start: millis(item, "rateWindowStart")?,
                window_admitted: counter(item, "rateWindowAdmitted")?,
            },
            backlog: Backlog {
                armed: counter(item, "lineBacklog")? > 0,
                empty_since: millis(item, "backlogEmptySince")?,
            },
            heads: numbers(item, "heads")?,
        },
    };
    counters
        .heads
        .resize(usize::from(shard_count.max(1)).max(counters.heads.len()), 0);
    Ok(counters)
}

/// A duration stored in whole seconds.
fn seconds(item: &Item, name: &str) -> Result<Option<Duration>, StoreError> {
    Ok(opt_num::<u64>(item, name)?.map(Duration::from_secs))
}

/// A list of numbers (absent: empty).
fn numbers(item: &Item, name: &str) -> Result<Vec<u64>, StoreError> {
    let Some(value) = item.get(name) else {
        return Ok(Vec::new());
    };
    let list = value
        .as_l()
        .map_err(|_| corrupt(&format!("{name} is not a list"), item))?;
    list.iter()
        .map(|v| {
            v.as_n()
                .ok()
                .and_then(|raw| raw.parse().ok())
                .ok_or_else(|| corrupt(&format!("bad number in {name}"), item))
        })
        .collect()
}

pub fn number_list(values: &[u64]) -> AttributeValue {
    AttributeValue::L(values.iter().map(n).collect())
}

pub fn decode_ticket_counter(shard: u16, item: Option<&Item>) -> Result<TicketCounter, StoreError> {
    let Some(item) = item else {
        return Ok(TicketCounter::empty(shard));
    };
    Ok(TicketCounter {
        shard,
        stored: true,
        next_ticket: counter(item, "nextTicket")?,
        left_waiting: counter(item, "leftWaiting")?,
        drawn: counter(item, "drawn")? > 0,
        drawn_through: match opt_str(item, "drawnThrough") {
            Some(value) => {
                Some(layout::parse_place(&value).ok_or_else(|| corrupt("bad drawnThrough", item))?)
            }
            None => None,
        },
    })
}

pub fn decode_line_entry(item: &Item) -> Result<LineEntry, StoreError> {
    Ok(LineEntry {
        session_id: SessionId::parse(get_str(item, "sessionId")?)
            .map_err(|_| corrupt("bad sessionId", item))?,
        shard: num(item, "shard")?,
        // The place's time, as the index sorts it (a pre-queue session's
        // is its draw's, not its join time).
        joined_at: layout::place_time(get_str(item, layout::LINE_INDEX_SORT)?)
            .ok_or_else(|| corrupt("bad place", item))?,
        last_seen_at: Timestamp::from_millis(num(item, "lastSeenAt")?),
        ticket: opt_num(item, "ticket")?,
    })
}

/// How long the record of a change of an event's state is kept (the stream
/// has carried it to the publisher long before).
const STATE_CHANGE_RETENTION_SECS: u64 = 7 * 86_400;

pub fn state_change_item(change: &StateChange) -> Item {
    let StateChange {
        event_id,
        from,
        to,
        at,
        ..
    } = change;
    let mut item = Item::from([
        (
            PARTITION_KEY.into(),
            s(layout::state_change_key(
                event_id,
                at.as_millis(),
                from.as_str(),
                to.as_str(),
            )),
        ),
        ("eventId".into(), s(event_id.as_str())),
        ("from".into(), s(from.as_str())),
        ("to".into(), s(to.as_str())),
        ("at".into(), n(at.as_millis())),
        (
            TTL_ATTRIBUTE.into(),
            n(at.as_secs() + STATE_CHANGE_RETENTION_SECS),
        ),
    ]);
    if let Some(opens_at) = change.opens_at {
        item.insert("opensAt".into(), n(opens_at.as_millis()));
    }
    // The seed goes on the record (and so into the published event) only
    // at the opening, when it can no longer help anyone.
    if let (EventState::Open, Some(seed)) = (to, change.seed) {
        item.insert("drawSeed".into(), n(seed));
    }
    if let Some(admits_from) = change.admits_from {
        item.insert("admitsFrom".into(), n(admits_from.as_millis()));
    }
    item
}

pub fn decode_state_change(item: &Item) -> Result<StateChange, StoreError> {
    let state = |name: &str| {
        EventState::parse(get_str(item, name)?).ok_or_else(|| corrupt("bad state", item))
    };
    Ok(StateChange {
        event_id: EventId::parse(get_str(item, "eventId")?)
            .map_err(|_| corrupt("bad eventId", item))?,
        from: state("from")?,
        to: state("to")?,
        at: Timestamp::from_millis(num(item, "at")?),
        opens_at: millis(item, "opensAt")?,
        seed: opt_num(item, "drawSeed")?,
        admits_from: millis(item, "admitsFrom")?,
        on_time: false,
    })
}

/// The line entry of a session item, if it is waiting.
pub fn entry_of_session(session: &Session) -> Option<LineEntry> {
    (session.status() == SessionStatus::Waiting).then(|| session.line_entry())
}

/// The `ExpressionAttributeNames` for expressions that write every attribute
/// as `#name`: DynamoDB reserves hundreds of words (`status`, `ttl`, `left`),
/// and rejects names an expression does not use, so both come from one source.
pub fn names_in(expressions: &[&str]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for expression in expressions {
        let mut rest = *expression;
        while let Some(start) = rest.find('#') {
            let tail = &rest[start + 1..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(format!("#{}", &tail[..end]), tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

pub const TTL: &str = TTL_ATTRIBUTE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventId, IdempotencyKey};

    #[test]
    fn sessions_survive_a_round_trip() {
        let event = EventId::parse("E1").unwrap();
        let mut session = Session::new_waiting(
            SessionId::new(&event, [3; 16]),
            UserId::parse("u@x").unwrap(),
            2,
            Timestamp::from_millis(5),
        );
        assert_eq!(decode_session(&session_item(&session)).unwrap(), session);
        session.ticket = Some(9);
        session.ahead_at_filing = Some(3);
        session.idempotency_key = Some(IdempotencyKey::parse("k-1").unwrap().digest());
        session
            .admit(Admission {
                admitted_at: Timestamp::from_millis(6),
                admission_no: 4,
                expires_at: Timestamp::from_millis(7),
            })
            .unwrap();
        assert_eq!(decode_session(&session_item(&session)).unwrap(), session);
        session
            .end(Ending {
                ended_at: Timestamp::from_millis(8),
                reason: EndReason::CheckoutFailed,
                order_id: Some("order-9".into()),
                detail: Some("card declined".into()),
            })
            .unwrap();
        assert_eq!(decode_session(&session_item(&session)).unwrap(), session);
    }

    #[test]
    fn damaged_items_are_reported_not_guessed() {
        let event = EventId::parse("E1").unwrap();
        let session = Session::new_waiting(
            SessionId::new(&event, [3; 16]),
            UserId::parse("u").unwrap(),
            0,
            Timestamp::from_millis(5),
        );
        let mut item = session_item(&session);
        item.insert("status".into(), s("SLEEPING"));
        assert!(matches!(decode_session(&item), Err(StoreError::Corrupt(_))));
        item.remove("status");
        assert!(matches!(decode_session(&item), Err(StoreError::Corrupt(_))));
        let mut active_without_admission = session_item(&session);
        active_without_admission.insert("status".into(), s("ACTIVE"));
        let mut left_as_completed = session_item(&session);
        left_as_completed.insert("status".into(), s("COMPLETED"));
        left_as_completed.insert("endedAt".into(), n(6));
        left_as_completed.insert("endReason".into(), s("user_left"));
        for (item, what) in [
            (active_without_admission, "ACTIVE with no admission"),
            (left_as_completed, "COMPLETED ended by user_left"),
        ] {
            assert!(
                matches!(decode_session(&item), Err(StoreError::Corrupt(_))),
                "{what}"
            );
        }
    }

    #[test]
    fn expression_names_are_collected_from_the_expressions() {
        let names = names_in(&["SET #status = :s, #ttl = :t", "#status = :w AND #left > :z"]);
        assert_eq!(names.len(), 3);
        assert_eq!(names["#left"], "left");
        assert!(names_in(&["attribute_not_exists(pk)"]).is_empty());
    }

    #[test]
    fn missing_counters_read_as_zero_and_negative_ones_as_damage() {
        let counters = decode_counters(Some(&Item::from([("active".into(), n(2))])), 2).unwrap();
        assert_eq!(
            (counters.active, counters.admitted, counters.capacity),
            (2, 0, None)
        );
        assert_eq!(counters.heads, vec![0, 0]);
        assert_eq!(
            decode_ticket_counter(3, None).unwrap(),
            TicketCounter::empty(3)
        );
        let over_released = Item::from([("active".into(), n(-1))]);
        assert!(
            matches!(
                decode_counters(Some(&over_released), 1),
                Err(StoreError::Corrupt(_))
            ),
            "a slot given back twice must not read as zero"
        );
    }

    #[test]
    fn heads_and_the_hint_survive_a_round_trip() {
        let item = Item::from([
            ("heads".into(), number_list(&[3, 0, 7])),
            ("lineBacklog".into(), n(1)),
            ("backlogEmptySince".into(), n(55)),
        ]);
        let counters = decode_counters(Some(&item), 2).unwrap();
        assert_eq!(counters.heads, vec![3, 0, 7]);
        assert_eq!(
            counters.backlog,
            Backlog {
                armed: true,
                empty_since: Some(Timestamp::from_millis(55))
            }
        );
    }
}
