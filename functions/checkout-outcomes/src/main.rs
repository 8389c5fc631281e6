//! Applies checkout outcomes (completed, failed, expired) from their SQS
//! queue. Lambda event source in AWS; `checkout-outcomes poll` locally.

use waiting_room::runtime::Shutdown;
use waiting_room::runtime::checkout::{handle_lambda_event, poll_queue};
use waiting_room::runtime::serve::{self, Mode};
use waiting_room::{setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let (outcomes, queue) = wiring::checkout_outcomes().await?;
    match Mode::of_process(&[])? {
        Mode::Lambda => {
            serve::events(outcomes, |outcomes, event| async move {
                handle_lambda_event(&outcomes, event).await
            })
            .await
        }
        Mode::Poll(_) => {
            let consumer = queue.ok_or("the local poller needs CHECKOUT_QUEUE_URL")?;
            tracing::info!("applying checkout outcomes from the queue");
            poll_queue(&outcomes, &consumer, Shutdown::on_signals().wait()).await;
            Ok(())
        }
    }
}
