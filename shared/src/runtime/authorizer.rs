//! The API Gateway (HTTP API) Lambda authorizer in front of the protected
//! origin: payload format 2.0, simple responses. API Gateway caches each
//! answer for the token briefly (see infra/), so most requests never reach it.

use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerSimpleResponse, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::Value;

use crate::ports::SessionStore;
use crate::service::admission_check::AdmissionCheck;

/// The token from the identity source (the `Authorization` header by
/// default), with or without a `Bearer ` prefix.
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
    let raw = from_source.or_else(from_header)?;
    let raw = raw.trim();
    let token = match raw.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => &raw[7..],
        _ => raw,
    };
    (!token.is_empty()).then(|| token.trim().to_owned())
}

/// Allow with the session in the context (the origin gets it in
/// `$context.authorizer`), or deny. Anything unexpected denies.
pub async fn authorize<S: SessionStore>(check: &AdmissionCheck<S>, event: Value) -> Value {
    let mut response = ApiGatewayV2CustomAuthorizerSimpleResponse::<Value>::default();
    let request: Option<ApiGatewayV2CustomAuthorizerV2Request> = serde_json::from_value(event).ok();
    match request.as_ref().and_then(token_of) {
        None => tracing::info!("refused: no admission token"),
        Some(token) => match check.check(&token).await {
            Ok(claims) => {
                response.is_authorized = true;
                response.context = serde_json::json!({
                    "session_id": claims.sid,
                    "event_id": claims.event_id,
                    "user_id": claims.sub,
                    "expires_at": claims.exp,
                });
            }
            Err(refusal) => tracing::info!(%refusal, "refused"),
        },
    }
    serde_json::to_value(response).unwrap_or_else(|_| serde_json::json!({"isAuthorized": false}))
}
