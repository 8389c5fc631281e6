//! The promises, as code. The checker reads the store's stream after every
//! call (so it sees every write, in order, whoever made it) and checks, at
//! each call's boundary: hard capacity, counters equal to the sessions,
//! exactly-once admission, the fairness bound. At the end of a schedule,
//! once it is quiet: nobody stranded while a slot is free, nobody lost,
//! nobody waiting in a dead-letter queue, every change published.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use waiting_room::domain::line::FAIRNESS_WINDOW;
use waiting_room::domain::{
    Change, EventCounters, EventId, EventState, Session, SessionId, SessionStatus, StreamRecord,
    Timestamp,
};
use waiting_room::service::join::STATE_READ_EVERY;

use super::scenario::Scenario;
use super::world::Actor;

/// The promise a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// 1: never more ACTIVE than capacity.
    Capacity,
    /// 2: the slot counter equals the ACTIVE sessions; every exit gives the
    /// slot back exactly once.
    Counter,
    /// 3: nobody admitted twice.
    ExactlyOnce,
    /// 4: nobody admitted after someone who joined more than the window later.
    Fairness,
    /// The position a user is shown never goes up.
    Position,
    /// 5: once quiet, nobody waits while a slot is free.
    Liveness,
    /// 5: a join answered 202 ends admitted, waiting, or ended by a rule.
    NotLost,
    /// 5: no waiting user's message in a dead-letter queue.
    DeadLetter,
    /// 6: an event stays stranded (someone waits, a slot is free) no
    /// longer than the bound, whatever another event does.
    Isolation,
    /// Every change of a session published, in order.
    Outbox,
    /// A stay that is over is never extended.
    Stay,
    /// Nobody is admitted while their event is paused.
    Paused,
    /// A join that starts `STATE_READ_EVERY` after its event closed is
    /// refused.
    Closed,
    /// Nobody is admitted before their event's opening has settled (the
    /// whole pre-queue is in the draw before its front goes in).
    Opening,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub at: Timestamp,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.invariant, self.detail)
    }
}

/// The longest an event may stay stranded (someone waits, a slot is free)
/// once faults stop: a freed slot wakes a granter through the stream, and
/// every wake-up is retried within seconds. (While faults last, anything
/// may be delayed; the reconciliation, every minute, catches what every
/// wake-up missed. During an index lag storm the line can be invisible for
/// longer, so the bound is not applied.)
pub const STRAND_BOUND: Duration = Duration::from_secs(15);

/// A line stranded when the faults stopped may wait for what those faults
/// left behind — a batch a dead granter held (the visibility timeout), a
/// sweeper that hung (its timeout, then the next minute) — but no longer.
pub const CARRIED_OVER_BOUND: Duration = Duration::from_secs(150);

#[derive(Debug, Clone)]
struct Tracked {
    session: Session,
    ever_admitted: bool,
}

pub struct Checker {
    /// Where the checker is in the store's stream.
    pub position: usize,
    sessions: BTreeMap<SessionId, Tracked>,
    counters: BTreeMap<EventId, EventCounters>,
    ever_admitted: BTreeMap<EventId, BTreeSet<SessionId>>,
    admission_numbers: BTreeMap<EventId, BTreeSet<u64>>,
    latest_admitted_join: BTreeMap<EventId, Timestamp>,
    active_before: BTreeMap<EventId, u64>,
    stuck_since: BTreeMap<EventId, Timestamp>,
    /// The longest strand that began once quiet.
    pub longest_strand: Duration,
    /// The longest a strand that began before the quiet lasted into it.
    pub longest_carried_over: Duration,
    /// Sessions a join answered for (the user was told they are in line).
    accepted: BTreeSet<SessionId>,
    /// Sessions deleted while waiting or active (a join taken back).
    deleted_live: BTreeSet<SessionId>,
    /// Each session's changes, for the outbox check: numbered or admitted
    /// (`QUEUE_JOINED`), admitted (`QUEUE_READY`), ended (its event).
    expected_events: BTreeMap<SessionId, Vec<&'static str>>,
    positions: BTreeMap<SessionId, u64>,
    pub violations: Vec<Violation>,
    /// Lines for the trace (strands that start and end).
    pub notes: Vec<String>,
    /// Strands are bounded once the schedule is quiet (faults can delay
    /// anything while they last; nothing may stay stuck once they stop).
    quiet_since: Option<Timestamp>,
    fairness_applies: bool,
    poisoned: Option<EventId>,
    default_capacity: BTreeMap<EventId, u32>,
    pub admissions: u64,
    /// Sessions admitted by the call being observed.
    admitted_now: Vec<Session>,
    /// When each closed event's close was written.
    closed_at: BTreeMap<EventId, Timestamp>,
    /// Each event's changes of state, as the events they must publish.
    expected_state_events: BTreeMap<EventId, Vec<&'static str>>,
}

