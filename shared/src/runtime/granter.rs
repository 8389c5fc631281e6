//! The granter's two event sources, each served two ways.
//!
//! | source                     | in AWS                          | locally                |
//! |----------------------------|---------------------------------|------------------------|
//! | join queue (SQS FIFO)      | event source mapping, batches   | `receive` loop         |
//! | table stream (joins, exits)| event source mapping on stream  | `TableStreamReader`    |
//!
//! Both report per item: a message or a stream record that could not be
//! handled is retried alone, and one event's trouble never holds up another's.

use std::collections::BTreeMap;
use std::future::Future;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::DynamoDbEventResponse;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::adapters::streams::{TableStreamReader, records_in_lambda_event};
use crate::domain::{EventCounters, EventId, Session, SessionId, StreamRecord, Timestamp};
use crate::ports::{
    Arrival, Delivery, EventStore, LineStore, Quarantine, QueueConsumer, Redelivery, WakeQueue,
};
use crate::service::ServiceError;
use crate::service::granter::{AdvanceReport, BatchReport, Granter, Unadvanced, Wake};
use crate::setup::metrics;

use super::poll::{self, QueueHandler, StreamHandler};
use super::{give_back, hold, queue_response, stream_response};

/// Finish a batch: admit or number what can be, quarantine what cannot be
/// read, hand to the event's wake-up group an advance that gave up under
/// contention once its joins were numbered, and give back what failed to be
/// received again within seconds. Returns the ids of messages to delete and
/// of those left for redelivery.
pub async fn handle_batch<S: LineStore + EventStore, Q: Quarantine, W: WakeQueue + Redelivery>(
    granter: &Granter<S>,
    quarantine: &Q,
    wakes: &W,
    deliveries: &[Delivery],
) -> BatchReport {
    let mut report = granter.handle_deliveries(deliveries).await;
    for unadvanced in std::mem::take(&mut report.unadvanced) {
        let Unadvanced {
            event,
            messages,
            arrivals,
        } = unadvanced;
        let first = messages.first().map(String::as_str).unwrap_or_default();
        match wakes
            .wake(&event, &arrivals, &format!("{event}:join:{first}"))
            .await
        {
            Ok(()) => {
                tracing::warn!(event = %event, messages = messages.len(), "advance after join messages gave up; retried from the event's wake-up group");
                report.handed_off.push(event);
                report.handled.extend(messages);
            }
            Err(handoff) => {
                tracing::warn!(event = %event, handoff = %handoff, "advance after join messages gave up and could not be handed off; the messages will be redelivered");
                report.failed.extend(messages);
            }
        }
    }
    for delivery in std::mem::take(&mut report.unreadable) {
        match quarantine
            .quarantine(
                &delivery.message_id,
                &delivery.body,
                "not a join queue message",
            )
            .await
        {
            Ok(()) => report.handled.push(delivery.message_id),
            Err(err) => {
                tracing::warn!(message_id = %delivery.message_id, error = %err, "could not quarantine");
                report.failed.push(delivery.message_id);
            }
        }
    }
    // A failed message would otherwise be invisible for the visibility
    // timeout, and its FIFO group (a shard's joins, or the event's
    // wake-ups) with it: the fans behind it would wait a minute beside a
    // free slot, with nobody to arm the hint for them.
    give_back(wakes, deliveries, &report.failed).await;
    // Held messages are not done either: Lambda must not delete them.
    hold(wakes, deliveries, &report.held, granter.clock.now()).await;
    report
        .failed
        .extend(report.held.iter().map(|(id, _)| id.clone()));
    report
}

/// What one batch of stream records came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// Events advanced.
    pub advanced: Vec<EventId>,
    /// Events whose advance failed and was handed to the join queue.
    pub handed_off: Vec<EventId>,
    /// Records to be delivered again: their event's advance failed and
    /// could not even be handed off.
    pub failed: Vec<String>,
}

/// What the stream asks of one event.
#[derive(Default)]
struct EventWork<'a> {
    /// The newest counters of a record that freed a slot.
    freed: Option<&'a EventCounters>,
    /// When the first of those records was written (the slot freed).
    freed_at: Option<Timestamp>,
    /// Sessions that just joined.
    joined: Vec<&'a Session>,
    records: Vec<&'a str>,
}

