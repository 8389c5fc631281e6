//! Harness for the tests that run against the AWS emulator over HTTP: every
//! test provisions its own table and queues, so tests run in parallel, and
//! removes them afterwards.

pub mod emulator;
pub mod http;
pub mod proxy;
pub mod recording;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use waiting_room::adapters::dynamodb::DynamoStore;
use waiting_room::adapters::dynamodb::items::decode_session;
use waiting_room::adapters::provision::{
    Clients, Provisioned, ResourceNames, provision, tear_down,
};
use waiting_room::adapters::sns::SnsEventSink;
use waiting_room::adapters::sqs::{SqsQuarantine, SqsQueue};
use waiting_room::adapters::streams::{StartAt, TableStreamReader};
use waiting_room::domain::{Session, SessionId, SessionStatus, SystemClock};
use waiting_room::ports::{OsRandom, SessionStore};
use waiting_room::runtime::checkout::poll_queue as poll_checkout_queue;
use waiting_room::runtime::granter::{poll_join_queue, poll_table_stream};
use waiting_room::service::admin::AdminService;
use waiting_room::service::granter::FrontCache;
use waiting_room::service::sweeper::Reconciler;
use waiting_room::setup::config::LifecycleSettings;

use crate::recording::CallLog;
use waiting_room::domain::signed_join::JoinKeys;
use waiting_room::domain::token::{AdmissionSigner, TokenVerifier};
use waiting_room::service::admission_check::AdmissionCheck;
use waiting_room::service::cache::TtlCache;
use waiting_room::service::checkout::CheckoutOutcomes;
use waiting_room::service::demo_origin::DemoOrigin;
use waiting_room::service::granter::Granter;
use waiting_room::service::join::JoinService;
use waiting_room::service::publisher::Publisher;
use waiting_room::service::session_command::SessionCommands;
use waiting_room::service::status::StatusService;
use waiting_room::service::sweeper::Sweeper;
use waiting_room::setup::wiring::admission_policy;

/// The emulator the tests talk to (see `emulator` for how it is chosen).
pub async fn emulator_endpoint() -> String {
    emulator::endpoint().await
}

/// SDK configuration for the emulator, with fixed test credentials.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(15))
                .build(),
        )
        .load()
        .await
}

/// Logs of the code under test, shown for failing tests; `RUST_LOG` picks
/// the level (warnings by default).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One test's own table, queues and events topic, clients for them, and its
/// own admission signing key. The functions' services get clients of their
/// own, named after the function, whose every call is recorded (`calls`);
/// `dynamodb`, `sqs` and `sns` are the test's own, for setting up and
/// looking.
#[derive(Clone)]
pub struct Stack {
    pub sdk: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub resources: Provisioned,
    pub signer: AdmissionSigner,
    pub calls: CallLog,
}

/// A function's own clients, recorded under its name.
pub struct FunctionClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub streams: waiting_room::adapters::streams::StreamsClient,
}

impl Stack {
    pub async fn new(tag: &str) -> Self {
        Self::at(&emulator_endpoint().await, tag).await
    }

    pub async fn at(endpoint: &str, tag: &str) -> Self {
        init_logs();
        let sdk = sdk_config_for(endpoint).await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let sns = aws_sdk_sns::Client::new(&sdk);
        let name = format!("wr-{tag}-{}", random_suffix());
        let names = ResourceNames {
            table: name.clone(),
            queue_prefix: name,
        };
        let clients = Clients {
            dynamodb: &dynamodb,
            sqs: &sqs,
            sns: &sns,
        };
        let resources = provision(&clients, &names).await.unwrap();
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        Self {
            signer: AdmissionSigner::generate("test-key", seed).unwrap(),
            sdk,
            dynamodb,
            sqs,
            sns,
            resources,
            calls: CallLog::new(),
        }
    }