impl Checker {
    pub fn new(scenario: &Scenario) -> Self {
        Self {
            position: 0,
            sessions: BTreeMap::new(),
            counters: BTreeMap::new(),
            ever_admitted: BTreeMap::new(),
            admission_numbers: BTreeMap::new(),
            latest_admitted_join: BTreeMap::new(),
            active_before: BTreeMap::new(),
            stuck_since: BTreeMap::new(),
            longest_strand: Duration::ZERO,
            longest_carried_over: Duration::ZERO,
            accepted: BTreeSet::new(),
            deleted_live: BTreeSet::new(),
            expected_events: BTreeMap::new(),
            positions: BTreeMap::new(),
            violations: Vec::new(),
            notes: Vec::new(),
            quiet_since: None,
            fairness_applies: !scenario.lag_storm,
            poisoned: scenario.poisoned.clone(),
            default_capacity: scenario
                .events
                .iter()
                .map(|e| (e.id.clone(), e.capacity))
                .collect(),
            admissions: 0,
            admitted_now: Vec::new(),
            closed_at: BTreeMap::new(),
            expected_state_events: BTreeMap::new(),
        }
    }

    fn violate(&mut self, invariant: Invariant, at: Timestamp, detail: String) -> String {
        let violation = Violation {
            invariant,
            at,
            detail,
        };
        let text = violation.to_string();
        self.violations.push(violation);
        text
    }

    /// Read the records one call wrote and check the invariants at its end.
    pub fn observe(
        &mut self,
        records: &[StreamRecord],
        now: Timestamp,
        actor: &Actor,
        op: &str,
    ) -> Vec<String> {
        let mut found = Vec::new();
        for record in records {
            let Ok(change) = &record.change else { continue };
            match change {
                Change::Session { old, new } => {
                    found.extend(self.session_changed(
                        old.as_deref(),
                        new.as_deref(),
                        now,
                        actor,
                        op,
                    ));
                }
                Change::Counters {
                    event_id,
                    before,
                    after,
                } => {
                    let early = before.state == EventState::Scheduled
                        || after.admits_from.is_some_and(|from| now < from);
                    if early && after.admitted > before.admitted {
                        found.push(self.violate(
                            Invariant::Opening,
                            now,
                            format!(
                                "{event_id}: {} admitted before its draw settled ({actor} {op})",
                                after.admitted - before.admitted
                            ),
                        ));
                    }
                    if before.state == EventState::Paused && after.admitted > before.admitted {
                        found.push(self.violate(
                            Invariant::Paused,
                            now,
                            format!(
                                "{event_id}: {} admitted while paused ({actor} {op})",
                                after.admitted - before.admitted
                            ),
                        ));
                    }
                    if after.state == EventState::Closed {
                        self.closed_at.entry(event_id.clone()).or_insert(now);
                    }
                    self.counters.insert(event_id.clone(), (**after).clone());
                }
                Change::StateChanged(change) => {
                    let name = match (change.from, change.to) {
                        (_, EventState::Scheduled) => "EVENT_SCHEDULED",
                        (EventState::Scheduled, _) => "EVENT_OPENED",
                        (_, EventState::Open) => "EVENT_RESUMED",
                        (_, EventState::Paused) => "EVENT_PAUSED",
                        (_, EventState::Closed) => "EVENT_CLOSED",
                    };
                    self.expected_state_events
                        .entry(change.event_id.clone())
                        .or_default()
                        .push(name);
                }
                Change::Other => {}
            }
        }
        found.extend(self.at_boundary(now, actor, op));
        found
    }

