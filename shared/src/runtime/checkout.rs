//! Checkout outcomes arrive on an SQS queue: a Lambda event source mapping
//! with partial batch failures in AWS, a receive loop locally.

use std::future::Future;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use crate::ports::{Delivery, Quarantine, QueueConsumer, SessionStore};
use crate::service::ServiceError;
use crate::service::checkout::CheckoutOutcomes;

use super::poll::{self, QueueHandler};
use super::queue_response;

pub async fn handle_lambda_event<S: SessionStore, Q: Quarantine>(
    outcomes: &CheckoutOutcomes<S, Q>,
    event: SqsEvent,
) -> Result<SqsBatchResponse, ServiceError> {
    let failed = outcomes.handle_batch(&super::deliveries_of(event)?).await;
    Ok(queue_response(failed))
}

/// The local loop: outcomes from the checkout queue until `shutdown`.
pub async fn poll_queue<S: SessionStore, Q: Quarantine, C: QueueConsumer>(
    outcomes: &CheckoutOutcomes<S, Q>,
    consumer: &C,
    shutdown: impl Future<Output = ()>,
) {
    poll::queue(consumer, outcomes, shutdown).await;
}

impl<S: SessionStore, Q: Quarantine> QueueHandler for CheckoutOutcomes<S, Q> {
    async fn handle(&self, batch: &[Delivery]) -> Vec<String> {
        self.handle_batch(batch).await
    }
}
