//! `POST /api/waiting-room/sessions/{id}:heartbeat` and `…:leave`.

use waiting_room::runtime::serve;
use waiting_room::{api, setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    serve::http(
        wiring::session_commands().await?,
        |commands, request| async move { api::handlers::session_command(&commands, request).await },
    )
    .await
}
