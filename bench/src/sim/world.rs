//! What the simulated AWS shares: virtual time, a seeded random source,
//! quotas, latencies, item locks of transactions in flight, the index lag of
//! the store model, counters of what happened, and what the run observes of
//! the line (who waits since when, who is active) independently of the
//! store's own counters.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use waiting_room::adapters::memory::StoreModel;
use waiting_room::domain::line::FAIRNESS_WINDOW;
use waiting_room::domain::{Clock, SessionId, Timestamp};
use waiting_room::ports::IdSource;

use super::quota::Quotas;

/// Attempts the SDK makes at a throttled call (its standard retry mode).
pub const SDK_ATTEMPTS: u32 = 3;

/// A small, seeded, reproducible random source (SplitMix64).
#[derive(Debug)]
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

    /// Uniform in `[0, bound)` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        self.next_u64() % bound
    }

    /// True with probability `per_mille / 1000`.
    pub fn per_mille(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < u64::from(per_mille)
    }
}

/// Measured call latencies of AWS from inside a region (typical p50s),
/// jittered by ±25 %.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    GetItem,
    BatchGetItem,
    Query,
    UpdateItem,
    Transaction { items: usize },
    SqsSend,
    SqsReceive,
    SqsDelete,
}

impl Call {
    fn base(self) -> Duration {
        match self {
            Call::GetItem => Duration::from_millis(4),
            Call::BatchGetItem => Duration::from_millis(5),
            Call::Query => Duration::from_millis(7),
            Call::UpdateItem => Duration::from_millis(6),
            Call::Transaction { items } => Duration::from_micros(12_000 + 500 * items as u64),
            Call::SqsSend | Call::SqsDelete => Duration::from_millis(8),
            Call::SqsReceive => Duration::from_millis(12),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub dynamodb_calls: u64,
    pub sqs_calls: u64,
    pub dynamodb_throttles: u64,
    pub sqs_throttles: u64,
    /// Conditional writes whose condition failed (optimistic concurrency:
    /// the writer reads again and plans again).
    pub transactions_conflicted: u64,
    /// Writes refused because a transaction in flight held one of their
    /// items (DynamoDB's `TransactionConflict`).
    pub transaction_contention: u64,
    /// Billed units of every DynamoDB call that went through, index
    /// maintenance included.
    pub write_units: f64,
    pub read_units: f64,
    /// Join message batches the granter could not finish (redelivered).
    pub failed_batches: u64,
    /// Granter instances that died holding a batch (queue or stream).
    pub granter_crashes: u64,
    /// Stream batches delivered again (a failed record or a crash).
    pub stream_retries: u64,
    /// Stream records given up after the mapping's retries (they would go
    /// to the stream's dead-letter queue; the reconciliation repairs).
    pub stream_records_dropped: u64,
    /// Advances that gave up (after stream records or join messages) and
    /// went to the event's wake-up group.
    pub wakes_handed_off: u64,
    /// Join queue messages moved to the dead-letter queue.
    pub dead_letters: u64,
    /// Reconciliations that admitted from a line no wake-up had served.
    pub reconcile_admitted: u64,
    /// Reconciliations that armed a hint no granter had armed.
    pub reconcile_armed: u64,
    pub max_active: u64,
    pub capacity_violations: u64,
    /// Sessions admitted a second time (must stay 0: exactly once).
    pub duplicate_admissions: u64,
    /// Admissions of someone who joined more than `FAIRNESS_WINDOW` after
    /// a session still waiting (must stay 0: the design's promise).
    pub fairness_violations: u64,
    /// The largest join-time lead of a still-waiting session over someone
    /// admitted (how close the run came to the fairness bound).
    pub largest_join_gap: Duration,
    /// The largest index lag the store model drew.
    pub max_index_lag: Duration,
    /// `line_front` answers of the line index replica checked against the
    /// store's own (debug builds), and how many differed.
    pub line_index_checks: u64,
    pub line_index_mismatches: u64,
    /// DynamoDB requests that went through, by port operation.
    pub operations: BTreeMap<&'static str, Tally>,
}

/// Requests of one store operation and the units they were billed.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    pub calls: u64,
    pub write_units: f64,
    pub read_units: f64,
    /// Conditional writes whose condition failed.
    #[serde(default)]
    pub conflicts: u64,
    /// Writes refused for an item held by a transaction in flight.
    #[serde(default)]
    pub contention: u64,
}

/// An admission as the store applied it.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub session: SessionId,
    pub admission_no: u64,
}

/// The line as the run sees it: every waiting session stored, by place.
#[derive(Debug, Default)]
pub struct Waiting {
    by_place: BTreeSet<(Timestamp, SessionId)>,
    joined: HashMap<SessionId, Timestamp>,
}

impl Waiting {
    pub fn insert(&mut self, id: &SessionId, joined_at: Timestamp) {
        if self.joined.insert(id.clone(), joined_at).is_none() {
            self.by_place.insert((joined_at, id.clone()));
        }
    }

    /// Takes the session out of line; its join time if it was waiting.
    pub fn remove(&mut self, id: &SessionId) -> Option<Timestamp> {
        let joined_at = self.joined.remove(id)?;
        self.by_place.remove(&(joined_at, id.clone()));
        Some(joined_at)
    }

    pub fn earliest(&self) -> Option<Timestamp> {
        self.by_place.first().map(|(at, _)| *at)
    }

