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
use std::time::Duration;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde_json::Value;

use crate::adapters::streams::{TableStreamReader, records_in_lambda_event};
use crate::domain::{EventCounters, EventId, SessionId, StreamRecord};
use crate::ports::{Delivery, Quarantine, QueueConsumer, SessionStore, WakeQueue};
use crate::service::ServiceError;
use crate::service::granter::{BatchReport, Granter, Wake};

use super::{Backoff, STREAM_POLL};

/// Long-poll wait of the local receive loop.
const RECEIVE_WAIT: Duration = Duration::from_secs(5);

/// Finish a batch: admit or number what can be, quarantine what cannot be
/// read. Returns the ids of messages to delete and of those to leave for
/// redelivery.
pub async fn handle_batch<S: SessionStore, Q: Quarantine>(
    granter: &Granter<S>,
    quarantine: &Q,
    deliveries: &[Delivery],
) -> BatchReport {
    let mut report = granter.handle_deliveries(deliveries).await;
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
    /// Sessions that just joined.
    joined: Vec<SessionId>,
    records: Vec<&'a str>,
}

/// Advance every event the records concern: freed slots (from the newest
/// counters seen) and fresh joins the join messages may not have served
/// (a granter that crashed holding them). Events run side by side; one that
/// fails is handed to the join queue, in its own message group, so the
/// stream moves on for everyone else.
pub async fn handle_stream<S: SessionStore, W: WakeQueue>(
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
            entry.records.push(&record.id);
        } else if let Some(session) = change.joined() {
            let entry = work.entry(session.event_id.clone()).or_default();
            entry.joined.push(session.id.clone());
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
        let Err(err) = outcome else {
            report.advanced.push(event);
            continue;
        };
        let first = todo.records.first().copied().unwrap_or_default();
        match wakes.wake(&event, &format!("{event}:{first}")).await {
            Ok(()) => {
                tracing::warn!(event = %event, error = %err, "advance after a stream record failed; retried from the join queue");
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

async fn advance_for_stream<S: SessionStore>(
    granter: &Granter<S>,
    event: &EventId,
    todo: &EventWork<'_>,
) -> Result<(), ServiceError> {
    let known = if todo.joined.is_empty() {
        Vec::new()
    } else {
        // Usually the join messages admitted them already: then there is
        // nothing to do but this one read.
        granter.store.waiting_among(&todo.joined).await?
    };
    if known.is_empty() && todo.freed.is_none() {
        return Ok(());
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
        .map(drop)
}

/// The Lambda entry point: SQS batches and stream batches both answer with
/// per-item failures. Anything else is an error.
pub async fn handle_lambda_event<S: SessionStore, Q: Quarantine, W: WakeQueue>(
    granter: &Granter<S>,
    quarantine: &Q,
    wakes: &W,
    event: Value,
) -> Result<Value, ServiceError> {
    let source = event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let bad = |e: serde_json::Error| ServiceError::Internal(format!("unreadable event: {e}"));
    match source.as_deref() {
        Some("aws:sqs") => {
            let event: SqsEvent = serde_json::from_value(event).map_err(bad)?;
            let deliveries = super::deliveries_of(event)?;
            let report = handle_batch(granter, quarantine, &deliveries).await;
            let mut response = SqsBatchResponse::default();
            for id in report.failed {
                response.add_failure(id);
            }
            serde_json::to_value(response).map_err(bad)
        }
        Some("aws:dynamodb") => {
            let event: StreamEvent = serde_json::from_value(event).map_err(bad)?;
            let report = handle_stream(granter, wakes, &records_in_lambda_event(&event)).await;
            serde_json::to_value(stream_response(report.failed)).map_err(bad)
        }
        other => Err(ServiceError::Internal(format!(
            "not an SQS or DynamoDB stream event (eventSource {other:?})"
        ))),
    }
}

/// A partial batch response for a stream: Lambda retries from the first
/// failed record (and checkpoints everything before it).
pub fn stream_response(failed: Vec<String>) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(id);
            failure
        })
        .collect();
    response
}

/// The local receive loop, until `shutdown` completes.
pub async fn poll_join_queue<S, C, Q>(
    granter: &Granter<S>,
    consumer: &C,
    quarantine: &Q,
    shutdown: impl Future<Output = ()>,
) where
    S: SessionStore,
    C: QueueConsumer,
    Q: Quarantine,
{
    let work = async {
        let mut backoff = Backoff::default();
        loop {
            let pause = match consumer.receive(10, RECEIVE_WAIT).await {
                Ok(deliveries) if deliveries.is_empty() => None,
                Ok(deliveries) => {
                    let report = handle_batch(granter, quarantine, &deliveries).await;
                    let handled: Vec<Delivery> = deliveries
                        .into_iter()
                        .filter(|d| report.handled.contains(&d.message_id))
                        .collect();
                    let deleted = consumer.delete(&handled).await;
                    if let Err(err) = &deleted {
                        tracing::warn!(error = %err, "could not delete handled messages; their redelivery is harmless");
                    }
                    if report.failed.is_empty() && deleted.is_ok() {
                        backoff.succeeded();
                        None
                    } else {
                        Some(backoff.failed())
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "receive failed");
                    Some(backoff.failed())
                }
            };
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}

/// The local stream loop, until `shutdown` completes. Records whose event
/// could neither advance nor be handed off are retried on the next round,
/// as the Lambda mapping retries them.
pub async fn poll_table_stream<S: SessionStore, W: WakeQueue>(
    granter: &Granter<S>,
    wakes: &W,
    stream: &mut TableStreamReader,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        let mut backoff = Backoff::default();
        let mut pending: Vec<StreamRecord> = Vec::new();
        loop {
            let pause = match stream.next_records().await {
                Err(err) => {
                    tracing::warn!(error = %err, "reading the table stream failed");
                    backoff.failed()
                }
                Ok(records) => {
                    pending.extend(records);
                    let report = handle_stream(granter, wakes, &pending).await;
                    pending.retain(|r| report.failed.contains(&r.id));
                    if pending.is_empty() {
                        stream.save_checkpoint();
                        backoff.succeeded();
                        STREAM_POLL
                    } else {
                        backoff.failed()
                    }
                }
            };
            tokio::time::sleep(pause).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}
