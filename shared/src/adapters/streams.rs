//! The table's DynamoDB stream: every write of every item, once, in order per
//! item. In AWS Lambda event source mappings read it; locally the pollers do,
//! through `TableStreamReader`. Both are turned into the domain's
//! `StreamRecord`s here, at the edge, so the services never see an item.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_lambda_events::dynamodb::Event as LambdaStreamEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::{AttributeValue as StreamValue, ShardIteratorType};

pub use aws_sdk_dynamodbstreams::Client as StreamsClient;
use serde::{Deserialize, Serialize};

use super::dynamodb::items::{Item, decode_counters, decode_session, decode_state_change};
use super::dynamodb::layout::STATE_CHANGE_PREFIX;
use crate::domain::changes::UnreadableRecord;
use crate::domain::{Change, EventId, StreamRecord, Timestamp};
use crate::ports::StoreError;

const EVENT_PREFIX: &str = "EVENT#";
const SESSION_PREFIX: &str = "SESSION#";

/// What the table's items mean, from a record's key and images. An item of
/// ours that does not decode is an error: neither the outbox nor a freed
/// slot may be skipped silently.
pub fn change_of(pk: &str, old: Option<&Item>, new: Option<&Item>) -> Result<Change, String> {
    if pk.starts_with(SESSION_PREFIX) {
        let decode = |image: Option<&Item>| {
            image
                .map(|item| decode_session(item).map(Box::new))
                .transpose()
                .map_err(|e| e.to_string())
        };
        return Ok(Change::Session {
            old: decode(old)?,
            new: decode(new)?,
        });
    }
    if pk.starts_with(STATE_CHANGE_PREFIX) {
        // Written once; its deletion (TTL) is no change of state.
        return match (old, new) {
            (None, Some(item)) => decode_state_change(item)
                .map(Change::StateChanged)
                .map_err(|e| e.to_string()),
            _ => Ok(Change::Other),
        };
    }
    if let Some(event) = pk.strip_prefix(EVENT_PREFIX) {
        let event_id = EventId::parse(event).map_err(|e| e.to_string())?;
        // Heads are as long as stored; a missing image reads as zeroes.
        let decode = |image: Option<&Item>| {
            decode_counters(image, 1)
                .map(Box::new)
                .map_err(|e| e.to_string())
        };
        return Ok(Change::Counters {
            event_id,
            before: decode(old)?,
            after: decode(new)?,
        });
    }
    Ok(Change::Other)
}

fn record(
    id: String,
    written_at: Option<Timestamp>,
    pk: Option<&str>,
    old: Option<&Item>,
    new: Option<&Item>,
    raw: impl FnOnce() -> String,
) -> StreamRecord {
    let change = match pk {
        Some(pk) => change_of(pk, old, new),
        None => Err("the record has no pk".to_owned()),
    };
    StreamRecord {
        id,
        change: change.map_err(|reason| UnreadableRecord { reason, raw: raw() }),
        written_at,
    }
}

fn from_lambda_value(value: &serde_dynamo::AttributeValue) -> Option<AttributeValue> {
    use serde_dynamo::AttributeValue as V;
    Some(match value {
        V::S(s) => AttributeValue::S(s.clone()),
        V::N(n) => AttributeValue::N(n.clone()),
        V::Bool(b) => AttributeValue::Bool(*b),
        V::Null(b) => AttributeValue::Null(*b),
        V::L(list) => AttributeValue::L(list.iter().filter_map(from_lambda_value).collect()),
        V::M(map) => AttributeValue::M(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), from_lambda_value(v)?)))
                .collect(),
        ),
        _ => return None,
    })
}

fn from_lambda_image(image: &serde_dynamo::Item) -> Option<Item> {
    let fields = image.inner();
    if fields.is_empty() {
        return None;
    }
    Some(
        fields
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), from_lambda_value(value)?)))
            .collect(),
    )
}

/// The records of a DynamoDB stream event as Lambda delivers it. A record's
/// id is its sequence number: what a partial batch failure names.
pub fn records_in_lambda_event(event: &LambdaStreamEvent) -> Vec<StreamRecord> {
    event
        .records
        .iter()
        .map(|r| {
            let keys = from_lambda_image(&r.change.keys).unwrap_or_default();
            let pk = keys
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str);
            let old = from_lambda_image(&r.change.old_image);
            let new = from_lambda_image(&r.change.new_image);
            let id = r
                .change
                .sequence_number
                .clone()
                .unwrap_or_else(|| r.event_id.clone());
            let written_at =
                u64::try_from(r.change.approximate_creation_date_time.timestamp_millis())
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Timestamp::from_millis);
            record(id, written_at, pk, old.as_ref(), new.as_ref(), || {
                serde_json::to_string(r).unwrap_or_else(|_| format!("{r:?}"))
            })
        })
        .collect()
}

