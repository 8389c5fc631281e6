//! Domain events: one per state change of a session, derived from the table's
//! stream (the outbox) so that a crash between a change and its publication
//! can neither lose nor invent an event. See docs/decisions/0010-domain-events.md.
//!
//! | change                                   | event                 |
//! |------------------------------------------|-----------------------|
//! | numbered (ticket given), or admitted first | `QUEUE_JOINED`      |
//! | admitted                                 | `QUEUE_READY`         |
//! | left, abandoned, stay over               | `QUEUE_LEFT`          |
//! | checkout outcome applied                 | `CHECKOUT_COMPLETED` / `_FAILED` / `_EXPIRED` |
//!
//! A session reaches each of these at most once, so `<sessionId>/<type>` is
//! a unique, deterministic event id: a republished event keeps its id and
//! consumers deduplicate on it. Events are ordered per session (their
//! `partition` is the session id), the order a consumer acts on; sessions are
//! published in parallel, so no on-sale is held to one message group's
//! 300 messages a second.
//!
//! The admission token is a bearer credential: it goes only to the checkout
//! (the admissions topic). Every other subscriber gets each event
//! [`DomainEvent::for_everyone`], without it (docs/decisions/0025-admissions-topic.md).

use serde::Serialize;

use crate::domain::token::AdmissionSigner;
use crate::domain::{EndReason, EventState, Session, SessionStatus, Stage, StateChange, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainEvent {
    /// Unique per change; consumers deduplicate on it.
    pub id: String,
    /// The on-sale.
    pub event_id: String,
    /// Where order is kept: the session (the event, for a change of the
    /// event's state). Transport metadata (the SNS FIFO message group), not
    /// part of the JSON.
    #[serde(skip)]
    pub partition: String,
    /// The fan's session; absent on a change of the event's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub occurred_at: String,
    /// The event's `type`, with what only that type carries.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The event's `type` in the JSON, and the fields that type carries: a
/// `QUEUE_READY` cannot lack its end, a `QUEUE_LEFT` cannot lack its
/// reason, and no other type can carry a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    QueueJoined {
        /// 1 for the front of the line.
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<u64>,
    },
    QueueReady {
        /// The token the protected origin accepts; only on the admissions
        /// topic (see `for_everyone`).
        #[serde(skip_serializing_if = "Option::is_none")]
        admission_token: Option<String>,
        /// When the stay ends.
        expires_at: String,
    },
    QueueLeft {
        /// `user_left`, `abandoned` or `expired`.
        reason: String,
    },
    CheckoutCompleted(CheckoutDetail),
    CheckoutFailed(CheckoutDetail),
    CheckoutExpired(CheckoutDetail),
    /// The event opens at `opens_at`; joins until then go into its
    /// pre-queue (sent again when the time changes).
    EventScheduled {
        opens_at: String,
    },
    /// The event opened. After a pre-queue: the draw's seed (hex, so that
    /// anyone can replay the order) and when admissions start.
    EventOpened {
        #[serde(skip_serializing_if = "Option::is_none")]
        draw_seed: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        admits_from: Option<String>,
    },
    /// An operator paused the event: nobody is admitted until it resumes.
    EventPaused,
    /// A paused event admits again.
    EventResumed,
    /// The event takes no new joins; its line drains.
    EventClosed,
}

/// What a checkout outcome said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckoutDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The checkout's own words (a failure's cause).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl EventKind {
    /// The `type`, as in the JSON and the SNS `type` attribute.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::QueueJoined { .. } => "QUEUE_JOINED",
            EventKind::QueueReady { .. } => "QUEUE_READY",
            EventKind::QueueLeft { .. } => "QUEUE_LEFT",
            EventKind::CheckoutCompleted(_) => "CHECKOUT_COMPLETED",
            EventKind::CheckoutFailed(_) => "CHECKOUT_FAILED",
            EventKind::CheckoutExpired(_) => "CHECKOUT_EXPIRED",
            EventKind::EventScheduled { .. } => "EVENT_SCHEDULED",
            EventKind::EventOpened { .. } => "EVENT_OPENED",
            EventKind::EventPaused => "EVENT_PAUSED",
            EventKind::EventResumed => "EVENT_RESUMED",
            EventKind::EventClosed => "EVENT_CLOSED",
        }
    }
}