/// Advance every event the records concern: freed slots (from the newest
/// counters seen) and fresh joins the join messages may not have served
/// (a granter that crashed holding them). Events run side by side; one that
/// fails is handed to the join queue, in its own message group, so the
/// stream moves on for everyone else.
#[tracing::instrument(name = "stream_records", skip_all, fields(records = records.len()))]
pub async fn handle_stream<S: LineStore + EventStore, W: WakeQueue>(
    granter: &Granter<S>,
    wakes: &W,
    records: &[StreamRecord],
) -> StreamReport {
    let mut work: BTreeMap<EventId, EventWork<'_>> = BTreeMap::new();
    for record in records {
        let Ok(change) = &record.change else {
            // The publisher sets unreadable records aside; an event item
            // among them is the reconciliation's to repair.
            tracing::error!(record = %record.id, "unreadable stream record");
            continue;
        };
        if let Some((event, counters)) = change.frees_a_slot() {
            let entry = work.entry(event.clone()).or_default();
            entry.freed = Some(counters);
            entry.freed_at = entry.freed_at.or(record.written_at);
            entry.records.push(&record.id);
        } else if let Some(session) = change.joined() {
            let entry = work.entry(session.event_id.clone()).or_default();
            entry.joined.push(session);
            entry.records.push(&record.id);
        }
    }
    let outcomes = futures::future::join_all(work.into_iter().map(|(event, todo)| async move {
        tracing::debug!(event = %event, records = todo.records.len(), freed = todo.freed.is_some(), joined = todo.joined.len(), "stream work");
        let outcome = advance_for_stream(granter, &event, &todo).await;
        (event, todo, outcome)
    }))
    .await;
    let mut report = StreamReport::default();
    for (event, todo, outcome) in outcomes {
        let err = match outcome {
            Ok(advance) => {
                // Slot freed → next admitted, as the stream's clock and ours
                // tell it (the stream's to the second in AWS).
                if let (true, Some(freed_at)) = (advance.admitted > 0, todo.freed_at) {
                    let now = granter.clock.now();
                    metrics::emit(&[metrics::of_admission_latency(
                        event.as_str(),
                        now.since(freed_at),
                        now,
                    )]);
                }
                report.advanced.push(event);
                continue;
            }
            Err(err) => err,
        };
        let first = todo.records.first().copied().unwrap_or_default();
        // The joins go with it: their advance may have been what failed,
        // and a wake-up without them could not arm the hint for them.
        let joined: Vec<Arrival> = todo
            .joined
            .iter()
            .map(|s| Arrival::for_session(s))
            .collect();
        match wakes
            .wake(&event, &joined, &format!("{event}:stream:{first}"))
            .await
        {
            Ok(()) => {
                tracing::warn!(event = %event, error = %err, "advance after a stream record failed; retried from the event's wake-up group");
                report.handed_off.push(event);
            }
            Err(handoff) => {
                tracing::warn!(event = %event, error = %err, handoff = %handoff, "advance failed and could not be handed off; the stream retries it");
                report
                    .failed
                    .extend(todo.records.iter().map(|id| (*id).to_owned()));
            }
        }
    }
    report
}

async fn advance_for_stream<S: LineStore + EventStore>(
    granter: &Granter<S>,
    event: &EventId,
    todo: &EventWork<'_>,
) -> Result<AdvanceReport, ServiceError> {
    let known = if todo.joined.is_empty() {
        Vec::new()
    } else {
        // Usually the join messages admitted them already: then there is
        // nothing to do but this one read.
        let ids: Vec<SessionId> = todo.joined.iter().map(|s| s.id.clone()).collect();
        granter.store.waiting_among(&ids).await?
    };
    if known.is_empty() && todo.freed.is_none() {
        return Ok(AdvanceReport::default());
    }
    granter
        .advance(
            event,
            Wake {
                counters: todo.freed.cloned(),
                known,
                use_cache: todo.freed.is_some(),
            },
        )
        .await
}

/// What Lambda hands the granter: a batch of its join queue or of the
/// table stream, told apart by the records' `eventSource` as Lambda names
/// it (both shapes have a `Records` list, so their fields cannot tell).
/// Anything else, an empty batch included, is not a granter's input.
#[derive(Debug)]
pub enum GranterEvent {
    Queue(SqsEvent),
    Stream(StreamEvent),
}

