//! Least privilege, checked against the calls the code really makes: every
//! AWS request each function's code sends in a scenario that drives all its
//! paths against the emulator (and, under `make test`, in every other
//! emulator test too) is recorded by an SDK interceptor, down to the kind
//! of each transaction item; each is mapped to the IAM action AWS checks for
//! it; with what the function's event source mappings and its logs need,
//! that is exactly what its role in infra/template.yaml must grant. A grant
//! missing fails the test (AWS would refuse the call; the emulator checks no
//! IAM), and so does a grant no code uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use integration_tests::proxy::FaultProxy;
use integration_tests::recording::{Call, suite_calls};
use integration_tests::{Stack, emulator_endpoint};
use waiting_room::adapters::sqs::SqsQueue;
use waiting_room::domain::changes::UnreadableRecord;
use waiting_room::domain::{
    Clock, Control, EventId, EventState, IdempotencyKey, SessionStatus, StreamRecord, SystemClock,
    UserId,
};
use waiting_room::ports::{Delivery, EventStore, QueueConsumer};
use waiting_room::runtime::granter::{handle_batch, handle_stream};
use waiting_room::service::admin::Configuration;
use waiting_room::service::granter::Wake;
use waiting_room::setup::config::LifecycleSettings;
use waiting_room::setup::wiring::FUNCTIONS;
use yaml_rust2::{Yaml, YamlLoader};

/// An IAM grant: action and resource, the resource as the template names it
/// (`Table.Arn`, `Table.Arn/index/line-index`, `JoinQueue.Arn`, ...).
type Grant = (String, String);

