//! What one schedule shares: virtual time, the seeded random source, the
//! in-memory AWS (store, queues, topic), the faults to inject, the trace,
//! and the checker that watches every write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use waiting_room::adapters::memory::{
    MemoryEventSink, MemoryQuarantine, MemoryQueue, MemoryStore, QueueBehaviour, StoreModel,
};
use waiting_room::domain::{Clock, EventId, Timestamp};

use super::checks::Checker;
use super::scenario::Scenario;

/// A small, seeded, reproducible random source (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `range` (inclusive).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        low + self.next_u64() % (high - low + 1)
    }

    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.between(low, high))
    }
}

/// Who is making a call: what the trace and the faults go by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Actor {
    User(usize),
    Status(usize),
    /// A granter instance fed by the join queue.
    Granter(usize),
    /// The granter instance fed by the table stream.
    StreamGranter,
    Sweeper(usize),
    Checkout,
    Publisher,
    Admin,
}

impl Actor {
    /// Calls of the granter's logic (where a poisoned event fails).
    pub fn grants(&self) -> bool {
        matches!(
            self,
            Actor::Granter(_) | Actor::StreamGranter | Actor::Sweeper(_)
        )
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::User(n) => write!(f, "user#{n}"),
            Actor::Status(n) => write!(f, "status#{n}"),
            Actor::Granter(n) => write!(f, "granter#{n}"),
            Actor::StreamGranter => write!(f, "stream-granter"),
            Actor::Sweeper(n) => write!(f, "sweeper#{n}"),
            Actor::Checkout => write!(f, "checkout"),
            Actor::Publisher => write!(f, "publisher"),
            Actor::Admin => write!(f, "admin"),
        }
    }
}

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The function dies before the call reaches AWS.
    CrashBefore,
    /// Throttled or unreachable: nothing happens, an error comes back.
    Unavailable,
    /// A DynamoDB transaction conflict: nothing happens.
    Contention,
    /// The call happens; the function dies before it sees the answer.
    CrashAfter,
    /// The call happens; its answer is lost (an error comes back).
    LostAnswer,
}

/// Virtual time and index lag, shared by the store and everything else.
pub struct TimeModel {
    pub start: Instant,
    pub epoch: Timestamp,
    lag_rng: Mutex<Rng>,
    /// The most an index may lag, in milliseconds (0 in the quiet phase).
    lag_max_ms: AtomicU64,
}

impl TimeModel {
    pub fn now(&self) -> Timestamp {
        self.epoch.plus(Instant::now().duration_since(self.start))
    }
}

impl StoreModel for TimeModel {
    fn now(&self) -> Timestamp {
        TimeModel::now(self)
    }

    fn index_lag(&self) -> Duration {
        let max = self.lag_max_ms.load(Ordering::SeqCst);
        let mut rng = lock(&self.lag_rng);
        rng.millis(0, max)
    }
}

/// The clock the services read: the world's virtual time.
#[derive(Clone)]
pub struct WorldClock(pub Arc<TimeModel>);

impl Clock for WorldClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub struct World {
    pub scenario: Scenario,
    pub time: Arc<TimeModel>,
    rng: Mutex<Rng>,
    pub store: Arc<MemoryStore>,
    pub join_queue: Arc<MemoryQueue>,
    pub checkout_queue: Arc<MemoryQueue>,
    pub join_quarantine: Arc<MemoryQuarantine>,
    pub checkout_quarantine: Arc<MemoryQuarantine>,
    pub stream_quarantine: Arc<MemoryQuarantine>,
    pub sink: Arc<MemoryEventSink>,
    faults_on: AtomicBool,
    trace: Mutex<Vec<String>>,
    pub checker: Mutex<Checker>,
}

/// The join queue's behaviour, as provisioned.
pub fn join_queue_behaviour() -> QueueBehaviour {
    QueueBehaviour::default()
}

