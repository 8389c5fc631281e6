//! One handler per HTTP function. Each resolves the route, validates its
//! input, calls its service and turns the outcome into a response.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::Value;
use tracing::Instrument;

use super::json::{
    ApiError, SessionBody, body_bytes, empty_response, failed, json_response, media_type,
};
use super::{BASE_PATH, Route, not_served, page, route};
use crate::domain::puzzle::Solution;
use crate::domain::signed_join::JoinSignature;
use crate::domain::token::{self, PublicKey};
use crate::domain::{EventId, IdempotencyKey, SessionId, SessionStatus, Timestamp, UserId};
use crate::ports::{EventStore, JoinQueue, LineStore, PuzzleLedger, SessionStore};
use crate::service::join::{JoinProof, JoinService};
use crate::service::session_command::SessionCommands;
use crate::service::status::StatusService;

/// Join bodies are two short identifiers; anything bigger is a mistake.
pub const MAX_JOIN_BODY_BYTES: usize = 1024;
/// A new session's first poll: the granter files it within moments.
const FIRST_POLL_SECONDS: u64 = 1;

pub async fn join<S: SessionStore + EventStore + PuzzleLedger, Q: JoinQueue>(
    service: &JoinService<S, Q>,
    request: Request,
) -> Response<Body> {
    match route(request.method(), request.uri().path()) {
        Ok(Route::Join) => {}
        Ok(Route::PageJoin(event)) => return page::join(service, &request, &event).await,
        Ok(_) => return not_served(&request),
        Err(err) => return err.into_response(),
    }
    let (event, user, key, proof) = match parse_join(&request) {
        Ok(parsed) => parsed,
        Err(err) => return err.into_response(),
    };
    let span = tracing::info_span!("join", event = %event);
    match service
        .join_with(event, user, key, &proof)
        .instrument(span)
        .await
    {
        Ok(outcome) => {
            let session = outcome.session();
            let waiting = session.status() == SessionStatus::Waiting;
            let opens_at = service.opens_at_for(session);
            let body = SessionBody {
                opens_at: opens_at.map(Timestamp::to_rfc3339),
                poll_after_seconds: waiting.then_some(FIRST_POLL_SECONDS),
                ..SessionBody::of(session)
            };
            let mut response = json_response(StatusCode::ACCEPTED, &body);
            let location = format!("{BASE_PATH}/{}", session.id);
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            if waiting {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(FIRST_POLL_SECONDS));
            }
            response
        }
        Err(err) => failed(err),
    }
}

/// `GET /.well-known/jwks.json`. Public keys change only on rotation, so
/// verifiers may cache the answer for a few minutes.
pub fn jwks(keys: &[PublicKey], request: &Request) -> Response<Body> {
    match route(request.method(), request.uri().path()) {
        Ok(Route::Jwks) => {
            let mut response = json_response(StatusCode::OK, &token::jwks(keys));
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            response
        }
        Ok(_) => not_served(request),
        Err(err) => err.into_response(),
    }
}

pub async fn status<S: SessionStore + EventStore + LineStore>(
    service: &StatusService<S>,
    request: Request,
) -> Response<Body> {
    let raw_id = match route(request.method(), request.uri().path()) {
        Ok(Route::Status(raw_id)) => raw_id,
        Ok(Route::Page(event)) => return page::show(service, &request, &event, None).await,
        Ok(Route::PageSession(event, session)) => {
            return page::show(service, &request, &event, Some(&session)).await;
        }
        Ok(_) => return not_served(&request),
        Err(err) => return err.into_response(),
    };
    let Ok(id) = SessionId::parse(&raw_id) else {
        return ApiError::session_not_found().into_response();
    };
    match service
        .status(&id)
        .instrument(tracing::info_span!("status", session = %id))
        .await
    {
        Ok(report) => {
            let mut response = json_response(StatusCode::OK, &SessionBody::of_report(&report));
            if let Some(poll_after) = report.poll_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(poll_after.as_secs()));
            }
            response
        }
        Err(err) => failed(err),
    }
}

