//! The table's DynamoDB stream, reduced to what the granter reacts to: an
//! event's counters changed (a slot was freed, capacity was raised). In AWS a
//! Lambda event source mapping reads the stream; locally the poller does,
//! through `TableStreamReader`. Both end in `CountersChange`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};

pub use aws_sdk_dynamodbstreams::Client as StreamsClient;
use serde_json::Value;

use super::dynamodb::items::{Item, decode_counters};
use crate::domain::{EventCounters, EventId};
use crate::ports::StoreError;

const EVENT_PREFIX: &str = "EVENT#";

/// An event's counters before and after one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountersChange {
    pub event_id: EventId,
    pub before: EventCounters,
    pub after: EventCounters,
}

impl CountersChange {
    /// A slot may have become free: fewer active sessions, or a new capacity.
    /// Admissions (more active) are not worth waking the granter for.
    pub fn may_free_a_slot(&self) -> bool {
        self.after.active < self.before.active || self.after.capacity != self.before.capacity
    }
}

fn change_of(pk: Option<&str>, old: Option<&Item>, new: Option<&Item>) -> Option<CountersChange> {
    let event = pk?.strip_prefix(EVENT_PREFIX)?;
    let event_id = EventId::parse(event).ok()?;
    Some(CountersChange {
        event_id,
        before: decode_counters(old).ok()?,
        after: decode_counters(new).ok()?,
    })
}

/// Only strings and numbers matter for counters; other types are dropped.
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

/// Counter changes in a DynamoDB stream event as Lambda delivers it.
pub fn changes_in_lambda_event(event: &Value) -> Vec<CountersChange> {
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
            let pk = keys
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str);
            let old = change.get("OldImage").and_then(from_lambda_json);
            let new = change.get("NewImage").and_then(from_lambda_json);
            change_of(pk, old.as_ref(), new.as_ref())
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

    /// Counter changes written since the last call.
    pub async fn next_changes(&mut self) -> Result<Vec<CountersChange>, StoreError> {
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
                let old = from_stream_image(change.old_image());
                let new = from_stream_image(change.new_image());
                changes.extend(change_of(
                    pk.map(String::as_str),
                    old.as_ref(),
                    new.as_ref(),
                ));
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
                "OldImage": {"pk": {"S": "EVENT#E1"}, "active": {"N": "3"}, "capacity": {"N": "3"}},
                "NewImage": {"pk": {"S": "EVENT#E1"}, "active": {"N": "2"}, "capacity": {"N": "3"}}}},
            {"eventName": "MODIFY", "dynamodb": {
                "Keys": {"pk": {"S": "SESSION#E1.x"}},
                "NewImage": {"pk": {"S": "SESSION#E1.x"}, "status": {"S": "LEFT"}}}},
            {"eventName": "INSERT", "dynamodb": {
                "Keys": {"pk": {"S": "EVENT#E2"}},
                "NewImage": {"pk": {"S": "EVENT#E2"}, "active": {"N": "1"}, "admitted": {"N": "1"}}}}
        ]});
        let changes = changes_in_lambda_event(&event);
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
                ..EventCounters::default()
            },
        };
        assert!(change.may_free_a_slot());
    }
}
