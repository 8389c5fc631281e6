//! One schedule's set-up, drawn from its seed: how many events, users,
//! shards, granters and sweepers, how faulty the world is, and which test
//! switch (if any) breaks an invariant on purpose.

use std::time::Duration;

use waiting_room::domain::{Control, EventId};

use super::world::Rng;

/// How often each kind of fault hits a call (each a probability).
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultRates {
    pub crash: f64,
    pub unavailable: f64,
    pub contention: f64,
    pub lost_answer: f64,
}

#[derive(Debug, Clone)]
pub struct EventPlan {
    pub id: EventId,
    pub capacity: u32,
    pub users: usize,
    /// An operator changes the capacity at this time (from the start).
    pub capacity_change: Option<(Duration, u32)>,
    /// An operator pauses, resumes or closes the event at these times.
    pub controls: Vec<(Duration, Control)>,
    /// An operator evicts a live session of the event at these times.
    pub evictions: Vec<Duration>,
    /// Scheduled before anyone joins, to open at this time (from the
    /// start): who joins before it is in the pre-queue.
    pub opens_at: Option<Duration>,
}

/// Test-only switches, each breaking one promise on purpose, to show that
/// the checks turn red when it breaks (each names the promise it breaks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Switch {
    #[default]
    None,
    /// Capacity: admissions ignore the capacity their write is conditioned on.
    OverAdmit,
    /// Counter: a leave gives its slot back twice.
    DoubleRelease,
    /// ExactlyOnce: some admissions skip the sessions' own conditions.
    AdmitTwice,
    /// Fairness: the line index has its places the wrong way round.
    ReverseOrder,
    /// Position: polls read a shard's head from a stale copy.
    StaleHeads,
    /// Liveness: freed slots wake nobody (the stream drops them) and there
    /// is no reconciliation.
    NoWakeOnFreedSlot,
    /// NotLost: a poll sometimes deletes the waiting session it reads.
    DropWaiting,
    /// DeadLetter: the granter gives back the messages of a full event (and
    /// the queue moves them to its dead-letter queue after 3 receives).
    GiveBackWhenFull,
    /// Isolation: the stream handler stops at the first event that fails
    /// and the stream retries the batch forever, as the first design
    /// did; one event is poisoned.
    StopAtFirstFailure,
    /// Outbox: the topic loses some events.
    DropEvents,
    /// Stay: a heartbeat extends a stay that is over.
    ReviveStays,
    /// Paused: admissions ignore the pause their write is conditioned on.
    AdmitWhilePaused,
    /// Closed: joins never see that their event closed.
    IgnoreClose,
    /// Opening: granters miss the draw's settling time and admit as soon
    /// as the event opens.
    AdmitBeforeDraw,
    /// Not a broken promise: the system without its reconciliation, to see
    /// what the safety net catches.
    NoReconciliation,
}

impl Switch {
    pub const ALL: [Switch; 16] = [
        Switch::None,
        Switch::OverAdmit,
        Switch::DoubleRelease,
        Switch::AdmitTwice,
        Switch::ReverseOrder,
        Switch::StaleHeads,
        Switch::NoWakeOnFreedSlot,
        Switch::DropWaiting,
        Switch::GiveBackWhenFull,
        Switch::StopAtFirstFailure,
        Switch::DropEvents,
        Switch::ReviveStays,
        Switch::AdmitWhilePaused,
        Switch::IgnoreClose,
        Switch::AdmitBeforeDraw,
        Switch::NoReconciliation,
    ];

    /// By its name (`ReverseOrder`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| format!("{s:?}") == name)
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub events: Vec<EventPlan>,
    pub shards: u16,
    pub granters: usize,
    pub sweepers: usize,
    pub faults: FaultRates,
    /// Indexes lag up to this much behind the table.
    pub index_lag_max: Duration,
    /// A lag beyond the allowance: fairness is not promised then, but
    /// nobody may be lost or stranded.
    pub lag_storm: bool,
    /// An event whose granting always fails: the others must not notice.
    pub poisoned: Option<EventId>,
    pub switch: Switch,
    pub stay: Duration,
    pub max_stay: Duration,
    pub abandon_after: Duration,
    pub retention: Duration,
}

/// An operator's controls over one event: often a pause (mostly resumed
/// later), sometimes a close, at random points of the sale.
fn controls(rng: &mut Rng, switch: Switch) -> Vec<(Duration, Control)> {
    let mut controls = Vec::new();
    let pause = switch == Switch::AdmitWhilePaused || rng.chance(0.25);
    if pause {
        let at = rng.millis(0, 40_000);
        controls.push((at, Control::Pause));
        if switch != Switch::AdmitWhilePaused && rng.chance(0.8) {
            controls.push((at + rng.millis(1_000, 30_000), Control::Resume));
        }
    }
    if switch == Switch::IgnoreClose || rng.chance(0.15) {
        controls.push((rng.millis(2_000, 60_000), Control::Close));
    }
    controls.sort_by_key(|(at, _)| *at);
    controls
}

/// Some events are scheduled: they open a few seconds into the sale, and
/// sometimes an operator opens one by hand before its time.
fn schedule(rng: &mut Rng, switch: Switch, event: &mut EventPlan) {
    if switch != Switch::AdmitBeforeDraw && !rng.chance(0.25) {
        return;
    }
    let opens_at = rng.millis(3_000, 25_000);
    event.opens_at = Some(opens_at);
    if rng.chance(0.3) {
        let early = rng.millis(1_000, opens_at.as_millis() as u64);
        event.controls.push((early, Control::Open));
        event.controls.sort_by_key(|(at, _)| *at);
    }
}

