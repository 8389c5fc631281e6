//! An end-to-end run through the local stack: N users join, poll, are
//! admitted by the granter (queue poller + table-stream wake-ups, as
//! deployed), stay a moment and leave, while the publisher turns every change
//! into an event. Every SDK call is counted per component; admission latency
//! is read from the sessions themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use waiting_room::adapters::aws::sdk_config;
use waiting_room::adapters::dynamodb::DynamoStore;
use waiting_room::adapters::sns::SnsEventSink;
use waiting_room::adapters::sqs::{SqsQuarantine, SqsQueue};
use waiting_room::adapters::streams::{StartAt, TableStreamReader};
use waiting_room::domain::{
    EventId, IdempotencyKey, SessionId, SessionStatus, SystemClock, UserId,
};
use waiting_room::ports::OsRandom;
use waiting_room::ports::{EventStore, SessionStore};
use waiting_room::service::granter::Granter;
use waiting_room::service::join::JoinService;
use waiting_room::service::publisher::Publisher;
use waiting_room::service::session_command::SessionCommands;
use waiting_room::service::status::StatusService;
use waiting_room::setup::config::process_env;
use waiting_room::setup::wiring::{
    self, CommandSettings, GranterSettings, JoinSettings, PublisherSettings, StatusSettings,
};

use crate::counting::{CallLedger, Calls};
use crate::stats::percentile;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Components, each with its own counted clients.
pub const JOIN: &str = "join";
pub const POLL: &str = "poll";
pub const GRANT: &str = "grant";
pub const LEAVE: &str = "leave";
pub const PUBLISH: &str = "publish";
/// Table-stream reads: Lambda's event source mappings do these for free in
/// AWS; only the local pollers make them.
pub const STREAM_READS: &str = "stream reads (free in AWS)";

#[derive(Debug, Clone)]
pub struct EndToEnd {
    /// Every call of the run, before the latency probe.
    pub calls: Calls,
    pub users: usize,
    pub capacity: u32,
    pub admitted: usize,
    pub polls: u64,
    /// Slot freed → next user admitted, under the run's load.
    pub loaded_latency: Latency,
    /// The same, one slot at a time on a quiet stack.
    pub quiet_latency: Latency,
    /// Median wall time of one call of each kind, in ms (Lambda durations).
    pub join_ms: f64,
    pub poll_ms: f64,
    pub leave_ms: f64,
}

fn dynamodb(
    sdk: &aws_config::SdkConfig,
    ledger: &CallLedger,
    component: &str,
) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .interceptor(ledger.interceptor(component))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

fn sqs(sdk: &aws_config::SdkConfig, ledger: &CallLedger, component: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::from(sdk)
        .interceptor(ledger.interceptor(component))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

fn sns(sdk: &aws_config::SdkConfig, ledger: &CallLedger, component: &str) -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::config::Builder::from(sdk)
        .interceptor(ledger.interceptor(component))
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

async fn stream_reader(
    sdk: &aws_config::SdkConfig,
    ledger: &CallLedger,
    table: &str,
) -> Result<TableStreamReader, BoxError> {
    let config = aws_sdk_dynamodbstreams::config::Builder::from(sdk)
        .interceptor(ledger.interceptor(STREAM_READS))
        .build();
    let streams = aws_sdk_dynamodbstreams::Client::from_conf(config);
    Ok(TableStreamReader::open(
        &dynamodb(sdk, ledger, STREAM_READS),
        streams,
        table,
        StartAt::Oldest,
    )
    .await?)
}

/// One user: join, poll until admitted, stay `stay`, leave. Returns the
/// number of polls and the duration of each call.
async fn one_user(
    join: Arc<JoinService<DynamoStore, SqsQueue>>,
    status: Arc<StatusService<DynamoStore>>,
    commands: Arc<SessionCommands<DynamoStore>>,
    event: EventId,
    user: UserId,
    stay: Duration,
) -> Result<UserRun, BoxError> {
    let started = Instant::now();
    // Retries repeat the first attempt's key, as a fan's client does.
    let key = IdempotencyKey::parse(&format!("join-{user}"))?;
    let session = retried(|| join.join(event.clone(), user.clone(), Some(key.clone())))
        .await?
        .session()
        .id
        .clone();
    let join_time = started.elapsed();
    let mut polls = 0;
    let mut poll_times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let asked = Instant::now();
        let report = retried(|| status.status(&session)).await?;
        poll_times.push(asked.elapsed());
        polls += 1;
        match report.session.status() {
            SessionStatus::Active => break,
            SessionStatus::Waiting if Instant::now() < deadline => {
                tokio::time::sleep(POLL_EVERY).await;
            }
            other => return Err(format!("session ended {other:?} before admission").into()),
        }
    }
    tokio::time::sleep(stay).await;
    let leaving = Instant::now();
    retried(|| commands.leave(&session)).await?;
    Ok(UserRun {
        session,
        polls,
        join_time,
        poll_times,
        leave_time: leaving.elapsed(),
    })
}