fn from_stream_value(value: &StreamValue) -> Option<AttributeValue> {
    Some(match value {
        StreamValue::S(s) => AttributeValue::S(s.clone()),
        StreamValue::N(n) => AttributeValue::N(n.clone()),
        StreamValue::Bool(b) => AttributeValue::Bool(*b),
        StreamValue::Null(b) => AttributeValue::Null(*b),
        StreamValue::L(list) => {
            AttributeValue::L(list.iter().filter_map(from_stream_value).collect())
        }
        StreamValue::M(map) => AttributeValue::M(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), from_stream_value(v)?)))
                .collect(),
        ),
        _ => return None,
    })
}

fn from_stream_image(image: Option<&HashMap<String, StreamValue>>) -> Option<Item> {
    let item: Item = image?
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), from_stream_value(value)?)))
        .collect();
    Some(item)
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Follows every shard of a table's stream the way the Lambda event source
/// mapping does, from where `StartAt` says. Local use only.
pub struct TableStreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Per shard, where to read next; `None` once a shard is closed and read.
    iterators: HashMap<String, Option<String>>,
    /// Per shard, the sequence number of the last record handed out (at
    /// open: the saved one, where a shard not yet followed resumes).
    read_to: HashMap<String, String>,
    /// Whether `read_to` moved since it was last saved.
    unsaved: bool,
    /// Where the position is saved between runs, if anywhere.
    checkpoint: Option<PathBuf>,
    /// Where a shard with no saved position starts: as asked for the shards
    /// that exist when the reader opens, at the oldest record for shards
    /// that appear later (children of shards being read: nothing skipped).
    start_new_shards_at: ShardIteratorType,
}

/// Where a reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// Every record the stream still holds.
    Oldest,
    /// Only records written from now on: a worker started by hand replays
    /// no history (each read of it holds the emulator for seconds); what it
    /// missed is repaired by the reconciliation (decision 0017).
    Newest,
    /// After the position last saved in this file by `save_checkpoint`, or
    /// at the oldest record if nothing was saved yet for this stream: a
    /// restarted worker neither replays nor skips (decision 0023).
    Checkpoint(PathBuf),
}

/// What a poller saves so that a restart continues where it stopped: the
/// stream (a re-created table has a new one) and each shard's last handled
/// sequence number.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    stream_arn: String,
    shards: HashMap<String, String>,
}

impl TableStreamReader {
    /// A reader of `table`'s stream, starting at `start`.
    pub async fn open(
        dynamodb: &aws_sdk_dynamodb::Client,
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
        start: StartAt,
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
        let (checkpoint, first) = match start {
            StartAt::Oldest => (None, ShardIteratorType::TrimHorizon),
            StartAt::Newest => (None, ShardIteratorType::Latest),
            StartAt::Checkpoint(path) => (Some(path), ShardIteratorType::TrimHorizon),
        };
        let read_to = checkpoint
            .as_deref()
            .and_then(read_checkpoint)
            .filter(|saved| saved.stream_arn == stream_arn)
            .map(|saved| saved.shards)
            .unwrap_or_default();
        let mut reader = Self {
            client,
            stream_arn,
            iterators: HashMap::new(),
            read_to,
            unsaved: false,
            checkpoint,
            start_new_shards_at: first,
        };
        reader.discover_shards().await?;
        reader.start_new_shards_at = ShardIteratorType::TrimHorizon;
        Ok(reader)
    }

