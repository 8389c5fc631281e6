//! The table's DynamoDB stream: every write of every item, once, in order per
//! item. In AWS Lambda event source mappings read it; locally the pollers do,
//! through `TableStreamReader`. Both yield `ItemChange`s, from which the
//! granter takes counter changes (a slot was freed, capacity was raised) and
//! the events publisher takes session changes (the outbox).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};

pub use aws_sdk_dynamodbstreams::Client as StreamsClient;
use serde_json::Value;

use super::dynamodb::items::{Item, decode_counters, decode_session};
use crate::domain::{EventCounters, EventId, Session};
use crate::ports::StoreError;

const EVENT_PREFIX: &str = "EVENT#";
const SESSION_PREFIX: &str = "SESSION#";

/// One write to one item: its key and its images before and after.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemChange {
    pub pk: String,
    pub old: Option<Item>,
    pub new: Option<Item>,
}

impl ItemChange {
    pub fn counters(&self) -> Option<CountersChange> {
        let event = self.pk.strip_prefix(EVENT_PREFIX)?;
        Some(CountersChange {
            event_id: EventId::parse(event).ok()?,
            before: decode_counters(self.old.as_ref()).ok()?,
            after: decode_counters(self.new.as_ref()).ok()?,
        })
    }

    /// A session's change, if this is a session item. Unreadable images
    /// are an error: the outbox must not skip a change silently.
    pub fn session(&self) -> Option<Result<SessionUpdate, StoreError>> {
        self.pk.strip_prefix(SESSION_PREFIX)?;
        let decode = |image: &Option<Item>| image.as_ref().map(decode_session).transpose();
        Some(decode(&self.old).and_then(|old| {
            Ok(SessionUpdate {
                old,
                new: decode(&self.new)?,
            })
        }))
    }
}

/// A session before and after one write (`None`: did not exist / deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUpdate {
    pub old: Option<Session>,
    pub new: Option<Session>,
}

/// An event's counters before and after one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountersChange {
    pub event_id: EventId,
    pub before: EventCounters,
    pub after: EventCounters,
}

impl CountersChange {
    /// A slot may have become free (fewer active sessions, or a new
    /// capacity) while someone waits. Admissions, and exits with nobody in
    /// line, are not worth waking the granter for.
    pub fn may_free_a_slot(&self) -> bool {
        let freed =
            self.after.active < self.before.active || self.after.capacity != self.before.capacity;
        freed && self.after.backlog
    }
}

/// Our items hold only strings and numbers; other types are dropped.
fn from_lambda_json(image: &Value) -> Option<Item> {
    let fields = image.as_object()?;
    if fields.is_empty() {
        return None;
    }
    let item = fields
        .iter()
        .filter_map(|(name, typed)| {
            let value = if let Some(s) = typed.get("S").and_then(Value::as_str) {
                AttributeValue::S(s.to_owned())
            } else {
                AttributeValue::N(typed.get("N").and_then(Value::as_str)?.to_owned())
            };
            Some((name.clone(), value))
        })
        .collect();
    Some(item)
}

/// The item changes in a DynamoDB stream event as Lambda delivers it.
pub fn changes_in_lambda_event(event: &Value) -> Vec<ItemChange> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    records
        .iter()
        .filter_map(|record| {
            let change = record.get("dynamodb")?;
            let keys = from_lambda_json(change.get("Keys")?)?;
            Some(ItemChange {
                pk: keys.get("pk").and_then(|v| v.as_s().ok())?.clone(),
                old: change.get("OldImage").and_then(from_lambda_json),
                new: change.get("NewImage").and_then(from_lambda_json),
            })
        })
        .collect()
}

fn from_stream_image(image: Option<&HashMap<String, StreamValue>>) -> Option<Item> {
    let item: Item = image?
        .iter()
        .filter_map(|(name, value)| {
            let value = match value {
                StreamValue::S(s) => AttributeValue::S(s.clone()),
                StreamValue::N(n) => AttributeValue::N(n.clone()),
                _ => return None,
            };
            Some((name.clone(), value))
        })
        .collect();
    Some(item)
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Follows every shard of a table's stream from its oldest record, the way
/// the Lambda event source mapping does. Local use only.
pub struct TableStreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Per shard, where to read next; `None` once a shard is closed and read.
    iterators: HashMap<String, Option<String>>,
}