impl DomainEvent {
    /// Whether the event carries a bearer token (only `QUEUE_READY` does).
    pub fn carries_token(&self) -> bool {
        matches!(
            self.kind,
            EventKind::QueueReady {
                admission_token: Some(_),
                ..
            }
        )
    }

    /// The event as every subscriber may see it: without the token.
    pub fn for_everyone(&self) -> DomainEvent {
        let mut event = self.clone();
        if let EventKind::QueueReady {
            admission_token, ..
        } = &mut event.kind
        {
            *admission_token = None;
        }
        event
    }

    fn new(kind: EventKind, session: &Session, at: Timestamp) -> Self {
        Self {
            id: format!("{}/{}", session.id, kind.name()),
            event_id: session.event_id.to_string(),
            partition: session.id.to_string(),
            session_id: Some(session.id.to_string()),
            user_id: Some(session.user_id.to_string()),
            occurred_at: at.to_rfc3339(),
            kind,
        }
    }
}

/// The event of a change of an event's state. A state is reached many
/// times (pause, resume, pause; a new opening time), so the id carries when.
pub fn events_for_state(change: &StateChange) -> Option<DomainEvent> {
    let kind = match (change.from, change.to) {
        (_, EventState::Scheduled) => EventKind::EventScheduled {
            opens_at: change.opens_at?.to_rfc3339(),
        },
        (from, to) if from == to => return None,
        (EventState::Scheduled, EventState::Open) => EventKind::EventOpened {
            draw_seed: change.seed.map(seed_hex),
            admits_from: change.admits_from.map(Timestamp::to_rfc3339),
        },
        (_, EventState::Paused) => EventKind::EventPaused,
        (_, EventState::Closed) => EventKind::EventClosed,
        (_, EventState::Open) => EventKind::EventResumed,
    };
    Some(DomainEvent {
        id: format!(
            "{}/{}/{}",
            change.event_id,
            kind.name(),
            change.at.as_millis()
        ),
        event_id: change.event_id.to_string(),
        partition: change.event_id.to_string(),
        session_id: None,
        user_id: None,
        occurred_at: change.at.to_rfc3339(),
        kind,
    })
}

/// A draw's seed as published and as the replay takes it.
pub fn seed_hex(seed: u64) -> String {
    format!("{seed:016x}")
}

