//! Domain events on a Kinesis data stream: partition key `event_id`, so each
//! on-sale's events stay in order within its shard, any number of consumers
//! read them independently, and the stream's retention allows replays.

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::events::DomainEvent;
use crate::ports::{EventSink, QueueError};

/// Kinesis takes at most 500 records per `PutRecords`.
const BATCH: usize = 500;
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct KinesisEventSink {
    client: Client,
    stream: String,
}

impl KinesisEventSink {
    pub fn new(client: Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }
}

fn classify<E, R>(err: &SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(service)
            if service.err().code() != Some("ProvisionedThroughputExceededException") =>
        {
            QueueError::Rejected(detail)
        }
        SdkError::ConstructionFailure(_) => QueueError::Rejected(detail),
        _ => QueueError::Unavailable(detail),
    }
}

impl EventSink for KinesisEventSink {
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), QueueError> {
        for chunk in events.chunks(BATCH) {
            self.put_in_order(chunk).await?;
        }
        Ok(())
    }
}

impl KinesisEventSink {
    /// Kinesis may refuse some records of a batch (throttling). Retrying only
    /// those could put them after later ones of the same event, so everything
    /// from the first refused record on is sent again: order holds, and the
    /// duplicates carry the same ids for consumers to drop.
    async fn put_in_order(&self, events: &[DomainEvent]) -> Result<(), QueueError> {
        let mut pending = events;
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                return Ok(());
            }
            let entries = pending
                .iter()
                .map(|event| {
                    let data = serde_json::to_vec(event)
                        .map_err(|e| QueueError::Rejected(e.to_string()))?;
                    PutRecordsRequestEntry::builder()
                        .partition_key(&event.event_id)
                        .data(Blob::new(data))
                        .build()
                        .map_err(|e| QueueError::Rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .put_records()
                .stream_name(&self.stream)
                .set_records(Some(entries))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let first_refused = output
                .records()
                .iter()
                .position(|r| r.error_code().is_some());
            match first_refused {
                None => return Ok(()),
                Some(index) => {
                    pending = &pending[index..];
                    let pause = std::time::Duration::from_millis(100 << attempt);
                    tokio::time::sleep(pause).await;
                }
            }
        }
        Err(QueueError::Unavailable(format!(
            "{} events still refused after {ATTEMPTS} attempts",
            pending.len()
        )))
    }
}
