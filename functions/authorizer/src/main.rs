//! API Gateway Lambda authorizer for the protected origin: lets a request in
//! only with a valid admission token of a session that is still active.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use waiting_room::runtime::authorizer::authorize;
use waiting_room::{telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let check = wiring::admission_check().await?;
    let check = &check;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(authorize(check, event.payload).await)
    }))
    .await
}
