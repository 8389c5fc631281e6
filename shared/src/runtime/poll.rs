//! The local stand-ins for Lambda's event source mappings, written once:
//! one loop for a queue, one for the table stream. A worker brings only its
//! handler, which answers which items failed, as a partial batch response
//! does in Lambda.

use std::future::Future;
use std::time::Duration;

use crate::adapters::streams::TableStreamReader;
use crate::domain::StreamRecord;
use crate::ports::{Delivery, QueueConsumer};

use super::{Backoff, STREAM_POLL};

/// Long-poll wait of a queue receive.
const RECEIVE_WAIT: Duration = Duration::from_secs(5);
/// SQS's largest batch, and the mappings' batch size.
const BATCH: i32 = 10;

/// What a worker does with a batch of queue messages: the ids of those that
/// failed, to be delivered again. Every other message is finished.
pub trait QueueHandler {
    fn handle(&self, batch: &[Delivery]) -> impl Future<Output = Vec<String>>;
}

/// What a worker does with stream records: the ids of those that failed.
pub trait StreamHandler {
    fn handle(&self, records: &[StreamRecord]) -> impl Future<Output = Vec<String>>;
}

/// Receives batches until `shutdown`, hands each to `handler`, deletes the
/// finished messages and leaves the failed ones for redelivery after the
/// visibility timeout, backing off while anything fails.
pub async fn queue<C: QueueConsumer, H: QueueHandler>(
    consumer: &C,
    handler: &H,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        let mut backoff = Backoff::default();
        loop {
            let pause = match consumer.receive(BATCH, RECEIVE_WAIT).await {
                Ok(batch) if batch.is_empty() => {
                    backoff.succeeded();
                    None
                }
                Ok(batch) => {
                    let failed = handler.handle(&batch).await;
                    let finished: Vec<Delivery> = batch
                        .into_iter()
                        .filter(|d| !failed.contains(&d.message_id))
                        .collect();
                    let deleted = consumer.delete(&finished).await;
                    if let Err(err) = &deleted {
                        tracing::warn!(error = %err, "could not delete finished messages; their redelivery is harmless");
                    }
                    if failed.is_empty() && deleted.is_ok() {
                        backoff.succeeded();
                        None
                    } else {
                        Some(backoff.failed())
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "receiving from the queue failed");
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

/// Reads the table stream until `shutdown`. Failed records are offered
/// again with the next ones, as the Lambda mapping retries them, and the
/// checkpoint moves only once nothing is pending.
pub async fn stream<H: StreamHandler>(
    stream: &mut TableStreamReader,
    handler: &H,
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
                    let failed = handler.handle(&pending).await;
                    pending.retain(|r| failed.contains(&r.id));
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
