//! What operators read and change: an event's report, its capacity and
//! state, and evictions. The CLI and the admin HTTP API both go through
//! here.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::domain::events::seed_hex;
use crate::domain::puzzle::MAX_DIFFICULTY;
use crate::domain::{
    Clock, Control, EventCounters, EventId, EventState, SessionId, StateChange, Timestamp,
};
use crate::ports::{EventSettings, EventStore, IdSource, LineStore, SessionStore};

use super::session_command::{Ended, SessionCommands};
use super::{MAX_ATTEMPTS, ServiceError};

/// The largest capacity an operator may set: far above any origin, small
/// enough that a typo (an extra zero or three) is refused.
pub const MAX_CAPACITY: u32 = 10_000_000;

/// One event's counters, as `waiting-room-admin show` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventReport {
    pub event_id: String,
    /// `SCHEDULED`, `OPEN`, `PAUSED` or `CLOSED`.
    pub state: &'static str,
    /// When a scheduled event opens (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_url: Option<String>,
    /// The pre-queue draw's seed, once the event has opened (secret
    /// before: it would tell who goes first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draw_seed: Option<String>,
    /// After an opening with a pre-queue, when admissions start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admits_from: Option<String>,
    /// The event's own stay, longest stay and abandonment limit (0: never),
    /// where set; absent: the deployment's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stay_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stay_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandon_after_seconds: Option<u64>,
    /// Joins need the ticketing site's signature.
    pub signed_joins: bool,
    /// Joins need a solved puzzle this hard, in bits (0: none).
    pub puzzle_difficulty: u8,
    pub capacity: u32,
    /// `"stored"` on the event (set by an operator, or the default stored
    /// when the event was first used), or `"default"` for an event nobody
    /// has used yet.
    pub capacity_source: &'static str,
    pub active: u64,
    pub free: u64,
    /// Numbered and not yet passed, minus those who left: an estimate (a
    /// join is counted once the granter numbers it).
    pub waiting: u64,
    pub admitted: u64,
    /// Left, by choice: while active plus while waiting.
    pub left: u64,
    pub left_while_waiting: u64,
    pub expired: u64,
    pub abandoned: u64,
    pub completed: u64,
    pub failed: u64,
    /// The backlog hint: whether a freed slot wakes the granter.
    pub backlog_armed: bool,
}

pub async fn event_report<S: EventStore + LineStore>(
    store: &S,
    event: &EventId,
    line_shards: u16,
    default_capacity: u32,
) -> Result<EventReport, ServiceError> {
    let counters = store.event_counters(event, line_shards).await?;
    let shards: Vec<u16> = (0..line_shards.max(1)).collect();
    let tickets = store.ticket_counters(event, &shards).await?;
    let left_while_waiting: u64 = tickets.iter().map(|t| t.left_waiting).sum();
    Ok(EventReport {
        event_id: event.to_string(),
        state: counters.state.as_str(),
        opens_at: counters.opens_at.map(Timestamp::to_rfc3339),
        closes_at: counters.closes_at.map(Timestamp::to_rfc3339),
        origin_url: counters.origin_url.clone(),
        draw_seed: counters
            .draw_seed
            .filter(|_| counters.state != EventState::Scheduled)
            .map(seed_hex),
        admits_from: counters.admits_from.map(Timestamp::to_rfc3339),
        stay_seconds: counters.stay.map(|d| d.as_secs()),
        max_stay_seconds: counters.max_stay.map(|d| d.as_secs()),
        abandon_after_seconds: counters.abandon_after.map(|d| d.as_secs()),
        signed_joins: counters.signed_joins,
        puzzle_difficulty: counters.puzzle_difficulty,
        capacity: counters.effective_capacity(default_capacity),
        capacity_source: if counters.capacity.is_some() {
            "stored"
        } else {
            "default"
        },
        active: counters.active,
        free: counters.free_slots(default_capacity),
        waiting: counters.waiting(&tickets),
        admitted: counters.admitted,
        left: counters.left + left_while_waiting,
        left_while_waiting,
        expired: counters.expired,
        abandoned: counters.abandoned,
        completed: counters.completed,
        failed: counters.failed,
        backlog_armed: counters.backlog.armed,
    })
}

