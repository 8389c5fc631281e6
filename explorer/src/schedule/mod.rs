//! The seeded schedule explorer: the real services (join, status, granter
//! on both its sources, sweeper with the reconciliation, leave and
//! heartbeat, checkout outcomes, publisher) run against the in-memory AWS,
//! driven the way AWS drives them, with faults injected everywhere, in
//! virtual time from a seed. One seed is one schedule; the same seed gives
//! the same schedule, and a failure prints its seed and its trace.
//!
//! A schedule has an active phase (fans join, wait, get in, leave, buy;
//! operators change capacities; calls fail, crash, lose answers; indexes
//! lag; TTL deletes ended items) and a quiet phase (no more faults) long
//! enough for every retry, redelivery and reconciliation to happen. The
//! checker watches every write; at the end it checks what must hold once
//! quiet.

pub mod checks;
pub mod drivers;
pub mod gates;
pub mod scenario;
pub mod users;
pub mod world;

use std::sync::Arc;
use std::time::Duration;

use waiting_room::domain::SessionId;
use waiting_room::domain::token::AdmissionSigner;
use waiting_room::ports::JoinQueueMessage;

pub use self::checks::{Invariant, Violation};
pub use self::scenario::{Scenario, Switch};
use self::world::{World, lock};

/// How long the active phase may last at most (the fans' own scripts end
/// sooner).
const ACTIVE_PHASE: Duration = Duration::from_secs(30 * 60);
/// The quiet phase: longer than a visibility timeout, several sweeps and
/// reconciliations, stays and the abandonment limit.
const QUIET_PHASE: Duration = Duration::from_secs(20 * 60);

/// What one schedule came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: Scenario,
    pub violations: Vec<Violation>,
    pub trace: Vec<String>,
    pub admissions: u64,
    pub longest_strand: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn broke(&self, invariant: Invariant) -> bool {
        self.violations.iter().any(|v| v.invariant == invariant)
    }

    /// The seed, the set-up, what broke and the trace's last lines: enough
    /// to see what happened, and the seed to replay it.
    pub fn report(&self, trace_lines: usize) -> String {
        let mut out = format!(
            "schedule {}\nreplay: EXPLORER_SEED={} cargo test -p explorer --test schedules replay -- --ignored --nocapture\n",
            self.scenario.describe(),
            self.scenario.seed
        );
        for violation in &self.violations {
            out.push_str(&format!("  {violation}\n"));
        }
        let skip = self.trace.len().saturating_sub(trace_lines);
        out.push_str(&format!(
            "trace (last {} of {} lines):\n",
            self.trace.len() - skip,
            self.trace.len()
        ));
        for line in &self.trace[skip..] {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// Run the schedule of `seed` (with `switch` breaking a promise on purpose,
/// or `Switch::None`).
pub fn run(seed: u64, switch: Switch) -> Outcome {
    run_scenario(seed, Scenario::from_seed(seed, switch))
}

/// Run `scenario` (drawn from `seed`, perhaps changed since) on the world of
/// `seed`.
pub fn run_scenario(seed: u64, scenario: Scenario) -> Outcome {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return Outcome {
                violations: vec![Violation {
                    invariant: Invariant::Liveness,
                    at: waiting_room::domain::Timestamp::from_millis(0),
                    detail: format!("no runtime: {err}"),
                }],
                scenario,
                trace: Vec::new(),
                admissions: 0,
                longest_strand: Duration::ZERO,
            };
        }
    };
    runtime.block_on(schedule(seed, scenario))
}

