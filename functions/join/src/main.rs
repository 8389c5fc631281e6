//! `POST /api/waiting-room/sessions`: join the line.

use lambda_http::{Error, Request, run, service_fn};
use waiting_room::{api, telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let service = wiring::join_service().await?;
    let service = &service;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(api::handlers::join(service, request).await)
    }))
    .await
}
