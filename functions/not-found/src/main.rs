//! Every request no other function serves: a JSON 404 or 405, never an
//! HTML page or an empty body. Needs no AWS access at all.

use lambda_http::{Error, Request, run, service_fn};
use waiting_room::{api, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    run(service_fn(|request: Request| async move {
        Ok::<_, Error>(api::not_served(&request))
    }))
    .await
}
