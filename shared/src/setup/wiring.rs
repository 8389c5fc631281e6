//! Builds each function's service from the environment, in two steps: a
//! pure `*Settings::from_env` that reads every variable the function uses,
//! then the clients. `main.rs` files stay a few lines long, and
//! `variables_read` lets the infra test check the deployment template
//! against exactly what each function reads.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::aws::{dynamodb_client, sdk_config, sns_client, sqs_client};
use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::sns::SnsEventSink;
use crate::adapters::sqs::{SqsQuarantine, SqsQueue};
use crate::adapters::streams::{StartAt, TableStreamReader};
use crate::domain::SystemClock;
use crate::domain::admission::AdmissionPolicy;
use crate::domain::signed_join::JoinKeys;
use crate::domain::token::{AdmissionSigner, PublicKey, TokenVerifier};
use crate::ports::{OsRandom, StoreError};
use crate::service::admin::AdminService;
use crate::service::admission_check::AdmissionCheck;
use crate::service::cache::TtlCache;
use crate::service::checkout::CheckoutOutcomes;
use crate::service::demo_origin::DemoOrigin;
use crate::service::granter::Granter;
use crate::service::join::JoinService;
use crate::service::publisher::Publisher;
use crate::service::session_command::SessionCommands;
use crate::service::status::StatusService;
use crate::service::sweeper::{Reconciler, Sweeper};
use crate::setup::config::{self, ConfigError, Env, LifecycleSettings, LineSettings, Read};

/// Admissions per DynamoDB transaction (at most 100 items, minus the event
/// and line items). Smaller writes conflict less under concurrency.
pub const ADMISSIONS_PER_WRITE: usize = 50;
/// Sessions the sweeper expires per query page.
pub const SWEEP_PAGE: usize = 100;

/// Every function of the deployment, by its binary (and crate) name.
pub const FUNCTIONS: &[&str] = &[
    "join",
    "status",
    "session-command",
    "not-found",
    "granter",
    "sweeper",
    "checkout-outcomes",
    "publisher",
    "authorizer",
    "jwks",
    "admin-api",
    "demo-checkout",
];

pub struct JoinSettings {
    pub table: String,
    pub join_queue_url: String,
    pub line: LineSettings,
    pub join_keys: JoinKeys,
}

impl JoinSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required(config::TABLE_NAME)?,
            join_queue_url: env.required(config::JOIN_QUEUE_URL)?,
            line: LineSettings::from_env(env)?,
            join_keys: config::join_keys(env)?,
        })
    }
}

pub struct StatusSettings {
    pub table: String,
    pub line: LineSettings,
    pub lifecycle: LifecycleSettings,
    pub signer: AdmissionSigner,
    pub cache: Duration,
    /// Where admitted fans go when their event names no origin.
    pub default_origin_url: Option<String>,
}

impl StatusSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required(config::TABLE_NAME)?,
            line: LineSettings::from_env(env)?,
            lifecycle: LifecycleSettings::from_env(env)?,
            signer: config::admission_signer(env)?,
            cache: Duration::from_millis(env.number(
                config::LINE_CACHE_MILLIS,
                1000u64,
                0..=60_000,
            )?),
            default_origin_url: env.optional(config::DEFAULT_ORIGIN_URL),
        })
    }
}

/// The admin API reads events' lines and ends sessions (evictions).
pub struct AdminSettings {
    pub commands: CommandSettings,
    pub line: LineSettings,
}

impl AdminSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            commands: CommandSettings::from_env(env)?,
            line: LineSettings::from_env(env)?,
        })
    }
}

/// Functions that end sessions: session-command, sweeper, checkout-outcomes.
pub struct CommandSettings {
    pub table: String,
    pub lifecycle: LifecycleSettings,
}

impl CommandSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required(config::TABLE_NAME)?,
            lifecycle: LifecycleSettings::from_env(env)?,
        })
    }
}

pub struct GranterSettings {
    pub table: String,
    pub line: LineSettings,
    pub lifecycle: LifecycleSettings,
    /// Where unreadable join messages are put aside.
    pub join_dlq_url: String,
    /// Where failed wake-ups are retried (and, locally, what is received).
    pub join_queue_url: String,
}

impl GranterSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required(config::TABLE_NAME)?,
            line: LineSettings::from_env(env)?,
            lifecycle: LifecycleSettings::from_env(env)?,
            join_dlq_url: env.required(config::JOIN_DLQ_URL)?,
            join_queue_url: env.required(config::JOIN_QUEUE_URL)?,
        })
    }
}

/// The sweeper expires stays and reconciles lines: it needs what the
/// session commands need and what the granter needs to admit.
pub struct SweeperSettings {
    pub commands: CommandSettings,
    pub line: LineSettings,
}

