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
