//! `GET /.well-known/jwks.json`: the public keys admission tokens are
//! verified with. Reads configuration only, never AWS.

use waiting_room::runtime::serve;
use waiting_room::{api, setup::telemetry, setup::wiring};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    serve::http(wiring::jwks_keys()?, |keys, request| async move {
        api::handlers::jwks(&keys, &request)
    })
    .await
}