/// What an operator's control did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlOutcome {
    pub event_id: String,
    pub control: &'static str,
    /// The state before and after (the same when it was already there).
    pub from: &'static str,
    pub state: &'static str,
    pub changed: bool,
}

/// Open, pause, resume or close an event. Asking for the state it is in already
/// changes nothing; a closed event refuses every control and keeps its state;
/// an event nobody listed (a mistyped id) is not found.
/// The write is conditioned on the state read, so two operators acting at
/// once cannot both move it from the same state.
pub async fn control<S: EventStore>(
    store: &S,
    event: &EventId,
    control: Control,
    line_shards: u16,
    now: Timestamp,
) -> Result<ControlOutcome, ServiceError> {
    let outcome = |from: EventState, to: EventState| ControlOutcome {
        event_id: event.to_string(),
        control: control.as_str(),
        from: from.as_str(),
        state: to.as_str(),
        changed: from != to,
    };
    for _ in 0..MAX_ATTEMPTS {
        let counters = store.event_counters(event, line_shards).await?;
        if !counters.listed {
            return Err(ServiceError::EventNotFound);
        }
        let from = counters.state;
        let to = from.after(control)?;
        let change = if from == EventState::Scheduled {
            StateChange::opening(event, &counters, now)
        } else {
            StateChange::plain(event.clone(), from, to, now)
        };
        if from == to || store.set_event_state(&change).await? {
            return Ok(outcome(from, to));
        }
        tracing::info!(event = %event, control = control.as_str(), "the event's state changed meanwhile; reading again");
    }
    Err(ServiceError::Contention)
}

/// What an operator configures on an event; `None` leaves a value as it
/// is, `Some(None)` removes an optional one. Values are well-formed (the
/// API and the CLI parse them); `configure` checks them against the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configuration {
    pub capacity: Option<u32>,
    pub opens_at: Option<Timestamp>,
    pub closes_at: Option<Option<Timestamp>>,
    pub origin_url: Option<Option<String>>,
    /// The stay, longest stay and abandonment limit (zero: off); `None`
    /// inside removes the event's own, back to the deployment's.
    pub stay: Option<Option<Duration>>,
    pub max_stay: Option<Option<Duration>>,
    pub abandon_after: Option<Option<Duration>>,
    pub signed_joins: Option<bool>,
    /// Bits, at most `puzzle::MAX_DIFFICULTY`; 0 turns the puzzle off.
    pub puzzle_difficulty: Option<u8>,
}

/// The longest origin URL an operator may store.
pub const MAX_ORIGIN_URL: usize = 2048;

/// The seconds a stay (or longest stay) may be, as the deployment's.
pub const STAY_SECONDS: std::ops::RangeInclusive<u64> = 10..=86_400;
/// The seconds an abandonment limit may be (0 is off): shorter than half a
/// minute would abandon fans between two polls on a slow network.
pub const ABANDON_SECONDS: std::ops::RangeInclusive<u64> = 30..=86_400;

impl Configuration {
    /// `staySeconds` or `maxStaySeconds`.
    pub fn parse_stay(field: &str, seconds: u64) -> Result<Duration, String> {
        if STAY_SECONDS.contains(&seconds) {
            Ok(Duration::from_secs(seconds))
        } else {
            Err(format!(
                "{field} must be whole seconds from {} to {}",
                STAY_SECONDS.start(),
                STAY_SECONDS.end()
            ))
        }
    }

    /// `abandonAfterSeconds`: 0 (never abandon) or a limit in range.
    pub fn parse_abandon(seconds: u64) -> Result<Duration, String> {
        if seconds == 0 || ABANDON_SECONDS.contains(&seconds) {
            Ok(Duration::from_secs(seconds))
        } else {
            Err(format!(
                "abandonAfterSeconds must be 0 (never) or whole seconds from {} to {}",
                ABANDON_SECONDS.start(),
                ABANDON_SECONDS.end()
            ))
        }
    }