impl SweeperSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            commands: CommandSettings::from_env(env)?,
            line: LineSettings::from_env(env)?,
        })
    }
}

pub struct CheckoutSettings {
    pub commands: CommandSettings,
    /// Where outcomes that can never apply are put aside.
    pub checkout_dlq_url: String,
    /// Local poller only.
    pub checkout_queue_url: Option<String>,
}

impl CheckoutSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            commands: CommandSettings::from_env(env)?,
            checkout_dlq_url: env.required(config::CHECKOUT_DLQ_URL)?,
            checkout_queue_url: env.optional(config::CHECKOUT_QUEUE_URL),
        })
    }
}

pub struct PublisherSettings {
    pub events_topic_arn: String,
    /// `QUEUE_READY` with its token, for the checkout alone.
    pub admissions_topic_arn: String,
    pub signer: AdmissionSigner,
    /// Where unreadable stream records are put aside.
    pub stream_dlq_url: String,
    /// Local poller only: the table whose stream it reads.
    pub table: Option<String>,
}

impl PublisherSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            events_topic_arn: env.required(config::EVENTS_TOPIC_ARN)?,
            admissions_topic_arn: env.required(config::ADMISSIONS_TOPIC_ARN)?,
            signer: config::admission_signer(env)?,
            stream_dlq_url: env.required(config::STREAM_DLQ_URL)?,
            table: env.optional(config::TABLE_NAME),
        })
    }
}

pub struct AuthorizerSettings {
    pub table: String,
    pub keys: Vec<PublicKey>,
    pub session_cache: Duration,
}

impl AuthorizerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table: env.required(config::TABLE_NAME)?,
            keys: config::admission_public_keys(env)?,
            session_cache: env.seconds(config::SESSION_CHECK_CACHE_SECONDS, 5, 0..=300)?,
        })
    }
}

/// The demo origin checks tokens as the authorizer does and sends
/// outcomes to the checkout-outcome queue.
pub struct DemoOriginSettings {
    pub check: AuthorizerSettings,
    pub checkout_queue_url: String,
}

impl DemoOriginSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            check: AuthorizerSettings::from_env(env)?,
            checkout_queue_url: env.required(config::CHECKOUT_QUEUE_URL)?,
        })
    }
}

/// The variables `function` reads, as its settings ask for them with every
/// variable set to a valid value. `None` for an unknown function.
pub fn variables_read(function: &str) -> Option<Vec<Read>> {
    let env = Env::new(sample_value);
    let built = match function {
        "join" => JoinSettings::from_env(&env).map(drop),
        "status" => StatusSettings::from_env(&env).map(drop),
        "session-command" => CommandSettings::from_env(&env).map(drop),
        "sweeper" => SweeperSettings::from_env(&env).map(drop),
        "granter" => GranterSettings::from_env(&env).map(drop),
        "checkout-outcomes" => CheckoutSettings::from_env(&env).map(drop),
        "publisher" => PublisherSettings::from_env(&env).map(drop),
        "authorizer" => AuthorizerSettings::from_env(&env).map(drop),
        "jwks" => config::admission_public_keys(&env).map(drop),
        "admin-api" => AdminSettings::from_env(&env).map(drop),
        "demo-checkout" => DemoOriginSettings::from_env(&env).map(drop),
        "not-found" => Ok(()),
        _ => return None,
    };
    built.ok().map(|()| env.reads())
}

/// A valid value for every variable, for `variables_read`.
fn sample_value(name: &str) -> Option<String> {
    let signer = AdmissionSigner::generate("sample", [1; 32]).ok()?;
    let value = match name {
        config::ADMISSION_SIGNING_KEY => signer.secret_setting(),
        config::ADMISSION_PUBLIC_KEYS => signer.public_key().setting(),
        config::ACTIVE_MAX_STAY_SECONDS => "1800".to_owned(),
        config::TABLE_NAME => "sample".to_owned(),
        config::EVENTS_TOPIC_ARN => {
            "arn:aws:sns:us-east-1:123456789012:sample-events.fifo".to_owned()
        }
        config::ADMISSIONS_TOPIC_ARN => {
            "arn:aws:sns:us-east-1:123456789012:sample-admissions.fifo".to_owned()
        }
        url if url.ends_with("_URL") => "http://127.0.0.1/queue".to_owned(),
        _ => return None,
    };
    Some(value)
}