/// How often the simulated fans poll: often, to see admissions promptly,
/// but not so often that the emulator is the bottleneck.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// Tries of `retried`, the last one's error returned.
const RETRIES: usize = 10;

/// A call, tried again after an error as a browser would (the emulator
/// answers slowly under this load, and a timeout is not a lost user).
async fn retried<T, E, F, Fut>(mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    // Doubling pauses, 0.5 s up to 8 s, for about a minute in all: long
    // enough to ride out a slow spell of the (serialised) emulator on a
    // loaded machine, as a fan's retries would.
    let mut pause = Duration::from_millis(500);
    for _ in 1..RETRIES {
        match call().await {
            Ok(value) => return Ok(value),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(8));
            }
        }
    }
    call().await
}

struct UserRun {
    session: SessionId,
    polls: u64,
    join_time: Duration,
    poll_times: Vec<Duration>,
    leave_time: Duration,
}

pub async fn run(users: usize, capacity: u32, ledger: &CallLedger) -> Result<EndToEnd, BoxError> {
    let env = process_env();
    let sdk = sdk_config().await;
    let join_settings = JoinSettings::from_env(&env)?;
    let status_settings = StatusSettings::from_env(&env)?;
    let granter_settings = GranterSettings::from_env(&env)?;
    let command_settings = CommandSettings::from_env(&env)?;
    let publisher_settings = PublisherSettings::from_env(&env)?;
    let table = join_settings.table.clone();
    let store_for =
        |component: &str| DynamoStore::new(dynamodb(&sdk, ledger, component), table.clone());

    let event = EventId::parse(&format!("bench-e2e-{}", std::process::id()))?;
    // Set up with an uncounted client: operators do this once per event.
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone())
        .set_capacity(&event, capacity)
        .await?;

    let join = Arc::new(JoinService {
        store: store_for(JOIN),
        queue: SqsQueue::new(
            sqs(&sdk, ledger, JOIN),
            join_settings.join_queue_url.clone(),
        ),
        clock: Arc::new(SystemClock),
        ids: Arc::new(OsRandom),
        line_shards: join_settings.line.line_shards,
        listed: Default::default(),
        states: Default::default(),
        join_keys: Default::default(),
    });
    let status = Arc::new(StatusService::new(
        store_for(POLL),
        Arc::new(SystemClock),
        status_settings.line.line_shards,
        status_settings.signer,
        status_settings.lifecycle.abandon_after,
        status_settings.cache,
    ));
    let commands = Arc::new(SessionCommands {
        store: store_for(LEAVE),
        clock: Arc::new(SystemClock),
        ended_retention: command_settings.lifecycle.ended_retention,
        stay: command_settings.lifecycle.stay_policy(),
    });
    let granter = Granter {
        store: store_for(GRANT),
        clock: Arc::new(SystemClock),
        policy: wiring::admission_policy(&granter_settings.lifecycle),
        line_shards: granter_settings.line.line_shards,
        ended_retention: granter_settings.lifecycle.ended_retention,
        fronts: Default::default(),
    };
    let grant_sqs = sqs(&sdk, ledger, GRANT);
    // The join queue is what the local poller receives from and where the
    // granter hands the wake-ups it could not finish.
    let consumer = SqsQueue::new(grant_sqs.clone(), granter_settings.join_queue_url.clone());
    let quarantine = SqsQuarantine::new(grant_sqs, granter_settings.join_dlq_url.clone());
    let publisher = Publisher {
        sink: SnsEventSink::new(
            sns(&sdk, ledger, PUBLISH),
            publisher_settings.events_topic_arn.clone(),
            publisher_settings.admissions_topic_arn.clone(),
        ),
        quarantine: SqsQuarantine::new(
            sqs(&sdk, ledger, PUBLISH),
            publisher_settings.stream_dlq_url.clone(),
        ),
        signer: publisher_settings.signer,
    };
    let mut granter_stream = stream_reader(&sdk, ledger, &table).await?;
    let mut publisher_stream = stream_reader(&sdk, ledger, &table).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let workers = async {
        tokio::join!(
            waiting_room::runtime::granter::poll_join_queue(
                &granter,
                &consumer,
                &quarantine,
                &consumer,
                stopped(stop_rx.clone())
            ),
            waiting_room::runtime::granter::poll_table_stream(
                &granter,
                &consumer,
                &mut granter_stream,
                stopped(stop_rx.clone())
            ),
            waiting_room::runtime::publisher::poll_table_stream(
                &publisher,
                &mut publisher_stream,
                stopped(stop_rx.clone())
            ),
        );
    };
    let fans = async {
        let mut tasks = Vec::new();
        for n in 0..users {
            let Ok(user) = UserId::parse(&format!("fan-{n}")) else {
                continue;
            };
            // Stays of 0.2–1.0 s, varied so slots free at different times.
            let stay = Duration::from_millis(200 + (n as u64 * 37) % 800);
            tasks.push(tokio::spawn(one_user(
                join.clone(),
                status.clone(),
                commands.clone(),
                event.clone(),
                user,
                stay,
            )));
            // Arrivals spread over a moment, as a crowd does.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.map_err(BoxError::from).and_then(|r| r));
        }
        // Let the publisher catch up with the last changes, then probe
        // latency on a quiet stack; stop the workers whatever happened, or
        // nothing would end.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let calls = ledger.snapshot();
        let probe = latency_probe(30).await;
        let _ = stop_tx.send(true);
        let results = results
            .into_iter()
            .collect::<Result<Vec<UserRun>, BoxError>>();
        Ok::<_, BoxError>((results?, calls, probe?))
    };
    let ((), outcome) = tokio::join!(workers, fans);
    let (results, calls, quiet_latency) = outcome?;

    let mut joins: Vec<Duration> = results.iter().map(|r| r.join_time).collect();
    let mut polls: Vec<Duration> = results
        .iter()
        .flat_map(|r| r.poll_times.iter().copied())
        .collect();
    let mut leaves: Vec<Duration> = results.iter().map(|r| r.leave_time).collect();
    let sessions: Vec<SessionId> = results.iter().map(|r| r.session.clone()).collect();
    let reader = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let latencies = admission_latencies(&reader, &sessions, capacity).await?;
    Ok(EndToEnd {
        calls,
        users,
        capacity,
        admitted: results.len(),
        polls: results.iter().map(|r| r.polls).sum(),
        loaded_latency: Latency::of(latencies),
        quiet_latency,
        join_ms: millis(percentile(&mut joins, 0.5)),
        poll_ms: millis(percentile(&mut polls, 0.5)),
        leave_ms: millis(percentile(&mut leaves, 0.5)),
    })
}

