//! A deterministic simulator of one on-sale: the real join service and
//! granter (from `shared/`) against DynamoDB and SQS models that enforce the
//! AWS limits which break naive designs (per-partition write capacity, per
//! message group throughput), in virtual time from a seed.
//!
//! Users join at a fixed rate, are admitted as capacity allows, stay a while
//! (exponentially distributed) and leave; freed slots reach the granter as
//! the table's stream would. The report says whether anyone was lost, whether
//! capacity ever went over, how fair the order was (Kendall tau-b between
//! join order and admission order) and what was throttled.

pub mod queue;
pub mod quota;
pub mod stats;
pub mod store;
pub mod world;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

use tokio::sync::mpsc;
use tokio::time::Instant;
use waiting_room::adapters::memory::MemoryStore;
use waiting_room::domain::admission::AdmissionPolicy;
use waiting_room::domain::{EventId, SessionId, StayPolicy, UserId};
use waiting_room::ports::{Delivery, QueueConsumer, SessionStore};
use waiting_room::service::granter::Granter;
use waiting_room::service::join::JoinService;
use waiting_room::service::session_command::SessionCommands;

use self::queue::SimQueue;
use self::store::SimStore;
use self::world::{Admitted, Counters, SeededIds, SimClock, World};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimConfig {
    pub users: u64,
    pub joins_per_second: u64,
    pub capacity: u32,
    pub line_shards: u16,
    pub seed: u64,
    /// Mean time an admitted user spends in checkout before leaving.
    pub mean_stay_seconds: u64,
    /// Concurrent granter instances (Lambda runs one batch per message group).
    pub granters: usize,
    /// How long a freed slot takes to reach the granter through the stream.
    pub stream_delay_millis: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SimReport {
    pub config: SimConfig,
    pub joins_accepted: u64,
    pub join_retries: u64,
    pub joins_per_second: f64,
    pub admitted: u64,
    pub admits_per_second: f64,
    pub peak_admits_per_second: u64,
    pub lost: u64,
    pub kendall_tau_b: f64,
    pub largest_overtake: u64,
    pub max_active: u64,
    pub capacity_violations: u64,
    #[serde(default)]
    pub duplicate_admissions: u64,
    pub dynamodb_throttles: u64,
    pub sqs_throttles: u64,
    pub conflicts: u64,
    pub failed_batches: u64,
    pub dynamodb_calls: u64,
    pub sqs_calls: u64,
    pub virtual_seconds: f64,
    pub wall_seconds: f64,
}

#[derive(Default)]
struct Recorder {
    /// Order in which joins were accepted (the 202 answers).
    join_rank: HashMap<SessionId, u64>,
    first_accept: Option<Instant>,
    last_accept: Option<Instant>,
    retries: u64,
    failed_users: u64,
    admissions: Vec<(u64, SessionId, Instant)>,
    left: u64,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(shared: &Shared<T>) -> std::sync::MutexGuard<'_, T> {
    match shared.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub fn run(config: SimConfig) -> std::io::Result<SimReport> {
    let event = EventId::parse("onsale").map_err(std::io::Error::other)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    Ok(runtime.block_on(simulate(config, event)))
}

/// Virtual time after which a run is declared stuck.
const VIRTUAL_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

async fn simulate(config: SimConfig, event: EventId) -> SimReport {
    let wall = WallInstant::now();
    let (admitted_tx, admitted_rx) = mpsc::unbounded_channel();
    let world = World::new(config.seed, u64::from(config.capacity), admitted_tx);
    let store = Arc::new(SimStore {
        inner: MemoryStore::new(),
        world: world.clone(),
    });
    let queue = Arc::new(SimQueue::new(world.clone()));
    let _ = store.inner.set_capacity(&event, config.capacity).await;
    let recorder: Shared<Recorder> = Arc::default();
    let mut tasks = Vec::new();

    for _ in 0..config.granters.max(1) {
        tasks.push(tokio::spawn(grant(
            granter(&store, &world, &config),
            queue.clone(),
            world.clone(),
        )));
    }
    tasks.push(tokio::spawn(wake_on_freed_slots(
        granter(&store, &world, &config),
        store.clone(),
        Duration::from_millis(config.stream_delay_millis),
    )));
    tasks.push(tokio::spawn(checkouts(
        admitted_rx,
        store.clone(),
        world.clone(),
        recorder.clone(),
        config.mean_stay_seconds,
    )));

    let join = Arc::new(JoinService {
        store: store.clone(),
        queue: queue.clone(),
        clock: Arc::new(SimClock(world.clone())),
        ids: Arc::new(SeededIds(world.clone())),
        line_shards: config.line_shards,
    });
    let start = Instant::now();
    let spacing = Duration::from_secs(1).div_f64(config.joins_per_second.max(1) as f64);
    for n in 0..config.users {
        tokio::time::sleep_until(start + spacing.mul_f64(n as f64)).await;
        tokio::spawn(join_with_retries(
            join.clone(),
            event.clone(),
            n,
            world.clone(),
            recorder.clone(),
        ));
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let recorder = lock(&recorder);
        let settled = recorder.join_rank.len() as u64 + recorder.failed_users;
        if settled == config.users && recorder.left == recorder.join_rank.len() as u64 {
            break;
        }
        if start.elapsed() > VIRTUAL_DEADLINE {
            break;
        }
    }
    for task in tasks {
        task.abort();
    }
    report(
        config,
        &lock(&recorder),
        &world.state().counters,
        start.elapsed(),
        wall.elapsed(),
    )
}

fn granter(
    store: &Arc<SimStore>,
    world: &Arc<World>,
    config: &SimConfig,
) -> Granter<Arc<SimStore>> {
    Granter {
        store: store.clone(),
        clock: Arc::new(SimClock(world.clone())),
        policy: AdmissionPolicy {
            default_capacity: config.capacity,
            active_stay: Duration::from_secs(3600),
            // Simulated users keep polling: nobody is abandoned.
            abandon_after: None,
            max_changes_per_write: waiting_room::wiring::ADMISSIONS_PER_WRITE,
        },
        line_shards: config.line_shards,
        ended_retention: Duration::from_secs(3600),
        cache: Default::default(),
    }
}

/// A granter instance fed by the join queue, as the Lambda mapping does.
async fn grant(granter: Granter<Arc<SimStore>>, queue: Arc<SimQueue>, world: Arc<World>) {
    loop {
        let Ok(batch) = queue.receive(10, Duration::from_secs(20)).await else {
            continue;
        };
        if batch.is_empty() {
            continue;
        }
        let report = granter.handle_deliveries(&batch).await;
        if !report.failed.is_empty() {
            world.state().counters.failed_batches += 1;
        }
        let done: Vec<Delivery> = batch
            .into_iter()
            .filter(|d| report.handled.contains(&d.message_id))
            .collect();
        let _ = queue.delete(&done).await;
    }
}

/// The table stream's wake-ups: events whose slots were freed while people
/// waited, handed to the granter with the counters' new image.
async fn wake_on_freed_slots(
    granter: Granter<Arc<SimStore>>,
    store: Arc<SimStore>,
    delay: Duration,
) {
    loop {
        tokio::time::sleep(delay).await;
        let events: Vec<EventId> = std::mem::take(&mut store.world.state().wake)
            .into_iter()
            .collect();
        for event in events {
            let counters = store.inner.event_counters(&event).await.ok();
            if granter
                .advance_with(&event, Vec::new(), counters)
                .await
                .is_err()
            {
                store.world.state().wake.insert(event);
            }
        }
    }
}

/// Every admitted user checks out for a while, then leaves.
async fn checkouts(
    mut admitted: mpsc::UnboundedReceiver<Admitted>,
    store: Arc<SimStore>,
    world: Arc<World>,
    recorder: Shared<Recorder>,
    mean_stay_seconds: u64,
) {
    let commands = Arc::new(SessionCommands {
        store,
        clock: Arc::new(SimClock(world.clone())),
        ended_retention: Duration::from_secs(3600),
        stay: StayPolicy {
            stay: Duration::from_secs(3600),
            max_stay: Duration::from_secs(7200),
        },
    });
    while let Some(admission) = admitted.recv().await {
        lock(&recorder).admissions.push((
            admission.admission_no,
            admission.session.clone(),
            Instant::now(),
        ));
        let stay = Duration::from_secs_f64(
            -(mean_stay_seconds as f64) * (1.0 - world.state().rng.unit()).ln(),
        );
        let (commands, recorder) = (commands.clone(), recorder.clone());
        tokio::spawn(async move {
            tokio::time::sleep(stay).await;
            while commands.leave(&admission.session).await.is_err() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            lock(&recorder).left += 1;
        });
    }
}

/// A user joins, and joins again after an error, as a browser would.
async fn join_with_retries(
    join: Arc<JoinService<Arc<SimStore>, Arc<SimQueue>>>,
    event: EventId,
    n: u64,
    world: Arc<World>,
    recorder: Shared<Recorder>,
) {
    let Ok(user) = UserId::parse(&format!("fan-{n}")) else {
        return;
    };
    for _ in 0..30 {
        if let Ok(outcome) = join.join(event.clone(), user.clone()).await {
            let now = Instant::now();
            let mut recorder = lock(&recorder);
            let rank = recorder.join_rank.len() as u64;
            recorder
                .join_rank
                .entry(outcome.session().id.clone())
                .or_insert(rank);
            recorder.first_accept.get_or_insert(now);
            recorder.last_accept = Some(now);
            return;
        }
        lock(&recorder).retries += 1;
        let pause = Duration::from_secs_f64(1.0 + world.state().rng.unit());
        tokio::time::sleep(pause).await;
    }
    lock(&recorder).failed_users += 1;
}

fn report(
    config: SimConfig,
    recorder: &Recorder,
    counters: &Counters,
    elapsed: Duration,
    wall: std::time::Duration,
) -> SimReport {
    let mut admissions: Vec<&(u64, SessionId, Instant)> = recorder.admissions.iter().collect();
    admissions.sort_by_key(|(number, _, _)| *number);
    let ranks: Vec<u64> = admissions
        .iter()
        .filter_map(|(_, id, _)| recorder.join_rank.get(id).copied())
        .collect();
    let join_seconds = match (recorder.first_accept, recorder.last_accept) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64().max(1e-9),
        _ => 1.0,
    };
    let mut per_second: HashMap<u64, u64> = HashMap::new();
    let origin = admissions.first().map(|(_, _, at)| *at);
    for (_, _, at) in &admissions {
        if let Some(origin) = origin {
            *per_second
                .entry(at.duration_since(origin).as_secs())
                .or_default() += 1;
        }
    }
    let admit_seconds = match (admissions.first(), admissions.last()) {
        (Some(first), Some(last)) => last.2.duration_since(first.2).as_secs_f64().max(1.0),
        _ => 1.0,
    };
    let accepted = recorder.join_rank.len() as u64;
    SimReport {
        joins_accepted: accepted,
        join_retries: recorder.retries,
        joins_per_second: accepted as f64 / join_seconds,
        admitted: admissions.len() as u64,
        admits_per_second: admissions.len() as f64 / admit_seconds,
        peak_admits_per_second: per_second.values().copied().max().unwrap_or(0),
        lost: config.users.saturating_sub(admissions.len() as u64),
        kendall_tau_b: stats::kendall_tau_b(&ranks),
        largest_overtake: stats::largest_overtake(&ranks),
        max_active: counters.max_active,
        capacity_violations: counters.capacity_violations,
        duplicate_admissions: counters.duplicate_admissions,
        dynamodb_throttles: counters.dynamodb_throttles,
        sqs_throttles: counters.sqs_throttles,
        conflicts: counters.transactions_conflicted,
        failed_batches: counters.failed_batches,
        dynamodb_calls: counters.dynamodb_calls,
        sqs_calls: counters.sqs_calls,
        virtual_seconds: elapsed.as_secs_f64(),
        wall_seconds: wall.as_secs_f64(),
        config,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(shards: u16, seed: u64) -> SimConfig {
        SimConfig {
            users: 3_000,
            joins_per_second: 1_000,
            capacity: 200,
            line_shards: shards,
            seed,
            mean_stay_seconds: 20,
            granters: usize::from(shards).max(2),
            stream_delay_millis: 250,
        }
    }

    #[test]
    fn a_small_onsale_loses_nobody_keeps_capacity_and_order() {
        let report = run(small(4, 7)).unwrap();
        assert_eq!(
            (report.joins_accepted, report.admitted, report.lost),
            (3_000, 3_000, 0)
        );
        assert_eq!(report.capacity_violations, 0);
        assert_eq!(report.duplicate_admissions, 0);
        assert!(
            report.max_active <= 200 && report.max_active >= 150,
            "{}",
            report.max_active
        );
        assert!(
            report.kendall_tau_b > 0.99,
            "tau-b {}",
            report.kendall_tau_b
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let a = run(small(2, 11)).unwrap();
        let b = run(small(2, 11)).unwrap();
        assert_eq!(
            (
                a.kendall_tau_b,
                a.largest_overtake,
                a.dynamodb_calls,
                a.virtual_seconds
            ),
            (
                b.kendall_tau_b,
                b.largest_overtake,
                b.dynamodb_calls,
                b.virtual_seconds
            )
        );
    }

    #[test]
    fn one_message_group_cannot_take_an_onsale() {
        let mut config = small(1, 3);
        config.joins_per_second = 2_000;
        let report = run(config).unwrap();
        assert!(
            report.sqs_throttles > 0,
            "2,000 joins/s on one group must throttle"
        );
        assert_eq!(report.lost, 0, "but retries lose nobody");
    }

    #[test]
    fn a_rush_on_sixteen_shards_loses_nobody_and_keeps_order() {
        // 4,000 joins/s over 16 message groups: the sharded layout under the
        // same contention as a 10,000/s on-sale, small enough for a unit test.
        let report = run(SimConfig {
            users: 4_000,
            joins_per_second: 4_000,
            capacity: 300,
            line_shards: 16,
            seed: 7,
            mean_stay_seconds: 20,
            granters: 16,
            stream_delay_millis: 250,
        })
        .unwrap();
        assert_eq!((report.admitted, report.lost), (4_000, 0));
        assert_eq!(report.capacity_violations, 0);
        assert_eq!(report.duplicate_admissions, 0);
        assert_eq!(report.sqs_throttles, 0, "16 groups take 4,000 sends/s");
        assert_eq!(report.failed_batches, 0, "no batch is given back");
        assert!(
            report.kendall_tau_b > 0.98,
            "tau-b {}",
            report.kendall_tau_b
        );
    }
}