/// The SDK configuration, loaded once per process: a function that talks
/// to DynamoDB and SQS (and, polling locally, the table's stream) resolves
/// its credentials and region once per cold start and shares one HTTP
/// client. (A process runs one tokio runtime, which the client belongs to.)
async fn sdk() -> &'static aws_config::SdkConfig {
    static SDK: tokio::sync::OnceCell<aws_config::SdkConfig> = tokio::sync::OnceCell::const_new();
    SDK.get_or_init(sdk_config).await
}

async fn store(table: String) -> DynamoStore {
    DynamoStore::new(dynamodb_client(sdk().await), table)
}

pub async fn join_service() -> Result<JoinService<DynamoStore, SqsQueue>, ConfigError> {
    let settings = JoinSettings::from_env(&config::process_env())?;
    let sdk = sdk().await;
    Ok(JoinService {
        store: DynamoStore::new(dynamodb_client(sdk), settings.table),
        queue: SqsQueue::new(sqs_client(sdk), settings.join_queue_url),
        clock: Arc::new(SystemClock),
        ids: Arc::new(OsRandom),
        line_shards: settings.line.line_shards,
        listed: Default::default(),
        states: Default::default(),
        join_keys: settings.join_keys,
    })
}

pub async fn status_service() -> Result<StatusService<DynamoStore>, ConfigError> {
    let settings = StatusSettings::from_env(&config::process_env())?;
    Ok(StatusService::new(
        store(settings.table).await,
        Arc::new(SystemClock),
        settings.line.line_shards,
        settings.signer,
        settings.lifecycle.abandon_after,
        settings.cache,
    )
    .with_default_origin(settings.default_origin_url))
}

fn commands_with(settings: &CommandSettings, store: DynamoStore) -> SessionCommands<DynamoStore> {
    commands_on(store, &settings.lifecycle)
}

fn commands_on(store: DynamoStore, lifecycle: &LifecycleSettings) -> SessionCommands<DynamoStore> {
    SessionCommands {
        store,
        clock: Arc::new(SystemClock),
        ended_retention: lifecycle.ended_retention,
        stay: lifecycle.stay_policy(),
    }
}

async fn commands(settings: CommandSettings) -> SessionCommands<DynamoStore> {
    let store = store(settings.table.clone()).await;
    commands_with(&settings, store)
}

pub async fn admin_service() -> Result<AdminService<DynamoStore>, ConfigError> {
    let settings = AdminSettings::from_env(&config::process_env())?;
    let store = store(settings.commands.table.clone()).await;
    Ok(admin_service_on(
        store,
        &settings.line,
        &settings.commands.lifecycle,
    ))
}

/// The admin service on `store`: the admin-api function's, and the CLI's
/// (which names its table on the command line).
pub fn admin_service_on(
    store: DynamoStore,
    line: &LineSettings,
    lifecycle: &LifecycleSettings,
) -> AdminService<DynamoStore> {
    AdminService {
        commands: commands_on(store.clone(), lifecycle),
        store,
        clock: Arc::new(SystemClock),
        ids: Arc::new(OsRandom),
        line_shards: line.line_shards,
        default_capacity: lifecycle.default_capacity,
    }
}

pub async fn session_commands() -> Result<SessionCommands<DynamoStore>, ConfigError> {
    Ok(commands(CommandSettings::from_env(&config::process_env())?).await)
}

pub fn admission_policy(lifecycle: &LifecycleSettings) -> AdmissionPolicy {
    AdmissionPolicy {
        default_capacity: lifecycle.default_capacity,
        active_stay: lifecycle.active_stay,
        abandon_after: lifecycle.abandon_after,
        max_changes_per_write: ADMISSIONS_PER_WRITE,
    }
}

/// The granter's service, where it quarantines unreadable messages, and the
/// join queue (where it hands failed wake-ups, and which the local poller
/// receives from).
pub struct GranterParts {
    pub granter: Granter<DynamoStore>,
    pub quarantine: SqsQuarantine,
    pub join_queue: SqsQueue,
}

fn granter_of(
    store: DynamoStore,
    line: &LineSettings,
    lifecycle: &LifecycleSettings,
) -> Granter<DynamoStore> {
    Granter {
        store,
        clock: Arc::new(SystemClock),
        policy: admission_policy(lifecycle),
        line_shards: line.line_shards,
        ended_retention: lifecycle.ended_retention,
        fronts: Default::default(),
    }
}

pub async fn granter() -> Result<GranterParts, ConfigError> {
    let settings = GranterSettings::from_env(&config::process_env())?;
    let sdk = sdk().await;
    let sqs = sqs_client(sdk);
    let store = DynamoStore::new(dynamodb_client(sdk), settings.table.clone());
    Ok(GranterParts {
        granter: granter_of(store, &settings.line, &settings.lifecycle),
        quarantine: SqsQuarantine::new(sqs.clone(), settings.join_dlq_url),
        join_queue: SqsQueue::new(sqs, settings.join_queue_url),
    })
}