    /// Clients of this stack pointed somewhere else (a fault proxy).
    pub async fn via(&self, endpoint: &str) -> Self {
        let sdk = sdk_config_for(endpoint).await;
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            sdk,
            resources: self.resources.clone(),
            signer: self.signer.clone(),
            calls: self.calls.clone(),
        }
    }

    /// Clients for `function`'s code: each call is recorded under its name.
    pub fn clients_for(&self, function: &str) -> FunctionClients {
        let recorder = self.calls.interceptor(function);
        FunctionClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&self.sdk)
                    .interceptor(recorder.clone())
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&self.sdk)
                    .interceptor(recorder.clone())
                    .build(),
            ),
            sns: aws_sdk_sns::Client::from_conf(
                aws_sdk_sns::config::Builder::from(&self.sdk)
                    .interceptor(recorder.clone())
                    .build(),
            ),
            streams: waiting_room::adapters::streams::StreamsClient::from_conf(
                aws_sdk_dynamodbstreams::config::Builder::from(&self.sdk)
                    .interceptor(recorder)
                    .build(),
            ),
        }
    }

    /// `function`'s store.
    pub fn store_for(&self, function: &str) -> DynamoStore {
        DynamoStore::new(self.clients_for(function).dynamodb, &self.resources.table)
    }

    pub async fn tear_down(self) {
        let clients = Clients {
            dynamodb: &self.dynamodb,
            sqs: &self.sqs,
            sns: &self.sns,
        };
        tear_down(&clients, &self.resources).await;
    }

    /// The test's own store, for setting up and looking (not recorded).
    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(self.dynamodb.clone(), &self.resources.table)
    }

    /// A session's stored status (`None`: no such session).
    pub async fn status_of(&self, id: &SessionId) -> Option<SessionStatus> {
        self.store()
            .get_session(id)
            .await
            .unwrap()
            .map(|session| session.status())
    }

    /// The join queue as `function` uses it.
    pub fn queue_for(&self, function: &str) -> SqsQueue {
        SqsQueue::new(
            self.clients_for(function).sqs,
            &self.resources.join_queue_url,
        )
    }

    /// The join queue as the test itself uses it (not recorded).
    pub fn queue(&self) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), &self.resources.join_queue_url)
    }

    pub fn join_service(&self, line_shards: u16) -> JoinService<DynamoStore, SqsQueue> {
        let clients = self.clients_for("join");
        JoinService {
            store: DynamoStore::new(clients.dynamodb, &self.resources.table),
            queue: SqsQueue::new(clients.sqs, &self.resources.join_queue_url),
            clock: Arc::new(SystemClock),
            ids: Arc::new(OsRandom),
            line_shards,
            listed: Default::default(),
            states: Default::default(),
            join_keys: JoinKeys::of(vec![TEST_JOIN_KEY.to_vec()]),
        }
    }

    /// The demo origin as its function runs it.
    pub fn demo_origin(&self) -> DemoOrigin<DynamoStore, SqsQueue> {
        let clients = self.clients_for("demo-checkout");
        DemoOrigin {
            check: AdmissionCheck {
                verifier: self.verifier(),
                store: DynamoStore::new(clients.dynamodb, &self.resources.table),
                clock: Arc::new(SystemClock),
                sessions: TtlCache::new(Duration::ZERO),
            },
            outcomes: SqsQueue::new(clients.sqs, &self.resources.checkout_queue_url),
        }
    }

    pub fn status_service(&self, line_shards: u16) -> StatusService<DynamoStore> {
        let abandon_after = LifecycleSettings::default().abandon_after;
        StatusService::new(
            self.store_for("status"),
            Arc::new(SystemClock),
            line_shards,
            self.signer.clone(),
            abandon_after,
            Duration::ZERO,
        )
    }

    pub fn commands(&self) -> SessionCommands<DynamoStore> {
        self.commands_of("session-command")
    }

    /// The session commands as `function` (session-command, sweeper,
    /// checkout-outcomes) runs them.
    pub fn commands_of(&self, function: &str) -> SessionCommands<DynamoStore> {
        SessionCommands {
            store: self.store_for(function),
            clock: Arc::new(SystemClock),
            ended_retention: Duration::from_secs(3600),
            stay: LifecycleSettings::default().stay_policy(),
        }
    }

    /// The admin API's service, as the admin-api function runs it.
    pub fn admin_service(&self, default_capacity: u32) -> AdminService<DynamoStore> {
        AdminService {
            store: self.store_for("admin-api"),
            commands: self.commands_of("admin-api"),
            clock: Arc::new(SystemClock),
            ids: Arc::new(OsRandom),
            line_shards: 1,
            default_capacity,
        }
    }

    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(vec![self.signer.public_key()])
    }

    pub fn commands_with(&self, lifecycle: &LifecycleSettings) -> SessionCommands<DynamoStore> {
        SessionCommands {
            stay: lifecycle.stay_policy(),
            ..self.commands()
        }
    }

    pub fn status_with(&self, lifecycle: &LifecycleSettings) -> StatusService<DynamoStore> {
        StatusService::new(
            self.store_for("status"),
            Arc::new(SystemClock),
            1,
            self.signer.clone(),
            lifecycle.abandon_after,
            Duration::ZERO,
        )
    }

    pub fn sweeper(&self, lifecycle: &LifecycleSettings) -> Sweeper<DynamoStore> {
        Sweeper {
            commands: SessionCommands {
                stay: lifecycle.stay_policy(),
                ..self.commands_of("sweeper")
            },
            page: 5,
        }
    }

    /// The sweeper's reconciliation (the granter's logic, the sweeper's role).
    pub fn reconciler(
        &self,
        lifecycle: &LifecycleSettings,
        line_shards: u16,
    ) -> Reconciler<DynamoStore> {
        Reconciler {
            granter: self.granter_as("sweeper", lifecycle, line_shards),
        }
    }

    pub fn checkout_outcomes(&self) -> CheckoutOutcomes<DynamoStore, SqsQuarantine> {
        CheckoutOutcomes {
            commands: self.commands_of("checkout-outcomes"),
            quarantine: SqsQuarantine::new(
                self.clients_for("checkout-outcomes").sqs,
                &self.resources.checkout_dead_letter_queue_url,
            ),
        }
    }

    pub fn publisher(&self) -> Publisher<SnsEventSink, SqsQuarantine> {
        let clients = self.clients_for("publisher");
        Publisher {
            sink: SnsEventSink::new(
                clients.sns,
                &self.resources.events_topic_arn,
                &self.resources.admissions_topic_arn,
            ),
            quarantine: SqsQuarantine::new(
                clients.sqs,
                &self.resources.stream_dead_letter_queue_url,
            ),
            signer: self.signer.clone(),
        }
    }

    pub fn admission_check(&self) -> AdmissionCheck<DynamoStore> {
        AdmissionCheck {
            verifier: self.verifier(),
            store: self.store_for("authorizer"),
            clock: Arc::new(SystemClock),
            sessions: TtlCache::new(Duration::ZERO),
        }
    }

    /// The table stream as `function`'s local poller reads it, from its
    /// oldest record (each test's table is new).
    pub async fn stream_reader(&self, function: &str) -> TableStreamReader {
        self.stream_reader_at(function, StartAt::Oldest).await
    }

    /// The table stream as `function`'s local poller reads it from `start`.
    pub async fn stream_reader_at(&self, function: &str, start: StartAt) -> TableStreamReader {
        let clients = self.clients_for(function);
        TableStreamReader::open(
            &clients.dynamodb,
            clients.streams,
            &self.resources.table,
            start,
        )
        .await
        .unwrap()
    }

    /// A new consumer of the domain events: its own SQS FIFO queue,
    /// subscribed to the events topic. Returns the queue's URL.
    pub async fn subscribe_consumer(&self, name: &str) -> String {
        self.subscribe(name, &self.resources.events_topic_arn).await
    }

    /// The checkout's subscription: `QUEUE_READY` with the admission token.
    pub async fn subscribe_checkout(&self) -> String {
        self.subscribe("checkout", &self.resources.admissions_topic_arn)
            .await
    }

    async fn subscribe(&self, name: &str, topic_arn: &str) -> String {
        let queue = self
            .sqs
            .create_queue()
            .queue_name(format!("{}-{name}.fifo", self.resources.table))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap();
        let url = queue.queue_url().unwrap().to_owned();
        let arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap();
        self.sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .unwrap();
        url
    }

    /// Every event a consumer has received so far, in arrival order, as JSON
    /// with its message group (`_partition`).
    pub async fn consume(&self, queue_url: &str) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        loop {
            let batch = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await
                .unwrap();
            let messages = batch.messages();
            if messages.is_empty() {
                return events;
            }
            for message in messages {
                let mut event: serde_json::Value =
                    serde_json::from_str(message.body().unwrap()).unwrap();
                let group = message
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned()
                    .unwrap_or_default();
                event["_partition"] = serde_json::Value::String(group);
                events.push(event);
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    pub fn granter(&self, lifecycle: &LifecycleSettings, line_shards: u16) -> Granter<DynamoStore> {
        self.granter_as("granter", lifecycle, line_shards)
    }

    fn granter_as(
        &self,
        function: &str,
        lifecycle: &LifecycleSettings,
        line_shards: u16,
    ) -> Granter<DynamoStore> {
        Granter {
            store: self.store_for(function),
            clock: Arc::new(SystemClock),
            policy: admission_policy(lifecycle),
            line_shards,
            ended_retention: lifecycle.ended_retention,
            fronts: FrontCache::default(),
        }
    }

    /// Where the granter puts unreadable join messages aside.
    pub fn join_quarantine(&self) -> SqsQuarantine {
        SqsQuarantine::new(
            self.clients_for("granter").sqs,
            &self.resources.join_dead_letter_queue_url,
        )
    }

    /// The join queue's redrive policy: its dead-letter queue after
    /// `max_receive_count` receives, with a short visibility timeout.
    pub async fn set_redrive(&self, max_receive_count: u32, visibility_seconds: u32) {
        let dlq_arn = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.resources.join_dead_letter_queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap();
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count,
        })
        .to_string();
        self.sqs
            .set_queue_attributes()
            .queue_url(&self.resources.join_queue_url)
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_seconds.to_string(),
            )
            .send()
            .await
            .unwrap();
    }

    pub async fn set_visibility_timeout(&self, seconds: u32) {
        self.sqs
            .set_queue_attributes()
            .queue_url(&self.resources.join_queue_url)
            .attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string())
            .send()
            .await
            .unwrap();
    }

    /// Every session in the table, read in one scan.
    pub async fn sessions(&self) -> Vec<Session> {
        let mut sessions = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.resources.table)
                .filter_expression("begins_with(pk, :session)")
                .expression_attribute_values(
                    ":session",
                    aws_sdk_dynamodb::types::AttributeValue::S("SESSION#".into()),
                )
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .unwrap();
            sessions.extend(
                page.items()
                    .iter()
                    .map(|item| decode_session(item).unwrap()),
            );
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return sessions;
            }
        }
    }

    pub async fn count_by_status(&self) -> HashMap<SessionStatus, usize> {
        let mut counts = HashMap::new();
        for session in self.sessions().await {
            *counts.entry(session.status()).or_default() += 1;
        }
        counts
    }

    /// Messages in a queue, visible or in flight.
    pub async fn messages_in(&self, queue_url: &str) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let read = |name: QueueAttributeName| -> u64 {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        read(QueueAttributeName::ApproximateNumberOfMessages)
            + read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// Start `count` concurrent granter pollers and one stream poller, each
    /// with its own clients, as separate Lambda instances would be.
    pub async fn start_granters(
        &self,
        count: usize,
        lifecycle: &LifecycleSettings,
        line_shards: u16,
    ) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..count {
            let granter = self.granter(lifecycle, line_shards);
            let consumer = self.queue_for("granter");
            let quarantine = self.join_quarantine();
            let shutdown = until(stopped.clone());
            tasks.push(tokio::spawn(async move {
                poll_join_queue(&granter, &consumer, &quarantine, &consumer, shutdown).await;
            }));
        }
        let granter = self.granter(lifecycle, line_shards);
        let wakes = self.queue_for("granter");
        let mut stream = self.stream_reader("granter").await;
        let shutdown = until(stopped);
        tasks.push(tokio::spawn(async move {
            poll_table_stream(&granter, &wakes, &mut stream, shutdown).await;
        }));
        Workers { stop, tasks }
    }
}