    fn session_changed(
        &mut self,
        old: Option<&Session>,
        new: Option<&Session>,
        now: Timestamp,
        actor: &Actor,
        op: &str,
    ) -> Vec<String> {
        let mut found = Vec::new();
        let Some(new) = new else {
            if let Some(old) = old {
                if !old.status().is_ended() {
                    self.deleted_live.insert(old.id.clone());
                }
                if old.status() == SessionStatus::Active {
                    found.push(self.violate(
                        Invariant::Counter,
                        now,
                        format!("{} vanished while ACTIVE ({actor} {op})", old.id),
                    ));
                }
                self.sessions.remove(&old.id);
            }
            return found;
        };
        let event = new.event_id.clone();
        let was = old.map(|o| o.status());
        // Places, not join times: a pre-queue's place is its draw's.
        let placed = new.place().joined_at;
        if old.is_none() && new.status() == SessionStatus::Waiting && self.fairness_applies {
            if let Some(latest) = self.latest_admitted_join.get(&event) {
                if *latest > placed.plus(FAIRNESS_WINDOW) {
                    found.push(self.violate(
                        Invariant::Fairness,
                        now,
                        format!(
                            "{} placed at {} but was written after someone placed {} ms later was admitted",
                            new.id,
                            placed.as_millis(),
                            latest.as_millis() - placed.as_millis()
                        ),
                    ));
                }
            }
        }
        let events = self.expected_events.entry(new.id.clone()).or_default();
        let numbered_now = new.ticket.is_some() && old.is_some_and(|o| o.ticket.is_none());
        if (numbered_now
            && new.status() == SessionStatus::Waiting
            && !events.contains(&"QUEUE_JOINED"))
            || (new.status() == SessionStatus::Active && !events.contains(&"QUEUE_JOINED"))
        {
            events.push("QUEUE_JOINED");
        }
        if new.status() == SessionStatus::Active && was != Some(SessionStatus::Active) {
            events.push("QUEUE_READY");
            found.extend(self.admitted(new, now, actor, op));
        }
        if new.status().is_ended() && was != Some(new.status()) {
            let kind = match new.ending().map(|e| e.reason) {
                Some(waiting_room::domain::EndReason::CheckoutCompleted) => "CHECKOUT_COMPLETED",
                Some(waiting_room::domain::EndReason::CheckoutFailed) => "CHECKOUT_FAILED",
                Some(waiting_room::domain::EndReason::CheckoutExpired) => "CHECKOUT_EXPIRED",
                _ => "QUEUE_LEFT",
            };
            if let Some(events) = self.expected_events.get_mut(&new.id) {
                events.push(kind);
            }
        }
        let ever_admitted = self.sessions.get(&new.id).is_some_and(|t| t.ever_admitted)
            || new.status() == SessionStatus::Active;
        self.sessions.insert(
            new.id.clone(),
            Tracked {
                session: new.clone(),
                ever_admitted,
            },
        );
        found
    }

    fn admitted(&mut self, new: &Session, now: Timestamp, actor: &Actor, op: &str) -> Vec<String> {
        let mut found = Vec::new();
        let event = new.event_id.clone();
        self.admissions += 1;
        if !self
            .ever_admitted
            .entry(event.clone())
            .or_default()
            .insert(new.id.clone())
        {
            found.push(self.violate(
                Invariant::ExactlyOnce,
                now,
                format!("{} admitted a second time ({actor} {op})", new.id),
            ));
        }
        if let Some(admission) = new.admission() {
            if !self
                .admission_numbers
                .entry(event.clone())
                .or_default()
                .insert(admission.admission_no)
            {
                found.push(self.violate(
                    Invariant::ExactlyOnce,
                    now,
                    format!(
                        "admission number {} given twice ({})",
                        admission.admission_no, new.id
                    ),
                ));
            }
        }
        self.admitted_now.push(new.clone());
        let latest = self.latest_admitted_join.entry(event).or_default();
        *latest = (*latest).max(new.place().joined_at);
        found
    }

    /// Fairness, at the end of the write that admitted: whoever the same
    /// write abandoned (silent too long) is not waiting any more.
    fn overtakes(&mut self, new: &Session, now: Timestamp, actor: &Actor, op: &str) -> Vec<String> {
        let mut found = Vec::new();
        let event = new.event_id.clone();
        if self.fairness_applies {
            let placed = new.place().joined_at;
            let overtaken: Vec<(SessionId, Timestamp)> = self
                .sessions
                .values()
                .filter(|t| {
                    t.session.event_id == event && t.session.status() == SessionStatus::Waiting
                })
                .filter(|t| t.session.id != new.id)
                .filter(|t| placed > t.session.place().joined_at.plus(FAIRNESS_WINDOW))
                .map(|t| (t.session.id.clone(), t.session.place().joined_at))
                .collect();
            for (id, earlier) in overtaken {
                found.push(self.violate(
                    Invariant::Fairness,
                    now,
                    format!(
                        "{} (placed {}) admitted while {id} (placed {} ms earlier) waits ({actor} {op})",
                        new.id,
                        placed.as_millis(),
                        placed.as_millis() - earlier.as_millis()
                    ),
                ));
            }
        }
        found
    }