    /// `puzzleDifficulty`: bits of work per join, 0 (off) to `MAX_DIFFICULTY`.
    pub fn parse_puzzle_difficulty(bits: u64) -> Result<u8, String> {
        u8::try_from(bits)
            .ok()
            .filter(|b| *b <= MAX_DIFFICULTY)
            .ok_or_else(|| {
                format!("puzzleDifficulty must be a whole number of bits from 0 (off) to {MAX_DIFFICULTY}")
            })
    }

    /// A time field (`opensAt`, `closesAt`): RFC 3339 in UTC.
    pub fn parse_time(field: &str, text: &str) -> Result<Timestamp, String> {
        Timestamp::parse_rfc3339(text).ok_or_else(|| {
            format!("{field} must be an RFC 3339 time in UTC, like 2026-12-24T10:00:00Z")
        })
    }

    /// `originUrl`: an absolute http(s) URL without spaces, where admitted
    /// fans are sent.
    pub fn parse_origin_url(text: &str) -> Result<String, String> {
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"));
        let host = rest.and_then(|r| r.split(['/', '?', '#']).next());
        let fine = text.len() <= MAX_ORIGIN_URL
            && host.is_some_and(|h| !h.is_empty())
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if fine {
            Ok(text.to_owned())
        } else {
            Err(format!(
                "originUrl must be an absolute http:// or https:// URL without spaces, at most {MAX_ORIGIN_URL} characters"
            ))
        }
    }
}

/// What an eviction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvictOutcome {
    pub session_id: String,
    /// False when it had ended before (nothing changed).
    pub evicted: bool,
    /// The user may not join the event again.
    pub blocked: bool,
    /// `LEFT` once evicted, else the status it had ended in.
    pub status: &'static str,
}

/// The operator's use cases, for the admin HTTP API.
pub struct AdminService<S> {
    pub store: S,
    pub commands: SessionCommands<S>,
    pub clock: Arc<dyn Clock>,
    /// Draws a scheduled event's seed.
    pub ids: Arc<dyn IdSource>,
    pub line_shards: u16,
    pub default_capacity: u32,
}

impl<S: EventStore + LineStore + SessionStore> AdminService<S> {
    /// Every listed event's report, by event id.
    pub async fn events(&self) -> Result<Vec<EventReport>, ServiceError> {
        let mut events = self.store.events().await?;
        events.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut reports = Vec::with_capacity(events.len());
        for event in &events {
            reports.push(self.report(event).await?);
        }
        Ok(reports)
    }

    pub async fn report(&self, event: &EventId) -> Result<EventReport, ServiceError> {
        event_report(&self.store, event, self.line_shards, self.default_capacity).await
    }

