//! The public HTTP API, on `lambda_http` request/response types. Routing,
//! input validation and the mapping of every error to a status code live
//! here once; each HTTP function serves its own routes through it.

pub mod admin;
pub mod handlers;
mod json;
pub mod origin;
pub mod page;
mod routes;

pub use json::{ApiError, SessionBody};
pub use routes::{CHECKOUT_PATH, JWKS_PATH, PAGE_PATH, Route, route};

use lambda_http::{Body, Request, Response};

pub const BASE_PATH: &str = "/api/waiting-room/sessions";

/// The answer of a function that is asked for a route it does not serve
/// (API Gateway's `$default` route and the local catch-all end up here).
pub fn not_served(request: &Request) -> Response<Body> {
    match route(request.method(), request.uri().path()) {
        Err(err) => err.into_response(),
        Ok(_) => ApiError::route_not_found().into_response(),
    }
}