impl<'de> Deserialize<'de> for GranterEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let event = Value::deserialize(deserializer)?;
        let source = event
            .pointer("/Records/0/eventSource")
            .and_then(Value::as_str);
        match source {
            Some("aws:sqs") => serde_json::from_value(event).map(GranterEvent::Queue),
            Some("aws:dynamodb") => serde_json::from_value(event).map(GranterEvent::Stream),
            other => {
                return Err(D::Error::custom(format!(
                    "not an SQS or DynamoDB stream batch (eventSource {other:?})"
                )));
            }
        }
        .map_err(D::Error::custom)
    }
}

/// The per-item failures of the batch, in the shape its source expects.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum GranterResponse {
    Queue(SqsBatchResponse),
    Stream(DynamoDbEventResponse),
}

/// The Lambda entry point: SQS batches and stream batches both answer with
/// per-item failures.
pub async fn handle_lambda_event<
    S: LineStore + EventStore,
    Q: Quarantine,
    W: WakeQueue + Redelivery,
>(
    granter: &Granter<S>,
    quarantine: &Q,
    wakes: &W,
    event: GranterEvent,
) -> Result<GranterResponse, ServiceError> {
    match event {
        GranterEvent::Queue(event) => {
            let report =
                handle_batch(granter, quarantine, wakes, &super::deliveries_of(event)?).await;
            Ok(GranterResponse::Queue(queue_response(report.failed)))
        }
        GranterEvent::Stream(event) => {
            let report = handle_stream(granter, wakes, &records_in_lambda_event(&event)).await;
            Ok(GranterResponse::Stream(stream_response(report.failed)))
        }
    }
}

/// A join queue batch for the local poller: numbered and admitted, the
/// unreadable quarantined.
struct JoinBatches<'a, S, Q, W> {
    granter: &'a Granter<S>,
    quarantine: &'a Q,
    wakes: &'a W,
}

impl<S: LineStore + EventStore, Q: Quarantine, W: WakeQueue + Redelivery> QueueHandler
    for JoinBatches<'_, S, Q, W>
{
    async fn handle(&self, batch: &[Delivery]) -> Vec<String> {
        handle_batch(self.granter, self.quarantine, self.wakes, batch)
            .await
            .failed
    }
}

/// Stream records for the local poller: the events they concern advanced.
struct StreamBatches<'a, S, W> {
    granter: &'a Granter<S>,
    wakes: &'a W,
}

impl<S: LineStore + EventStore, W: WakeQueue> StreamHandler for StreamBatches<'_, S, W> {
    async fn handle(&self, records: &[StreamRecord]) -> Vec<String> {
        handle_stream(self.granter, self.wakes, records)
            .await
            .failed
    }
}

/// The local receive loop, until `shutdown` completes.
pub async fn poll_join_queue<S, C, Q, W>(
    granter: &Granter<S>,
    consumer: &C,
    quarantine: &Q,
    wakes: &W,
    shutdown: impl Future<Output = ()>,
) where
    S: LineStore + EventStore,
    C: QueueConsumer,
    Q: Quarantine,
    W: WakeQueue + Redelivery,
{
    let batches = JoinBatches {
        granter,
        quarantine,
        wakes,
    };
    poll::queue(consumer, &batches, shutdown).await;
}

