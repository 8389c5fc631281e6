//! Every AWS call the functions' code makes in the emulator tests, recorded
//! by an SDK interceptor on each function's clients: the operation and the
//! resources it names, down to the kind of each transaction item. The least
//! privilege test maps them to IAM actions and compares with the template.
//!
//! Calls are kept in memory for the test that made them and, when
//! `WR_AWS_CALLS_DIR` is set (`make test` sets it), appended as JSON lines to
//! a file there, so one check can see the calls of the whole suite.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::{Deserialize, Serialize};

/// The directory the suite's calls are written to, when set.
pub const CALLS_DIR: &str = "WR_AWS_CALLS_DIR";

/// One call: which function made it, and what it asked of which resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Call {
    pub function: String,
    /// `DynamoDB`, `SQS`, `SNS`, `DynamoDB Streams`.
    pub service: String,
    pub operation: String,
    /// Every (action name, resource) the request names: for a transaction,
    /// one per item (`Put`, `Update`, `Delete`, `ConditionCheck`).
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    /// The operation, or a transaction item's kind.
    pub what: String,
    /// A table name, `table/index/name`, a queue URL or a topic ARN.
    pub resource: String,
}

#[derive(Clone, Default)]
pub struct CallLog {
    calls: Arc<Mutex<Vec<Call>>>,
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl CallLog {
    /// A log that also appends to the suite's directory, if one is set.
    pub fn new() -> Self {
        let file = std::env::var_os(CALLS_DIR).and_then(|dir| {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).ok()?;
            let path = dir.join(format!("{}.jsonl", std::process::id()));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()?;
            Some(Arc::new(Mutex::new(file)))
        });
        Self {
            calls: Arc::default(),
            file,
        }
    }

    pub fn interceptor(&self, function: &str) -> Recorder {
        Recorder {
            function: function.to_owned(),
            log: self.clone(),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: Call) {
        if let Some(file) = &self.file {
            if let (Ok(mut file), Ok(line)) = (file.lock(), serde_json::to_string(&call)) {
                let _ = writeln!(file, "{line}");
            }
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

/// Every call written to the suite's directory so far.
pub fn suite_calls() -> Vec<Call> {
    let Some(dir) = std::env::var_os(CALLS_DIR) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| serde_json::from_str::<Call>(line).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[derive(Clone)]
pub struct Recorder {
    function: String,
    log: CallLog,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("function", &self.function)
            .finish()
    }
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "CallRecorder"
    }

    // The operation's metadata is in the config bag only once its runtime
    // plugins have run.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let operation = metadata.name().to_owned();
        let service = metadata.service().to_owned();
        let targets = targets(&operation, context);
        self.log.record(Call {
            function: self.function.clone(),
            service,
            operation,
            targets,
        });
        Ok(())
    }
}

fn target(what: &str, resource: impl Into<String>) -> Target {
    Target {
        what: what.to_owned(),
        resource: resource.into(),
    }
}

/// The resources a request names, from its input.
fn targets(operation: &str, context: &BeforeSerializationInterceptorContextRef<'_>) -> Vec<Target> {
    use aws_sdk_dynamodb::operation as db;
    use aws_sdk_sns::operation as sns;
    use aws_sdk_sqs::operation as sqs;
    let input = context.input();
    let one = |resource: Option<&str>| {
        resource
            .map(|r| vec![target(operation, r)])
            .unwrap_or_default()
    };
    if let Some(i) = input.downcast_ref::<db::get_item::GetItemInput>() {
        return one(i.table_name());
    }
    if let Some(i) = input.downcast_ref::<db::put_item::PutItemInput>() {
        return one(i.table_name());
    }
    if let Some(i) = input.downcast_ref::<db::update_item::UpdateItemInput>() {
        return one(i.table_name());
    }
    if let Some(i) = input.downcast_ref::<db::delete_item::DeleteItemInput>() {
        return one(i.table_name());
    }
    if let Some(i) = input.downcast_ref::<db::describe_table::DescribeTableInput>() {
        return one(i.table_name());
    }
    if let Some(i) = input.downcast_ref::<db::scan::ScanInput>() {
        return one(i.table_name());
    }
    if let Some(i) = input.downcast_ref::<db::query::QueryInput>() {
        let resource = match (i.table_name(), i.index_name()) {
            (Some(table), Some(index)) => format!("{table}/index/{index}"),
            (Some(table), None) => table.to_owned(),
            _ => return Vec::new(),
        };
        return vec![target(operation, resource)];
    }
    if let Some(i) = input.downcast_ref::<db::batch_get_item::BatchGetItemInput>() {
        return i
            .request_items()
            .into_iter()
            .flat_map(|items| items.keys())
            .map(|table| target(operation, table.as_str()))
            .collect();
    }
    if let Some(i) = input.downcast_ref::<db::transact_write_items::TransactWriteItemsInput>() {
        return i
            .transact_items()
            .iter()
            .filter_map(|item| {
                if let Some(put) = item.put() {
                    Some(target("Put", put.table_name()))
                } else if let Some(update) = item.update() {
                    Some(target("Update", update.table_name()))
                } else if let Some(delete) = item.delete() {
                    Some(target("Delete", delete.table_name()))
                } else {
                    item.condition_check()
                        .map(|check| target("ConditionCheck", check.table_name()))
                }
            })
            .collect();
    }
    if let Some(i) = input.downcast_ref::<sqs::send_message::SendMessageInput>() {
        return one(i.queue_url());
    }
    if let Some(i) = input.downcast_ref::<sqs::receive_message::ReceiveMessageInput>() {
        return one(i.queue_url());
    }
    if let Some(i) = input.downcast_ref::<sqs::delete_message_batch::DeleteMessageBatchInput>() {
        return one(i.queue_url());
    }
    if let Some(i) = input.downcast_ref::<sqs::delete_message::DeleteMessageInput>() {
        return one(i.queue_url());
    }
    if let Some(i) = input
        .downcast_ref::<sqs::change_message_visibility_batch::ChangeMessageVisibilityBatchInput>()
    {
        return one(i.queue_url());
    }
    if let Some(i) = input.downcast_ref::<sns::publish_batch::PublishBatchInput>() {
        return one(i.topic_arn());
    }
    if let Some(i) = input.downcast_ref::<sns::publish::PublishInput>() {
        return one(i.topic_arn());
    }
    Vec::new()
}
