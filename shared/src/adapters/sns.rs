//! Domain events on an SNS FIFO topic: message group = the event's partition
//! (`<eventId>#<line shard>`), so each on-sale's events stay in order within
//! a line shard while a big on-sale's shards publish in parallel; the event
//! id is the deduplication id. Every consumer subscribes its own SQS FIFO
//! queue; the topic's archive allows replays. Nothing is paid while idle.
//!
//! Two topics: the events topic gets every event without the admission
//! token; the admissions topic gets `QUEUE_READY` with it, and only the
//! checkout may subscribe to it (docs/decisions/0025-admissions-topic.md).

use aws_sdk_sns::Client;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use crate::domain::events::DomainEvent;
use crate::ports::{EventSink, QueueError};

/// SNS takes at most ten messages per `PublishBatch`.
const BATCH: usize = 10;
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct SnsEventSink {
    client: Client,
    events_topic_arn: String,
    admissions_topic_arn: String,
}

impl SnsEventSink {
    pub fn new(
        client: Client,
        events_topic_arn: impl Into<String>,
        admissions_topic_arn: impl Into<String>,
    ) -> Self {
        Self {
            client,
            events_topic_arn: events_topic_arn.into(),
            admissions_topic_arn: admissions_topic_arn.into(),
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
            if !matches!(
                service.err().code(),
                Some("Throttled" | "ThrottlingException" | "InternalError" | "KMSThrottling")
            ) =>
        {
            QueueError::Rejected(detail)
        }
        SdkError::ConstructionFailure(_) => QueueError::Rejected(detail),
        _ => QueueError::Unavailable(detail),
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| QueueError::Rejected(e.to_string()))
}

fn entry(index: usize, event: &DomainEvent) -> Result<PublishBatchRequestEntry, QueueError> {
    let body = serde_json::to_string(event).map_err(|e| QueueError::Rejected(e.to_string()))?;
    PublishBatchRequestEntry::builder()
        .id(index.to_string())
        .message(body)
        .message_group_id(&event.partition)
        .message_deduplication_id(&event.id)
        // Consumers can subscribe to some types only (a filter policy).
        .message_attributes("type", attribute(event.kind.name())?)
        .message_attributes("event_id", attribute(&event.event_id)?)
        .build()
        .map_err(|e| QueueError::Rejected(e.to_string()))
}

impl EventSink for SnsEventSink {
    /// Both topics must take the events for the call to succeed; a retry
    /// sends both again and the deduplication ids drop what arrived before.
    async fn publish(&self, events: &[DomainEvent]) -> Result<(), QueueError> {
        let for_everyone: Vec<DomainEvent> = events.iter().map(DomainEvent::for_everyone).collect();
        for chunk in for_everyone.chunks(BATCH) {
            self.publish_in_order(&self.events_topic_arn, chunk).await?;
        }
        let admissions: Vec<DomainEvent> = events
            .iter()
            .filter(|e| e.carries_token())
            .cloned()
            .collect();
        for chunk in admissions.chunks(BATCH) {
            self.publish_in_order(&self.admissions_topic_arn, chunk)
                .await?;
        }
        Ok(())
    }
}

impl SnsEventSink {
    /// SNS may refuse some entries of a batch. Retrying only those could put
    /// them after later ones of the same group, so everything from the first
    /// refused entry on is sent again: order holds, and what arrives twice
    /// within five minutes is dropped by the deduplication id (later, by
    /// consumers on the event id).
    async fn publish_in_order(
        &self,
        topic_arn: &str,
        events: &[DomainEvent],
    ) -> Result<(), QueueError> {
        let mut pending = events;
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                return Ok(());
            }
            let entries = pending
                .iter()
                .enumerate()
                .map(|(index, event)| entry(index, event))
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .publish_batch()
                .topic_arn(topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let first_refused = output
                .failed()
                .iter()
                .filter_map(|failure| failure.id().parse::<usize>().ok())
                .min();
            match first_refused {
                None => return Ok(()),
                Some(index) => {
                    pending = &pending[index..];
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        Err(QueueError::Unavailable(format!(
            "{} events still refused after {ATTEMPTS} attempts",
            pending.len()
        )))
    }
}
