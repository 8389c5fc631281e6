//! The admin HTTP API (`/admin/...`): list, show, configure and control
//! events, evict sessions. IAM-authorized in AWS.

use waiting_room::runtime::serve;
use waiting_room::{api, setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    serve::http(
        wiring::admin_service().await?,
        |service, request| async move { api::admin::handle(&service, request).await },
    )
    .await
}
