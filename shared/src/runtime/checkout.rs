//! Checkout outcomes arrive on an SQS queue: a Lambda event source mapping
//! with partial batch failures in AWS, a receive loop locally.

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use crate::ports::{Delivery, QueueConsumer, SessionStore};
use crate::service::ServiceError;
use crate::service::checkout::CheckoutOutcomes;

use super::{Backoff, queue_response};

pub async fn handle_lambda_event<S: SessionStore>(
    outcomes: &CheckoutOutcomes<S>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, ServiceError> {
    let failed = outcomes.handle_batch(&super::deliveries_of(event)?).await;
    Ok(queue_response(failed))
}

pub async fn poll_queue<S: SessionStore, C: QueueConsumer>(
    outcomes: &CheckoutOutcomes<S>,
    consumer: &C,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        let mut backoff = Backoff::default();
        loop {
            let pause = match consumer.receive(10, Duration::from_secs(5)).await {
                Ok(batch) => {
                    let failed = outcomes.handle_batch(&batch).await;
                    let done: Vec<Delivery> = batch
                        .into_iter()
                        .filter(|d| !failed.contains(&d.message_id))
                        .collect();
                    match consumer.delete(&done).await {
                        Ok(()) if failed.is_empty() => {
                            backoff.succeeded();
                            None
                        }
                        _ => Some(backoff.failed()),
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "receiving checkout outcomes failed");
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
