//! What AWS runs the functions with, as it behaves: the SQS event source
//! mapping (batches, one in flight per message group, redelivery after the
//! visibility timeout, a killed invocation's batch coming back), the
//! DynamoDB stream mappings (batches in stream order, at least once, per
//! record failures retried from the first, bounded retries then the
//! dead-letter queue), the schedule that runs the sweeper, and TTL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use waiting_room::domain::admission::AdmissionPolicy;
use waiting_room::domain::token::AdmissionSigner;
use waiting_room::domain::{
    Change, Control, EventId, EventState, StateChange, StayPolicy, StreamRecord,
};
use waiting_room::ports::{Delivery, EventStore, QueueConsumer};
use waiting_room::runtime::granter::{handle_batch, handle_stream};
use waiting_room::runtime::sweeper::run_once;
use waiting_room::service::admin;
use waiting_room::service::checkout::CheckoutOutcomes;
use waiting_room::service::granter::{FrontCache, Granter, Wake};
use waiting_room::service::publisher::Publisher;
use waiting_room::service::session_command::SessionCommands;
use waiting_room::service::sweeper::{Reconciler, Sweeper};

use super::gates::{GatedQuarantine, GatedQueue, GatedSink, GatedStore, LAMBDA_TIMEOUT};
use super::scenario::Switch;
use super::world::{Actor, World};

/// Retries of a failing stream batch before it is given up on.
const STREAM_RETRIES: u32 = 10;
/// The sweeper's schedule.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

pub fn policy(world: &World) -> AdmissionPolicy {
    AdmissionPolicy {
        default_capacity: 1,
        active_stay: world.scenario.stay,
        abandon_after: Some(world.scenario.abandon_after),
        max_changes_per_write: waiting_room::setup::wiring::ADMISSIONS_PER_WRITE,
    }
}

pub fn granter(world: &Arc<World>, actor: Actor) -> Granter<GatedStore> {
    Granter {
        store: GatedStore {
            world: world.clone(),
            actor,
        },
        clock: world.clock(),
        policy: policy(world),
        line_shards: world.scenario.shards,
        ended_retention: world.scenario.retention,
        fronts: FrontCache::default(),
    }
}

pub fn commands(world: &Arc<World>, actor: Actor) -> SessionCommands<GatedStore> {
    SessionCommands {
        store: GatedStore {
            world: world.clone(),
            actor,
        },
        clock: world.clock(),
        ended_retention: world.scenario.retention,
        stay: StayPolicy {
            stay: world.scenario.stay,
            max_stay: world.scenario.max_stay,
        },
    }
}

fn queue(world: &Arc<World>, actor: Actor) -> GatedQueue {
    GatedQueue {
        world: world.clone(),
        actor,
    }
}

/// One granter instance behind the join queue's event source mapping.
pub async fn join_queue_mapping(world: Arc<World>, instance: usize) {
    let actor = Actor::Granter(instance);
    let mut granter = granter(&world, actor.clone());
    let wakes = queue(&world, actor.clone());
    let quarantine = GatedQuarantine {
        queue: queue(&world, actor.clone()),
        target: world.join_quarantine.clone(),
    };
    let mut idle = Duration::from_millis(100);
    loop {
        let batch = world
            .join_queue
            .receive(10, Duration::ZERO)
            .await
            .unwrap_or_default();
        if batch.is_empty() {
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_secs(20));
            continue;
        }
        idle = Duration::from_millis(100);
        let ids: Vec<&str> = batch.iter().map(|d| d.message_id.as_str()).collect();
        world.note(format!("{actor} receives {}", ids.join(",")));
        match tokio::time::timeout(
            LAMBDA_TIMEOUT,
            handle_batch(&granter, &quarantine, &wakes, &batch),
        )
        .await
        {
            Ok(mut report) => {
                if world.scenario.switch == Switch::GiveBackWhenFull {
                    give_back_when_full(&world, &batch, &mut report).await;
                }
                let done: Vec<Delivery> = batch
                    .into_iter()
                    .filter(|d| report.handled.contains(&d.message_id))
                    .collect();
                if !report.failed.is_empty() {
                    world.note(format!("{actor} gives back {}", report.failed.join(",")));
                }
                let _ = world.join_queue.delete(&done).await;
            }
            Err(_) => {
                // The instance died (or hung) with the batch: it comes back
                // after the visibility timeout; a new instance takes over.
                world.note(format!(
                    "{actor} killed; its batch waits for the visibility timeout"
                ));
                granter = self::granter(&world, actor.clone());
            }
        }
    }
}