impl TableStreamReader {
    pub async fn open(
        dynamodb: &aws_sdk_dynamodb::Client,
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
    ) -> Result<Self, StoreError> {
        let described = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| StoreError::Rejected(format!("table {table} has no stream")))?
            .to_owned();
        Ok(Self {
            client,
            stream_arn,
            iterators: HashMap::new(),
        })
    }

    /// Item changes written since the last call.
    pub async fn next_changes(&mut self) -> Result<Vec<ItemChange>, StoreError> {
        self.discover_shards().await?;
        let mut changes = Vec::new();
        for (shard, iterator) in &mut self.iterators {
            let Some(current) = iterator.clone() else {
                continue;
            };
            let output = self
                .client
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .map_err(|e| unavailable(aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)))?;
            for record in output.records() {
                let Some(change) = record.dynamodb() else {
                    continue;
                };
                let pk = change
                    .keys()
                    .and_then(|k| k.get("pk"))
                    .and_then(|v| v.as_s().ok());
                let Some(pk) = pk else {
                    continue;
                };
                changes.push(ItemChange {
                    pk: pk.clone(),
                    old: from_stream_image(change.old_image()),
                    new: from_stream_image(change.new_image()),
                });
            }
            tracing::trace!(shard, records = output.records().len(), "read stream shard");
            *iterator = output.next_shard_iterator().map(str::to_owned);
        }
        Ok(changes)
    }

    async fn discover_shards(&mut self) -> Result<(), StoreError> {
        let described = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(|e| unavailable(aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)))?;
        let shards = described
            .stream_description()
            .map(|d| d.shards())
            .unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id() else { continue };
            if self.iterators.contains_key(id) {
                continue;
            }
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| unavailable(aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)))?;
            self.iterators
                .insert(id.to_owned(), iterator.shard_iterator().map(str::to_owned));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_stream_events_yield_counter_changes_of_event_items_only() {
        let event = serde_json::json!({"Records": [
            {"eventName": "MODIFY", "dynamodb": {
                "Keys": {"pk": {"S": "EVENT#E1"}},
                "OldImage": {"pk": {"S": "EVENT#E1"}, "active": {"N": "3"}, "capacity": {"N": "3"}, "lineBacklog": {"N": "1"}},
                "NewImage": {"pk": {"S": "EVENT#E1"}, "active": {"N": "2"}, "capacity": {"N": "3"}, "lineBacklog": {"N": "1"}}}},
            {"eventName": "MODIFY", "dynamodb": {
                "Keys": {"pk": {"S": "SESSION#E1.x"}},
                "NewImage": {"pk": {"S": "SESSION#E1.x"}, "status": {"S": "LEFT"}}}},
            {"eventName": "INSERT", "dynamodb": {
                "Keys": {"pk": {"S": "EVENT#E2"}},
                "NewImage": {"pk": {"S": "EVENT#E2"}, "active": {"N": "1"}, "admitted": {"N": "1"}}}}
        ]});
        let changes: Vec<CountersChange> = changes_in_lambda_event(&event)
            .iter()
            .filter_map(ItemChange::counters)
            .collect();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].event_id.as_str(), "E1");
        assert!(changes[0].may_free_a_slot(), "a leave frees a slot");
        assert!(!changes[1].may_free_a_slot(), "an admission does not");
    }

    #[test]
    fn capacity_changes_wake_the_granter() {
        let change = CountersChange {
            event_id: EventId::parse("E").unwrap(),
            before: EventCounters::default(),
            after: EventCounters {
                capacity: Some(10),
                backlog: true,
                ..EventCounters::default()
            },
        };
        assert!(change.may_free_a_slot());
        let nobody_waits = CountersChange {
            after: EventCounters {
                backlog: false,
                ..change.after.clone()
            },
            ..change
        };
        assert!(
            !nobody_waits.may_free_a_slot(),
            "no line: no need to wake the granter"
        );
    }
}
