//! The API Gateway (HTTP API) Lambda authorizer in front of the protected
//! origin: payload format 2.0, simple responses. API Gateway's own result
//! cache is off (its key cannot hold the route's event, see infra/); the
//! session check caches a session's status for `SESSION_CHECK_CACHE_SECONDS`.

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::Value;

use crate::api::origin::token_in_cookies;
use crate::domain::EventId;
use crate::ports::SessionStore;
use crate::service::admission_check::AdmissionCheck;

/// The token from the identity source if one is configured, else the
/// `Authorization` header (with or without `Bearer `), else the origin's
/// cookie (`wr_admission`, as the demo origin keeps it), else the `token`
/// query parameter (the hand-over from the waiting page).
fn token_of(request: &ApiGatewayV2CustomAuthorizerV2Request) -> Option<String> {
    let from_source = request
        .identity_source
        .as_ref()
        .and_then(|s| s.first())
        .cloned();
    let from_header = || {
        request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let from_cookie = || token_in_cookies(request.cookies.iter().map(String::as_str));
    let from_query = || request.query_string_parameters.get("token").cloned();
    let raw = from_source
        .or_else(from_header)
        .or_else(from_cookie)
        .or_else(from_query)?;
    let raw = raw.trim();
    let token = match raw.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => &raw[7..],
        _ => raw,
    };
    (!token.is_empty()).then(|| token.trim().to_owned())
}

/// The name of the path parameter, or else the stage variable, that tells
/// which event a protected route belongs to.
pub const EVENT_PARAMETER: &str = "eventId";

/// The event the protected route belongs to: its `{eventId}` path
/// parameter, or else the stage's `eventId` variable (an API for one event).
fn route_event(request: &ApiGatewayV2CustomAuthorizerV2Request) -> Option<EventId> {
    let named = request
        .path_parameters
        .get(EVENT_PARAMETER)
        .or_else(|| request.stage_variables.get(EVENT_PARAMETER))?;
    EventId::parse(named).ok()
}

/// Allow with the session in the context (the origin gets it in
/// `$context.authorizer`), or deny. Anything unexpected denies, and so does
/// a route that names no event: a token opens one event only.
pub async fn authorize<S: SessionStore>(check: &AdmissionCheck<S>, event: Value) -> Value {
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::<Value>::default();
    let request: Option<ApiGatewayV2CustomAuthorizerV2Request> = serde_json::from_value(event).ok();
    let token = request.as_ref().and_then(token_of);
    let route_event = request.as_ref().and_then(route_event);
    match (token, route_event) {
        (None, _) => tracing::info!("refused: no admission token"),
        (Some(_), None) => {
            tracing::warn!(
                "refused: the route names no event (path parameter or stage variable eventId)"
            )
        }
        (Some(token), Some(event)) => match check.check(&token, &event).await {
            Ok(admitted) => {
                response.is_authorized = true;
                response.context = serde_json::json!({
                    "session_id": admitted.claims.sid,
                    "event_id": admitted.claims.event_id,
                    "user_id": admitted.user_id.as_str(),
                    "expires_at": admitted.claims.exp,
                });
            }
            Err(refusal) => tracing::info!(event = %event, %refusal, "refused"),
        },
    }
    serde_json::to_value(response).unwrap_or_else(|_| serde_json::json!({"isAuthorized": false}))
}
