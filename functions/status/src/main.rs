//! `GET /api/waiting-room/sessions/{id}`: where a session stands.

use waiting_room::runtime::serve;
use waiting_room::{api, setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    serve::http(
        wiring::status_service().await?,
        |service, request| async move { api::handlers::status(&service, request).await },
    )
    .await
}
