//! Publishes domain events from the table's stream (the outbox) to the
//! events topic. Lambda event source in AWS; `publisher poll` locally.

use waiting_room::runtime::Shutdown;
use waiting_room::runtime::publisher::{handle_lambda_event, poll_table_stream};
use waiting_room::runtime::serve::{self, Mode, PollFlag};
use waiting_room::{setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let (publisher, table) = wiring::publisher().await?;
    match Mode::of_process(&[PollFlag::Checkpoint])? {
        Mode::Lambda => {
            serve::events(publisher, |publisher, event| async move {
                handle_lambda_event(&publisher, event).await
            })
            .await
        }
        Mode::Poll(options) => {
            let table = table.ok_or("the local poller needs TABLE_NAME")?;
            let mut stream = wiring::table_stream(&table, options.stream_start()).await?;
            tracing::info!("publishing domain events from the table stream");
            poll_table_stream(&publisher, &mut stream, Shutdown::on_signals().wait()).await;
            Ok(())
        }
    }
}