/// The sweeper's two jobs: expiry and reconciliation.
pub struct SweeperParts {
    pub sweeper: Sweeper<DynamoStore>,
    pub reconciler: Reconciler<DynamoStore>,
}

pub async fn sweeper() -> Result<SweeperParts, ConfigError> {
    let settings = SweeperSettings::from_env(&config::process_env())?;
    let store = store(settings.commands.table.clone()).await;
    Ok(SweeperParts {
        sweeper: Sweeper {
            commands: commands_with(&settings.commands, store.clone()),
            page: SWEEP_PAGE,
        },
        reconciler: Reconciler {
            granter: granter_of(store, &settings.line, &settings.commands.lifecycle),
        },
    })
}

/// Checkout outcomes, and (for the local poller) their queue.
pub async fn checkout_outcomes() -> Result<
    (
        CheckoutOutcomes<DynamoStore, SqsQuarantine>,
        Option<SqsQueue>,
    ),
    ConfigError,
> {
    let settings = CheckoutSettings::from_env(&config::process_env())?;
    let sdk = sdk().await;
    let sqs = sqs_client(sdk);
    let queue = settings
        .checkout_queue_url
        .map(|url| SqsQueue::new(sqs.clone(), url));
    let outcomes = CheckoutOutcomes {
        commands: commands_with(
            &settings.commands,
            DynamoStore::new(dynamodb_client(sdk), settings.commands.table.clone()),
        ),
        quarantine: SqsQuarantine::new(sqs, settings.checkout_dlq_url),
    };
    Ok((outcomes, queue))
}

/// The events publisher, and (for the local poller) the table it follows.
pub async fn publisher()
-> Result<(Publisher<SnsEventSink, SqsQuarantine>, Option<String>), ConfigError> {
    let settings = PublisherSettings::from_env(&config::process_env())?;
    let sdk = sdk().await;
    let publisher = Publisher {
        sink: SnsEventSink::new(
            sns_client(sdk),
            settings.events_topic_arn,
            settings.admissions_topic_arn,
        ),
        quarantine: SqsQuarantine::new(sqs_client(sdk), settings.stream_dlq_url),
        signer: settings.signer,
    };
    Ok((publisher, settings.table))
}

pub async fn admission_check() -> Result<AdmissionCheck<DynamoStore>, ConfigError> {
    let settings = AuthorizerSettings::from_env(&config::process_env())?;
    Ok(admission_check_with(settings).await)
}

async fn admission_check_with(settings: AuthorizerSettings) -> AdmissionCheck<DynamoStore> {
    AdmissionCheck {
        verifier: TokenVerifier::new(settings.keys),
        store: store(settings.table).await,
        clock: Arc::new(SystemClock),
        sessions: TtlCache::new(settings.session_cache),
    }
}

pub async fn demo_origin() -> Result<DemoOrigin<DynamoStore, SqsQueue>, ConfigError> {
    let settings = DemoOriginSettings::from_env(&config::process_env())?;
    Ok(DemoOrigin {
        outcomes: SqsQueue::new(sqs_client(sdk().await), settings.checkout_queue_url),
        check: admission_check_with(settings.check).await,
    })
}

pub fn jwks_keys() -> Result<Vec<PublicKey>, ConfigError> {
    config::admission_public_keys(&config::process_env())
}

/// The table's stream, for the local pollers.
pub async fn table_stream(table: &str, start: StartAt) -> Result<TableStreamReader, StoreError> {
    let sdk = sdk().await;
    let streams = aws_sdk_dynamodbstreams::Client::new(sdk);
    TableStreamReader::open(&dynamodb_client(sdk), streams, table, start).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_reads_a_known_set_of_variables() {
        for function in FUNCTIONS {
            let reads = variables_read(function).unwrap_or_else(|| panic!("{function}"));
            assert!(
                reads
                    .iter()
                    .all(|r| r.name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            );
        }
        let join: Vec<&str> = variables_read("join")
            .unwrap()
            .iter()
            .filter(|r| r.required)
            .map(|r| r.name)
            .collect();
        assert_eq!(join, vec![config::TABLE_NAME, config::JOIN_QUEUE_URL]);
        let sweeper: Vec<&str> = variables_read("sweeper")
            .unwrap()
            .iter()
            .map(|r| r.name)
            .collect();
        assert!(
            sweeper.contains(&config::LINE_SHARDS),
            "the reconciliation reads every shard"
        );
        assert!(variables_read("not-found").unwrap().is_empty());
        assert!(variables_read("nonsense").is_none());
    }
}