/// The events one write to one session produced, in the order they happened.
pub fn events_for(
    old: Option<&Session>,
    new: Option<&Session>,
    signer: &AdmissionSigner,
) -> Vec<DomainEvent> {
    let Some(new) = new else {
        return Vec::new(); // deleted by TTL or an undone join: not a change of state
    };
    let mut events = Vec::new();
    let was_numbered = old.is_some_and(|o| o.ticket.is_some());
    let was_waiting = old.is_some_and(|o| o.status() == SessionStatus::Waiting);
    // `QUEUE_JOINED` comes once, with the first of: numbered while waiting
    // (it knows the position), admitted before being numbered (first).
    let numbered_waiting =
        new.ticket.is_some() && !was_numbered && new.status() == SessionStatus::Waiting;
    let admitted_first = !was_numbered && was_waiting && new.status() == SessionStatus::Active;
    if numbered_waiting || admitted_first {
        let position = if admitted_first {
            Some(1)
        } else {
            new.ahead_at_filing.map(|ahead| ahead + 1)
        };
        events.push(DomainEvent::new(
            EventKind::QueueJoined { position },
            new,
            new.joined_at,
        ));
    }
    let status_changed = old.is_none_or(|o| o.status() != new.status());
    if !status_changed {
        return events;
    }
    match &new.stage {
        Stage::Active(admission) => {
            let ready = EventKind::QueueReady {
                admission_token: signer.token_for(new),
                expires_at: admission.expires_at.to_rfc3339(),
            };
            events.push(DomainEvent::new(ready, new, admission.admitted_at));
        }
        Stage::Ended { ending, .. } => {
            let checkout = || CheckoutDetail {
                order_id: ending.order_id.clone(),
                reason: ending.detail.clone(),
            };
            let kind = match ending.reason {
                EndReason::CheckoutCompleted => EventKind::CheckoutCompleted(checkout()),
                EndReason::CheckoutFailed => EventKind::CheckoutFailed(checkout()),
                EndReason::CheckoutExpired => EventKind::CheckoutExpired(checkout()),
                EndReason::UserLeft
                | EndReason::Abandoned
                | EndReason::Expired
                | EndReason::Evicted => EventKind::QueueLeft {
                    reason: ending.reason.as_str().to_owned(),
                },
            };
            events.push(DomainEvent::new(kind, new, ending.ended_at));
        }
        Stage::Waiting => {}
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Admission, Ending, EventId, SessionId, UserId};

    fn waiting() -> Session {
        let event = EventId::parse("E1").unwrap();
        Session::new_waiting(
            SessionId::new(&event, [2; 16]),
            UserId::parse("u1").unwrap(),
            0,
            Timestamp::from_millis(1_000),
        )
    }

    fn filed(ahead: u64) -> Session {
        let mut s = waiting();
        s.ticket = Some(7);
        s.ahead_at_filing = Some(ahead);
        s
    }

    fn active(from: Session) -> Session {
        let mut s = from;
        s.admit(Admission {
            admitted_at: Timestamp::from_millis(5_000),
            admission_no: 1,
            expires_at: Timestamp::from_millis(905_000),
        })
        .unwrap();
        s
    }

    fn ended(from: Session, ending: Ending) -> Session {
        let mut s = from;
        s.end(ending).unwrap();
        s
    }

    fn signer() -> AdmissionSigner {
        AdmissionSigner::generate("k1", [3; 32]).unwrap()
    }

    struct SessionUpdate {
        old: Option<Session>,
        new: Option<Session>,
    }

    fn events(update: &SessionUpdate, signer: &AdmissionSigner) -> Vec<DomainEvent> {
        events_for(update.old.as_ref(), update.new.as_ref(), signer)
    }

    fn kinds(update: SessionUpdate) -> Vec<&'static str> {
        events(&update, &signer())
            .iter()
            .map(|e| e.kind.name())
            .collect()
    }

    #[test]
    fn each_change_maps_to_its_event() {
        assert!(
            kinds(SessionUpdate {
                old: None,
                new: Some(waiting())
            })
            .is_empty(),
            "not in line yet"
        );
        let joined = events(
            &SessionUpdate {
                old: Some(waiting()),
                new: Some(filed(4)),
            },
            &signer(),
        );
        assert_eq!(joined[0].kind, EventKind::QueueJoined { position: Some(5) });
        assert_eq!(
            kinds(SessionUpdate {
                old: Some(filed(4)),
                new: Some(active(filed(4)))
            }),
            vec!["QUEUE_READY"]
        );
        assert_eq!(
            kinds(SessionUpdate {
                old: Some(waiting()),
                new: Some(active(filed(0)))
            }),
            vec!["QUEUE_JOINED", "QUEUE_READY"],
            "filed and admitted in one write"
        );
        let mut touched = filed(4);
        touched.last_seen_at = Timestamp::from_millis(9_999);
        assert!(
            kinds(SessionUpdate {
                old: Some(filed(4)),
                new: Some(touched)
            })
            .is_empty(),
            "a heartbeat is no event"
        );
        assert!(
            kinds(SessionUpdate {
                old: Some(filed(4)),
                new: None
            })
            .is_empty()
        );
    }

    #[test]
    fn ready_carries_a_token_and_endings_their_reason() {
        let ready = &events(
            &SessionUpdate {
                old: Some(filed(0)),
                new: Some(active(filed(0))),
            },
            &signer(),
        )[0];
        let EventKind::QueueReady {
            admission_token: Some(token),
            expires_at,
        } = &ready.kind
        else {
            panic!("not a QUEUE_READY with a token: {ready:?}");
        };
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
        assert_eq!(ready.id, format!("{}/QUEUE_READY", waiting().id));
        assert!(ready.carries_token());
        let public = serde_json::to_value(ready.for_everyone()).unwrap();
        assert!(
            public.get("admission_token").is_none(),
            "the copy for every subscriber has no token: {public}"
        );
        assert_eq!(public["expires_at"], serde_json::json!(expires_at));
        assert_eq!(public["type"], "QUEUE_READY");

        let left = ended(
            filed(2),
            Ending::new(EndReason::Abandoned, Timestamp::from_millis(7_000)),
        );
        let event = &events(
            &SessionUpdate {
                old: Some(filed(2)),
                new: Some(left),
            },
            &signer(),
        )[0];
        assert_eq!(
            event.kind,
            EventKind::QueueLeft {
                reason: "abandoned".into()
            }
        );

        let failed = Ending {
            ended_at: Timestamp::from_millis(8_000),
            reason: EndReason::CheckoutFailed,
            order_id: Some("o-1".into()),
            detail: Some("card declined".into()),
        };
        let outcome = ended(active(filed(0)), failed);
        let event = &events(
            &SessionUpdate {
                old: Some(active(filed(0))),
                new: Some(outcome),
            },
            &signer(),
        )[0];
        assert_eq!(
            event.kind,
            EventKind::CheckoutFailed(CheckoutDetail {
                order_id: Some("o-1".into()),
                reason: Some("card declined".into()),
            })
        );
        let json = serde_json::to_value(event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": format!("{}/CHECKOUT_FAILED", waiting().id),
                "type": "CHECKOUT_FAILED",
                "event_id": "E1",
                "session_id": waiting().id.to_string(),
                "user_id": "u1",
                "occurred_at": Timestamp::from_millis(8_000).to_rfc3339(),
                "order_id": "o-1",
                "reason": "card declined",
            }),
            "the JSON is flat, as consumers read it"
        );
    }

    #[test]
    fn each_change_of_an_events_state_is_one_event_of_its_own_id() {
        let change = |from, to, ms| {
            StateChange::plain(
                EventId::parse("E1").unwrap(),
                from,
                to,
                Timestamp::from_millis(ms),
            )
        };
        use EventState::*;
        assert_eq!(events_for_state(&change(Open, Open, 1)), None, "no change");
        let kinds: Vec<EventKind> = [
            change(Open, Paused, 10_000),
            change(Paused, Open, 20_000),
            change(Paused, Closed, 30_000),
        ]
        .iter()
        .filter_map(events_for_state)
        .map(|e| e.kind)
        .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::EventPaused,
                EventKind::EventResumed,
                EventKind::EventClosed
            ]
        );
        let json =
            serde_json::to_value(events_for_state(&change(Open, Paused, 10_000)).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "E1/EVENT_PAUSED/10000",
                "type": "EVENT_PAUSED",
                "event_id": "E1",
                "occurred_at": Timestamp::from_millis(10_000).to_rfc3339(),
            }),
            "no session fields on a change of the event"
        );
        let scheduled = StateChange {
            opens_at: Some(Timestamp::from_millis(50_000)),
            ..change(Open, Scheduled, 1_000)
        };
        let rescheduled = StateChange {
            opens_at: Some(Timestamp::from_millis(60_000)),
            ..change(Scheduled, Scheduled, 2_000)
        };
        let opened = StateChange {
            seed: Some(0xab),
            admits_from: Some(Timestamp::from_millis(66_000)),
            ..change(Scheduled, Open, 60_000)
        };
        let json = |c: &StateChange| serde_json::to_value(events_for_state(c).unwrap()).unwrap();
        assert_eq!(json(&scheduled)["type"], "EVENT_SCHEDULED");
        assert_eq!(
            json(&rescheduled)["opens_at"],
            Timestamp::from_millis(60_000).to_rfc3339()
        );
        assert_eq!(
            json(&opened),
            serde_json::json!({
                "id": "E1/EVENT_OPENED/60000",
                "type": "EVENT_OPENED",
                "event_id": "E1",
                "occurred_at": Timestamp::from_millis(60_000).to_rfc3339(),
                "draw_seed": "00000000000000ab",
                "admits_from": Timestamp::from_millis(66_000).to_rfc3339(),
            })
        );
        assert_eq!(
            json(&change(Scheduled, Open, 70_000))["type"],
            "EVENT_OPENED",
            "an opening without a draw carries no seed"
        );
    }
}