    /// Store an event's configuration: every value is checked against the
    /// event and the clock before anything is written, so a refused
    /// configuration changes nothing. An opening time schedules the event
    /// (only before it took a join: a pre-queue would go ahead of the
    /// people already in line) and draws its seed the first time.
    pub async fn configure(
        &self,
        event: &EventId,
        config: &Configuration,
    ) -> Result<EventReport, ServiceError> {
        let now = self.clock.now();
        let counters = self.store.event_counters(event, self.line_shards).await?;
        let refuse = |why: String| Err(ServiceError::Misconfigured(why));
        if let Some(opens_at) = config.opens_at {
            if opens_at <= now {
                return refuse(format!(
                    "opensAt {} is not in the future (to open now, use open)",
                    opens_at.to_rfc3339()
                ));
            }
            let opened = match counters.state {
                EventState::Scheduled => false,
                // A seed is drawn only by scheduling: this one opened.
                EventState::Open => counters.draw_seed.is_some(),
                EventState::Paused | EventState::Closed => true,
            };
            if opened {
                return refuse(format!(
                    "the event is {} and has opened: only an event that has not opened can be scheduled",
                    counters.state
                ));
            }
            if counters.state == EventState::Open && self.took_joins(event, &counters).await? {
                return refuse(
                    "the event has taken joins already: a pre-queue would go ahead of the people in its line"
                        .into(),
                );
            }
        }
        let opens_at = config.opens_at.or(match counters.state {
            EventState::Scheduled => counters.opens_at,
            _ => None,
        });
        if let Some(Some(closes_at)) = config.closes_at {
            if closes_at <= now {
                return refuse(format!(
                    "closesAt {} is not in the future (to close now, use close)",
                    closes_at.to_rfc3339()
                ));
            }
        }
        let closes_at = config.closes_at.unwrap_or(counters.closes_at);
        if let (Some(opens_at), Some(closes_at)) = (opens_at, closes_at) {
            if closes_at <= opens_at {
                return refuse(format!(
                    "closesAt {} is not after opensAt {}",
                    closes_at.to_rfc3339(),
                    opens_at.to_rfc3339()
                ));
            }
        }
        let deployment = self.commands.stay;
        let stay = config
            .stay
            .unwrap_or(counters.stay)
            .unwrap_or(deployment.stay);
        let max_stay = config
            .max_stay
            .unwrap_or(counters.max_stay)
            .unwrap_or(deployment.max_stay);
        if max_stay < stay {
            return refuse(format!(
                "the longest stay ({} s) would be shorter than the stay ({} s)",
                max_stay.as_secs(),
                stay.as_secs()
            ));
        }
        if let Some(opens_at) = config.opens_at {
            let seed = self.ids.random_id().ok_or_else(|| {
                ServiceError::Unavailable("no randomness for the draw's seed".into())
            })?;
            let mut first = [0u8; 8];
            first.copy_from_slice(&seed[..8]);
            let change = StateChange {
                opens_at: Some(opens_at),
                seed: Some(u64::from_be_bytes(first)),
                ..StateChange::plain(event.clone(), counters.state, EventState::Scheduled, now)
            };
            if !self.store.set_event_state(&change).await? {
                return refuse(
                    "the event has taken joins (or changed state) already: a pre-queue would go ahead of the people in its line"
                        .into(),
                );
            }
        }
        if let Some(capacity) = config.capacity {
            self.store.set_capacity(event, capacity).await?;
        }
        let settings = EventSettings {
            closes_at: config.closes_at,
            origin_url: config.origin_url.clone(),
            stay: config.stay,
            max_stay: config.max_stay,
            abandon_after: config.abandon_after,
            signed_joins: config.signed_joins,
            puzzle_difficulty: config.puzzle_difficulty,
        };
        if settings != EventSettings::default() {
            self.store.configure_event(event, &settings).await?;
        }
        self.report(event).await
    }

    /// Someone joined the event: admitted once, or waiting in a shard. (The
    /// store's condition on scheduling checks the join's own mark too.)
    async fn took_joins(
        &self,
        event: &EventId,
        counters: &EventCounters,
    ) -> Result<bool, ServiceError> {
        if counters.admitted > 0 || counters.active > 0 {
            return Ok(true);
        }
        for shard in 0..self.line_shards.max(1) {
            if !self.store.line_front(event, shard, 1).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn control(
        &self,
        event: &EventId,
        control_of: Control,
    ) -> Result<ControlOutcome, ServiceError> {
        control(
            &self.store,
            event,
            control_of,
            self.line_shards,
            self.clock.now(),
        )
        .await
    }

    /// Evict a session; with `block`, its user is first kept from joining
    /// the event again (so no rejoin slips in between).
    pub async fn evict(&self, id: &SessionId, block: bool) -> Result<EvictOutcome, ServiceError> {
        if block {
            let session = self
                .store
                .get_session(id)
                .await?
                .ok_or(ServiceError::SessionNotFound)?;
            self.store
                .block(&session.event_id, &session.user_id)
                .await?;
            tracing::info!(session = %id, event = %session.event_id, "user blocked from the event");
        }
        Ok(match self.commands.evict(id).await? {
            Ended::Now => EvictOutcome {
                session_id: id.to_string(),
                evicted: true,
                blocked: block,
                status: "LEFT",
            },
            Ended::Before(session) => EvictOutcome {
                session_id: id.to_string(),
                evicted: false,
                blocked: block,
                status: session.status().as_str(),
            },
        })
    }
}
