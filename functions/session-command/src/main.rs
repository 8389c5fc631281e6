//! `POST /api/waiting-room/sessions/{id}:heartbeat` and `…:leave`.

use lambda_http::{Error, Request, run, service_fn};
use waiting_room::{api, telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let commands = wiring::session_commands().await?;
    let commands = &commands;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(api::handlers::session_command(commands, request).await)
    }))
    .await
}
