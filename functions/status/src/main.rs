//! `GET /api/waiting-room/sessions/{id}`: where a session stands.

use lambda_http::{Error, Request, run, service_fn};
use waiting_room::{api, telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let service = wiring::status_service().await?;
    let service = &service;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(api::handlers::status(service, request).await)
    }))
    .await
}