impl Stack {
    /// The checkout-outcomes worker on this stack's checkout queue, as the
    /// local poller runs it.
    pub fn start_checkout_outcomes(&self) -> Workers {
        let (stop, stopped) = watch::channel(false);
        let outcomes = self.checkout_outcomes();
        let consumer = SqsQueue::new(self.sqs.clone(), &self.resources.checkout_queue_url);
        let task = tokio::spawn(async move {
            poll_checkout_queue(&outcomes, &consumer, until(stopped)).await;
        });
        Workers {
            stop,
            tasks: vec![task],
        }
    }
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Running worker tasks (granters, the checkout-outcomes poller); stop
/// them before tearing the stack down.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// Waits until `check` holds, or fails the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

/// Lifecycle settings for tests: a given default capacity, the rest default.
/// The join signing key of every test stack's join service.
pub const TEST_JOIN_KEY: [u8; 32] = [42; 32];

pub fn lifecycle(default_capacity: u32) -> LifecycleSettings {
    LifecycleSettings {
        default_capacity,
        ..LifecycleSettings::default()
    }
}

/// Join as a fan's client does: a 503 says "join again" (the emulator under
/// the suite's load can be slower than the join's write window), and the
/// retry repeats the first attempt's key so that it keeps its place.
pub async fn join_as_fan(
    service: &JoinService<DynamoStore, SqsQueue>,
    event: &waiting_room::domain::EventId,
    user: &waiting_room::domain::UserId,
) -> Session {
    use waiting_room::service::ServiceError;
    let key = waiting_room::domain::IdempotencyKey::parse(&format!("join-{user}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut attempts = 0;
    loop {
        match service
            .join(event.clone(), user.clone(), Some(key.clone()))
            .await
        {
            Err(
                ServiceError::Unavailable(_)
                | ServiceError::JoinUnconfirmed { .. }
                | ServiceError::Contention,
            ) if attempts < 5 => attempts += 1,
            Ok(outcome) => return outcome.session().clone(),
            Err(err) => panic!("join of {user} failed: {err}"),
        }
    }
}
