//! JSON bodies in and out, and the one mapping from errors to responses.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use crate::domain::puzzle::PuzzleError;
use crate::domain::signed_join::SignatureError;
use crate::domain::{
    Clock, EventState, IdempotencyKey, Session, SessionStatus, SystemClock, Timestamp,
};
use crate::service::status::StatusReport;
use crate::service::{JoinRefusal, ServiceError};
use crate::setup::metrics;

/// A client-facing error: `{"error": code, "message": text}` plus the field
/// at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<&'static str>,
    allow: Option<&'static str>,
    retry_after_seconds: Option<u64>,
    session_status: Option<SessionStatus>,
    idempotency_key: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    /// The key that finds out what became of a join that was not confirmed.
    #[serde(rename = "idempotencyKey", skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            allow: None,
            retry_after_seconds: None,
            session_status: None,
            idempotency_key: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route; see the API reference (docs/api.md)",
        )
    }

    pub fn method_not_allowed(allowed: &'static str) -> Self {
        let mut err = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this route only accepts {allowed}"),
        );
        err.allow = Some(allowed);
        err
    }

    pub fn unknown_action(action: &str) -> Self {
        Self::unknown_action_of(action, ":heartbeat or :leave")
    }

    /// An action the route does not have; `allowed` names the ones it has.
    pub fn unknown_action_of(action: &str, allowed: &str) -> Self {
        let shown: String = action.chars().take(32).collect();
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!("unknown action {shown:?}; use {allowed}"),
        )
    }

    /// A join without the signature or the puzzle its event asks for:
    /// 403 (409 for a solution used before), with a code per cause.
    pub fn join_refused(refusal: JoinRefusal) -> Self {
        let (status, code) = match refusal {
            JoinRefusal::Signature(SignatureError::Missing) => {
                (StatusCode::FORBIDDEN, "signature_required")
            }
            JoinRefusal::Signature(SignatureError::Expired) => {
                (StatusCode::FORBIDDEN, "signature_expired")
            }
            JoinRefusal::Signature(_) => (StatusCode::FORBIDDEN, "signature_invalid"),
            JoinRefusal::Puzzle(PuzzleError::Missing) => (StatusCode::FORBIDDEN, "puzzle_required"),
            JoinRefusal::Puzzle(PuzzleError::Reused) => (StatusCode::CONFLICT, "puzzle_reused"),
            JoinRefusal::Puzzle(_) => (StatusCode::FORBIDDEN, "puzzle_invalid"),
        };
        Self::new(status, code, refusal.to_string())
    }

    pub fn session_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no session has this id",
        )
    }

    pub fn invalid_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {detail}"),
        )
    }

    pub fn invalid_field(field: &'static str, problem: impl Into<String>) -> Self {
        let mut err = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("{field} {}", problem.into()),
        );
        err.field = Some(field);
        err
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    fn session_ended(session: &Session) -> Self {
        let mut err = Self::new(
            StatusCode::CONFLICT,
            "session_ended",
            format!("the session has ended ({})", session.status().as_str()),
        );
        err.session_status = Some(session.status());
        err
    }

    fn already_joined() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "already_joined",
            "this user already has a place in this event's line; only the join that took it \
             (the same Idempotency-Key) can see it again, and a new one can be taken once it ends",
        )
    }

    fn join_unconfirmed(key: &IdempotencyKey) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "join_unconfirmed",
            format!(
                "the waiting room is busy and could not confirm this join; it may hold a place \
                 already: join again with the header Idempotency-Key: {} to get that place, or \
                 a new one if none was taken",
                key.as_str()
            ),
        );
        err.retry_after_seconds = Some(2);
        err.idempotency_key = Some(key.as_str().to_owned());
        err
    }

    fn unavailable() -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the waiting room is busy; try again shortly (nothing was changed)",
        );
        err.retry_after_seconds = Some(2);
        err
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
            field: self.field,
            status: self.session_status.map(SessionStatus::as_str),
            idempotency_key: self.idempotency_key.as_deref(),
        };
        let mut response = json_response(self.status, &body);
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The answer for a service's failure. Pure: the handler that met the
/// failure logs it (`failed`), with its context.
impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::SessionNotFound => Self::session_not_found(),
            ServiceError::SessionEnded(session) => Self::session_ended(&session),
            ServiceError::NotActive(session) => {
                let mut err = Self::new(
                    StatusCode::CONFLICT,
                    "session_not_active",
                    format!("the session is {}, not ACTIVE", session.status().as_str()),
                );
                err.session_status = Some(session.status());
                err
            }
            ServiceError::AlreadyJoined => Self::already_joined(),
            ServiceError::Blocked => Self::new(
                StatusCode::FORBIDDEN,
                "blocked",
                "this user may not join this event",
            ),
            ServiceError::EventNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "event_not_found",
                "no event has this id: set its capacity first, or wait for its first join",
            ),
            ServiceError::JoinRefused(refusal) => Self::join_refused(refusal),
            ServiceError::EventClosed => Self::new(
                StatusCode::CONFLICT,
                "event_closed",
                "this event is closed to new joins; everyone already in line keeps their place",
            ),
            ServiceError::RefusedControl(refused) => {
                Self::new(StatusCode::CONFLICT, "control_refused", refused.to_string())
            }
            ServiceError::Misconfigured(why) => {
                Self::new(StatusCode::CONFLICT, "configuration_refused", why)
            }
            ServiceError::JoinUnconfirmed { key, .. } => Self::join_unconfirmed(&key),
            ServiceError::Unavailable(_) | ServiceError::Contention | ServiceError::Held { .. } => {
                Self::unavailable()
            }
            ServiceError::Internal(_) => Self::internal(),
        }
    }
}