async fn schedule(seed: u64, scenario: Scenario) -> Outcome {
    let world = World::new(seed, scenario.clone());
    world.note(scenario.describe());
    let signer = AdmissionSigner::generate("explorer", [7; 32]).ok();
    let mut background = Vec::new();
    for instance in 0..scenario.granters {
        background.push(tokio::spawn(drivers::join_queue_mapping(
            world.clone(),
            instance,
        )));
    }
    background.push(tokio::spawn(drivers::granter_stream(world.clone())));
    if let Some(signer) = signer.clone() {
        background.push(tokio::spawn(drivers::publisher_stream(
            world.clone(),
            signer,
        )));
    }
    for instance in 0..scenario.sweepers {
        background.push(tokio::spawn(drivers::sweeper_schedule(
            world.clone(),
            instance,
        )));
    }
    background.push(tokio::spawn(drivers::checkout_mapping(world.clone())));
    background.push(tokio::spawn(drivers::ttl(world.clone())));
    background.push(tokio::spawn(drivers::operator(world.clone())));

    let status = Arc::new(match &signer {
        Some(signer) => users::status_instances(&world, signer),
        None => Vec::new(),
    });
    let mut fans = Vec::new();
    let mut n = 0;
    for event in &scenario.events {
        for _ in 0..event.users {
            fans.push(tokio::spawn(users::fan(
                world.clone(),
                n,
                event.clone(),
                status.clone(),
            )));
            n += 1;
        }
    }
    let active = async {
        for fan in fans {
            let _ = fan.await;
        }
    };
    let _ = tokio::time::timeout(ACTIVE_PHASE, active).await;
    world.calm_down();
    // A second, small wave of fans once quiet: a freed slot must then be
    // filled within seconds, whatever any other event does.
    let late: Vec<usize> = scenario
        .events
        .iter()
        .map(|_| world.rng().between(1, 3) as usize)
        .collect();
    for (event, count) in scenario.events.iter().zip(late) {
        for _ in 0..count {
            tokio::spawn(users::fan(world.clone(), n, event.clone(), status.clone()));
            n += 1;
        }
    }
    tokio::time::sleep(QUIET_PHASE).await;
    for task in background {
        task.abort();
    }
    // The last writes, and the end-of-schedule checks.
    world.after_store_call(&world::Actor::Admin, "end");
    let dead_letters: Vec<SessionId> = world
        .join_queue
        .dead_letters()
        .iter()
        .filter_map(
            |body| match serde_json::from_str::<JoinQueueMessage>(body) {
                Ok(JoinQueueMessage::Joined(arrival)) => SessionId::parse(&arrival.session_id).ok(),
                _ => None,
            },
        )
        .collect();
    let published: Vec<(SessionId, &'static str)> = world
        .sink
        .published()
        .iter()
        .filter_map(|e| {
            Some((
                SessionId::parse(e.session_id.as_deref()?).ok()?,
                e.kind.name(),
            ))
        })
        .collect();
    let published_states: Vec<(String, String, &'static str)> = world
        .sink
        .published()
        .iter()
        .filter(|e| e.session_id.is_none())
        .map(|e| (e.event_id.clone(), e.id.clone(), e.kind.name()))
        .collect();
    let now = world.now();
    let mut checker = lock(&world.checker);
    checker.finish(now, &dead_letters, &published, &published_states);
    Outcome {
        scenario,
        violations: checker.violations.clone(),
        trace: world.trace(),
        admissions: checker.admissions,
        longest_strand: checker.longest_strand,
    }
}

/// Run `count` schedules from `first`, on `threads` threads; returns the
/// failed ones (at most `keep`) and how many ran.
pub fn explore(first: u64, count: u64, switch: Switch, threads: usize, keep: usize) -> Summary {
    let threads = threads.max(1) as u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut summary = Summary::default();
                let mut seed = first + t;
                while seed < first + count {
                    let outcome = run(seed, switch);
                    summary.add(outcome, keep);
                    seed += threads;
                }
                summary
            })
        })
        .collect();
    let mut total = Summary::default();
    for handle in handles {
        if let Ok(part) = handle.join() {
            total.merge(part, keep);
        }
    }
    total.failures.sort_by_key(|o| o.scenario.seed);
    total
}

#[derive(Debug, Default)]
pub struct Summary {
    pub schedules: u64,
    pub failed: u64,
    pub admissions: u64,
    pub longest_strand: Duration,
    pub failures: Vec<Outcome>,
    /// How many schedules broke each promise.
    pub by_invariant: std::collections::BTreeMap<String, u64>,
    /// The first seed that broke each promise.
    pub first_seed: std::collections::BTreeMap<String, u64>,
}

impl Summary {
    fn add(&mut self, outcome: Outcome, keep: usize) {
        self.schedules += 1;
        self.admissions += outcome.admissions;
        self.longest_strand = self.longest_strand.max(outcome.longest_strand);
        if outcome.passed() {
            return;
        }
        self.failed += 1;
        let mut kinds: Vec<String> = outcome
            .violations
            .iter()
            .map(|v| format!("{:?}", v.invariant))
            .collect();
        // Count each schedule once per promise it broke.
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            *self.by_invariant.entry(kind.clone()).or_default() += 1;
            let seed = self.first_seed.entry(kind).or_insert(outcome.scenario.seed);
            *seed = (*seed).min(outcome.scenario.seed);
        }
        if self.failures.len() < keep {
            self.failures.push(outcome);
        }
    }

    pub fn merge(&mut self, other: Summary, keep: usize) {
        self.schedules += other.schedules;
        self.failed += other.failed;
        self.admissions += other.admissions;
        self.longest_strand = self.longest_strand.max(other.longest_strand);
        for (kind, count) in other.by_invariant {
            *self.by_invariant.entry(kind).or_default() += count;
        }
        for (kind, seed) in other.first_seed {
            let entry = self.first_seed.entry(kind).or_insert(seed);
            *entry = (*entry).min(seed);
        }
        for failure in other.failures {
            if self.failures.len() < keep {
                self.failures.push(failure);
            }
        }
    }
}
