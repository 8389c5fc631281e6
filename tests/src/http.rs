//! Calling the HTTP handlers the way the Lambda runtime does: with a
//! `lambda_http::Request`, and reading the response they return.

use lambda_http::http::{Method, Request, StatusCode};
use lambda_http::{Body, Response};
use serde_json::Value;

pub fn request(method: Method, path: &str, body: Option<&str>) -> lambda_http::Request {
    let mut builder = Request::builder().method(method).uri(path);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = body.map_or(Body::Empty, |text| Body::Text(text.to_owned()));
    builder.body(body).unwrap()
}

pub fn join_request(event: &str, user: &str) -> lambda_http::Request {
    let body = serde_json::json!({"eventId": event, "userId": user}).to_string();
    request(Method::POST, "/api/waiting-room/sessions", Some(&body))
}

/// A join that a client may retry: it carries an `Idempotency-Key`.
pub fn keyed_join_request(event: &str, user: &str, key: &str) -> lambda_http::Request {
    let mut request = join_request(event, user);
    let value = lambda_http::http::HeaderValue::from_str(key).unwrap();
    request.headers_mut().insert("idempotency-key", value);
    request
}

/// Status code and JSON body (`Value::Null` when empty).
pub fn read(response: Response<Body>) -> (StatusCode, Value) {
    let status = response.status();
    let body = match response.body() {
        Body::Empty => Value::Null,
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap(),
        _ => Value::Null,
    };
    (status, body)
}

pub fn session_path(id: &str) -> String {
    format!("/api/waiting-room/sessions/{id}")
}

use waiting_room::adapters::dynamodb::DynamoStore;
use waiting_room::adapters::sqs::SqsQueue;
use waiting_room::api;
use waiting_room::service::demo_origin::DemoOrigin;
use waiting_room::service::join::JoinService;
use waiting_room::service::session_command::SessionCommands;
use waiting_room::service::status::StatusService;

/// The public HTTP functions behind a router that maps method and path to
/// a function exactly as API Gateway (infra/) and `cargo lambda watch`
/// (Cargo.toml metadata) do: whole path segments only.
pub struct Api {
    pub join: JoinService<DynamoStore, SqsQueue>,
    pub status: StatusService<DynamoStore>,
    pub commands: SessionCommands<DynamoStore>,
    pub origin: DemoOrigin<DynamoStore, SqsQueue>,
}

impl Api {
    pub fn new(stack: &crate::Stack) -> Self {
        Self {
            join: stack.join_service(1),
            status: stack.status_service(1),
            commands: stack.commands(),
            origin: stack.demo_origin(),
        }
    }

    pub async fn call(&self, request: lambda_http::Request) -> Response<Body> {
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let sessions = "/api/waiting-room/sessions";
        let one_segment_below = path
            .strip_prefix(sessions)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'));
        // `/waiting-room/{eventId}[/{sessionId}]` and `/checkout/{eventId}`.
        let segments = |base: &str| {
            path.strip_prefix(base)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| rest.split('/').collect::<Vec<_>>())
                .filter(|parts| parts.iter().all(|p| !p.is_empty()))
                .map_or(0, |parts| parts.len())
        };
        let page = segments("/waiting-room");
        let method = request.method().clone();
        match (&method, page) {
            (&Method::GET, 1 | 2) => return api::handlers::status(&self.status, request).await,
            (&Method::POST, 1) => return api::handlers::join(&self.join, request).await,
            (&Method::POST, 2) => {
                return api::handlers::session_command(&self.commands, request).await;
            }
            _ => {}
        }
        if segments("/checkout") == 1 && (method == Method::GET || method == Method::POST) {
            return api::origin::checkout(&self.origin, request).await;
        }
        match (
            request.method().clone(),
            path == sessions,
            one_segment_below,
        ) {
            (Method::POST, true, _) => api::handlers::join(&self.join, request).await,
            (Method::GET, _, true) => api::handlers::status(&self.status, request).await,
            (Method::POST, _, true) => {
                api::handlers::session_command(&self.commands, request).await
            }
            _ => api::not_served(&request),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        read(self.call(request(method, path, body)).await)
    }
}
