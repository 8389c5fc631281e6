//! `GET /.well-known/jwks.json`: the public keys admission tokens are
//! verified with. Reads configuration only, never AWS.

use lambda_http::{Error, Request, run, service_fn};
use waiting_room::{api, telemetry, wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let keys = wiring::jwks_keys()?;
    let keys = &keys;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(api::handlers::jwks(keys, &request))
    }))
    .await
}