    fn capacity(&self, event: &EventId) -> u64 {
        let stored = self.counters.get(event).and_then(|c| c.capacity);
        u64::from(stored.unwrap_or_else(|| self.default_capacity.get(event).copied().unwrap_or(0)))
    }

    fn counts(&self, event: &EventId) -> (u64, u64) {
        let mut active = 0;
        let mut waiting = 0;
        for tracked in self
            .sessions
            .values()
            .filter(|t| &t.session.event_id == event)
        {
            match tracked.session.status() {
                SessionStatus::Active => active += 1,
                SessionStatus::Waiting => waiting += 1,
                _ => {}
            }
        }
        (active, waiting)
    }

    fn events(&self) -> BTreeSet<EventId> {
        self.default_capacity
            .keys()
            .cloned()
            .chain(self.counters.keys().cloned())
            .collect()
    }

    fn at_boundary(&mut self, now: Timestamp, actor: &Actor, op: &str) -> Vec<String> {
        let mut found = Vec::new();
        for admitted in std::mem::take(&mut self.admitted_now) {
            found.extend(self.overtakes(&admitted, now, actor, op));
        }
        for event in self.events() {
            let (active, waiting) = self.counts(&event);
            let capacity = self.capacity(&event);
            let before = self
                .active_before
                .insert(event.clone(), active)
                .unwrap_or(0);
            if active > before && active > capacity {
                found.push(self.violate(
                    Invariant::Capacity,
                    now,
                    format!("{event}: {active} ACTIVE, capacity {capacity} ({actor} {op})"),
                ));
            }
            if let Some((stored_active, stored_admitted)) =
                self.counters.get(&event).map(|c| (c.active, c.admitted))
            {
                if stored_active != active {
                    let stored = stored_active;
                    found.push(self.violate(
                        Invariant::Counter,
                        now,
                        format!("{event}: counter says {stored} active, {active} sessions are ({actor} {op})"),
                    ));
                }
                let admitted = self.ever_admitted.get(&event).map_or(0, BTreeSet::len) as u64;
                if stored_admitted != admitted {
                    let stored = stored_admitted;
                    found.push(self.violate(
                        Invariant::Counter,
                        now,
                        format!("{event}: counter says {stored} admitted, {admitted} sessions were ({actor} {op})"),
                    ));
                }
            }
            if Some(&event) == self.poisoned.as_ref() {
                continue;
            }
            if capacity > active && waiting > 0 && !self.holds_line(&event, now) {
                let since = *self.stuck_since.entry(event.clone()).or_insert_with(|| {
                    self.notes.push(format!(
                        "{event} stranded: {waiting} waiting, {} free",
                        capacity - active
                    ));
                    now
                });
                if let (Some(quiet), true) = (self.quiet_since, self.fairness_applies) {
                    let strand = now.since(since.max(quiet));
                    if since >= quiet {
                        self.longest_strand = self.longest_strand.max(strand);
                    } else {
                        self.longest_carried_over = self.longest_carried_over.max(strand);
                    }
                }
            } else if let Some(since) = self.stuck_since.remove(&event) {
                self.notes.push(format!(
                    "{event} no longer stranded after {:.1} s",
                    now.since(since).as_secs_f64()
                ));
            }
        }
        found
    }

    /// The schedule is quiet from `now`: strands count from here.
    pub fn quiet(&mut self, now: Timestamp) {
        self.quiet_since = Some(now);
    }

    /// A join answered for this session: the user holds a place.
    pub fn accepted(&mut self, id: &SessionId) {
        self.accepted.insert(id.clone());
    }

    /// A poll showed `position`; it may never be higher than the last.
    pub fn position_seen(
        &mut self,
        id: &SessionId,
        position: u64,
        now: Timestamp,
    ) -> Option<String> {
        let last = self.positions.insert(id.clone(), position);
        match last {
            Some(last) if position > last => Some(self.violate(
                Invariant::Position,
                now,
                format!("{id} was shown position {last}, then {position}"),
            )),
            _ => None,
        }
    }

    /// A join that started at `started` took a place in `event`: refused it
    /// must have been, had the event closed `STATE_READ_EVERY` before.
    pub fn joined(
        &mut self,
        event: &EventId,
        started: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let closed = *self.closed_at.get(event)?;
        (started >= closed.plus(STATE_READ_EVERY)).then(|| {
            self.violate(
                Invariant::Closed,
                now,
                format!(
                    "a join of {event} that started {:.1} s after it closed took a place",
                    started.since(closed).as_secs_f64()
                ),
            )
        })
    }

