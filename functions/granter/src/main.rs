//! The granter. Without arguments it is a Lambda function fed by the join
//! queue and the table stream; `granter poll` runs the same handlers as a
//! local worker that receives from SQS and reads the stream itself.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use waiting_room::runtime::granter::{handle_lambda_event, poll_join_queue, poll_table_stream};
use waiting_room::runtime::{Shutdown, stream_start};
use waiting_room::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let wiring::GranterParts {
        granter,
        quarantine,
        join_queue,
    } = wiring::granter().await?;
    match std::env::args().nth(1).as_deref() {
        None => {
            let (granter, quarantine, wakes) = (&granter, &quarantine, &join_queue);
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                handle_lambda_event(granter, quarantine, wakes, event.payload)
                    .await
                    .map_err(Error::from)
            }))
            .await
        }
        Some("poll") => {
            let start = stream_start(std::env::args().skip(2))?;
            let mut stream = wiring::table_stream(granter.store.table(), start).await?;
            let shutdown = Shutdown::on_signals();
            tracing::info!("granter polling the join queue and the table stream");
            tokio::join!(
                poll_join_queue(&granter, &join_queue, &quarantine, shutdown.clone().wait()),
                poll_table_stream(&granter, &join_queue, &mut stream, shutdown.wait()),
            );
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown mode {other:?}: run without arguments in Lambda, or `poll` locally"
        )
        .into()),
    }
}
