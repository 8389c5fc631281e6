//! API Gateway Lambda authorizer for the protected origin: lets a request in
//! only with a valid admission token of a session that is still active.

use serde_json::Value;
use waiting_room::runtime::authorizer::authorize;
use waiting_room::runtime::serve;
use waiting_room::{setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    // The request stays untyped here: one API Gateway cannot read is denied
    // by `authorize`, not failed (a failure would answer 500, not 403).
    serve::events(
        wiring::admission_check().await?,
        |check, request: Value| async move { Ok(authorize(&check, request).await) },
    )
    .await
}
