//! The join queue on SQS FIFO.
//!
//! Message group: `<eventId>#<shard>` for join messages — tickets are handed
//! out in queue order inside a shard, while other shards and other events are
//! never held behind it; `<eventId>#wake` for an event's retried wake-ups.
//! Deduplication id: the session id — an SDK retry of a send that did arrive
//! is dropped by SQS within its five-minute window; after that the granter's
//! DynamoDB conditions (a session is numbered and admitted once) make a
//! duplicate harmless. See docs/decisions/0005-join-queue.md.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};

use crate::domain::EventId;
use crate::domain::line::wake_group_id;
use crate::ports::{
    Arrival, Delivery, JoinQueue, JoinQueueMessage, OutcomeSender, Quarantine, QueueConsumer,
    QueueError, Redelivery, WakeQueue, WakeUp,
};

/// SQS caps a receive (and a delete batch) at ten messages.
pub const SQS_BATCH_LIMIT: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }
}

fn classify<E, R>(err: &SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code)
                if code.contains("Throttl")
                    || code.contains("RequestThrottled")
                    || code.contains("InternalError")
                    || code.contains("ServiceUnavailable") =>
            {
                QueueError::Unavailable(detail)
            }
            _ => QueueError::Rejected(detail),
        },
        SdkError::ConstructionFailure(_) => QueueError::Rejected(detail),
        _ => QueueError::Unavailable(detail),
    }
}

impl JoinQueue for SqsQueue {
    async fn send(&self, arrival: &Arrival) -> Result<(), QueueError> {
        let event =
            EventId::parse(&arrival.event_id).map_err(|e| QueueError::Rejected(e.to_string()))?;
        let body = JoinQueueMessage::Joined(arrival.clone());
        self.send_message(&body, &arrival.message_group(&event), &arrival.session_id)
            .await
    }
}

impl WakeQueue for SqsQueue {
    async fn wake(
        &self,
        event: &EventId,
        arrivals: &[Arrival],
        deduplication_id: &str,
    ) -> Result<(), QueueError> {
        let body = JoinQueueMessage::Wake(WakeUp {
            wake_event_id: event.to_string(),
            arrivals: arrivals.to_vec(),
        });
        self.send_message(&body, &wake_group_id(event), deduplication_id)
            .await
    }
}

impl SqsQueue {
    async fn send_message(
        &self,
        body: &JoinQueueMessage,
        group: &str,
        deduplication_id: &str,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(body).map_err(|e| QueueError::Rejected(e.to_string()))?;
        // SQS caps deduplication ids at 128 characters.
        let deduplication_id: String = deduplication_id.chars().take(128).collect();
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(deduplication_id)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }
}

impl QueueConsumer for SqsQueue {
    async fn receive(
        &self,
        max_messages: i32,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let wait_seconds = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max_messages.clamp(1, 10))
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default()
                    .timeout_config(super::aws::long_poll_timeouts(wait)),
            )
            .send()
            .await
            .map_err(|e| classify(&e))?;
        output
            .messages()
            .iter()
            .map(|m| {
                Delivery::named(
                    m.message_id(),
                    m.receipt_handle(),
                    m.body(),
                    m.attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .map(String::as_str),
                )
                .map_err(|unnamed| QueueError::Rejected(unnamed.to_string()))
            })
            .collect()
    }

    async fn delete(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        for chunk in deliveries.chunks(SQS_BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, d)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&d.receipt_handle)
                        .build()
                        .map_err(|e| QueueError::Rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            if let Some(failure) = output.failed().first() {
                // An expired receipt handle means the message was redelivered
                // meanwhile; its next delivery is handled idempotently.
                tracing::warn!(code = failure.code(), message = ?failure.message(), "could not delete a finished message");
            }
        }
        Ok(())
    }
}

impl Redelivery for SqsQueue {
    async fn redeliver_after(
        &self,
        deliveries: &[Delivery],
        pause: Duration,
    ) -> Result<(), QueueError> {
        let seconds = i32::try_from(pause.as_secs()).unwrap_or(i32::MAX);
        for chunk in deliveries.chunks(SQS_BATCH_LIMIT) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, d)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&d.receipt_handle)
                        .visibility_timeout(seconds)
                        .build()
                        .map_err(|e| QueueError::Rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            if let Some(failure) = output.failed().first() {
                // The receipt expired: the message is back already.
                tracing::warn!(code = failure.code(), message = ?failure.message(), "could not bring a failed message back early");
            }
        }
        Ok(())
    }
}

/// Sends what can never be processed to a dead-letter queue, keeping the
/// body and the reason: unreadable join messages (the join dead-letter
/// queue, FIFO) and unreadable stream records (the stream dead-letter queue).
#[derive(Debug, Clone)]
pub struct SqsQuarantine {
    client: Client,
    dead_letter_queue_url: String,
}

impl SqsQuarantine {
    pub fn new(client: Client, dead_letter_queue_url: impl Into<String>) -> Self {
        Self {
            client,
            dead_letter_queue_url: dead_letter_queue_url.into(),
        }
    }
}

/// The checkout-outcome queue is a standard queue: outcomes of one
/// session are idempotent, their order does not matter.
impl OutcomeSender for SqsQueue {
    async fn send_outcome(&self, body: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }
}

impl Quarantine for SqsQuarantine {
    async fn quarantine(&self, id: &str, body: &str, reason: &str) -> Result<(), QueueError> {
        let reason = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| QueueError::Rejected(e.to_string()))?;
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.dead_letter_queue_url)
            .message_body(if body.is_empty() { "(empty)" } else { body })
            .message_attributes("reason", reason);
        if self.dead_letter_queue_url.ends_with(".fifo") {
            let id: String = id.chars().take(128).collect();
            send = send
                .message_group_id("quarantine")
                .message_deduplication_id(id);
        }
        send.send().await.map_err(|e| classify(&e))?;
        Ok(())
    }
}