/// Percentiles of admission latency, in ms.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        Self {
            samples: samples.len(),
            p50: millis(percentile(&mut samples, 0.50)),
            p90: millis(percentile(&mut samples, 0.90)),
            p99: millis(percentile(&mut samples, 0.99)),
            max: millis(percentile(&mut samples, 1.0)),
        }
    }
}

/// One slot, `rounds` users behind it: the active user leaves, and the
/// time until the next is admitted is read from the sessions (server
/// clock), one exit at a time, with nothing else going on.
async fn latency_probe(rounds: usize) -> Result<Latency, BoxError> {
    let join = wiring::join_service().await?;
    let commands = wiring::session_commands().await?;
    let store = join.store.clone();
    let event = EventId::parse(&format!("bench-probe-{}", std::process::id()))?;
    retried(|| store.set_capacity(&event, 1)).await?;
    let mut line = Vec::with_capacity(rounds + 1);
    for n in 0..=rounds {
        let user = UserId::parse(&format!("probe-{n}"))?;
        let key = IdempotencyKey::parse(&format!("join-{user}"))?;
        let joined = retried(|| join.join(event.clone(), user.clone(), Some(key.clone()))).await?;
        line.push(joined.session().id.clone());
    }
    let mut samples = Vec::with_capacity(rounds);
    for pair in line.windows(2) {
        let (leaving, next) = (&pair[0], &pair[1]);
        let ended = loop {
            // Wait until the current user is in (admitted in line order).
            let session = retried(|| store.get_session(leaving))
                .await?
                .ok_or("probe session gone")?;
            if session.status() == SessionStatus::Active {
                retried(|| commands.leave(leaving)).await?;
                let left = retried(|| store.get_session(leaving))
                    .await?
                    .ok_or("probe session gone")?;
                break left.ending().ok_or("no ending")?.ended_at;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let admitted = loop {
            let session = retried(|| store.get_session(next))
                .await?
                .ok_or("probe session gone")?;
            if let Some(admission) = session.admission() {
                break admission.admitted_at;
            }
            if Instant::now() > deadline {
                return Err("the next user was not admitted within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        samples.push(Duration::from_millis(
            admitted.as_millis().saturating_sub(ended.as_millis()),
        ));
    }
    Ok(Latency::of(samples))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// From a slot being freed to the next user being `ACTIVE`: the k-th
/// admission after the event first filled took the slot of the k-th exit.
/// Both times are the server's own, stored on the sessions.
async fn admission_latencies(
    store: &DynamoStore,
    sessions: &[SessionId],
    capacity: u32,
) -> Result<Vec<Duration>, BoxError> {
    let mut exits = Vec::new();
    let mut admissions = Vec::new();
    for id in sessions {
        let Some(session) = store.get_session(id).await? else {
            continue;
        };
        if let Some(admission) = session.admission() {
            admissions.push((admission.admission_no, admission.admitted_at));
        }
        if let Some(ending) = session.ending() {
            exits.push(ending.ended_at);
        }
    }
    exits.sort();
    admissions.sort();
    let after_fill = admissions
        .iter()
        .filter(|(no, _)| *no > u64::from(capacity));
    Ok(after_fill
        .zip(&exits)
        .map(|((_, admitted), freed)| {
            Duration::from_millis(admitted.as_millis().saturating_sub(freed.as_millis()))
        })
        .collect())
}

/// The emulator's own speed: the median of `samples` trivial calls.
pub async fn emulator_latency(samples: usize) -> Result<(f64, f64), BoxError> {
    let env = process_env();
    let settings = JoinSettings::from_env(&env)?;
    let sdk = sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut gets = Vec::with_capacity(samples);
    let mut attributes = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        dynamo
            .get_item()
            .table_name(&settings.table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S("BENCH#none".into()),
            )
            .send()
            .await?;
        gets.push(started.elapsed());
        let started = Instant::now();
        sqs.get_queue_attributes()
            .queue_url(&settings.join_queue_url)
            .send()
            .await?;
        attributes.push(started.elapsed());
    }
    Ok((
        millis(percentile(&mut gets, 0.5)),
        millis(percentile(&mut attributes, 0.5)),
    ))
}

/// A session id as the join function answers it, for the events of the
/// memory benchmark.
pub fn session_id_of(response: &serde_json::Value) -> Option<SessionId> {
    let body: serde_json::Value = serde_json::from_str(response.get("body")?.as_str()?).ok()?;
    SessionId::parse(body.get("sessionId")?.as_str()?).ok()
}

/// Durations of join, poll and leave one at a time, on a quiet emulator
/// whose call latency is close to DynamoDB's: what a Lambda would bill.
pub async fn quiet_durations(samples: usize) -> Result<(f64, f64, f64), BoxError> {
    let join = wiring::join_service().await?;
    let status = wiring::status_service().await?;
    let commands = wiring::session_commands().await?;
    let event = EventId::parse(&format!("bench-quiet-{}", std::process::id()))?;
    let (mut joins, mut polls, mut leaves) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..samples {
        let user = UserId::parse(&format!("quiet-{n}"))?;
        let started = Instant::now();
        let session = join
            .join(event.clone(), user, None)
            .await?
            .session()
            .id
            .clone();
        joins.push(started.elapsed());
        let started = Instant::now();
        status.status(&session).await?;
        polls.push(started.elapsed());
        let started = Instant::now();
        commands.leave(&session).await?;
        leaves.push(started.elapsed());
    }
    Ok((
        millis(percentile(&mut joins, 0.5)),
        millis(percentile(&mut polls, 0.5)),
        millis(percentile(&mut leaves, 0.5)),
    ))
}
