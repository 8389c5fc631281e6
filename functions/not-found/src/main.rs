//! Every request no other function serves: a JSON 404 or 405, never an
//! HTML page or an empty body. Needs no AWS access at all.

use waiting_room::runtime::serve;
use waiting_room::{api, setup::telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    serve::http((), |_, request| async move { api::not_served(&request) }).await
}
