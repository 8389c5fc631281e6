//! Fans, as browsers behave: join (and join again when the answer does not
//! come), poll as told, sometimes give up while waiting or stop polling,
//! and once admitted stay a while, leave, buy (the checkout reports it,
//! sometimes after the stay ran out), heartbeat, or walk away.

use std::sync::Arc;
use std::time::Duration;

use waiting_room::domain::{IdempotencyKey, SessionId, SessionStatus, UserId};
use waiting_room::service::ServiceError;
use waiting_room::service::join::{JoinOutcome, JoinService};
use waiting_room::service::status::StatusService;

use super::drivers::commands;
use super::gates::{GatedQueue, GatedStore, HTTP_TIMEOUT};
use super::scenario::EventPlan;
use super::world::{Actor, World, lock};

/// How long a fan keeps polling before closing the tab for good.
const PATIENCE: Duration = Duration::from_secs(20 * 60);

/// The status function's instances: polls are answered by any of them.
pub fn status_instances(
    world: &Arc<World>,
    signer: &waiting_room::domain::token::AdmissionSigner,
) -> Vec<StatusService<GatedStore>> {
    (0..3)
        .map(|n| {
            StatusService::new(
                GatedStore {
                    world: world.clone(),
                    actor: Actor::Status(n),
                },
                world.clock(),
                world.scenario.shards,
                signer.clone(),
                Some(world.scenario.abandon_after),
                // No cache of the event's counters here (positions come
                // from a consistent read of the shard's head either way).
                Duration::ZERO,
            )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Patient,
    Leaves,
    StopsPolling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    Leaves,
    Buys,
    BuysLate,
    Heartbeats,
    HeartbeatsTooLate,
    WalksAway,
}

pub async fn fan(
    world: Arc<World>,
    n: usize,
    event: EventPlan,
    status: Arc<Vec<StatusService<GatedStore>>>,
) {
    let actor = Actor::User(n);
    let (arrival, waiting, admitted) = {
        let mut rng = world.rng();
        let arrival = rng.millis(0, 40_000);
        let waiting = match rng.between(0, 9) {
            0 => Waiting::Leaves,
            1 => Waiting::StopsPolling,
            _ => Waiting::Patient,
        };
        let admitted = match rng.between(0, 9) {
            0..=2 => Admitted::Leaves,
            3 | 4 => Admitted::Buys,
            5 => Admitted::BuysLate,
            6 => Admitted::Heartbeats,
            7 => Admitted::HeartbeatsTooLate,
            _ => Admitted::WalksAway,
        };
        (arrival, waiting, admitted)
    };
    tokio::time::sleep(arrival).await;
    let join = JoinService {
        store: GatedStore {
            world: world.clone(),
            actor: actor.clone(),
        },
        queue: GatedQueue {
            world: world.clone(),
            actor: actor.clone(),
        },
        clock: world.clock(),
        ids: Arc::new(SeededIds(world.clone())),
        line_shards: world.scenario.shards,
        listed: Default::default(),
        states: Default::default(),
        join_keys: Default::default(),
    };
    let Ok(user) = UserId::parse(&format!("fan-{n}")) else {
        return;
    };
    // Every retry repeats the first attempt's key, as a fan's client does.
    let Ok(key) = IdempotencyKey::parse(&format!("join-{n}")) else {
        return;
    };
    let mut session: Option<SessionId> = None;
    for _ in 0..4 {
        let started = world.now();
        let attempt = join.join(event.id.clone(), user.clone(), Some(key.clone()));
        match tokio::time::timeout(HTTP_TIMEOUT, attempt).await {
            Ok(Ok(outcome)) => {
                if matches!(outcome, JoinOutcome::Created(_)) {
                    let broken = lock(&world.checker).joined(&event.id, started, world.now());
                    if let Some(broken) = broken {
                        world.note(broken);
                    }
                }
                let kind = match outcome {
                    JoinOutcome::Created(_) => "joined",
                    JoinOutcome::Existing(_) => "joined again (same session)",
                };
                world.note(format!(
                    "{actor} {kind} {} → {}",
                    event.id,
                    outcome.session().id
                ));
                session = Some(outcome.session().id.clone());
                break;
            }
            Ok(Err(ServiceError::EventClosed)) => {
                world.note(format!("{actor} join refused: {} is closed", event.id));
                break;
            }
            Ok(Err(err)) => world.note(format!("{actor} join failed: {err}")),
            Err(_) => world.note(format!("{actor} join timed out")),
        }
        let pause = world.rng().millis(500, 3_000);
        tokio::time::sleep(pause).await;
    }
    let Some(id) = session else { return };
    lock(&world.checker).accepted(&id);
    let commands = commands(&world, actor.clone());
    let started = tokio::time::Instant::now();
    let mut polls = 0u32;
    let expires_at = loop {
        if started.elapsed() > PATIENCE {
            return;
        }
        let instance = world.rng().between(0, status.len() as u64 - 1) as usize;
        let report = match tokio::time::timeout(HTTP_TIMEOUT, status[instance].status(&id)).await {
            Ok(Ok(report)) => report,
            _ => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        polls += 1;
        match report.session.status() {
            SessionStatus::Waiting => {
                if let Some(position) = report.position() {
                    let now = world.now();
                    if let Some(violation) = lock(&world.checker).position_seen(&id, position, now)
                    {
                        world.note(format!("VIOLATION {violation}"));
                    }
                }
                if waiting == Waiting::Leaves && world.rng().chance(0.2) {
                    let _ = tokio::time::timeout(HTTP_TIMEOUT, commands.leave(&id)).await;
                    world.note(format!("{actor} leaves while waiting"));
                    return;
                }
                if waiting == Waiting::StopsPolling && polls > 2 {
                    world.note(format!("{actor} stops polling"));
                    return;
                }
                let pause = report.poll_after.unwrap_or(Duration::from_secs(1));
                let jitter = world.rng().millis(0, 500);
                tokio::time::sleep(pause + jitter).await;
            }
            SessionStatus::Active => {
                break report.session.expires_at();
            }
            _ => return,
        }
    };
    let stay = world.scenario.stay;
    match admitted {
        Admitted::Leaves => {
            let pause = world.rng().millis(0, stay.as_millis() as u64);
            tokio::time::sleep(pause).await;
            leave(&world, &actor, &commands, &id).await;
        }
        Admitted::Buys | Admitted::BuysLate => {
            let pause = if admitted == Admitted::Buys {
                world.rng().millis(0, stay.as_millis() as u64 / 2)
            } else {
                stay + world.rng().millis(1_000, 90_000)
            };
            tokio::time::sleep(pause).await;
            let kind = if world.rng().chance(0.8) {
                "CHECKOUT_COMPLETED"
            } else {
                "CHECKOUT_FAILED"
            };
            let body = format!(
                r#"{{"type":"{kind}","session_id":"{id}","event_id":"{}","user_id":"fan-{n}","order_id":"o-{n}"}}"#,
                event.id
            );
            world.note(format!("{actor}'s checkout reports {kind}"));
            world.checkout_queue.send_raw(body);
        }
        Admitted::Heartbeats => {
            for _ in 0..3 {
                let pause = stay / 3;
                tokio::time::sleep(pause).await;
                let _ = tokio::time::timeout(HTTP_TIMEOUT, commands.heartbeat(&id)).await;
            }
            leave(&world, &actor, &commands, &id).await;
        }
        Admitted::HeartbeatsTooLate => {
            let Some(end) = expires_at else { return };
            // Sleep until just past the end of the stay (maybe extended by
            // nobody), then try to extend it: it must not come back.
            let now = world.now();
            let past = end.since(now) + world.rng().millis(1, 5_000);
            tokio::time::sleep(past).await;
            if let Ok(Ok(session)) =
                tokio::time::timeout(HTTP_TIMEOUT, commands.heartbeat(&id)).await
            {
                if session.status() == SessionStatus::Active
                    && session.expires_at().is_some_and(|e| e > end)
                {
                    let now = world.now();
                    let detail = format!(
                        "{id}'s stay ended at {} and a heartbeat after it extended it",
                        end.as_millis()
                    );
                    let violation = lock(&world.checker).stay_revived(detail, now);
                    world.note(format!("VIOLATION {violation}"));
                }
            }
        }
        Admitted::WalksAway => {}
    }
}

async fn leave(
    world: &World,
    actor: &Actor,
    commands: &waiting_room::service::session_command::SessionCommands<GatedStore>,
    id: &SessionId,
) {
    for _ in 0..5 {
        if let Ok(Ok(_)) = tokio::time::timeout(HTTP_TIMEOUT, commands.leave(id)).await {
            world.note(format!("{actor} leaves"));
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Session ids from the schedule's seed, so a run is reproducible.
pub struct SeededIds(pub Arc<World>);

impl waiting_room::ports::IdSource for SeededIds {
    fn random_id(&self) -> Option<[u8; 16]> {
        let mut rng = self.0.rng();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        id[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
        Some(id)
    }
}
