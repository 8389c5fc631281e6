//! Builds each function's service from the environment. `main.rs` files stay
//! a few lines long, and `ENV` lists what every function reads so the
//! deployment template can be checked against it.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::aws::{dynamodb_client, sdk_config, sqs_client};
use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::kinesis::KinesisEventSink;
use crate::adapters::sqs::{SqsQuarantine, SqsQueue};
use crate::adapters::streams::TableStreamReader;
use crate::config::{self, ConfigError, Env, LifecycleSettings, LineSettings};
use crate::domain::SystemClock;
use crate::domain::admission::AdmissionPolicy;
use crate::ports::OsRandom;
use crate::ports::StoreError;
use crate::service::admission_check::AdmissionCheck;
use crate::service::cache::TtlCache;
use crate::service::checkout::CheckoutOutcomes;
use crate::service::granter::Granter;
use crate::service::join::JoinService;
use crate::service::publisher::Publisher;
use crate::service::session_command::SessionCommands;
use crate::service::status::StatusService;
use crate::service::sweeper::Sweeper;
use crate::token::{PublicKey, TokenVerifier};

/// Admissions per DynamoDB transaction (at most 100 items, minus the event
/// and line items). Smaller writes conflict less under concurrency.
pub const ADMISSIONS_PER_WRITE: usize = 50;

pub const JOIN_ENV: &[&str] = &[
    config::TABLE_NAME,
    config::JOIN_QUEUE_URL,
    config::LINE_SHARDS,
];
pub const STATUS_ENV: &[&str] = &[
    config::TABLE_NAME,
    config::LINE_SHARDS,
    config::LINE_CACHE_MILLIS,
];
pub const SESSION_COMMAND_ENV: &[&str] = &[
    config::TABLE_NAME,
    config::ENDED_RETENTION_SECONDS,
    config::ACTIVE_STAY_SECONDS,
    config::ACTIVE_MAX_STAY_SECONDS,
];
pub const SWEEPER_ENV: &[&str] = &[config::TABLE_NAME, config::ENDED_RETENTION_SECONDS];
pub const CHECKOUT_ENV: &[&str] = &[
    config::TABLE_NAME,
    config::CHECKOUT_QUEUE_URL,
    config::ENDED_RETENTION_SECONDS,
];
pub const PUBLISHER_ENV: &[&str] = &[config::EVENTS_STREAM_NAME, config::ADMISSION_SIGNING_KEY];
pub const AUTHORIZER_ENV: &[&str] = &[
    config::TABLE_NAME,
    config::ADMISSION_PUBLIC_KEYS,
    config::SESSION_CHECK_CACHE_SECONDS,
];
pub const JWKS_ENV: &[&str] = &[config::ADMISSION_PUBLIC_KEYS];
pub const GRANTER_ENV: &[&str] = &[
    config::TABLE_NAME,
    config::JOIN_QUEUE_URL,
    config::JOIN_DLQ_URL,
    config::LINE_SHARDS,
    config::DEFAULT_CAPACITY,
    config::ACTIVE_STAY_SECONDS,
    config::WAITING_ABANDON_SECONDS,
    config::ENDED_RETENTION_SECONDS,
];

fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    config::process_env()
}

async fn store(env: &Env<impl Fn(&str) -> Option<String>>) -> Result<DynamoStore, ConfigError> {
    let table = env.required(config::TABLE_NAME)?;
    Ok(DynamoStore::new(
        dynamodb_client(&sdk_config().await),
        table,
    ))
}

pub async fn join_service() -> Result<JoinService<DynamoStore, SqsQueue>, ConfigError> {
    let env = process_env();
    let queue_url = env.required(config::JOIN_QUEUE_URL)?;
    let line = LineSettings::from_env(&env)?;
    let store = store(&env).await?;
    let queue = SqsQueue::new(sqs_client(&sdk_config().await), queue_url);
    Ok(JoinService {
        store,
        queue,
        clock: Arc::new(SystemClock),
        ids: Arc::new(OsRandom),
        line_shards: line.line_shards,
    })
}

pub async fn status_service() -> Result<StatusService<DynamoStore>, ConfigError> {
    let env = process_env();
    let line = LineSettings::from_env(&env)?;
    let lifecycle = LifecycleSettings::from_env(&env)?;
    let cache_millis = env.number(config::LINE_CACHE_MILLIS, 1000u64, 0..=60_000)?;
    Ok(StatusService::new(
        store(&env).await?,
        Arc::new(SystemClock),
        line.line_shards,
        config::admission_signer(&env)?,
        lifecycle.abandon_after,
        Duration::from_millis(cache_millis),
    ))
}