fn template() -> Yaml {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join("infra/template.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn logical_id(function: &str) -> String {
    function
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A template reference as plain text: `!GetAtt Table.Arn` → `Table.Arn`,
/// `!Sub "${Table.Arn}/index/x"` → `Table.Arn/index/x`, `!Ref T` → `T`.
fn reference(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.replace("${", "").replace('}', ""),
        other => panic!("not a reference: {other:?}"),
    }
}

fn list(value: &Yaml) -> Vec<&Yaml> {
    match value {
        Yaml::Array(items) => items.iter().collect(),
        Yaml::BadValue => Vec::new(),
        one => vec![one],
    }
}

/// What `function`'s role grants.
fn granted(template: &Yaml, function: &str) -> BTreeSet<Grant> {
    let properties =
        &template["Resources"][format!("{}Function", logical_id(function)).as_str()]["Properties"];
    let role_ref = reference(&properties["Role"]);
    let role = role_ref.trim_end_matches(".Arn");
    let role = &template["Resources"][role];
    assert_eq!(
        role["Type"].as_str(),
        Some("AWS::IAM::Role"),
        "{function} must have a role of its own"
    );
    assert!(
        role["Properties"]["ManagedPolicyArns"].is_badvalue(),
        "{function}'s role must not take managed policies: they grant more than it uses"
    );
    let mut grants = BTreeSet::new();
    for policy in list(&role["Properties"]["Policies"]) {
        for statement in list(&policy["PolicyDocument"]["Statement"]) {
            assert_eq!(statement["Effect"].as_str(), Some("Allow"));
            for action in list(&statement["Action"]) {
                for resource in list(&statement["Resource"]) {
                    grants.insert((action.as_str().unwrap().to_owned(), reference(resource)));
                }
            }
        }
    }
    grants
}

/// What `function`'s event source mappings and logs need, from the template.
fn needed_by_the_platform(template: &Yaml, function: &str) -> BTreeSet<Grant> {
    let logical = logical_id(function);
    let mut needs = BTreeSet::new();
    let log_group = format!("{logical}LogGroup.Arn");
    needs.insert(("logs:CreateLogStream".to_owned(), log_group.clone()));
    needs.insert(("logs:PutLogEvents".to_owned(), log_group));
    let events =
        &template["Resources"][format!("{logical}Function").as_str()]["Properties"]["Events"];
    for event in events.as_hash().into_iter().flat_map(|h| h.values()) {
        let properties = &event["Properties"];
        match event["Type"].as_str() {
            Some("SQS") => {
                let queue = reference(&properties["Queue"]);
                for action in ["ReceiveMessage", "DeleteMessage", "GetQueueAttributes"] {
                    needs.insert((format!("sqs:{action}"), queue.clone()));
                }
            }
            Some("DynamoDB") => {
                let stream = reference(&properties["Stream"]);
                for action in [
                    "DescribeStream",
                    "GetRecords",
                    "GetShardIterator",
                    "ListStreams",
                ] {
                    needs.insert((format!("dynamodb:{action}"), stream.clone()));
                }
                let failures = &properties["DestinationConfig"]["OnFailure"]["Destination"];
                if !failures.is_badvalue() {
                    needs.insert(("sqs:SendMessage".to_owned(), reference(failures)));
                }
            }
            Some("HttpApi" | "ScheduleV2") => {}
            other => panic!("{function}: an event source this test does not know: {other:?}"),
        }
    }
    needs
}

/// The template names of the stack's resources, by the name or URL the
/// code uses.
struct Names(BTreeMap<String, String>);

impl Names {
    fn of(stack: &Stack) -> Self {
        let r = &stack.resources;
        let mut names = BTreeMap::from([
            (r.table.clone(), "Table.Arn".to_owned()),
            (r.join_queue_url.clone(), "JoinQueue.Arn".to_owned()),
            (
                r.join_dead_letter_queue_url.clone(),
                "JoinDeadLetterQueue.Arn".to_owned(),
            ),
            (r.checkout_queue_url.clone(), "CheckoutQueue.Arn".to_owned()),
            (
                r.checkout_dead_letter_queue_url.clone(),
                "CheckoutDeadLetterQueue.Arn".to_owned(),
            ),
            (
                r.stream_dead_letter_queue_url.clone(),
                "StreamDeadLetterQueue.Arn".to_owned(),
            ),
            (r.events_topic_arn.clone(), "EventsTopic".to_owned()),
            (r.admissions_topic_arn.clone(), "AdmissionsTopic".to_owned()),
        ]);
        for index in ["line-index", "expiry-index", "event-index"] {
            names.insert(
                format!("{}/index/{index}", r.table),
                format!("Table.Arn/index/{index}"),
            );
        }
        Self(names)
    }

    /// Other tests' stacks have other names: the kind of resource is what
    /// matters, so a name is recognised by its shape too.
    fn resolve(&self, resource: &str) -> Option<String> {
        if let Some(known) = self.0.get(resource) {
            return Some(known.clone());
        }
        let queue = |suffix: &str| resource.ends_with(suffix);
        let by_shape = if let Some((_, index)) = resource.split_once("/index/") {
            format!("Table.Arn/index/{index}")
        } else if queue("-join.fifo") {
            "JoinQueue.Arn".into()
        } else if queue("-join-dlq.fifo") {
            "JoinDeadLetterQueue.Arn".into()
        } else if queue("-checkout-outcomes") {
            "CheckoutQueue.Arn".into()
        } else if queue("-checkout-outcomes-dlq") {
            "CheckoutDeadLetterQueue.Arn".into()
        } else if queue("-stream-dlq") {
            "StreamDeadLetterQueue.Arn".into()
        } else if queue("-events.fifo") {
            "EventsTopic".into()
        } else if queue("-admissions.fifo") {
            "AdmissionsTopic".into()
        } else if resource.starts_with("wr-") && !resource.contains('/') {
            "Table.Arn".into()
        } else {
            return None;
        };
        Some(by_shape)
    }
}

/// The IAM action AWS checks for one recorded request (or transaction
/// item); `None` for what only the local pollers do (in AWS the event
/// source mapping receives, deletes and reads the stream, and needs no
/// DescribeTable).
fn action_of(call: &Call, what: &str) -> Option<&'static str> {
    Some(match (call.service.as_str(), what) {
        ("DynamoDB", "GetItem") => "dynamodb:GetItem",
        ("DynamoDB", "PutItem" | "Put") => "dynamodb:PutItem",
        ("DynamoDB", "UpdateItem" | "Update") => "dynamodb:UpdateItem",
        ("DynamoDB", "DeleteItem" | "Delete") => "dynamodb:DeleteItem",
        ("DynamoDB", "ConditionCheck") => "dynamodb:ConditionCheckItem",
        ("DynamoDB", "Query") => "dynamodb:Query",
        ("DynamoDB", "BatchGetItem") => "dynamodb:BatchGetItem",
        ("DynamoDB", "Scan") => "dynamodb:Scan",
        ("DynamoDB", "DescribeTable") => return None,
        ("DynamoDB Streams", _) => return None,
        ("SQS", "SendMessage") => "sqs:SendMessage",
        ("SQS", "ChangeMessageVisibilityBatch" | "ChangeMessageVisibility") => {
            "sqs:ChangeMessageVisibility"
        }
        ("SQS", "ReceiveMessage" | "DeleteMessageBatch" | "DeleteMessage") => return None,
        ("SNS", "PublishBatch" | "Publish") => "sns:Publish",
        (service, what) => panic!("{}: no IAM mapping for {service} {what}", call.function),
    })
}