/// The broken variant: messages of an event with no free slot are given
/// back to the queue instead of finished (what a granter that "receives
/// only what it can admit" ends up doing).
async fn give_back_when_full(
    world: &World,
    batch: &[Delivery],
    report: &mut waiting_room::service::granter::BatchReport,
) {
    for delivery in batch {
        let Ok(waiting_room::ports::JoinQueueMessage::Joined(arrival)) =
            serde_json::from_str(&delivery.body)
        else {
            continue;
        };
        let Ok(event) = EventId::parse(&arrival.event_id) else {
            continue;
        };
        let full = world
            .store
            .event_counters(&event, 1)
            .await
            .is_ok_and(|c| c.capacity.is_some_and(|cap| c.active >= u64::from(cap)));
        if full {
            report.handled.retain(|id| id != &delivery.message_id);
            report.failed.push(delivery.message_id.clone());
        }
    }
}

/// What the granter's stream mapping lets through (its filter criteria).
fn granter_wants(record: &StreamRecord) -> bool {
    match &record.change {
        Ok(Change::Counters { after, .. }) => after.backlog.armed,
        Ok(Change::Session { old: None, .. }) => true,
        Ok(_) => false,
        Err(_) => true,
    }
}

fn publisher_wants(record: &StreamRecord) -> bool {
    matches!(
        &record.change,
        Ok(Change::Session { .. } | Change::StateChanged(_)) | Err(_)
    )
}

fn index_of(record: &StreamRecord) -> usize {
    record.id.parse().unwrap_or(0)
}

/// A stream event source mapping: batches in order, what failed retried
/// from the first failed record, given up on after `STREAM_RETRIES`.
async fn stream_mapping<F, Fut>(
    world: Arc<World>,
    name: &str,
    wants: fn(&StreamRecord) -> bool,
    retry_limit: u32,
    mut handle: F,
) where
    F: FnMut(Vec<StreamRecord>, bool) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<String>>>,
{
    let mut position = 0usize;
    let mut retries = 0u32;
    let mut idle = Duration::from_millis(50);
    loop {
        tokio::time::sleep(idle).await;
        let (records, next) = world.stream_since(position);
        let batch: Vec<StreamRecord> = records.into_iter().filter(wants).take(100).collect();
        if batch.is_empty() {
            position = next;
            idle = (idle * 2).min(Duration::from_secs(5));
            continue;
        }
        idle = world.rng().millis(50, 300);
        let last = batch.last().map_or(position, index_of);
        let retried = retries > 0;
        match tokio::time::timeout(LAMBDA_TIMEOUT, handle(batch.clone(), retried)).await {
            Ok(Some(failed)) if failed.is_empty() => {
                position = last + 1;
                retries = 0;
            }
            Ok(outcome) => {
                retries += 1;
                let first_failed = outcome
                    .and_then(|failed| batch.iter().find(|r| failed.contains(&r.id)).map(index_of))
                    .unwrap_or_else(|| batch.first().map_or(position, index_of));
                if retries > retry_limit {
                    world.note(format!(
                        "{name}: gave up on records from {first_failed} (on-failure destination)"
                    ));
                    position = last + 1;
                    retries = 0;
                } else {
                    position = first_failed;
                }
            }
            Err(_) => {
                retries += 1;
                world.note(format!("{name}: invocation killed; the batch is retried"));
                if retries > retry_limit {
                    world.note(format!(
                        "{name}: gave up on a batch (on-failure destination)"
                    ));
                    position = last + 1;
                    retries = 0;
                }
            }
        }
    }
}

/// The granter's table stream mapping.
pub async fn granter_stream(world: Arc<World>) {
    let wakes = queue(&world, Actor::StreamGranter);
    let granter = Arc::new(granter(&world, Actor::StreamGranter));
    let drop_freed = world.scenario.switch == Switch::NoWakeOnFreedSlot;
    let old_handler = world.scenario.switch == Switch::StopAtFirstFailure;
    let stream_world = world.clone();
    // The first design's mapping retried a failing batch forever.
    let retry_limit = if old_handler {
        u32::MAX
    } else {
        STREAM_RETRIES
    };
    stream_mapping(
        world,
        "granter stream",
        granter_wants,
        retry_limit,
        move |mut batch, _| {
            let (granter, wakes, world) = (granter.clone(), wakes.clone(), stream_world.clone());
            async move {
                if drop_freed {
                    batch.retain(|r| !r.change.as_ref().is_ok_and(|c| c.frees_a_slot().is_some()));
                }
                if old_handler {
                    return stop_at_first_failure(&granter, &world, &batch).await;
                }
                let report = handle_stream(&*granter, &wakes, &batch).await;
                Some(report.failed)
            }
        },
    )
    .await;
}