    /// Records written since the last call.
    pub async fn next_records(&mut self) -> Result<Vec<StreamRecord>, StoreError> {
        self.discover_shards().await?;
        let mut records = Vec::new();
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
            for r in output.records() {
                let Some(change) = r.dynamodb() else {
                    continue;
                };
                let pk = change
                    .keys()
                    .and_then(|k| k.get("pk"))
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str);
                let id = change
                    .sequence_number()
                    .map(str::to_owned)
                    .unwrap_or_default();
                if !id.is_empty() {
                    self.read_to.insert(shard.clone(), id.clone());
                    self.unsaved = true;
                }
                let old = from_stream_image(change.old_image());
                let new = from_stream_image(change.new_image());
                let written_at = change
                    .approximate_creation_date_time()
                    .and_then(|at| u64::try_from(at.to_millis().ok()?).ok())
                    .map(Timestamp::from_millis);
                records.push(record(
                    id,
                    written_at,
                    pk,
                    old.as_ref(),
                    new.as_ref(),
                    || format!("{r:?}"),
                ));
            }
            tracing::trace!(shard, records = output.records().len(), "read stream shard");
            *iterator = output.next_shard_iterator().map(str::to_owned);
        }
        Ok(records)
    }

    /// Saves the position reached: call it once every record handed out so
    /// far has been handled, so that a restart neither replays nor skips.
    /// Writes only when the position moved; a failure to save costs at most
    /// a replay, so it is logged, not fatal.
    pub fn save_checkpoint(&mut self) {
        let Some(path) = &self.checkpoint else { return };
        if !self.unsaved {
            return;
        }
        let saved = Checkpoint {
            stream_arn: self.stream_arn.clone(),
            shards: self.read_to.clone(),
        };
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                // Write then rename, so a crash mid-write leaves the old one.
                let partial = path.with_extension("partial");
                std::fs::write(&partial, bytes)?;
                std::fs::rename(&partial, path)
            });
        match written {
            Ok(()) => self.unsaved = false,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "saving the stream checkpoint failed");
            }
        }
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
            let request = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(id);
            // A position for a shard not yet followed is the saved one.
            let request = match self.read_to.get(id).cloned() {
                Some(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(sequence),
                None => request.shard_iterator_type(self.start_new_shards_at.clone()),
            };
            let iterator = request
                .send()
                .await
                .map_err(|e| unavailable(aws_sdk_dynamodbstreams::error::DisplayErrorContext(e)))?;
            self.iterators
                .insert(id.to_owned(), iterator.shard_iterator().map(str::to_owned));
        }
        Ok(())
    }
}

/// A saved position, or none if there is no file or it cannot be read (the
/// reader then starts at the oldest record, as on a first run).
fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(saved) => Some(saved),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "ignoring an unreadable stream checkpoint");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda_event(records: serde_json::Value) -> LambdaStreamEvent {
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[test]
    fn lambda_stream_events_become_domain_changes() {
        let event = lambda_event(serde_json::json!([
            {"eventID": "1", "eventName": "MODIFY", "awsRegion": "us-east-1", "dynamodb": {
                "SequenceNumber": "100", "SizeBytes": 10,
                "Keys": {"pk": {"S": "EVENT#E1"}},
                "OldImage": {"pk": {"S": "EVENT#E1"}, "active": {"N": "3"}, "capacity": {"N": "3"}, "lineBacklog": {"N": "1"}},
                "NewImage": {"pk": {"S": "EVENT#E1"}, "active": {"N": "2"}, "capacity": {"N": "3"}, "lineBacklog": {"N": "1"},
                             "heads": {"L": [{"N": "4"}]}}}},
            {"eventID": "2", "eventName": "INSERT", "awsRegion": "us-east-1", "dynamodb": {
                "SequenceNumber": "101", "SizeBytes": 10,
                "Keys": {"pk": {"S": "EVENT#E2"}},
                "NewImage": {"pk": {"S": "EVENT#E2"}, "active": {"N": "1"}, "admitted": {"N": "1"}}}},
            {"eventID": "3", "eventName": "MODIFY", "awsRegion": "us-east-1", "dynamodb": {
                "SequenceNumber": "102", "SizeBytes": 10,
                "Keys": {"pk": {"S": "SESSION#E1.x"}},
                "NewImage": {"pk": {"S": "SESSION#E1.x"}, "status": {"S": "LEFT"}}}},
            {"eventID": "4", "eventName": "MODIFY", "awsRegion": "us-east-1", "dynamodb": {
                "SequenceNumber": "103", "SizeBytes": 10,
                "Keys": {"pk": {"S": "CLAIM#E1#u"}}}}
        ]));
        let records = records_in_lambda_event(&event);
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["100", "101", "102", "103"],
            "sequence numbers name the records"
        );
        let freed = records[0].change.as_ref().unwrap().frees_a_slot();
        let (event_id, after) = freed.expect("a leave frees a slot");
        assert_eq!((event_id.as_str(), after.heads.clone()), ("E1", vec![4]));
        assert!(
            records[1].change.as_ref().unwrap().frees_a_slot().is_none(),
            "an admission does not"
        );
        let broken = records[2].change.as_ref().unwrap_err();
        assert!(broken.reason.contains("sessionId"), "{}", broken.reason);
        assert!(
            broken.raw.contains("SESSION#E1.x"),
            "the record is kept whole"
        );
        assert_eq!(records[3].change, Ok(Change::Other));
    }

    #[test]
    fn capacity_changes_wake_the_granter_only_when_someone_waits() {
        let change = |armed: bool| Change::Counters {
            event_id: EventId::parse("E").unwrap(),
            before: Box::default(),
            after: Box::new(crate::domain::EventCounters {
                capacity: Some(10),
                backlog: crate::domain::Backlog {
                    armed,
                    empty_since: None,
                },
                ..Default::default()
            }),
        };
        assert!(change(true).frees_a_slot().is_some());
        assert!(
            change(false).frees_a_slot().is_none(),
            "no line: no need to wake the granter"
        );
    }
}