fn required_by_code(calls: &[Call], names: &Names) -> BTreeMap<String, BTreeSet<Grant>> {
    let mut required: BTreeMap<String, BTreeSet<Grant>> = BTreeMap::new();
    for call in calls {
        for target in &call.targets {
            let Some(action) = action_of(call, &target.what) else {
                continue;
            };
            let resource = names.resolve(&target.resource).unwrap_or_else(|| {
                panic!("{}: unknown resource {}", call.function, target.resource)
            });
            required
                .entry(call.function.clone())
                .or_default()
                .insert((action.to_owned(), resource));
        }
    }
    required
}

fn user(n: usize) -> UserId {
    UserId::parse(&format!("priv-{n}")).unwrap()
}

/// Every path of every function, once, with the calls recorded.
async fn scenario(stack: &Stack) {
    let e = EventId::parse("E-priv").unwrap();
    let short = LifecycleSettings {
        default_capacity: 1,
        active_stay: Duration::from_secs(10),
        active_max_stay: Duration::from_secs(20),
        abandon_after: None,
        ended_retention: Duration::from_secs(3600),
    };
    // Polls record presence once half this has passed.
    let polled = LifecycleSettings {
        abandon_after: Some(Duration::from_secs(3)),
        ..short.clone()
    };
    // join: new, retried with its key (reads the holder), listed; one whose
    // message cannot be sent is taken back.
    let join = stack.join_service(1);
    let key = IdempotencyKey::parse("first-join").unwrap();
    let first = join
        .join(e.clone(), user(0), Some(key.clone()))
        .await
        .unwrap()
        .session()
        .clone();
    join.join(e.clone(), user(0), Some(key)).await.unwrap();
    let second = join
        .join(e.clone(), user(1), None)
        .await
        .unwrap()
        .session()
        .clone();
    let third = join
        .join(e.clone(), user(2), None)
        .await
        .unwrap()
        .session()
        .clone();
    let proxy = FaultProxy::start(&emulator_endpoint().await).await;
    proxy.down();
    let unreachable = stack.via(&proxy.endpoint).await;
    let mut broken = stack.join_service(1);
    broken.queue = SqsQueue::new(
        unreachable.clients_for("join").sqs,
        &stack.resources.join_queue_url,
    );
    assert!(broken.join(e.clone(), user(3), None).await.is_err());

    // granter, join queue: a batch that fails for the store is given back to
    // return within seconds; then number, admit the first, arm the hint
    // behind a full event; set an unreadable message aside.
    let granter = stack.granter(&short, 1);
    let join_queue = stack.queue_for("granter");
    let consumer = stack.queue();
    let receive_three = || async {
        let mut batch = Vec::new();
        for _ in 0..20 {
            batch.extend(consumer.receive(10, Duration::from_secs(1)).await.unwrap());
            if batch.len() >= 3 {
                break;
            }
        }
        batch
    };
    let failing = unreachable.granter(&short, 1);
    let batch = receive_three().await;
    let report = handle_batch(&failing, &stack.join_quarantine(), &join_queue, &batch).await;
    assert_eq!(report.failed.len(), 3, "{report:?}");
    let mut batch = receive_three().await;
    assert_eq!(
        batch.len(),
        3,
        "given back, not held for the visibility timeout"
    );
    assert!(batch.iter().all(|d| d.receive_count == 2), "{batch:?}");
    batch.push(Delivery {
        message_id: "junk".into(),
        receipt_handle: "junk".into(),
        body: "{}".into(),
        receive_count: 1,
    });
    let report = handle_batch(&granter, &stack.join_quarantine(), &join_queue, &batch).await;
    assert_eq!(report.admitted, 1, "{report:?}");

    // status: a numbered waiting user (reads its shard's head), presence
    // written once it is stale; an admitted one gets a token.
    let status = stack.status_with(&polled);
    let waiting = status.status(&second.id).await.unwrap();
    assert_eq!(waiting.position(), Some(1), "{waiting:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    status.status(&third.id).await.unwrap();
    assert!(
        status
            .status(&first.id)
            .await
            .unwrap()
            .admission_token
            .is_some()
    );

    // authorizer.
    let token = status
        .status(&first.id)
        .await
        .unwrap()
        .admission_token
        .unwrap();
    stack.admission_check().check(&token, &e).await.unwrap();
    // demo-checkout: checks the token, then reports an outcome to the
    // checkout queue (nothing consumes it here).
    let origin = stack.demo_origin();
    origin.enter(&token, &e).await.unwrap();
    origin
        .finish(
            &token,
            &e,
            waiting_room::service::demo_origin::Outcome::Failed,
        )
        .await
        .unwrap();

    // session-command: heartbeat (waiting, active), a waiting user leaves.
    let commands = stack.commands_with(&short);
    commands.heartbeat(&third.id).await.unwrap();
    commands.heartbeat(&first.id).await.unwrap();
    commands.leave(&third.id).await.unwrap();

    // granter, table stream: the first leaves, the stream frees the slot.
    let mut reader = stack.stream_reader("granter").await;
    commands.leave(&first.id).await.unwrap();
    let wakes = stack.queue_for("granter");
    let mut records = Vec::new();
    for _ in 0..100 {
        records.extend(reader.next_records().await.unwrap());
        if records
            .iter()
            .any(|r| r.change.as_ref().is_ok_and(|c| c.frees_a_slot().is_some()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = handle_stream(&granter, &wakes, &records).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        stack.status_of(&second.id).await,
        Some(SessionStatus::Active)
    );
    // A stream wake-up that fails is handed to the join queue.
    let handed = handle_stream(&failing, &wakes, &records).await;
    assert!(!handed.handed_off.is_empty(), "{handed:?}");

    // checkout-outcomes: the second completes; a fourth's purchase arrives
    // after its stay ran out (the sweeper expired it).
    let outcomes = stack.checkout_outcomes();
    let completed = |id: &str| {
        format!(
            r#"{{"type":"CHECKOUT_COMPLETED","session_id":"{id}","event_id":"E-priv","user_id":"priv-1"}}"#
        )
    };
    outcomes.apply(&completed(second.id.as_str())).await;
    // One that can never apply is set aside in the checkout dead-letter queue.
    let garbage = Delivery {
        message_id: "priv-garbage".into(),
        receipt_handle: "priv-garbage".into(),
        body: "not an outcome".into(),
        receive_count: 1,
    };
    assert_eq!(
        outcomes.handle_batch(&[garbage]).await,
        Vec::<String>::new()
    );
    let late = join
        .join(e.clone(), user(5), None)
        .await
        .unwrap()
        .session()
        .clone();
    let reconciler = stack.reconciler(&short, 1);
    // sweeper: reconciliation admits the line no wake-up served, numbering
    // the join first (not counted a repair: the join is too young for its
    // own wake-up to count as missed).
    let report = reconciler.reconcile().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(
        stack.status_of(&late.id).await,
        Some(SessionStatus::Active),
        "{report:?}"
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    let swept = stack.sweeper(&short).sweep().await;
    assert!(swept.expired >= 1, "{swept:?}");
    outcomes.apply(&completed(late.id.as_str())).await;
    // ...then clears the hint of the empty line in two steps.
    reconciler.reconcile().await.unwrap();
    // A heartbeat of an active user whose stay is over expires it.
    let overdue = join
        .join(e.clone(), user(6), None)
        .await
        .unwrap()
        .session()
        .clone();
    granter.advance(&e, Wake::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(commands.heartbeat(&overdue.id).await.is_err());

    // admin-api: list and show events, configure one, schedule and open
    // another, pause and resume, evict a live session and one that has
    // ended.
    let admin = stack.admin_service(1);
    admin.events().await.unwrap();
    let in_an_hour = SystemClock.now().plus(Duration::from_secs(3600));
    admin
        .configure(
            &e,
            &Configuration {
                capacity: Some(1),
                closes_at: Some(Some(in_an_hour)),
                origin_url: Some(Some("https://shop.example/checkout".into())),
                ..Configuration::default()
            },
        )
        .await
        .unwrap();
    let later = EventId::parse(&format!("{e}-later")).unwrap();
    admin
        .configure(
            &later,
            &Configuration {
                opens_at: Some(in_an_hour),
                ..Configuration::default()
            },
        )
        .await
        .unwrap();
    admin.control(&later, Control::Open).await.unwrap();
    // granter and sweeper: an opening and a closing on time are changes of
    // state written with their record (the outbox).
    let opens = EventId::parse(&format!("{e}-opens")).unwrap();
    let closes = EventId::parse(&format!("{e}-closes")).unwrap();
    let soon = SystemClock.now().plus(Duration::from_secs(2));
    for (event, config) in [
        (
            &opens,
            Configuration {
                opens_at: Some(soon),
                ..Configuration::default()
            },
        ),
        (
            &closes,
            Configuration {
                closes_at: Some(Some(soon)),
                ..Configuration::default()
            },
        ),
    ] {
        admin.configure(event, &config).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // Opened, and held for its draw: the advance says so.
    assert!(granter.advance(&opens, Wake::default()).await.is_err());
    reconciler.reconcile().await.unwrap();
    for (event, state) in [(&opens, EventState::Open), (&closes, EventState::Closed)] {
        assert_eq!(
            stack.store().event_counters(event, 1).await.unwrap().state,
            state
        );
    }
    admin.control(&e, Control::Pause).await.unwrap();
    admin.control(&e, Control::Resume).await.unwrap();
    let live = join
        .join(e.clone(), user(9), None)
        .await
        .unwrap()
        .session()
        .clone();
    assert!(admin.evict(&live.id, true).await.unwrap().evicted);
    assert!(!admin.evict(&live.id, false).await.unwrap().evicted);

    // publisher: events of the table's changes; an unreadable record is set
    // aside.
    let publisher = stack.publisher();
    let mut reader = stack.stream_reader("publisher").await;
    let mut records = reader.next_records().await.unwrap();
    records.push(StreamRecord {
        written_at: None,
        id: "unreadable".into(),
        change: Err(UnreadableRecord {
            reason: "test".into(),
            raw: "{}".into(),
        }),
    });
    let report = publisher.publish(&records).await;
    assert!(
        !report.published.is_empty() && report.quarantined.len() == 1,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_grants_exactly_what_its_function_calls() {
    let stack = Stack::new("privilege").await;
    scenario(&stack).await;
    let mut calls = stack.calls.calls();
    // Under `make test`, the calls of every other emulator test as well.
    calls.extend(suite_calls());
    let names = Names::of(&stack);
    let by_code = required_by_code(&calls, &names);
    let template = template();
    let mut problems = Vec::new();
    for function in FUNCTIONS {
        let mut required = by_code.get(*function).cloned().unwrap_or_default();
        required.extend(needed_by_the_platform(&template, function));
        let granted = granted(&template, function);
        for missing in required.difference(&granted) {
            problems.push(format!(
                "{function} calls {} on {} but its role does not allow it",
                missing.0, missing.1
            ));
        }
        for unused in granted.difference(&required) {
            problems.push(format!(
                "{function}'s role allows {} on {}, which no code of it uses",
                unused.0, unused.1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "least privilege broken:\n{}",
        problems.join("\n")
    );
    stack.tear_down().await;
}

#[test]
fn a_transaction_item_is_checked_by_its_own_action() {
    // The rule the first template broke: a ConditionCheck item needs
    // ConditionCheckItem, whatever the rest of the transaction does.
    let call = Call {
        function: "granter".into(),
        service: "DynamoDB".into(),
        operation: "TransactWriteItems".into(),
        targets: vec![],
    };
    assert_eq!(
        action_of(&call, "ConditionCheck"),
        Some("dynamodb:ConditionCheckItem")
    );
    assert_eq!(action_of(&call, "Update"), Some("dynamodb:UpdateItem"));
    assert_eq!(action_of(&call, "Put"), Some("dynamodb:PutItem"));
    assert_eq!(action_of(&call, "Delete"), Some("dynamodb:DeleteItem"));
}