pub async fn session_command<S: SessionStore + EventStore>(
    commands: &SessionCommands<S>,
    request: Request,
) -> Response<Body> {
    let (raw_id, is_leave) = match route(request.method(), request.uri().path()) {
        Ok(Route::Heartbeat(raw_id)) => (raw_id, false),
        Ok(Route::Leave(raw_id)) => (raw_id, true),
        Ok(Route::PageLeave(event, session)) => {
            return page::leave(commands, &request, &event, &session).await;
        }
        Ok(_) => return not_served(&request),
        Err(err) => return err.into_response(),
    };
    let Ok(id) = SessionId::parse(&raw_id) else {
        return ApiError::session_not_found().into_response();
    };
    let action = if is_leave { "leave" } else { "heartbeat" };
    let span = tracing::info_span!("session_command", session = %id, action);
    let outcome = async {
        if is_leave {
            // Leaving an ended session is a success that changes nothing.
            commands.leave(&id).await.map(|_| ())
        } else {
            commands.heartbeat(&id).await.map(|_| ())
        }
    }
    .instrument(span)
    .await;
    match outcome {
        Ok(()) => empty_response(StatusCode::NO_CONTENT),
        Err(err) => failed(err),
    }
}

pub(super) fn is_json(request: &Request) -> bool {
    let Some(essence) = media_type(request) else {
        // curl and many scripts omit it; the body still has to parse.
        return true;
    };
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The header a client repeats on a retried join, to get the same place back.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// A join body: `eventId`, `userId`, and for events that ask for them the
/// ticketing site's `signature` (`{"exp": …, "hmac": …}`) and a solved
/// `puzzle` (`{"issuedAt": …, "nonce": …}`).
type JoinRequest = (EventId, UserId, Option<IdempotencyKey>, JoinProof);

fn parse_join(request: &Request) -> Result<JoinRequest, ApiError> {
    let key = match request.headers().get(IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::invalid_field(
                    "Idempotency-Key",
                    "may contain only visible ASCII characters",
                )
            })?;
            Some(
                IdempotencyKey::parse(text)
                    .map_err(|e| ApiError::invalid_field("Idempotency-Key", e.problem))?,
            )
        }
    };
    if !is_json(request) {
        return Err(ApiError::unsupported_media_type());
    }
    let bytes = body_bytes(request);
    if bytes.len() > MAX_JOIN_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_JOIN_BODY_BYTES));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_json(
            "the body is empty; send {\"eventId\":…,\"userId\":…}",
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(ApiError::invalid_json)?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid_json(
            "expected an object with eventId and userId",
        ));
    };
    let event = EventId::parse(string_field(&fields, "eventId")?)
        .map_err(|e| ApiError::invalid_field("eventId", e.problem))?;
    let user = UserId::parse(string_field(&fields, "userId")?)
        .map_err(|e| ApiError::invalid_field("userId", e.problem))?;
    let proof = JoinProof {
        signature: match fields.get("signature") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let (exp, hmac) = pair(value, "signature", "exp", "hmac")?;
                let hmac = hmac
                    .as_str()
                    .ok_or_else(|| ApiError::invalid_field("signature", "hmac must be a string"))?;
                Some(JoinSignature {
                    exp: whole(exp, "signature", "exp")?,
                    hmac: hmac.to_owned(),
                })
            }
        },
        puzzle: match fields.get("puzzle") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let (issued_at, nonce) = pair(value, "puzzle", "issuedAt", "nonce")?;
                Some(Solution {
                    issued_at: whole(issued_at, "puzzle", "issuedAt")?,
                    nonce: whole(nonce, "puzzle", "nonce")?,
                })
            }
        },
    };
    Ok((event, user, key, proof))
}

/// An object field with exactly two members.
fn pair<'a>(
    value: &'a Value,
    field: &'static str,
    first: &str,
    second: &str,
) -> Result<(&'a Value, &'a Value), ApiError> {
    let shape = || {
        ApiError::invalid_field(
            field,
            format!("must be {{\"{first}\": …, \"{second}\": …}}"),
        )
    };
    let Value::Object(members) = value else {
        return Err(shape());
    };
    match (members.get(first), members.get(second), members.len()) {
        (Some(a), Some(b), 2) => Ok((a, b)),
        _ => Err(shape()),
    }
}

fn whole(value: &Value, field: &'static str, member: &str) -> Result<u64, ApiError> {
    value
        .as_u64()
        .ok_or_else(|| ApiError::invalid_field(field, format!("{member} must be a whole number")))
}

fn string_field<'a>(
    fields: &'a serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Err(ApiError::invalid_field(name, "is required")),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(ApiError::invalid_field(name, "must be a string")),
    }
}
