//! Publishes domain events from the table's stream (the outbox) to the
//! events topic. Lambda event source in AWS; `publisher poll` locally.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use waiting_room::runtime::publisher::{handle_lambda_event, poll_table_stream};
use waiting_room::runtime::{Shutdown, stream_start};
use waiting_room::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let (publisher, table) = wiring::publisher().await?;
    match std::env::args().nth(1).as_deref() {
        None => {
            let publisher = &publisher;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                handle_lambda_event(publisher, event.payload)
                    .await
                    .map_err(Error::from)
            }))
            .await
        }
        Some("poll") => {
            let table = table.ok_or("the local poller needs TABLE_NAME")?;
            let start = stream_start(std::env::args().skip(2))?;
            let mut stream = wiring::table_stream(&table, start).await?;
            tracing::info!("publishing domain events from the table stream");
            poll_table_stream(&publisher, &mut stream, Shutdown::on_signals().wait()).await;
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown mode {other:?}: run without arguments in Lambda, or `poll` locally"
        )
        .into()),
    }
}
