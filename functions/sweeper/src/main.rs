//! The sweeper: expires active sessions whose stay is over and reconciles
//! every event's line. In Lambda it runs on an EventBridge schedule;
//! `sweeper every <seconds>` runs it locally.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use waiting_room::runtime::Shutdown;
use waiting_room::runtime::sweeper::{handle_lambda_event, run_every};
use waiting_room::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let wiring::SweeperParts {
        sweeper,
        reconciler,
    } = wiring::sweeper().await?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {
            let (sweeper, reconciler) = (&sweeper, &reconciler);
            lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
                handle_lambda_event(sweeper, reconciler)
                    .await
                    .map_err(Error::from)
            }))
            .await
        }
        ["every", seconds] => {
            let interval = Duration::from_secs(seconds.parse()?);
            tracing::info!(?interval, "sweeping locally");
            run_every(
                &sweeper,
                &reconciler,
                interval,
                Shutdown::on_signals().wait(),
            )
            .await;
            Ok(())
        }
        _ => Err("usage: sweeper (in Lambda) | sweeper every <seconds>".into()),
    }
}
