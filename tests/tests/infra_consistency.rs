//! The deployment template (infra/template.yaml) and the code agree: the
//! table, indexes and queues `provision` creates locally are the ones AWS
//! gets, every function is given exactly the variables it reads, and API
//! Gateway routes the public API as `cargo lambda watch` does. No emulator.

use std::collections::BTreeSet;
use std::path::Path;

use waiting_room::adapters::dynamodb::layout;
use waiting_room::adapters::provision::{self, ResourceNames};
use waiting_room::setup::metrics;
use waiting_room::setup::wiring::{FUNCTIONS, variables_read};
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn template() -> Yaml {
    let text = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn resource<'a>(template: &'a Yaml, id: &str) -> &'a Yaml {
    let found = &template["Resources"][id];
    assert!(!found.is_badvalue(), "the template has no resource {id}");
    &found["Properties"]
}

fn strings(list: &Yaml) -> BTreeSet<String> {
    list.as_vec()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// A scalar as text, whatever YAML typed it as.
fn text(value: &Yaml) -> String {
    match value {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn key_schema(schema: &Yaml) -> Vec<(String, String)> {
    schema
        .as_vec()
        .unwrap()
        .iter()
        .map(|k| (text(&k["AttributeName"]), text(&k["KeyType"])))
        .collect()
}

/// `join` → `JoinFunction`, `session-command` → `SessionCommandFunction`.
fn logical_id(function: &str) -> String {
    let mut id: String = function
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    id.push_str("Function");
    id
}

#[test]
fn the_table_and_its_indexes_match_the_code() {
    let template = template();
    let table = resource(&template, "Table");
    assert_eq!(
        key_schema(&table["KeySchema"]),
        vec![(layout::PARTITION_KEY.to_owned(), "HASH".to_owned())]
    );
    assert_eq!(text(&table["BillingMode"]), "PAY_PER_REQUEST");
    assert_eq!(
        text(&table["StreamSpecification"]["StreamViewType"]),
        "NEW_AND_OLD_IMAGES"
    );
    assert_eq!(
        text(&table["TimeToLiveSpecification"]["AttributeName"]),
        layout::TTL_ATTRIBUTE
    );
    assert_eq!(
        text(&table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]),
        "true"
    );
    let indexes = table["GlobalSecondaryIndexes"].as_vec().unwrap();
    // An empty projection is KEYS_ONLY.
    let expected: [(&str, &str, &str, &[&str]); 3] = [
        (
            layout::LINE_INDEX,
            layout::LINE_INDEX_PARTITION,
            layout::LINE_INDEX_SORT,
            layout::LINE_INDEX_PROJECTION,
        ),
        (
            layout::EXPIRY_INDEX,
            layout::EXPIRY_INDEX_PARTITION,
            layout::EXPIRY_INDEX_SORT,
            layout::EXPIRY_INDEX_PROJECTION,
        ),
        (
            layout::EVENT_INDEX,
            layout::EVENT_INDEX_PARTITION,
            layout::EVENT_INDEX_SORT,
            &[],
        ),
    ];
    assert_eq!(
        indexes.len(),
        expected.len(),
        "an index the code does not use"
    );
    for (name, partition, sort, projection) in expected {
        let index = indexes
            .iter()
            .find(|i| text(&i["IndexName"]) == name)
            .unwrap_or_else(|| panic!("no index {name}"));
        assert_eq!(
            key_schema(&index["KeySchema"]),
            vec![
                (partition.to_owned(), "HASH".to_owned()),
                (sort.to_owned(), "RANGE".to_owned())
            ]
        );
        if projection.is_empty() {
            assert_eq!(
                text(&index["Projection"]["ProjectionType"]),
                "KEYS_ONLY",
                "{name}"
            );
            continue;
        }
        assert_eq!(
            text(&index["Projection"]["ProjectionType"]),
            "INCLUDE",
            "{name}"
        );
        let projected: BTreeSet<String> = projection.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            strings(&index["Projection"]["NonKeyAttributes"]),
            projected,
            "{name} projection"
        );
    }
}

#[test]
fn the_queues_match_what_provision_creates() {
    let template = template();
    let names = ResourceNames {
        table: "unused".into(),
        queue_prefix: "${AWS::StackName}".into(),
    };
    let join = resource(&template, "JoinQueue");
    assert_eq!(text(&join["QueueName"]), names.join_queue());
    for (attribute, value) in provision::join_queue_attributes() {
        assert_eq!(
            text(&join[attribute.as_str()]),
            value,
            "JoinQueue {}",
            attribute.as_str()
        );
    }
    assert_eq!(
        text(&join["RedrivePolicy"]["maxReceiveCount"]),
        provision::JOIN_MAX_RECEIVE_COUNT.to_string()
    );
    let join_dlq = resource(&template, "JoinDeadLetterQueue");
    assert_eq!(text(&join_dlq["QueueName"]), names.join_dead_letter_queue());
    assert_eq!(text(&join_dlq["FifoQueue"]), "true");

    let checkout = resource(&template, "CheckoutQueue");
    assert_eq!(text(&checkout["QueueName"]), names.checkout_queue());
    assert_eq!(
        text(&checkout["VisibilityTimeout"]),
        provision::CHECKOUT_VISIBILITY_TIMEOUT.as_secs().to_string()
    );
    assert_eq!(
        text(&checkout["RedrivePolicy"]["maxReceiveCount"]),
        provision::CHECKOUT_MAX_RECEIVE_COUNT.to_string()
    );
    assert_eq!(
        text(&resource(&template, "CheckoutDeadLetterQueue")["QueueName"]),
        names.checkout_dead_letter_queue()
    );
    assert_eq!(
        text(&resource(&template, "StreamDeadLetterQueue")["QueueName"]),
        names.stream_dead_letter_queue()
    );
    for id in [
        "JoinQueue",
        "JoinDeadLetterQueue",
        "CheckoutQueue",
        "CheckoutDeadLetterQueue",
        "StreamDeadLetterQueue",
    ] {
        assert_eq!(
            text(&resource(&template, id)["MessageRetentionPeriod"]),
            provision::RETENTION.as_secs().to_string(),
            "{id}"
        );
    }
    for (id, name) in [
        ("EventsTopic", names.events_topic()),
        ("AdmissionsTopic", names.admissions_topic()),
    ] {
        let topic = resource(&template, id);
        assert_eq!(text(&topic["TopicName"]), name);
        assert_eq!(
            (
                text(&topic["FifoTopic"]),
                text(&topic["ContentBasedDeduplication"])
            ),
            ("true".to_owned(), "false".to_owned()),
            "{id}"
        );
        assert_eq!(text(&topic["FifoThroughputScope"]), "MessageGroup", "{id}");
        assert_eq!(
            text(&topic["ArchivePolicy"]["MessageRetentionPeriod"]),
            provision::EVENTS_ARCHIVE_DAYS.to_string(),
            "{id}"
        );
    }
}

/// The admission token is a bearer credential: the topic that carries it
/// refuses every subscriber but the configured checkout principal (and
/// everyone while none is configured).
#[test]
fn only_the_checkout_may_subscribe_to_the_admissions_topic() {
    // The loader drops CloudFormation's tags: `!Ref X` reads as "X", and
    // `!If [c, a, b]` as the list.
    let template = template();
    let policy = resource(&template, "AdmissionsTopicPolicy");
    assert_eq!(text(&policy["Topics"][0]), "AdmissionsTopic");
    let statements = policy["PolicyDocument"]["Statement"].as_vec().unwrap();
    let deny = statements
        .iter()
        .find(|s| text(&s["Effect"]) == "Deny" && text(&s["Action"]) == "sns:Subscribe")
        .expect("a statement denying sns:Subscribe");
    assert_eq!(text(&deny["Principal"]), "*");
    assert_eq!(text(&deny["Resource"]), "AdmissionsTopic");
    let branches = deny["Condition"].as_vec().unwrap();
    assert_eq!(text(&branches[0]), "HasCheckoutSubscriber");
    assert_eq!(
        text(&branches[1]["ArnNotEquals"]["aws:PrincipalArn"]),
        "CheckoutSubscriberArn",
        "the configured checkout is the one exception"
    );
    assert_eq!(
        text(&branches[2]),
        "AWS::NoValue",
        "with no checkout configured, nobody may subscribe"
    );
    let publisher = resource(&template, "PublisherFunction");
    assert_eq!(
        text(&publisher["Environment"]["Variables"]["ADMISSIONS_TOPIC_ARN"]),
        "AdmissionsTopic"
    );
}

#[test]
fn every_function_gets_exactly_the_variables_it_reads() {
    let template = template();
    for function in FUNCTIONS {
        let properties = resource(&template, &logical_id(function));
        let reads = variables_read(function).unwrap();
        let read: BTreeSet<&str> = reads.iter().map(|r| r.name).collect();
        let required: BTreeSet<&str> = reads
            .iter()
            .filter(|r| r.required)
            .map(|r| r.name)
            .collect();
        let given: BTreeSet<String> = match properties["Environment"]["Variables"].as_hash() {
            Some(variables) => variables.keys().map(text).collect(),
            None => BTreeSet::new(),
        };
        let given: BTreeSet<&str> = given.iter().map(String::as_str).collect();
        let missing: Vec<_> = required.difference(&given).collect();
        let unused: Vec<_> = given.difference(&read).collect();
        assert!(
            missing.is_empty(),
            "{function} needs {missing:?} but the template does not set it"
        );
        assert!(
            unused.is_empty(),
            "{function} is given {unused:?} but never reads it"
        );
        assert_eq!(
            text(&properties["CodeUri"]),
            format!("../target/lambda/{function}/bootstrap.zip"),
            "{function}"
        );
    }
}

#[test]
fn every_function_crate_is_deployed() {
    let crates: BTreeSet<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let known: BTreeSet<String> = FUNCTIONS.iter().map(|f| (*f).to_owned()).collect();
    assert_eq!(crates, known);
    let template = template();
    let deployed = template["Resources"]
        .as_hash()
        .unwrap()
        .values()
        .filter(|r| text(&r["Type"]) == "AWS::Serverless::Function")
        .count();
    assert_eq!(deployed, FUNCTIONS.len());
}

/// (path, method, function) of every public route.
fn template_routes(template: &Yaml) -> BTreeSet<(String, String, String)> {
    let mut routes = BTreeSet::new();
    for function in FUNCTIONS {
        let events = &resource(template, &logical_id(function))["Events"];
        for event in events.as_hash().into_iter().flat_map(|h| h.values()) {
            if text(&event["Type"]) == "HttpApi" {
                let properties = &event["Properties"];
                routes.insert((
                    text(&properties["Path"]),
                    text(&properties["Method"]),
                    (*function).to_owned(),
                ));
            }
        }
    }
    routes
}

fn local_routes() -> BTreeSet<(String, String, String)> {
    let manifest: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .unwrap();
    let mut routes = BTreeSet::new();
    for (path, targets) in router {
        match targets {
            toml::Value::String(function) => {
                routes.insert((path.clone(), "ANY".to_owned(), function.clone()));
            }
            toml::Value::Array(list) => {
                for target in list {
                    let method = target["method"].as_str().unwrap().to_owned();
                    routes.insert((
                        path.clone(),
                        method,
                        target["function"].as_str().unwrap().to_owned(),
                    ));
                }
            }
            other => panic!("unexpected route {other}"),
        }
    }
    routes
}

#[test]
fn api_gateway_and_cargo_lambda_watch_route_alike() {
    let served =
        |routes: BTreeSet<(String, String, String)>| -> BTreeSet<(String, String, String)> {
            routes
                .into_iter()
                .filter(|(_, _, function)| function != "not-found")
                .collect()
        };
    let template = template();
    assert_eq!(served(template_routes(&template)), served(local_routes()));
    // Everything else falls through to not-found on both sides.
    assert!(template_routes(&template).contains(&(
        "$default".to_owned(),
        "ANY".to_owned(),
        "not-found".to_owned()
    )));
    assert!(local_routes().contains(&(
        "/{*path}".to_owned(),
        "ANY".to_owned(),
        "not-found".to_owned()
    )));
}

fn localstack_file(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("localstack/init/ready.d").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_localstack_init_hook_creates_the_same_resources() {
    let table = localstack_file("table.json");
    let template = template();
    let declared = resource(&template, "Table");
    let pairs = |list: &serde_json::Value, a: &str, b: &str| -> BTreeSet<(String, String)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v[a].as_str().unwrap().to_owned(),
                    v[b].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let declared_attributes: BTreeSet<(String, String)> = declared["AttributeDefinitions"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|d| (text(&d["AttributeName"]), text(&d["AttributeType"])))
        .collect();
    assert_eq!(
        pairs(
            &table["AttributeDefinitions"],
            "AttributeName",
            "AttributeType"
        ),
        declared_attributes
    );
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    for index in table["GlobalSecondaryIndexes"].as_array().unwrap() {
        let name = index["IndexName"].as_str().unwrap();
        let twin = declared["GlobalSecondaryIndexes"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|i| text(&i["IndexName"]) == name)
            .unwrap_or_else(|| panic!("the template has no {name}"));
        let keys: Vec<(String, String)> = index["KeySchema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap().to_owned(),
                    k["KeyType"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(keys, key_schema(&twin["KeySchema"]), "{name}");
        assert_eq!(
            index["Projection"]["ProjectionType"].as_str().unwrap(),
            text(&twin["Projection"]["ProjectionType"]),
            "{name}"
        );
        if let Some(attributes) = index["Projection"]["NonKeyAttributes"].as_array() {
            let projected: BTreeSet<String> = attributes
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                projected,
                strings(&twin["Projection"]["NonKeyAttributes"]),
                "{name}"
            );
        }
    }

    let queues = localstack_file("queues.json");
    let names = ResourceNames {
        table: "waiting-room".into(),
        queue_prefix: "waiting-room".into(),
    };
    assert_eq!(table["TableName"], names.table.as_str());
    assert_eq!(queues["join"]["name"], names.join_queue().as_str());
    assert_eq!(
        queues["join"]["deadLetter"],
        names.join_dead_letter_queue().as_str()
    );
    assert_eq!(
        queues["join"]["maxReceiveCount"],
        provision::JOIN_MAX_RECEIVE_COUNT
    );
    for (attribute, value) in provision::join_queue_attributes() {
        assert_eq!(
            queues["join"]["attributes"][attribute.as_str()],
            value.as_str(),
            "{}",
            attribute.as_str()
        );
    }
    assert_eq!(queues["checkout"]["name"], names.checkout_queue().as_str());
    assert_eq!(
        queues["checkout"]["deadLetter"],
        names.checkout_dead_letter_queue().as_str()
    );
    assert_eq!(
        queues["checkout"]["maxReceiveCount"],
        provision::CHECKOUT_MAX_RECEIVE_COUNT
    );
    assert_eq!(
        queues["checkout"]["attributes"]["VisibilityTimeout"],
        provision::CHECKOUT_VISIBILITY_TIMEOUT
            .as_secs()
            .to_string()
            .as_str()
    );
    assert_eq!(queues["eventsTopic"], names.events_topic().as_str());
    assert_eq!(
        queues["streamDeadLetter"]["name"],
        names.stream_dead_letter_queue().as_str()
    );
}

/// CORS: each deployment lists its origins; a wildcard is refused by a rule
/// (no default to fall back on), and credentials are never allowed.
#[test]
fn cors_allows_only_the_listed_origins_and_never_credentials() {
    let template = template();
    let origins = &template["Parameters"]["AllowedOrigins"];
    assert!(!origins.is_badvalue(), "the template takes AllowedOrigins");
    assert!(
        origins["Default"].is_badvalue(),
        "AllowedOrigins has no default: a deployment names its origins"
    );
    let rule = format!(
        "{:?}",
        template["Rules"]["OriginsAreListed"]["Assertions"][0]["Assert"]
    );
    assert!(
        rule.contains("String(\"AllowedOrigins\")") && rule.contains("String(\"*\")"),
        "a rule refuses a wildcard origin: {rule}"
    );
    let cors = &resource(&template, "HttpApi")["CorsConfiguration"];
    assert_eq!(text(&cors["AllowOrigins"]), "AllowedOrigins");
    assert!(
        matches!(
            cors["AllowCredentials"],
            Yaml::BadValue | Yaml::Boolean(false)
        ),
        "the API takes bearer tokens: no credentials, so no cookie rides a cross-origin call"
    );
}

/// The authorizer is shipped as an API Gateway resource on the origin's
/// API, and API Gateway's result cache is off: its key cannot hold the
/// route's event, and a cached answer would outlive a leave by its TTL. The
/// revocation delay is the function's own session cache, bounded here.
#[test]
fn the_admission_authorizer_is_deployed_with_no_result_cache() {
    let template = template();
    let authorizer = resource(&template, "AdmissionAuthorizer");
    assert_eq!(text(&authorizer["ApiId"]), "ProtectedApiId");
    assert_eq!(text(&authorizer["AuthorizerType"]), "REQUEST");
    assert_eq!(text(&authorizer["AuthorizerPayloadFormatVersion"]), "2.0");
    assert_eq!(authorizer["EnableSimpleResponses"], Yaml::Boolean(true));
    assert!(text(&authorizer["AuthorizerUri"]).contains("${AuthorizerFunction.Arn}"));
    assert_eq!(text(&authorizer["AuthorizerResultTtlInSeconds"]), "0");
    let permission = resource(&template, "AuthorizerInvokePermission");
    assert!(
        text(&permission["SourceArn"]).ends_with("/authorizers/${AdmissionAuthorizer}"),
        "only this authorizer may invoke the function"
    );
    let delay = &template["Parameters"]["SessionCheckCacheSeconds"];
    assert!(
        text(&delay["MaxValue"]).parse::<u64>().unwrap() <= 300,
        "the documented revocation delay is bounded"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("**Revocation delay.**") && readme.contains("`SessionCheckCacheSeconds`"),
        "the README documents the revocation delay"
    );
}

/// The resources of one type, by logical id.
fn of_type<'a>(template: &'a Yaml, kind: &'a str) -> impl Iterator<Item = (String, &'a Yaml)> {
    template["Resources"]
        .as_hash()
        .unwrap()
        .iter()
        .filter(move |(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, r)| (id.as_str().unwrap().to_owned(), r))
}

/// The statements of a policy document that let `service` do every one of
/// `actions`.
fn grants_service(policy: &Yaml, service: &str, actions: &[&str]) -> bool {
    policy["Statement"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|statement| {
            let allowed: BTreeSet<String> = match &statement["Action"] {
                Yaml::Array(_) => strings(&statement["Action"]),
                single => BTreeSet::from([text(single)]),
            };
            text(&statement["Effect"]) == "Allow"
                && statement["Principal"]["Service"].as_str() == Some(service)
                && actions.iter().all(|a| allowed.contains(*a))
        })
}

#[test]
fn every_alarm_can_reach_its_topic() {
    let template = template();
    let mut alarms = 0;
    for (alarm, properties) in of_type(&template, "AWS::CloudWatch::Alarm") {
        alarms += 1;
        for topic in strings(&properties["Properties"]["AlarmActions"]) {
            let key = text(&resource(&template, &topic)["KmsMasterKeyId"]);
            assert!(
                !key.starts_with("alias/aws/"),
                "{alarm} publishes to {topic}, encrypted with the AWS-managed {key}, which CloudWatch cannot use"
            );
            assert_eq!(
                template["Resources"][key.as_str()]["Type"].as_str(),
                Some("AWS::KMS::Key"),
                "{topic}'s key {key} is a key of the stack"
            );
            assert!(
                grants_service(
                    &resource(&template, &key)["KeyPolicy"],
                    "cloudwatch.amazonaws.com",
                    &["kms:Decrypt", "kms:GenerateDataKey*"]
                ),
                "{key} does not let CloudWatch encrypt {alarm}'s notifications"
            );
            let published = of_type(&template, "AWS::SNS::TopicPolicy").any(|(_, policy)| {
                strings(&policy["Properties"]["Topics"]).contains(&topic)
                    && grants_service(
                        &policy["Properties"]["PolicyDocument"],
                        "cloudwatch.amazonaws.com",
                        &["sns:Publish"],
                    )
            });
            assert!(
                published,
                "no topic policy lets CloudWatch publish {alarm} to {topic}"
            );
        }
    }
    assert!(alarms >= 14, "the template's alarms were found ({alarms})");
}

#[test]
fn only_the_configured_checkout_may_send_outcomes_from_another_account() {
    let template = template();
    let queue_policy = &template["Resources"]["CheckoutQueuePolicy"];
    assert_eq!(
        text(&queue_policy["Condition"]),
        "HasCheckoutSender",
        "without a sender configured, the queue keeps the account's default access"
    );
    let policy = resource(&template, "CheckoutQueuePolicy");
    assert_eq!(
        strings(&policy["Queues"]),
        BTreeSet::from(["CheckoutQueue".to_owned()])
    );
    let statements = policy["PolicyDocument"]["Statement"].as_vec().unwrap();
    assert_eq!(statements.len(), 1, "one grant, nothing else");
    let grant = &statements[0];
    assert_eq!(
        (
            text(&grant["Effect"]),
            text(&grant["Principal"]["AWS"]),
            text(&grant["Action"]),
            text(&grant["Resource"]),
        ),
        (
            "Allow".to_owned(),
            "CheckoutSenderArn".to_owned(),
            "sqs:SendMessage".to_owned(),
            "CheckoutQueue.Arn".to_owned(),
        )
    );
    assert_eq!(
        text(&template["Parameters"]["CheckoutSenderArn"]["Default"]),
        ""
    );
}

/// The key prefixes a function's stream mapping lets through.
fn stream_filter_prefixes(template: &Yaml, function: &str, source: &str) -> BTreeSet<String> {
    let filters =
        &resource(template, function)["Events"][source]["Properties"]["FilterCriteria"]["Filters"];
    filters
        .as_vec()
        .unwrap()
        .iter()
        .map(|f| {
            let pattern: serde_json::Value =
                serde_json::from_str(f["Pattern"].as_str().unwrap()).unwrap();
            pattern["dynamodb"]["Keys"]["pk"]["S"][0]["prefix"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_publisher_hears_every_item_it_makes_events_of() {
    let template = template();
    let heard = stream_filter_prefixes(&template, "PublisherFunction", "Changes");
    let event = waiting_room::domain::EventId::parse("E").unwrap();
    let keys = [
        layout::session_key(&waiting_room::domain::SessionId::new(&event, [1; 16])),
        layout::state_change_key(&event, 1, "OPEN", "PAUSED"),
    ];
    for key in &keys {
        assert!(
            heard.iter().any(|prefix| key.starts_with(prefix)),
            "the publisher's stream filter {heard:?} drops {key}"
        );
    }
    assert!(
        !heard
            .iter()
            .any(|prefix| layout::event_key(&event).starts_with(prefix)),
        "the counters item changes at every admission: the publisher has no use for it"
    );
}

/// The metric names of our namespace the template's alarms and dashboard
/// read.
fn metrics_read(template: &Yaml) -> BTreeSet<String> {
    let mut read = BTreeSet::new();
    for (_, alarm) in of_type(template, "AWS::CloudWatch::Alarm") {
        if alarm["Properties"]["Namespace"].as_str() == Some(metrics::NAMESPACE) {
            read.insert(text(&alarm["Properties"]["MetricName"]));
        }
    }
    for (_, dashboard) in of_type(template, "AWS::CloudWatch::Dashboard") {
        let body = dashboard["Properties"]["DashboardBody"].as_str().unwrap();
        for (i, _) in body.match_indices("MetricName=\\\"") {
            let rest = &body[i + "MetricName=\\\"".len()..];
            read.insert(rest[..rest.find('\\').unwrap()].to_owned());
        }
        let plain = format!("[\"{}\", \"", metrics::NAMESPACE);
        for (i, _) in body.match_indices(&plain) {
            let rest = &body[i + plain.len()..];
            read.insert(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    read
}

#[test]
fn the_dashboard_and_alarms_read_exactly_the_metrics_the_code_emits() {
    let template = template();
    let read = metrics_read(&template);
    let emitted: BTreeSet<String> = metrics::Metric::ALL
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(read, emitted, "a metric nobody emits, or one nobody shows");
    let stall = &resource(&template, "StalledLineAlarm");
    assert_eq!(
        text(&stall["MetricName"]),
        metrics::Metric::StrandedEvents.name()
    );
}

#[test]
fn joins_are_throttled_on_their_own_and_the_edge_limits_each_client_ip() {
    let template = template();
    let api = resource(&template, "HttpApi");
    let throttled: BTreeSet<String> = api["RouteSettings"]
        .as_hash()
        .unwrap()
        .iter()
        .map(|(route, settings)| {
            assert_eq!(text(&settings["ThrottlingRateLimit"]), "JoinRateLimit");
            assert_eq!(text(&settings["ThrottlingBurstLimit"]), "JoinBurstLimit");
            text(route)
        })
        .collect();
    let joins: BTreeSet<String> = template_routes(&template)
        .into_iter()
        .filter(|(_, _, function)| function == "join")
        .map(|(path, method, _)| format!("{method} {path}"))
        .collect();
    assert_eq!(throttled, joins, "every join route has the join limit");

    let acl = resource(&template, "EdgeWebAcl");
    assert_eq!(text(&acl["Scope"]), "CLOUDFRONT");
    let rules = acl["Rules"].as_vec().unwrap();
    assert_eq!(rules.len(), 2);
    for rule in rules {
        let rate = &rule["Statement"]["RateBasedStatement"];
        assert_eq!(text(&rate["AggregateKeyType"]), "IP", "per client IP");
        assert!(
            !rule["Action"]["Block"].is_badvalue(),
            "over the rate is blocked"
        );
    }
    let edge = resource(&template, "EdgeDistribution");
    assert_eq!(
        text(&edge["DistributionConfig"]["WebACLId"]),
        "EdgeWebAcl.Arn"
    );

    // The demo origin is behind the admission authorizer, uncached.
    let authorizer = &api["Auth"]["Authorizers"]["AdmissionCheck"];
    assert_eq!(text(&authorizer["FunctionArn"]), "AuthorizerFunction.Arn");
    assert_eq!(text(&authorizer["Identity"]["ReauthorizeEvery"]), "0");
    let demo = resource(&template, "DemoCheckoutFunction");
    for event in demo["Events"].as_hash().unwrap().values() {
        assert_eq!(
            text(&event["Properties"]["Auth"]["Authorizer"]),
            "AdmissionCheck"
        );
    }
}