impl World {
    pub fn new(seed: u64, scenario: Scenario) -> Arc<Self> {
        let time = Arc::new(TimeModel {
            start: Instant::now(),
            epoch: Timestamp::from_millis(1_800_000_000_000),
            lag_rng: Mutex::new(Rng::new(seed ^ 0x05EE_D1A6)),
            lag_max_ms: AtomicU64::new(scenario.index_lag_max.as_millis() as u64),
        });
        let clock: Arc<dyn Clock> = Arc::new(WorldClock(time.clone()));
        let checkout = QueueBehaviour {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
            ..QueueBehaviour::default()
        };
        let mut join = join_queue_behaviour();
        if scenario.switch == super::scenario::Switch::GiveBackWhenFull {
            join.max_receive_count = 3;
        }
        let store = MemoryStore::modelled(time.clone());
        if scenario.switch == super::scenario::Switch::AdmitWhilePaused {
            store.ignore_pause_for_tests();
        }
        Arc::new(Self {
            store: Arc::new(store),
            join_queue: Arc::new(MemoryQueue::timed(clock.clone(), join)),
            checkout_queue: Arc::new(MemoryQueue::timed(clock, checkout)),
            join_quarantine: Arc::default(),
            checkout_quarantine: Arc::default(),
            stream_quarantine: Arc::default(),
            sink: Arc::default(),
            faults_on: AtomicBool::new(true),
            trace: Mutex::new(Vec::new()),
            checker: Mutex::new(Checker::new(&scenario)),
            rng: Mutex::new(Rng::new(seed)),
            time,
            scenario,
        })
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(WorldClock(self.time.clone()))
    }

    pub fn now(&self) -> Timestamp {
        self.time.now()
    }

    pub fn rng(&self) -> MutexGuard<'_, Rng> {
        lock(&self.rng)
    }

    /// From now on: no faults, indexes current at once (the quiet phase).
    pub fn calm_down(&self) {
        self.faults_on.store(false, Ordering::SeqCst);
        self.time.lag_max_ms.store(0, Ordering::SeqCst);
        lock(&self.checker).quiet(self.now());
        self.note("— quiet: no more faults —".into());
    }

    pub fn faults_on(&self) -> bool {
        self.faults_on.load(Ordering::SeqCst)
    }

    /// A line of the trace, stamped with virtual time.
    pub fn note(&self, line: String) {
        let at = Instant::now().duration_since(self.time.start);
        lock(&self.trace).push(format!("[{:>9.3}s] {line}", at.as_secs_f64()));
    }

    pub fn trace(&self) -> Vec<String> {
        lock(&self.trace).clone()
    }

    /// What happens to `actor`'s call `op` (about `event`, if known).
    pub fn fault_for(
        &self,
        actor: &Actor,
        op: &str,
        event: Option<&EventId>,
        transactional: bool,
    ) -> Fault {
        if actor.grants() && event.is_some() && event == self.scenario.poisoned.as_ref() {
            return Fault::Unavailable;
        }
        if !self.faults_on() {
            return Fault::None;
        }
        let rates = &self.scenario.faults;
        let mut rng = self.rng();
        let roll = rng.unit();
        let mut edge = rates.crash / 2.0;
        if roll < edge {
            return Fault::CrashBefore;
        }
        edge += rates.unavailable;
        if roll < edge {
            return Fault::Unavailable;
        }
        if transactional {
            edge += rates.contention;
            if roll < edge {
                return Fault::Contention;
            }
        }
        edge += rates.crash / 2.0;
        if roll < edge {
            return Fault::CrashAfter;
        }
        edge += rates.lost_answer;
        if roll < edge && op != "receive" {
            return Fault::LostAnswer;
        }
        Fault::None
    }

    /// How long one AWS call takes.
    pub fn latency(&self) -> Duration {
        self.rng().millis(1, 25)
    }

    /// After every call that reached the store: the checker reads the new
    /// stream records and checks every invariant at this boundary.
    pub fn after_store_call(&self, actor: &Actor, op: &str) {
        let records = {
            let mut checker = lock(&self.checker);
            let (records, next) = self.store.stream_since(checker.position);
            checker.position = next;
            records
        };
        let now = self.now();
        let (found, notes) = {
            let mut checker = lock(&self.checker);
            let found = checker.observe(&records, now, actor, op);
            (found, std::mem::take(&mut checker.notes))
        };
        for note in notes {
            self.note(note);
        }
        for violation in found {
            self.note(format!("VIOLATION {violation}"));
        }
    }

    pub fn stream_since(
        &self,
        position: usize,
    ) -> (Vec<waiting_room::domain::StreamRecord>, usize) {
        self.store.stream_since(position)
    }
}
