//! CPU per request of the three hot handlers, on the in-memory adapters so
//! only our code is measured: join, status (a waiting and an admitted
//! user, who gets a signed token), and the granter's batch of ten.

// A benchmark harness: set-up failures should stop it loudly.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use waiting_room::adapters::memory::{MemoryQueue, MemoryStore};
use waiting_room::domain::admission::AdmissionPolicy;
use waiting_room::domain::token::AdmissionSigner;
use waiting_room::domain::{EventId, SessionId, SystemClock, UserId};
use waiting_room::ports::{OsRandom, QueueConsumer};
use waiting_room::service::granter::Granter;
use waiting_room::service::join::JoinService;
use waiting_room::service::status::StatusService;

struct World {
    store: Arc<MemoryStore>,
    queue: Arc<MemoryQueue>,
}

impl World {
    fn new() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            queue: Arc::new(MemoryQueue::new()),
        }
    }

    fn join(&self) -> JoinService<Arc<MemoryStore>, Arc<MemoryQueue>> {
        JoinService {
            store: self.store.clone(),
            queue: self.queue.clone(),
            clock: Arc::new(SystemClock),
            ids: Arc::new(OsRandom),
            line_shards: 4,
            listed: Default::default(),
            states: Default::default(),
            join_keys: Default::default(),
        }
    }

    fn granter(&self, capacity: u32) -> Granter<Arc<MemoryStore>> {
        Granter {
            store: self.store.clone(),
            clock: Arc::new(SystemClock),
            policy: AdmissionPolicy {
                default_capacity: capacity,
                active_stay: Duration::from_secs(900),
                abandon_after: Some(Duration::from_secs(300)),
                max_changes_per_write: 50,
            },
            line_shards: 4,
            ended_retention: Duration::from_secs(3600),
            fronts: Default::default(),
        }
    }

    fn status(&self) -> StatusService<Arc<MemoryStore>> {
        let signer = AdmissionSigner::generate("bench", [7; 32]).expect("a signing key");
        StatusService::new(
            self.store.clone(),
            Arc::new(SystemClock),
            4,
            signer,
            Some(Duration::from_secs(300)),
            Duration::ZERO,
        )
    }
}

fn event() -> EventId {
    EventId::parse("bench-event").expect("a valid event id")
}

fn user(n: u64) -> UserId {
    UserId::parse(&format!("fan-{n}")).expect("a valid user id")
}

/// Joins `count` users and lets the granter number them and admit the
/// first `capacity`.
fn line_of(runtime: &Runtime, world: &World, count: u64, capacity: u32) -> Vec<SessionId> {
    runtime.block_on(async {
        let join = world.join();
        let mut ids = Vec::new();
        for n in 0..count {
            let outcome = join.join(event(), user(n), None).await.expect("join");
            ids.push(outcome.session().id.clone());
        }
        let granter = world.granter(capacity);
        loop {
            let batch = world
                .queue
                .receive(10, Duration::ZERO)
                .await
                .expect("receive");
            if batch.is_empty() {
                break;
            }
            granter.handle_deliveries(&batch).await;
            world.queue.delete(&batch).await.expect("delete");
        }
        ids
    })
}

fn handlers(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");

    let world = World::new();
    let join = world.join();
    let mut n = 0u64;
    c.bench_function("join", |b| {
        b.iter(|| {
            n += 1;
            runtime
                .block_on(join.join(event(), user(n), None))
                .expect("join")
        })
    });

    let world = World::new();
    let ids = line_of(&runtime, &world, 1_000, 10);
    let status = world.status();
    let waiting = ids[500].clone();
    let admitted = ids[0].clone();
    // The admitted case must really sign a token, or it measures nothing.
    let first = runtime.block_on(status.status(&admitted)).expect("status");
    assert!(
        first.admission_token.is_some(),
        "the first joiner is not admitted: {:?}",
        first.session.status()
    );
    c.bench_function("status_waiting", |b| {
        b.iter(|| runtime.block_on(status.status(&waiting)).expect("status"))
    });
    c.bench_function("status_admitted", |b| {
        b.iter(|| runtime.block_on(status.status(&admitted)).expect("status"))
    });

    c.bench_function("grant_batch_of_10", |b| {
        b.iter_batched(
            || {
                let world = World::new();
                runtime.block_on(async {
                    let join = world.join();
                    for n in 0..10 {
                        join.join(event(), user(n), None).await.expect("join");
                    }
                    let batch = world
                        .queue
                        .receive(10, Duration::ZERO)
                        .await
                        .expect("receive");
                    (world, batch)
                })
            },
            |(world, batch)| {
                let granter = world.granter(1_000);
                let report = runtime.block_on(granter.handle_deliveries(&batch));
                assert_eq!(report.admitted, 10);
                (world, report)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(4));
    targets = handlers
}
criterion_main!(benches);