/// The local stream loop, until `shutdown` completes. Records whose event
/// could neither advance nor be handed off are retried on the next round,
/// as the Lambda mapping retries them.
pub async fn poll_table_stream<S: LineStore + EventStore, W: WakeQueue>(
    granter: &Granter<S>,
    wakes: &W,
    stream: &mut TableStreamReader,
    shutdown: impl Future<Output = ()>,
) {
    poll::stream(stream, &StreamBatches { granter, wakes }, shutdown).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::adapters::memory::{MemoryQuarantine, MemoryQueue, MemoryStore, QueueBehaviour};
    use crate::domain::admission::AdmissionPolicy;
    use crate::domain::{ManualClock, SessionStatus, Timestamp, UserId};
    use crate::ports::{OsRandom, SessionStore};
    use crate::service::join::JoinService;

    /// Seeds 704,022 and 925,714 of the explorer's million: a join message
    /// (or a wake-up) given back after a store failure stayed invisible for
    /// the 60 s visibility timeout, holding back its whole message group;
    /// the fan behind it had nobody to arm the hint for them and stood
    /// beside a free slot until the reconciliation.
    #[tokio::test]
    async fn a_message_given_back_after_a_failure_is_received_again_within_seconds() {
        let clock = ManualClock::starting_at(Timestamp::from_millis(1_800_000_000_000));
        let store = Arc::new(MemoryStore::new());
        let queue = Arc::new(MemoryQueue::timed(
            Arc::new(clock.clone()),
            QueueBehaviour::default(),
        ));
        let join = JoinService {
            store: store.clone(),
            queue: queue.clone(),
            clock: Arc::new(clock.clone()),
            ids: Arc::new(OsRandom),
            line_shards: 1,
            listed: Default::default(),
            states: Default::default(),
            join_keys: Default::default(),
        };
        let event = EventId::parse("E1").unwrap();
        let joined = join
            .join(event.clone(), UserId::parse("U1").unwrap(), None)
            .await
            .unwrap()
            .session()
            .clone();
        let granter = Granter {
            store: store.clone(),
            clock: Arc::new(clock.clone()),
            policy: AdmissionPolicy {
                default_capacity: 1,
                active_stay: Duration::from_secs(900),
                abandon_after: None,
                max_changes_per_write: 50,
            },
            line_shards: 1,
            ended_retention: Duration::from_secs(3600),
            fronts: Default::default(),
        };
        let quarantine = MemoryQuarantine::default();
        let batch = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(batch.len(), 1);
        store.fail_next(1);
        let report = handle_batch(&granter, &quarantine, &queue, &batch).await;
        assert_eq!(report.failed, vec![batch[0].message_id.clone()]);

        clock.advance(Duration::from_millis(999));
        assert!(queue.receive(10, Duration::ZERO).await.unwrap().is_empty());
        clock.advance(Duration::from_millis(1));
        let again = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 1, "back after one second, not sixty");
        assert_eq!(again[0].receive_count, 2);
        let report = handle_batch(&granter, &quarantine, &queue, &again).await;
        assert_eq!((report.handled.len(), report.admitted), (1, 1));
        let session = store.get_session(&joined.id).await.unwrap().unwrap();
        assert_eq!(session.status(), SessionStatus::Active);
    }

    fn parse(event: Value) -> Result<GranterEvent, serde_json::Error> {
        serde_json::from_value(event)
    }

    #[test]
    fn a_queue_batch_and_a_stream_batch_are_told_apart_by_their_source() {
        let queue = json!({"Records": [{"messageId": "m1", "receiptHandle": "r1", "body": "{}", "eventSource": "aws:sqs"}]});
        assert!(matches!(parse(queue), Ok(GranterEvent::Queue(e)) if e.records.len() == 1));
        let stream = json!({"Records": [{"eventID": "1", "eventName": "MODIFY", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:dynamodb:us-east-1:0:table/t/stream/1",
            "dynamodb": {"Keys": {"pk": {"S": "EVENT#E1"}}, "SequenceNumber": "1", "SizeBytes": 20, "StreamViewType": "NEW_AND_OLD_IMAGES"}}]});
        assert!(matches!(parse(stream), Ok(GranterEvent::Stream(e)) if e.records.len() == 1));
    }

    #[test]
    fn anything_else_is_not_a_granter_input() {
        for event in [
            json!({}),
            json!({"Records": []}),
            json!({"Records": [{"eventSource": "aws:kinesis"}]}),
            json!({"detail-type": "Scheduled Event"}),
        ] {
            let refused = parse(event.clone()).map(drop).unwrap_err().to_string();
            assert!(
                refused.contains("not an SQS or DynamoDB stream batch"),
                "{event}: {refused}"
            );
        }
    }

    #[test]
    fn each_source_gets_its_own_shape_of_failures() {
        let queue = serde_json::to_value(GranterResponse::Queue(queue_response(["m1".to_owned()])))
            .unwrap();
        assert_eq!(
            queue,
            json!({"batchItemFailures": [{"itemIdentifier": "m1"}]})
        );
        let stream =
            serde_json::to_value(GranterResponse::Stream(stream_response(vec!["7".into()])))
                .unwrap();
        assert_eq!(
            stream,
            json!({"batchItemFailures": [{"itemIdentifier": "7"}]})
        );
    }
}
