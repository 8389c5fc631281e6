//! Applies checkout outcomes (completed, failed, expired) from their SQS
//! queue. Lambda event source in AWS; `checkout-outcomes poll` locally.

// The handler's future nests the SDK's deeply; rustc needs more depth to
// compute its layout than the default allows.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use waiting_room::runtime::Shutdown;
use waiting_room::runtime::checkout::{handle_lambda_event, poll_queue};
use waiting_room::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let (outcomes, queue) = wiring::checkout_outcomes().await?;
    match std::env::args().nth(1).as_deref() {
        None => {
            let outcomes = &outcomes;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                handle_lambda_event(outcomes, event.payload)
                    .await
                    .map_err(Error::from)
            }))
            .await
        }
        Some("poll") => {
            let consumer = queue.ok_or("the local poller needs CHECKOUT_QUEUE_URL")?;
            tracing::info!("applying checkout outcomes from the queue");
            poll_queue(&outcomes, &consumer, Shutdown::on_signals().wait()).await;
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown mode {other:?}: run without arguments in Lambda, or `poll` locally"
        )
        .into()),
    }
}
