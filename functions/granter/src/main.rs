//! The granter. Without arguments it is a Lambda function fed by the join
//! queue and the table stream; `granter poll` runs the same handlers as a
//! local worker that receives from SQS and reads the stream itself.

use waiting_room::runtime::Shutdown;
use waiting_room::runtime::granter::{handle_lambda_event, poll_join_queue, poll_table_stream};
use waiting_room::runtime::serve::{self, Mode, PollFlag};
use waiting_room::{setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let parts = wiring::granter().await?;
    match Mode::of_process(&[PollFlag::Checkpoint])? {
        Mode::Lambda => {
            serve::events(parts, |parts, event| async move {
                let wiring::GranterParts {
                    granter,
                    quarantine,
                    join_queue,
                } = &*parts;
                handle_lambda_event(granter, quarantine, join_queue, event).await
            })
            .await
        }
        Mode::Poll(options) => {
            let wiring::GranterParts {
                granter,
                quarantine,
                join_queue,
            } = &parts;
            let mut stream =
                wiring::table_stream(granter.store.table(), options.stream_start()).await?;
            let shutdown = Shutdown::on_signals();
            tracing::info!("granter polling the join queue and the table stream");
            tokio::join!(
                poll_join_queue(
                    granter,
                    join_queue,
                    quarantine,
                    join_queue,
                    shutdown.clone().wait()
                ),
                poll_table_stream(granter, join_queue, &mut stream, shutdown.wait()),
            );
            Ok(())
        }
    }
}