/// The broken variant (the first design's handler): events one
/// after another, stopping at the first that fails; the stream retries
/// the whole batch.
async fn stop_at_first_failure(
    granter: &Granter<GatedStore>,
    world: &World,
    batch: &[StreamRecord],
) -> Option<Vec<String>> {
    let mut events: BTreeMap<EventId, Option<waiting_room::domain::EventCounters>> =
        BTreeMap::new();
    for record in batch {
        let Ok(change) = &record.change else { continue };
        if let Some((event, counters)) = change.frees_a_slot() {
            events.insert(event.clone(), Some(counters.clone()));
        } else if let Some(session) = change.joined() {
            events.entry(session.event_id.clone()).or_insert(None);
        }
    }
    for (event, counters) in events {
        let wake = Wake {
            counters,
            ..Wake::default()
        };
        if granter.advance(&event, wake).await.is_err() {
            world.note(format!("stream batch fails whole at {event}"));
            return Some(batch.iter().map(|r| r.id.clone()).collect());
        }
    }
    Some(Vec::new())
}

/// The publisher's table stream mapping.
pub async fn publisher_stream(world: Arc<World>, signer: AdmissionSigner) {
    let publisher = Arc::new(Publisher {
        sink: GatedSink(queue(&world, Actor::Publisher)),
        quarantine: GatedQuarantine {
            queue: queue(&world, Actor::Publisher),
            target: world.stream_quarantine.clone(),
        },
        signer,
    });
    stream_mapping(
        world,
        "publisher stream",
        publisher_wants,
        STREAM_RETRIES,
        move |batch, _| {
            let publisher = publisher.clone();
            async move { Some(publisher.publish(&batch).await.failed) }
        },
    )
    .await;
}

