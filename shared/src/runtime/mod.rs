//! How the long-running parts run: as Lambda handlers in AWS, and as
//! pollers on a laptop, with the same service code underneath.

pub mod authorizer;
pub mod checkout;
pub mod granter;
pub mod poll;
pub mod publisher;
pub mod serve;
pub mod sweeper;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use tokio::sync::watch;

use crate::domain::Timestamp;
use crate::ports::{Delivery, Redelivery};
use crate::service::ServiceError;

/// The messages of an SQS event; an event holding a message without an id
/// or receipt handle is an error as a whole (`UnnamedMessage`).
pub fn deliveries_of(event: SqsEvent) -> Result<Vec<Delivery>, ServiceError> {
    event
        .records
        .iter()
        .map(|m| {
            Delivery::named(
                m.message_id.as_deref(),
                m.receipt_handle.as_deref(),
                m.body.as_deref(),
                m.attributes
                    .get("ApproximateReceiveCount")
                    .map(String::as_str),
            )
            .map_err(|unnamed| ServiceError::Internal(unnamed.to_string()))
        })
        .collect()
}

/// How long a message given back after its `receive_count`-th receive stays
/// away: 1 s, doubling with each receive, at most `MAX_REDELIVERY_PAUSE`.
/// The queue's visibility timeout (60 s) is for a consumer that died
/// holding the message; one that is alive and failed says when to retry.
pub fn redelivery_pause(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(8);
    Duration::from_secs(1 << doublings).min(MAX_REDELIVERY_PAUSE)
}

/// The longest pause before a message given back is received again: short
/// enough that a wake-up that failed once the faults are over is retried
/// well within the time a free slot may go unserved (docs/guarantees.md),
/// long enough that a table in trouble is not hammered (the join queue's
/// thousand receives before its dead-letter queue take over two hours).
pub const MAX_REDELIVERY_PAUSE: Duration = Duration::from_secs(8);

/// Gives the `failed` messages of `batch` back to the queue to be received
/// again after their pause, instead of after the visibility timeout. If
/// that fails, they come back after the timeout all the same.
pub async fn give_back<R: Redelivery>(redelivery: &R, batch: &[Delivery], failed: &[String]) {
    let paused = batch
        .iter()
        .filter(|d| failed.contains(&d.message_id))
        .map(|d| (redelivery_pause(d.receive_count), d));
    redeliver(
        redelivery,
        paused,
        "could not bring failed messages back early; they return after the visibility timeout",
    )
    .await;
}

/// Gives `deliveries` back, each after its pause (one call per pause); a
/// failure is logged with `failed`: they come back after the visibility
/// timeout all the same.
async fn redeliver<'a, R: Redelivery>(
    redelivery: &R,
    deliveries: impl Iterator<Item = (Duration, &'a Delivery)>,
    failed: &str,
) {
    let mut by_pause: BTreeMap<Duration, Vec<Delivery>> = BTreeMap::new();
    for (pause, delivery) in deliveries {
        by_pause.entry(pause).or_default().push(delivery.clone());
    }
    for (pause, deliveries) in by_pause {
        if let Err(err) = redelivery.redeliver_after(&deliveries, pause).await {
            tracing::warn!(error = %err, messages = deliveries.len(), "{failed}");
        }
    }
}

/// The longest SQS lets a received message stay invisible (12 hours): a
/// message held for a later opening comes back then and is held again.
pub const MAX_HOLD: Duration = Duration::from_secs(12 * 3600 - 60);

/// Gives the `held` messages of `batch` back until their time (their
/// event's line is held for a draw): at least a second, at most `MAX_HOLD`.
pub async fn hold<R: Redelivery>(
    redelivery: &R,
    batch: &[Delivery],
    held: &[(String, Timestamp)],
    now: Timestamp,
) {
    let paused = held.iter().filter_map(|(id, until)| {
        let delivery = batch.iter().find(|d| &d.message_id == id)?;
        let pause = until.since(now).max(Duration::from_secs(1)).min(MAX_HOLD);
        // Whole seconds, rounded up: never back before the time.
        let pause = Duration::from_secs(pause.as_secs() + u64::from(pause.subsec_nanos() > 0));
        Some((pause, delivery))
    });
    redeliver(redelivery, paused, "could not hold messages until their draw; they return after the visibility timeout and are held again").await;
}

/// A partial batch response for SQS: Lambda deletes every message but the
/// failed ones, which come back when `give_back` said (or after the
/// visibility timeout).
pub fn queue_response(failed: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in failed {
        response.add_failure(id);
    }
    response
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

/// Ctrl-C or SIGTERM, observed by any number of loops.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Starts listening for the signals.
    pub fn on_signals() -> Self {
        let (sender, receiver) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = sender.send(true);
        });
        Self(receiver)
    }

    pub async fn wait(mut self) {
        // An error means the sender is gone, which also means: stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// How often local pollers read the table stream: a freed slot or a new
/// event is handled within this (plus the write it causes).
pub(crate) const STREAM_POLL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Doubles a pause after each failure, back to nothing after a success, so a
/// poller facing an outage stops taking work it cannot finish.
#[derive(Debug, Default)]
pub(crate) struct Backoff(Option<Duration>);

impl Backoff {
    pub(crate) fn failed(&mut self) -> Duration {
        let next = self
            .0
            .map_or(Duration::from_millis(250), |d| (d * 2).min(MAX_BACKOFF));
        self.0 = Some(next);
        next
    }

    pub(crate) fn succeeded(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_holding_a_message_without_an_id_is_refused_whole() {
        use aws_lambda_events::sqs::SqsMessage;
        let message = |id: Option<&str>| {
            let mut m = SqsMessage::default();
            m.message_id = id.map(str::to_owned);
            m.receipt_handle = Some("r".into());
            m.body = Some("{}".into());
            m
        };
        let mut event = SqsEvent::default();
        event.records = vec![message(Some("m-1")), message(Some("m-2"))];
        let ids: Vec<String> = deliveries_of(event.clone())
            .unwrap()
            .into_iter()
            .map(|d| d.message_id)
            .collect();
        assert_eq!(ids, ["m-1", "m-2"]);
        event.records.push(message(None));
        assert!(matches!(
            deliveries_of(event),
            Err(ServiceError::Internal(reason)) if reason.contains("without an id")
        ));
    }

    #[test]
    fn a_message_given_back_returns_after_a_pause_that_doubles_to_a_cap() {
        let pauses: Vec<u64> = (1..=6).map(|n| redelivery_pause(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 8, 8]);
        assert_eq!(redelivery_pause(0), Duration::from_secs(1));
        assert_eq!(redelivery_pause(u32::MAX), MAX_REDELIVERY_PAUSE);
    }

    #[test]
    fn a_join_message_reaches_the_dead_letter_queue_only_after_two_hours_of_failure() {
        let receives = crate::adapters::provision::JOIN_MAX_RECEIVE_COUNT;
        let failing: Duration = (1..receives).map(redelivery_pause).sum();
        assert!(
            failing >= Duration::from_secs(2 * 3600),
            "{receives} receives come within {failing:?} of failure"
        );
    }

    #[test]
    fn backoff_grows_to_a_cap_and_resets() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.failed(), Duration::from_millis(250));
        assert_eq!(backoff.failed(), Duration::from_millis(500));
        for _ in 0..20 {
            backoff.failed();
        }
        assert_eq!(backoff.failed(), MAX_BACKOFF);
        backoff.succeeded();
        assert_eq!(backoff.failed(), Duration::from_millis(250));
    }
}
