//! The granter's two event sources, each served two ways.
//!
//! | source                     | in AWS                          | locally                |
//! |----------------------------|---------------------------------|------------------------|
//! | join queue (SQS FIFO)      | event source mapping, batches   | `receive` loop         |
//! | table stream (slot freed)  | event source mapping on stream  | `TableStreamReader`    |

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::Value;

use crate::adapters::streams::{
    CountersChange, ItemChange, TableStreamReader, changes_in_lambda_event,
};
use crate::domain::EventId;
use crate::ports::{Delivery, Quarantine, QueueConsumer, SessionStore};
use crate::service::ServiceError;
use crate::service::granter::{BatchReport, Granter};

use super::{Backoff, STREAM_POLL};

/// Long-poll wait of the local receive loop.
const RECEIVE_WAIT: Duration = Duration::from_secs(5);

/// Finish a batch: admit or file what can be, quarantine what cannot be read.
/// Returns the ids of messages to delete and of those to leave for redelivery.
pub async fn handle_batch<S: SessionStore, Q: Quarantine>(
    granter: &Granter<S>,
    quarantine: &Q,
    deliveries: &[Delivery],
) -> BatchReport {
    let mut report = granter.handle_deliveries(deliveries).await;
    for delivery in std::mem::take(&mut report.unreadable) {
        match quarantine.quarantine(&delivery, "not a join message").await {
            Ok(()) => report.handled.push(delivery.message_id),
            Err(err) => {
                tracing::warn!(message_id = %delivery.message_id, error = %err, "could not quarantine");
                report.failed.push(delivery.message_id);
            }
        }
    }
    report
}

/// Advance the line of every event whose counters show a freed slot, from
/// the newest counters seen for it.
pub async fn handle_counter_changes<S: SessionStore>(
    granter: &Granter<S>,
    changes: &[CountersChange],
) -> Result<(), ServiceError> {
    let mut newest: BTreeMap<&EventId, &CountersChange> = BTreeMap::new();
    for change in changes.iter().filter(|c| c.may_free_a_slot()) {
        newest.insert(&change.event_id, change);
    }
    for (event, change) in newest {
        granter
            .advance_with(event, Vec::new(), Some(change.after.clone()))
            .await?;
    }
    Ok(())
}

/// The Lambda entry point: SQS batches get partial batch failures; stream
/// batches are retried whole on error (advancing a line is idempotent).
pub async fn handle_lambda_event<S: SessionStore, Q: Quarantine>(
    granter: &Granter<S>,
    quarantine: &Q,
    event: Value,
) -> Result<Value, ServiceError> {
    let source = event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match source.as_str() {
        "aws:sqs" => {
            let event: SqsEvent = serde_json::from_value(event)
                .map_err(|e| ServiceError::Internal(format!("bad SQS event: {e}")))?;
            let deliveries: Vec<Delivery> = event
                .records
                .into_iter()
                .map(|m| Delivery {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                })
                .collect();
            let report = handle_batch(granter, quarantine, &deliveries).await;
            let mut response = SqsBatchResponse::default();
            for id in report.failed {
                response.add_failure(id);
            }
            serde_json::to_value(response).map_err(|e| ServiceError::Internal(e.to_string()))
        }
        "aws:dynamodb" => {
            let changes: Vec<CountersChange> = changes_in_lambda_event(&event)
                .iter()
                .filter_map(ItemChange::counters)
                .collect();
            handle_counter_changes(granter, &changes).await?;
            Ok(Value::Object(serde_json::Map::new()))
        }
        "" => Ok(Value::Object(serde_json::Map::new())),
        other => Err(ServiceError::Internal(format!(
            "unexpected event source {other}"
        ))),
    }
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

/// The local stream loop, until `shutdown` completes. Events whose advance
/// failed are retried on the next round, so no freed slot is forgotten.
pub async fn poll_table_stream<S: SessionStore>(
    granter: &Granter<S>,
    stream: &mut TableStreamReader,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        let mut backoff = Backoff::default();
        let mut pending: Vec<CountersChange> = Vec::new();
        loop {
            let pause = match stream.next_changes().await {
                Err(err) => {
                    tracing::warn!(error = %err, "reading the table stream failed");
                    backoff.failed()
                }
                Ok(changes) => {
                    pending.extend(changes.iter().filter_map(ItemChange::counters));
                    match handle_counter_changes(granter, &pending).await {
                        Ok(()) => {
                            pending.clear();
                            backoff.succeeded();
                            STREAM_POLL
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "admitting after a freed slot failed; retrying");
                            backoff.failed()
                        }
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
