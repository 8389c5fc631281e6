//! `POST /api/waiting-room/sessions`: join the line.

use waiting_room::runtime::serve;
use waiting_room::{api, setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    serve::http(
        wiring::join_service().await?,
        |service, request| async move { api::handlers::join(&service, request).await },
    )
    .await
}
