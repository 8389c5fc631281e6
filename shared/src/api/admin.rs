//! The admin HTTP API, for operators' tools (IAM-authorized in AWS; served
//! on the same port by `make run`):
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /admin/events` | `200 {"events": [report…]}` |
//! | `GET /admin/events/{id}` | `200` the event's report (as `waiting-room-admin show`) |
//! | `PUT /admin/events/{id}` any of `{"capacity": N, "opensAt": t, "closesAt": t\|null, "originUrl": u\|null, "staySeconds", "maxStaySeconds", "abandonAfterSeconds", "signedJoins": bool, "puzzleDifficulty": bits}` | `200` the report after the change; `409 configuration_refused` |
//! | `POST /admin/events/{id}:open` / `:pause` / `:resume` / `:close` | `200` what the control did; `409 control_refused` |
//! | `POST /admin/sessions/{id}:evict`, optional `{"block": true}` | `200 {"sessionId", "evicted", "blocked", "status"}` |

use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use super::handlers::is_json;
use super::json::{ApiError, json_response};
use super::json::{body_bytes, failed};
use super::routes::{below, decode_colons};
use crate::domain::{Control, EventId, SessionId};
use crate::ports::{EventStore, LineStore, SessionStore};
use crate::service::ServiceError;
use crate::service::admin::{AdminService, Configuration, MAX_CAPACITY};

pub const ADMIN_EVENTS: &str = "/admin/events";
pub const ADMIN_SESSIONS: &str = "/admin/sessions";
/// A configuration is a few short fields and one URL of at most
/// `MAX_ORIGIN_URL` characters.
const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    Events,
    Event(String),
    Configure(String),
    Control(String, Control),
    Evict(String),
}

pub fn admin_route(method: &Method, path: &str) -> Result<AdminRoute, ApiError> {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path == ADMIN_EVENTS {
        return match *method {
            Method::GET => Ok(AdminRoute::Events),
            _ => Err(ApiError::method_not_allowed("GET")),
        };
    }
    if let Some(segment) = below(path, ADMIN_EVENTS) {
        let segment = decode_colons(segment);
        return match (segment.rsplit_once(':'), method.clone()) {
            (None, Method::GET) => Ok(AdminRoute::Event(segment)),
            (None, Method::PUT) => Ok(AdminRoute::Configure(segment)),
            (None, _) => Err(ApiError::method_not_allowed("GET, PUT")),
            (Some((id, action)), Method::POST) => match Control::parse(action) {
                Some(control) => Ok(AdminRoute::Control(id.to_owned(), control)),
                None => Err(ApiError::unknown_action_of(
                    action,
                    ":open, :pause, :resume or :close",
                )),
            },
            (Some(_), _) => Err(ApiError::method_not_allowed("POST")),
        };
    }
    if let Some(segment) = below(path, ADMIN_SESSIONS) {
        let segment = decode_colons(segment);
        return match (segment.rsplit_once(':'), method.clone()) {
            (Some((id, "evict")), Method::POST) => Ok(AdminRoute::Evict(id.to_owned())),
            (Some((_, "evict")), _) => Err(ApiError::method_not_allowed("POST")),
            (Some((_, action)), _) => Err(ApiError::unknown_action_of(action, ":evict")),
            (None, _) => Err(ApiError::route_not_found()),
        };
    }
    Err(ApiError::route_not_found())
}

fn event_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).map_err(|e| ApiError::invalid_field("eventId", e.problem))
}

const CONFIGURATION_FIELDS: [&str; 9] = [
    "capacity",
    "opensAt",
    "closesAt",
    "originUrl",
    "staySeconds",
    "maxStaySeconds",
    "abandonAfterSeconds",
    "signedJoins",
    "puzzleDifficulty",
];

/// A configuration: any of `capacity` (a whole number from 0 to
/// `MAX_CAPACITY`), `opensAt`, `closesAt` (RFC 3339 in UTC; `null` removes
/// the closing time), `originUrl`, `staySeconds`, `maxStaySeconds`,
/// `abandonAfterSeconds` (`null` removes each, back to the deployment's),
/// `signedJoins` (true or false), `puzzleDifficulty` (bits, 0 is off); at
/// least one.
fn parse_configuration(request: &Request) -> Result<Configuration, ApiError> {
    let fields = json_object(request, &CONFIGURATION_FIELDS)?;
    if fields.is_empty() {
        return Err(ApiError::invalid_json(format!(
            "give at least one of {}",
            CONFIGURATION_FIELDS.join(", ")
        )));
    }
    let mut config = Configuration::default();
    if let Some(value) = fields.get("capacity") {
        config.capacity = Some(
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n <= MAX_CAPACITY)
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "capacity",
                        format!("must be a whole number from 0 to {MAX_CAPACITY}"),
                    )
                })?,
        );
    }
    let time = |field: &'static str, value: &Value| match value.as_str() {
        Some(text) => Configuration::parse_time(field, text)
            .map_err(|why| ApiError::invalid_field(field, why)),
        None => Err(ApiError::invalid_field(field, "must be a string")),
    };
    if let Some(value) = fields.get("opensAt") {
        config.opens_at = Some(time("opensAt", value)?);
    }
    match fields.get("closesAt") {
        Some(Value::Null) => config.closes_at = Some(None),
        Some(value) => config.closes_at = Some(Some(time("closesAt", value)?)),
        None => {}
    }
    match fields.get("originUrl") {
        Some(Value::Null) => config.origin_url = Some(None),
        Some(Value::String(url)) => {
            config.origin_url = Some(Some(
                Configuration::parse_origin_url(url)
                    .map_err(|why| ApiError::invalid_field("originUrl", why))?,
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "originUrl",
                "must be a string or null",
            ));
        }
        None => {}
    }
    let seconds =
        |field: &'static str, parse: &dyn Fn(u64) -> Result<Duration, String>| match fields
            .get(field)
        {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(value) => value
                .as_u64()
                .ok_or_else(|| "must be a whole number of seconds, or null".to_owned())
                .and_then(parse)
                .map(|d| Some(Some(d)))
                .map_err(|why| ApiError::invalid_field(field, why)),
        };
    config.stay = seconds("staySeconds", &|n| {
        Configuration::parse_stay("staySeconds", n)
    })?;
    config.max_stay = seconds("maxStaySeconds", &|n| {
        Configuration::parse_stay("maxStaySeconds", n)
    })?;
    config.abandon_after = seconds("abandonAfterSeconds", &Configuration::parse_abandon)?;
    match fields.get("signedJoins") {
        Some(Value::Bool(on)) => config.signed_joins = Some(*on),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "signedJoins",
                "must be true or false",
            ));
        }
        None => {}
    }
    if let Some(value) = fields.get("puzzleDifficulty") {
        let bits = value
            .as_u64()
            .ok_or_else(|| "must be a whole number of bits".to_owned())
            .and_then(Configuration::parse_puzzle_difficulty)
            .map_err(|why| ApiError::invalid_field("puzzleDifficulty", why))?;
        config.puzzle_difficulty = Some(bits);
    }
    Ok(config)
}

/// An eviction's optional body: none, or `{"block": true|false}`.
fn parse_block(request: &Request) -> Result<bool, ApiError> {
    let bytes = body_bytes(request);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let fields = json_object(request, &["block"])?;
    match fields.get("block") {
        None => Ok(false),
        Some(Value::Bool(block)) => Ok(*block),
        Some(_) => Err(ApiError::invalid_field("block", "must be true or false")),
    }
}

/// The body as a JSON object whose fields are among `allowed`.
fn json_object(
    request: &Request,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let only = allowed.join(", ");
    if !is_json(request) {
        return Err(ApiError::unsupported_media_type());
    }
    let bytes = body_bytes(request);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_BODY_BYTES));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid_json(format!(
            "expected an object with {only}"
        )));
    };
    if let Some(other) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = other.chars().take(32).collect();
        return Err(ApiError::invalid_json(format!(
            "unknown field {shown:?}; only {only} can be given"
        )));
    }
    Ok(fields)
}

/// A service's answer as `200` JSON, or its failure.
fn ok<T: Serialize>(answer: Result<T, ServiceError>) -> Response<Body> {
    match answer {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(err) => failed(err),
    }
}

/// Answers one admin request.
pub async fn handle<S: EventStore + LineStore + SessionStore>(
    service: &AdminService<S>,
    request: Request,
) -> Response<Body> {
    let route = match admin_route(request.method(), request.uri().path()) {
        Ok(route) => route,
        Err(err) => return err.into_response(),
    };
    let span = tracing::info_span!("admin", route = ?route);
    answer(service, &request, route).instrument(span).await
}

async fn answer<S: EventStore + LineStore + SessionStore>(
    service: &AdminService<S>,
    request: &Request,
    route: AdminRoute,
) -> Response<Body> {
    match route {
        AdminRoute::Events => ok(service
            .events()
            .await
            .map(|events| serde_json::json!({ "events": events }))),
        AdminRoute::Event(raw) => match event_id(&raw) {
            Ok(event) => ok(service.report(&event).await),
            Err(err) => err.into_response(),
        },
        AdminRoute::Configure(raw) => match event_id(&raw)
            .and_then(|event| parse_configuration(request).map(|config| (event, config)))
        {
            Ok((event, config)) => {
                tracing::info!(event = %event, ?config, "configured by an operator");
                ok(service.configure(&event, &config).await)
            }
            Err(err) => err.into_response(),
        },
        AdminRoute::Control(raw, control) => match event_id(&raw) {
            Ok(event) => {
                tracing::info!(event = %event, control = control.as_str(), "control by an operator");
                ok(service.control(&event, control).await)
            }
            Err(err) => err.into_response(),
        },
        AdminRoute::Evict(raw) => {
            let Ok(id) = SessionId::parse(&raw) else {
                return ApiError::session_not_found().into_response();
            };
            match parse_block(request) {
                Ok(block) => {
                    tracing::info!(session = %id, block, "eviction by an operator");
                    ok(service.evict(&id, block).await)
                }
                Err(err) => err.into_response(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(method: Method, path: &str) -> StatusCode {
        admin_route(&method, path).unwrap_err().status()
    }

    #[test]
    fn admin_routes_resolve() {
        assert_eq!(
            admin_route(&Method::GET, "/admin/events"),
            Ok(AdminRoute::Events)
        );
        assert_eq!(
            admin_route(&Method::GET, "/admin/events/E1"),
            Ok(AdminRoute::Event("E1".into()))
        );
        assert_eq!(
            admin_route(&Method::PUT, "/admin/events/E1/"),
            Ok(AdminRoute::Configure("E1".into()))
        );
        assert_eq!(
            admin_route(&Method::POST, "/admin/events/E1%3Apause"),
            Ok(AdminRoute::Control("E1".into(), Control::Pause))
        );
        assert_eq!(
            admin_route(&Method::POST, "/admin/events/E1:open"),
            Ok(AdminRoute::Control("E1".into(), Control::Open))
        );
        assert_eq!(
            admin_route(&Method::POST, "/admin/sessions/E1.abc:evict"),
            Ok(AdminRoute::Evict("E1.abc".into()))
        );
    }

    #[test]
    fn wrong_methods_are_405_and_unknown_actions_or_paths_404() {
        assert_eq!(
            status_of(Method::POST, "/admin/events"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status_of(Method::DELETE, "/admin/events/E1"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status_of(Method::GET, "/admin/events/E1:pause"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status_of(Method::POST, "/admin/events/E1:explode"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(Method::POST, "/admin/sessions/x:leave"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(Method::GET, "/admin/sessions/x"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(Method::GET, "/admin/events/E1/x"),
            StatusCode::NOT_FOUND
        );
    }
}
