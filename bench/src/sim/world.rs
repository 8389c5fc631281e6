//! What the simulated AWS shares: virtual time, a seeded random source,
//! quotas, latencies, counters of what happened, and hooks into the run.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use waiting_room::domain::{Clock, EventId, SessionId, Timestamp};
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
    pub transactions_conflicted: u64,
    /// Join message batches the granter could not finish (redelivered).
    pub failed_batches: u64,
    pub max_active: u64,
    pub capacity_violations: u64,
    /// Sessions admitted a second time (must stay 0: exactly once).
    pub duplicate_admissions: u64,
}

/// An admission as the store applied it.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub session: SessionId,
    pub admission_no: u64,
}

pub struct WorldState {
    pub rng: Rng,
    pub quotas: Quotas,
    pub counters: Counters,
    /// Events whose slots were freed while people waited: what the table's
    /// stream would hand the granter.
    pub wake: BTreeSet<EventId>,
    /// Sessions active right now, counted from the admissions and exits
    /// the store applied, independently of the event's counter.
    pub active_sessions: HashSet<SessionId>,
    pub ever_admitted: HashSet<SessionId>,
}

pub struct World {
    state: Mutex<WorldState>,
    pub epoch: Timestamp,
    pub started: Instant,
    pub capacity: u64,
    pub admitted: UnboundedSender<Admitted>,
}

impl World {
    pub fn new(seed: u64, capacity: u64, admitted: UnboundedSender<Admitted>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(WorldState {
                rng: Rng::new(seed),
                quotas: Quotas::default(),
                counters: Counters::default(),
                wake: BTreeSet::new(),
                active_sessions: HashSet::new(),
                ever_admitted: HashSet::new(),
            }),
            epoch: Timestamp::from_millis(1_800_000_000_000),
            started: Instant::now(),
            capacity,
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
}

/// Virtual time as wall-clock time for the services.
pub struct SimClock(pub Arc<World>);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let elapsed = Instant::now().duration_since(self.0.started);
        self.0.epoch.plus(elapsed)
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
