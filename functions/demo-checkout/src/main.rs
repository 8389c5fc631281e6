//! `GET|POST /checkout/{eventId}`: the demo origin, a checkout that lets in
//! only admitted fans and reports how their purchase ended.

use waiting_room::runtime::serve;
use waiting_room::{api, setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    serve::http(wiring::demo_origin().await?, |origin, request| async move {
        api::origin::checkout(&origin, request).await
    })
    .await
}