    pub fn len(&self) -> usize {
        self.joined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }
}

pub struct WorldState {
    pub rng: Rng,
    pub quotas: Quotas,
    pub counters: Counters,
    /// Sessions active right now, counted from the admissions and exits
    /// the store applied, independently of the event's counter.
    pub active_sessions: HashSet<SessionId>,
    pub ever_admitted: HashSet<SessionId>,
    pub waiting: Waiting,
    /// Items held by transactions in flight (only while they are).
    pub locks: BTreeMap<String, u32>,
    /// When the changes the store made since the store last looked show in
    /// its indexes, as the store model drew them (for the line index
    /// replica).
    pub index_dues: Vec<Timestamp>,
}

impl WorldState {
    /// Admissions the store just applied (in one write): each is checked
    /// against the earliest session still waiting once they are out of line.
    pub fn record_admissions(&mut self, admitted: &[SessionId]) {
        let joined: Vec<Option<Timestamp>> =
            admitted.iter().map(|id| self.waiting.remove(id)).collect();
        let earliest = self.waiting.earliest();
        for (id, joined_at) in admitted.iter().zip(joined) {
            if !self.ever_admitted.insert(id.clone()) {
                self.counters.duplicate_admissions += 1;
            }
            self.active_sessions.insert(id.clone());
            let (Some(earliest), Some(joined_at)) = (earliest, joined_at) else {
                continue;
            };
            let gap = joined_at.since(earliest);
            self.counters.largest_join_gap = self.counters.largest_join_gap.max(gap);
            if gap > FAIRNESS_WINDOW {
                self.counters.fairness_violations += 1;
            }
        }
    }
}

pub struct World {
    state: Mutex<WorldState>,
    pub epoch: Timestamp,
    pub started: Instant,
    pub capacity: u64,
    /// The store model's index lag never exceeds this.
    pub max_index_lag: Duration,
    pub admitted: UnboundedSender<Admitted>,
}

impl World {
    pub fn new(
        seed: u64,
        capacity: u64,
        max_index_lag: Duration,
        admitted: UnboundedSender<Admitted>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(WorldState {
                rng: Rng::new(seed),
                quotas: Quotas::default(),
                counters: Counters::default(),
                active_sessions: HashSet::new(),
                ever_admitted: HashSet::new(),
                waiting: Waiting::default(),
                locks: BTreeMap::new(),
                index_dues: Vec::new(),
            }),
            epoch: Timestamp::from_millis(1_800_000_000_000),
            started: Instant::now(),
            capacity,
            max_index_lag,
            admitted,
        })
    }

    /// The SDK's pause before retrying a throttled call: exponential from
    /// 25 ms, with jitter.
    pub fn throttle_backoff(&self, attempt: u32) -> Duration {
        Duration::from_millis(25 << attempt).mul_f64(0.5 + self.state().rng.unit())
    }

    pub fn state(&self) -> MutexGuard<'_, WorldState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn latency(&self, call: Call) -> Duration {
        let factor = 0.75 + 0.5 * self.state().rng.unit();
        call.base().mul_f64(factor)
    }

    /// Waits a call's latency, then takes its quota or reports a throttle.
    pub async fn call(&self, call: Call, charges: &[(String, f64, f64)]) -> bool {
        tokio::time::sleep(self.latency(call)).await;
        self.state().quotas.take_all(charges, Instant::now())
    }

    pub fn now(&self) -> Timestamp {
        self.epoch.plus(Instant::now().duration_since(self.started))
    }

    /// How long a change takes to show in an index: usually tens of
    /// milliseconds, sometimes hundreds, rarely up to the model's maximum
    /// (which stays within `INDEX_LAG_ALLOWANCE`, what the design counts on).
    pub fn draw_index_lag(&self) -> Duration {
        let max = self.max_index_lag.as_secs_f64() * 1000.0;
        let mut state = self.state();
        let draw = state.rng.unit();
        let (low, high) = if draw < 0.97 {
            (10.0, 100.0)
        } else if draw < 0.999 {
            (100.0, 1000.0)
        } else {
            (1000.0, max)
        };
        let high = f64::min(high, max);
        let low = f64::min(low, high);
        let lag = Duration::from_secs_f64((low + (high - low) * state.rng.unit()) / 1000.0);
        state.counters.max_index_lag = state.counters.max_index_lag.max(lag);
        lag
    }
}

/// Virtual time as wall-clock time for the services.
pub struct SimClock(pub Arc<World>);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

/// The in-memory store's view of the world: its time, and how far its
/// indexes lag.
pub struct SimModel(pub Arc<World>);

impl StoreModel for SimModel {
    fn now(&self) -> Timestamp {
        self.0.now()
    }

    fn index_lag(&self) -> Duration {
        let lag = self.0.draw_index_lag();
        // The store makes the change visible at `now() + index_lag()`.
        let due = self.0.now().plus(lag);
        self.0.state().index_dues.push(due);
        lag
    }
}

/// Session ids from the seeded source, so a run is reproducible.
pub struct SeededIds(pub Arc<World>);

impl IdSource for SeededIds {
    fn random_id(&self) -> Option<[u8; 16]> {
        let mut state = self.0.state();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&state.rng.next_u64().to_le_bytes());
        id[8..].copy_from_slice(&state.rng.next_u64().to_le_bytes());
        Some(id)
    }
}