/// The sweeper's schedule: every minute, each instance (two may overlap).
pub async fn sweeper_schedule(world: Arc<World>, instance: usize) {
    let actor = Actor::Sweeper(instance);
    let offset = world.rng().millis(0, 5_000) + Duration::from_millis(instance as u64 * 1_700);
    tokio::time::sleep(offset).await;
    loop {
        let sweeper = Sweeper {
            commands: commands(&world, actor.clone()),
            page: 5,
        };
        let reconciler = Reconciler {
            granter: granter(&world, actor.clone()),
        };
        let run = async {
            if matches!(
                world.scenario.switch,
                Switch::NoReconciliation | Switch::NoWakeOnFreedSlot
            ) {
                sweeper.sweep().await;
                return Ok(());
            }
            run_once(&sweeper, &reconciler)
                .await
                .map(|(_, reconciled)| {
                    if reconciled.repaired + reconciled.armed > 0 {
                        world.note(format!(
                            "{actor}: reconciliation repaired {} line(s), armed {} hint(s)",
                            reconciled.repaired, reconciled.armed
                        ));
                    }
                })
        };
        if tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .is_err()
        {
            world.note(format!("{actor} killed"));
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// The checkout-outcomes function behind its queue.
pub async fn checkout_mapping(world: Arc<World>) {
    let mut idle = Duration::from_millis(200);
    loop {
        let outcomes = CheckoutOutcomes {
            commands: commands(&world, Actor::Checkout),
            quarantine: GatedQuarantine {
                queue: queue(&world, Actor::Checkout),
                target: world.checkout_quarantine.clone(),
            },
        };
        let batch = world
            .checkout_queue
            .receive(10, Duration::ZERO)
            .await
            .unwrap_or_default();
        if batch.is_empty() {
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_secs(20));
            continue;
        }
        idle = Duration::from_millis(200);
        match tokio::time::timeout(LAMBDA_TIMEOUT, outcomes.handle_batch(&batch)).await {
            Ok(failed) => {
                let done: Vec<Delivery> = batch
                    .into_iter()
                    .filter(|d| !failed.contains(&d.message_id))
                    .collect();
                let _ = world.checkout_queue.delete(&done).await;
            }
            Err(_) => world.note("checkout killed; its batch comes back".into()),
        }
    }
}

/// The operator evicts one live session of `event`, if there is one.
async fn evict_one(world: &Arc<World>, event: &EventId) -> Result<String, String> {
    let mut live: Vec<_> = world
        .store
        .all_sessions()
        .into_iter()
        .filter(|s| &s.event_id == event && s.is_live())
        .map(|s| s.id)
        .collect();
    live.sort();
    if live.is_empty() {
        return Ok(format!("operator: nobody of {event} to evict"));
    }
    let pick = world.rng().between(0, live.len() as u64 - 1) as usize;
    let id = &live[pick];
    commands(world, Actor::Admin)
        .evict(id)
        .await
        .map(|ended| format!("operator evicts {id}: {ended:?}"))
        .map_err(|e| e.to_string())
}

/// DynamoDB's TTL: ended items past their time vanish at any moment.
pub async fn ttl(world: Arc<World>) {
    loop {
        let pause = world.rng().millis(2_000, 30_000);
        tokio::time::sleep(pause).await;
        let now = world.now();
        let deleted = world.store.delete_expired(now, || world.rng().chance(0.5));
        if deleted > 0 {
            world.note(format!("TTL deleted {deleted} item(s)"));
            world.after_store_call(&Actor::Admin, "ttl");
        }
    }
}

/// Schedules `event` to open `opens_in` from now, as `configure` does (a
/// fan who joined first makes the store refuse it: noted, not retried).
async fn schedule(world: &World, store: &GatedStore, event: &EventId, opens_in: Duration) {
    let now = world.now();
    let change = StateChange {
        opens_at: Some(now.plus(opens_in)),
        seed: Some(world.rng().between(0, u64::MAX - 1)),
        ..StateChange::plain(event.clone(), EventState::Open, EventState::Scheduled, now)
    };
    for _ in 0..5 {
        match store.set_event_state(&change).await {
            Ok(true) => {
                world.note(format!(
                    "operator schedules {event} to open in {:.1}s",
                    opens_in.as_secs_f64()
                ));
                return;
            }
            Ok(false) => {
                world.note(format!("operator cannot schedule {event}: it took a join"));
                return;
            }
            Err(err) => world.note(format!("operator's schedule of {event} failed: {err}")),
        }
    }
}

/// What the operator does at a point of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Act {
    Capacity(u32),
    Control(Control),
    /// Evict one live session of the event, drawn at that moment.
    Evict,
}

/// An operator changing capacities, pausing, resuming and closing events,
/// as the scenario says.
pub async fn operator(world: Arc<World>) {
    let store = GatedStore {
        world: world.clone(),
        actor: Actor::Admin,
    };
    for event in &world.scenario.events {
        if let Some(opens_in) = event.opens_at {
            schedule(&world, &store, &event.id, opens_in).await;
        }
        for _ in 0..5 {
            if store.set_capacity(&event.id, event.capacity).await.is_ok() {
                break;
            }
        }
    }
    let mut acts: Vec<(Duration, EventId, Act)> = Vec::new();
    for event in &world.scenario.events {
        if let Some((at, to)) = event.capacity_change {
            acts.push((at, event.id.clone(), Act::Capacity(to)));
        }
        for &(at, control) in &event.controls {
            acts.push((at, event.id.clone(), Act::Control(control)));
        }
        for &at in &event.evictions {
            acts.push((at, event.id.clone(), Act::Evict));
        }
    }
    acts.sort();
    let start = tokio::time::Instant::now();
    for (at, event, act) in acts {
        tokio::time::sleep_until(start + at).await;
        for _ in 0..5 {
            let done = match act {
                Act::Capacity(to) => store
                    .set_capacity(&event, to)
                    .await
                    .map(|()| format!("operator sets {event}'s capacity to {to}"))
                    .map_err(|e| e.to_string()),
                Act::Control(control) => {
                    admin::control(&store, &event, control, world.scenario.shards, world.now())
                        .await
                        .map(|o| {
                            format!("operator: {} {event} ({} → {})", o.control, o.from, o.state)
                        })
                        .map_err(|e| e.to_string())
                }
                Act::Evict => evict_one(&world, &event).await,
            };
            match done {
                Ok(note) => {
                    world.note(note);
                    break;
                }
                Err(err) => world.note(format!("operator's {act:?} of {event} failed: {err}")),
            }
        }
    }
}