    /// Paused events hold their free slots on purpose, and so do events
    /// before their opening has settled: not stranded. (A scheduled event
    /// nobody opened once its time has settled is.)
    fn holds_line(&self, event: &EventId, now: Timestamp) -> bool {
        self.counters
            .get(event)
            .is_some_and(|c| c.state == EventState::Paused || c.held_until(now).is_some())
    }

    /// A heartbeat extended a stay that was over.
    pub fn stay_revived(&mut self, detail: String, now: Timestamp) -> String {
        self.violate(Invariant::Stay, now, detail)
    }

    /// Once quiet: the end-of-schedule promises.
    pub fn finish(
        &mut self,
        now: Timestamp,
        dead_letters: &[SessionId],
        published: &[(SessionId, &'static str)],
        published_states: &[(String, String, &'static str)],
    ) {
        for event in self.events() {
            if Some(&event) == self.poisoned.as_ref() {
                continue;
            }
            let (active, waiting) = self.counts(&event);
            let capacity = self.capacity(&event);
            if capacity > active && waiting > 0 && !self.holds_line(&event, now) {
                self.violate(
                    Invariant::Liveness,
                    now,
                    format!(
                        "{event}: {waiting} waiting, {} slot(s) free, and all is quiet",
                        capacity - active
                    ),
                );
            }
        }
        if self.longest_strand > STRAND_BOUND {
            let longest = self.longest_strand;
            self.violate(
                Invariant::Isolation,
                now,
                format!("once quiet, an event stayed {:.1} s with someone waiting and a slot free (bound {} s)", longest.as_secs_f64(), STRAND_BOUND.as_secs()),
            );
        }
        if self.longest_carried_over > CARRIED_OVER_BOUND {
            let longest = self.longest_carried_over;
            self.violate(
                Invariant::Isolation,
                now,
                format!("an event stranded when the faults stopped stayed so {:.1} s longer (bound {} s)", longest.as_secs_f64(), CARRIED_OVER_BOUND.as_secs()),
            );
        }
        let lost: Vec<SessionId> = self
            .accepted
            .iter()
            .filter(|id| {
                self.deleted_live.contains(*id)
                    || (!self.sessions.contains_key(*id) && !self.expected_events.contains_key(*id))
            })
            .cloned()
            .collect();
        for id in lost {
            self.violate(
                Invariant::NotLost,
                now,
                format!("{id} was answered 202 and vanished without ending"),
            );
        }
        for id in dead_letters {
            let waiting = self
                .sessions
                .get(id)
                .is_some_and(|t| t.session.status() == SessionStatus::Waiting);
            if waiting {
                self.violate(
                    Invariant::DeadLetter,
                    now,
                    format!("{id} waits and its join message is in the dead-letter queue"),
                );
            }
        }
        let mut seen: BTreeMap<&SessionId, Vec<&str>> = BTreeMap::new();
        for (id, kind) in published {
            let kinds = seen.entry(id).or_default();
            if !kinds.contains(kind) {
                kinds.push(kind);
            }
        }
        let missing: Vec<String> = self
            .expected_events
            .iter()
            .filter(|(id, _)| self.poisoned.as_ref() != Some(&id.event_id()))
            .filter_map(|(id, expected)| {
                let got = seen.get(id).cloned().unwrap_or_default();
                (got.as_slice() != expected.as_slice())
                    .then(|| format!("{id}: expected {expected:?}, published {got:?}"))
            })
            .collect();
        for problem in missing {
            self.violate(Invariant::Outbox, now, problem);
        }
        // Changes of an event's state: each published once (by id), in order.
        let mut seen_ids = BTreeSet::new();
        let mut got: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (event, id, kind) in published_states {
            if seen_ids.insert(id) {
                got.entry(event.as_str()).or_default().push(kind);
            }
        }
        let missing: Vec<String> = self
            .expected_state_events
            .iter()
            .filter_map(|(event, expected)| {
                let got = got.get(event.as_str()).cloned().unwrap_or_default();
                (got.as_slice() != expected.as_slice())
                    .then(|| format!("{event}: expected {expected:?}, published {got:?}"))
            })
            .collect();
        for problem in missing {
            self.violate(Invariant::Outbox, now, problem);
        }
    }
}