/// Any serialisable value as a JSON response that no cache keeps.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let (status, text) = match serde_json::to_string(body) {
        Ok(text) => (status, text),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"internal","message":"response could not be encoded"}"#.to_owned(),
        ),
    };
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

/// A session as the API shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionBody {
    pub session_id: String,
    pub event_id: String,
    pub user_id: String,
    pub status: &'static str,
    pub joined_at: String,
    /// In the pre-queue of an event not open yet: when it opens. There is
    /// no position before the opening's draw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
    /// For a waiting fan: `SCHEDULED`, `OPEN`, `PAUSED` or `CLOSED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_state: Option<&'static str>,
    /// 1 for the next to be admitted (waiting, once in line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub people_ahead: Option<u64>,
    /// At the recently measured admission rate; absent when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_wait_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// For an active session: the signed token the protected flow checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    /// For an active session: the origin to take the fan to, with the
    /// token as its `token` query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<&'static str>,
}

impl SessionBody {
    pub fn of(session: &Session) -> Self {
        Self {
            session_id: session.id.to_string(),
            event_id: session.event_id.to_string(),
            user_id: session.user_id.to_string(),
            status: session.status().as_str(),
            joined_at: session.joined_at.to_rfc3339(),
            opens_at: None,
            event_state: None,
            origin_url: None,
            position: None,
            people_ahead: None,
            estimated_wait_seconds: None,
            poll_after_seconds: None,
            admission_token: None,
            admitted_at: session.admission().map(|a| a.admitted_at.to_rfc3339()),
            expires_at: session.expires_at().map(|at| at.to_rfc3339()),
            ended_at: session.ending().map(|e| e.ended_at.to_rfc3339()),
            end_reason: session.ending().map(|e| e.reason.as_str()),
        }
    }

    pub fn of_report(report: &StatusReport) -> Self {
        Self {
            opens_at: report.opens_at.map(Timestamp::to_rfc3339),
            event_state: report.event_state.map(EventState::as_str),
            origin_url: report.handover_url(),
            position: report.position(),
            people_ahead: report.people_ahead,
            estimated_wait_seconds: report.estimated_wait.map(|d| d.as_secs()),
            poll_after_seconds: report.poll_after.map(|d| d.as_secs()),
            admission_token: report.admission_token.clone(),
            ..Self::of(&report.session)
        }
    }
}

/// A service's failure as its answer, logged here once: the failures a
/// fan cannot cause (a dependency down, write conflicts, a bug) at WARN or
/// ERROR; the others are answers, not incidents.
pub(crate) fn failed(err: ServiceError) -> Response<Body> {
    match &err {
        ServiceError::JoinUnconfirmed { detail, .. } => {
            tracing::warn!(%detail, "join not confirmed")
        }
        ServiceError::Unavailable(detail) => tracing::warn!(%detail, "dependency unavailable"),
        ServiceError::Contention => tracing::warn!("gave up after repeated write conflicts"),
        ServiceError::Held { until } => {
            tracing::warn!(until = %until.to_rfc3339(), "held for a draw")
        }
        ServiceError::Internal(detail) => tracing::error!(%detail, "internal error"),
        ServiceError::SessionNotFound
        | ServiceError::SessionEnded(_)
        | ServiceError::NotActive(_)
        | ServiceError::AlreadyJoined
        | ServiceError::Blocked
        | ServiceError::JoinRefused(_)
        | ServiceError::EventNotFound
        | ServiceError::EventClosed
        | ServiceError::Misconfigured(_)
        | ServiceError::RefusedControl(_) => {}
    }
    let answer = ApiError::from(err);
    if answer.status().is_server_error() {
        metrics::emit(&[metrics::of_error(answer.code(), SystemClock.now())]);
    }
    answer.into_response()
}

/// The request's body as bytes, whatever form Lambda handed it in.
pub(crate) fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// The request's media type, lower-cased and without parameters; `None`
/// without a `Content-Type`, empty for one that is not text.
pub(crate) fn media_type(request: &Request) -> Option<String> {
    let content_type = request.headers().get(header::CONTENT_TYPE)?;
    let essence = content_type.to_str().unwrap_or("").split(';').next();
    Some(essence.unwrap_or("").trim().to_ascii_lowercase())
}
