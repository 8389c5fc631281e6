//! The sweeper: expires active sessions whose stay is over and reconciles
//! every event's line. In Lambda it runs on an EventBridge schedule;
//! `sweeper poll [--every SECONDS]` runs it locally (every 60 s by default).

use std::time::Duration;

use serde_json::Value;
use waiting_room::runtime::Shutdown;
use waiting_room::runtime::serve::{self, Mode, PollFlag};
use waiting_room::runtime::sweeper::{handle_lambda_event, run_every};
use waiting_room::{setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let parts = wiring::sweeper().await?;
    match Mode::of_process(&[PollFlag::Every])? {
        // The schedule's event says only that it is time: nothing to read.
        Mode::Lambda => {
            serve::events(parts, |parts, _: Value| async move {
                handle_lambda_event(&parts.sweeper, &parts.reconciler).await
            })
            .await
        }
        Mode::Poll(options) => {
            let interval = options.every.unwrap_or(Duration::from_secs(60));
            tracing::info!(?interval, "sweeping locally");
            run_every(
                &parts.sweeper,
                &parts.reconciler,
                interval,
                Shutdown::on_signals().wait(),
            )
            .await;
            Ok(())
        }
    }
}