pub async fn session_commands() -> Result<SessionCommands<DynamoStore>, ConfigError> {
    let env = process_env();
    commands_from(&env).await
}

async fn commands_from(
    env: &Env<impl Fn(&str) -> Option<String>>,
) -> Result<SessionCommands<DynamoStore>, ConfigError> {
    let lifecycle = LifecycleSettings::from_env(env)?;
    Ok(SessionCommands {
        store: store(env).await?,
        clock: Arc::new(SystemClock),
        ended_retention: lifecycle.ended_retention,
        stay: lifecycle.stay_policy(),
    })
}

pub fn admission_policy(lifecycle: &LifecycleSettings) -> AdmissionPolicy {
    AdmissionPolicy {
        default_capacity: lifecycle.default_capacity,
        active_stay: lifecycle.active_stay,
        abandon_after: lifecycle.abandon_after,
        max_changes_per_write: ADMISSIONS_PER_WRITE,
    }
}

pub async fn granter() -> Result<Granter<DynamoStore>, ConfigError> {
    let env = process_env();
    let lifecycle = LifecycleSettings::from_env(&env)?;
    let line = LineSettings::from_env(&env)?;
    Ok(Granter {
        store: store(&env).await?,
        clock: Arc::new(SystemClock),
        policy: admission_policy(&lifecycle),
        line_shards: line.line_shards,
        ended_retention: lifecycle.ended_retention,
    })
}

/// The join queue for the granter's local poller (Lambda receives for it).
pub async fn join_queue_consumer() -> Result<SqsQueue, ConfigError> {
    let env = process_env();
    let queue_url = env.required(config::JOIN_QUEUE_URL)?;
    Ok(SqsQueue::new(sqs_client(&sdk_config().await), queue_url))
}

/// Where the granter puts join messages it cannot read.
pub async fn quarantine() -> Result<SqsQuarantine, ConfigError> {
    let env = process_env();
    let url = env.required(config::JOIN_DLQ_URL)?;
    Ok(SqsQuarantine::new(sqs_client(&sdk_config().await), url))
}

/// The table's stream, for the granter's local poller.
pub async fn table_stream() -> Result<TableStreamReader, Box<dyn std::error::Error + Send + Sync>> {
    let env = process_env();
    let table = env.required(config::TABLE_NAME)?;
    let sdk = sdk_config().await;
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let reader: Result<TableStreamReader, StoreError> =
        TableStreamReader::open(&dynamodb_client(&sdk), streams, &table).await;
    Ok(reader?)
}

/// Sessions the sweeper expires per query page.
pub const SWEEP_PAGE: usize = 100;

pub async fn sweeper() -> Result<Sweeper<DynamoStore>, ConfigError> {
    Ok(Sweeper {
        commands: commands_from(&process_env()).await?,
        page: SWEEP_PAGE,
    })
}

pub async fn checkout_outcomes() -> Result<CheckoutOutcomes<DynamoStore>, ConfigError> {
    Ok(CheckoutOutcomes {
        commands: commands_from(&process_env()).await?,
    })
}

/// The checkout outcomes queue, for the local poller.
pub async fn checkout_queue_consumer() -> Result<SqsQueue, ConfigError> {
    let env = process_env();
    let queue_url = env.required(config::CHECKOUT_QUEUE_URL)?;
    Ok(SqsQueue::new(sqs_client(&sdk_config().await), queue_url))
}

pub async fn publisher() -> Result<Publisher<KinesisEventSink>, ConfigError> {
    let env = process_env();
    let stream = env.required(config::EVENTS_STREAM_NAME)?;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk_config().await);
    Ok(Publisher {
        sink: KinesisEventSink::new(kinesis, stream),
        signer: config::admission_signer(&env)?,
    })
}

pub async fn admission_check() -> Result<AdmissionCheck<DynamoStore>, ConfigError> {
    let env = process_env();
    let cache = env.seconds(config::SESSION_CHECK_CACHE_SECONDS, 5, 0..=300)?;
    Ok(AdmissionCheck {
        verifier: TokenVerifier::new(config::admission_public_keys(&env)?),
        store: store(&env).await?,
        clock: Arc::new(SystemClock),
        sessions: TtlCache::new(cache),
    })
}

pub fn jwks_keys() -> Result<Vec<PublicKey>, ConfigError> {
    config::admission_public_keys(&process_env())
}