impl Scenario {
    pub fn from_seed(seed: u64, switch: Switch) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let event_count = rng.between(1, 3) as usize;
        let events: Vec<EventPlan> = (0..event_count)
            .filter_map(|n| {
                let id = EventId::parse(&format!("E{n}")).ok()?;
                let capacity = rng.between(1, 4) as u32;
                let users = rng.between(2, 8) as usize;
                let capacity_change = rng
                    .chance(0.3)
                    .then(|| (rng.millis(5_000, 60_000), rng.between(0, 6) as u32));
                Some(EventPlan {
                    id,
                    capacity,
                    users,
                    capacity_change,
                    controls: Vec::new(),
                    evictions: Vec::new(),
                    opens_at: None,
                })
            })
            .collect();
        let calm = rng.chance(0.15);
        let faults = if calm {
            FaultRates::default()
        } else {
            FaultRates {
                crash: rng.unit() * 0.03,
                unavailable: rng.unit() * 0.03,
                contention: rng.unit() * 0.05,
                lost_answer: rng.unit() * 0.02,
            }
        };
        let lag_storm = rng.chance(0.05);
        let index_lag_max = if lag_storm {
            rng.millis(10_000, 60_000)
        } else {
            rng.millis(0, 3_000)
        };
        // The isolation switch needs an event that always fails, and another.
        let mut events = events;
        if switch == Switch::StopAtFirstFailure && events.len() < 2 {
            if let Ok(id) = EventId::parse("E9") {
                events.push(EventPlan {
                    id,
                    capacity: 2,
                    users: 3,
                    capacity_change: None,
                    controls: Vec::new(),
                    evictions: Vec::new(),
                    opens_at: None,
                });
            }
        }
        // Controls come from their own stream of draws, so every other part
        // of a seed's schedule is what it was before controls existed.
        let mut control_rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC0_47_01);
        for event in &mut events {
            event.controls = controls(&mut control_rng, switch);
            if control_rng.chance(0.2) {
                let count = control_rng.between(1, 2);
                event.evictions = (0..count)
                    .map(|_| control_rng.millis(2_000, 60_000))
                    .collect();
            }
        }
        // Scheduled openings from a third stream, for the same reason.
        let mut opening_rng = Rng::new(seed.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x0_9E_4E);
        for event in &mut events {
            schedule(&mut opening_rng, switch, event);
        }
        let poison = switch == Switch::StopAtFirstFailure || (events.len() > 1 && rng.chance(0.15));
        let poisoned = poison
            .then(|| events.first().map(|e| e.id.clone()))
            .flatten();
        Self {
            seed,
            shards: rng.between(1, 4) as u16,
            granters: rng.between(1, 3) as usize,
            sweepers: rng.between(1, 2) as usize,
            faults,
            index_lag_max,
            lag_storm,
            poisoned,
            switch,
            stay: rng.millis(20_000, 90_000),
            max_stay: Duration::from_secs(180),
            abandon_after: Duration::from_secs(60),
            retention: Duration::from_secs(300),
            events,
        }
    }

    /// The same schedule with no operator controls: how seeds found before
    /// controls existed replay as they were.
    pub fn without_controls(mut self) -> Self {
        for event in &mut self.events {
            event.controls.clear();
            event.evictions.clear();
            event.opens_at = None;
        }
        self
    }

    pub fn capacity_of(&self, event: &EventId) -> u32 {
        self.events
            .iter()
            .find(|e| &e.id == event)
            .map_or(0, |e| e.capacity)
    }

    pub fn describe(&self) -> String {
        let events: Vec<String> = self
            .events
            .iter()
            .map(|e| {
                let change = e
                    .capacity_change
                    .map(|(at, to)| format!(", capacity {to} at {:.1}s", at.as_secs_f64()))
                    .unwrap_or_default();
                let opens = e
                    .opens_at
                    .map(|at| format!(", opens at {:.1}s", at.as_secs_f64()))
                    .unwrap_or_default();
                let controls: String = e
                    .controls
                    .iter()
                    .map(|(at, c)| format!(", {} at {:.1}s", c.as_str(), at.as_secs_f64()))
                    .chain(
                        e.evictions
                            .iter()
                            .map(|at| format!(", evict at {:.1}s", at.as_secs_f64())),
                    )
                    .collect();
                format!(
                    "{} (capacity {}, {} users{opens}{change}{controls})",
                    e.id, e.capacity, e.users
                )
            })
            .collect();
        format!(
            "seed {}: {}; {} shard(s), {} granter(s), {} sweeper(s); faults crash {:.3} unavailable {:.3} contention {:.3} lost {:.3}; index lag ≤ {} ms{}{}; stay {} s{}",
            self.seed,
            events.join(", "),
            self.shards,
            self.granters,
            self.sweepers,
            self.faults.crash,
            self.faults.unavailable,
            self.faults.contention,
            self.faults.lost_answer,
            self.index_lag_max.as_millis(),
            if self.lag_storm { " (storm)" } else { "" },
            self.poisoned
                .as_ref()
                .map(|e| format!("; {e} poisoned"))
                .unwrap_or_default(),
            self.stay.as_secs(),
            if self.switch == Switch::None {
                String::new()
            } else {
                format!("; switch {:?}", self.switch)
            },
        )
    }
}
