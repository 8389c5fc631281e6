//! The demo origin's pages (`service::demo_origin`): the shop a fan is sent
//! to when admitted. It takes the admission token as the `token` query
//! parameter, swaps it for a cookie of its own (so the token leaves the
//! address bar and the history), and checks it on every request:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /checkout/{eventId}?token=…` | `303` to `/checkout/{eventId}`, setting the cookie; `403` if refused |
//! | `GET /checkout/{eventId}` | `200` the checkout; `401` without a token; `403` once the session has left or expired |
//! | `POST /checkout/{eventId}` `outcome=completed\|failed` | `200` done, the outcome sent, the cookie cleared; `401`/`403` as above |
//!
//! In AWS the admission authorizer stands in front of the same function.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

use super::page::render::{Page, form, para};
use super::page::text::Text;
use super::page::{form_fields, html_response, language, problem_page, see_other};
use super::{CHECKOUT_PATH, Route, not_served, route};
use crate::domain::{EventId, Timestamp};
use crate::ports::{OutcomeSender, SessionStore};
use crate::service::demo_origin::{DemoOrigin, OriginError, Outcome};

/// The origin's own cookie, holding the admission token.
pub const COOKIE: &str = "wr_admission";

pub async fn checkout<S: SessionStore, O: OutcomeSender>(
    origin: &DemoOrigin<S, O>,
    request: Request,
) -> Response<Body> {
    let (raw_event, finishing) = match route(request.method(), request.uri().path()) {
        Ok(Route::Checkout(event)) => (event, false),
        Ok(Route::CheckoutOutcome(event)) => (event, true),
        Ok(_) => return not_served(&request),
        Err(err) => return err.into_response(),
    };
    let text = language(&request);
    let Ok(event) = EventId::parse(&raw_event) else {
        return problem_page(text, StatusCode::NOT_FOUND, text.checkout_no_token, None);
    };
    let path = format!("{CHECKOUT_PATH}/{event}");
    let span = tracing::info_span!("demo_origin", event = %event);
    async {
        if let Some(token) = query_token(&request) {
            // The hand-over from the waiting page: check, keep as a cookie.
            return match origin.enter(&token, &event).await {
                Ok(admitted) => {
                    let mut response = see_other(&path);
                    let max_age = admitted
                        .claims
                        .exp
                        .saturating_sub(origin.check.clock.now().as_secs());
                    set_cookie(&mut response, &path, &token, max_age);
                    response
                }
                Err(err) => refused(text, &err),
            };
        }
        let Some(token) = cookie_token(&request).or_else(|| bearer_token(&request)) else {
            return problem_page(text, StatusCode::UNAUTHORIZED, text.checkout_no_token, None);
        };
        if !finishing {
            return match origin.enter(&token, &event).await {
                Ok(admitted) => shop(
                    text,
                    &path,
                    Timestamp::from_millis(admitted.claims.exp * 1000),
                ),
                Err(err) => refused(text, &err),
            };
        }
        let outcome = match outcome_of(&request) {
            Ok(outcome) => outcome,
            Err(why) => return problem_page(text, StatusCode::BAD_REQUEST, &why, None),
        };
        match origin.finish(&token, &event, outcome).await {
            Ok(_) => {
                let words = match outcome {
                    Outcome::Completed => text.checkout_completed,
                    Outcome::Failed => text.checkout_failed,
                };
                let mut response = html_response(StatusCode::OK, &plain(text, words));
                set_cookie(&mut response, &path, "", 0);
                response
            }
            Err(err) => refused(text, &err),
        }
    }
    .instrument(span)
    .await
}

fn plain(text: &'static Text, heading: &'static str) -> Page<'static> {
    Page {
        text,
        heading,
        refresh: None,
        data: Vec::new(),
        main: String::new(),
        script: false,
    }
}

/// The checkout: what the fan may do with their stay.
fn shop(text: &'static Text, path: &str, until: Timestamp) -> Response<Body> {
    let mut main = para(text.checkout_intro);
    let until = until.to_rfc3339();
    main.push_str(&format!(
        "<p>{} <time datetime=\"{until}\">{} UTC</time>.</p>",
        text.checkout_until,
        until.chars().take(19).collect::<String>().replace('T', " ")
    ));
    main.push_str(&form(
        None,
        path,
        &[("outcome", "completed".into())],
        text.complete_button,
        false,
    ));
    main.push_str(&form(
        None,
        path,
        &[("outcome", "failed".into())],
        text.give_up_button,
        true,
    ));
    html_response(
        StatusCode::OK,
        &Page {
            main,
            ..plain(text, text.checkout_title)
        },
    )
}

fn refused(text: &'static Text, err: &OriginError) -> Response<Body> {
    match err {
        OriginError::Refused(refusal) => {
            tracing::info!(%refusal, "refused");
            problem_page(text, StatusCode::FORBIDDEN, text.checkout_refused, None)
        }
        OriginError::Failed(failure) => {
            tracing::warn!(%failure, "could not report the outcome");
            problem_page(
                text,
                StatusCode::SERVICE_UNAVAILABLE,
                text.unavailable,
                None,
            )
        }
    }
}

fn query_token(request: &Request) -> Option<String> {
    form_urlencoded::parse(request.uri().query()?.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value.into_owned())
        .filter(|t| !t.is_empty())
}

fn cookie_token(request: &Request) -> Option<String> {
    token_in_cookies(
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';')),
    )
}

/// The admission token among cookies (`name=value` pairs): the origin's
/// own reading, and the authorizer's.
pub fn token_in_cookies<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Option<String> {
    pairs
        .into_iter()
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

fn bearer_token(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("bearer "))
        .map(|_| value[7..].trim())?;
    (!token.is_empty()).then(|| token.to_owned())
}

fn outcome_of(request: &Request) -> Result<Outcome, String> {
    let fields = form_fields(request)?;
    match fields.as_slice() {
        [(name, value)] if name == "outcome" && value == "completed" => Ok(Outcome::Completed),
        [(name, value)] if name == "outcome" && value == "failed" => Ok(Outcome::Failed),
        _ => Err("send outcome=completed or outcome=failed, and nothing else".into()),
    }
}

/// The origin's cookie: for its own path only, over HTTPS only (browsers
/// count `http://localhost` as secure, so `make run` works), out of
/// scripts' reach, not sent with another site's form posts.
fn set_cookie(response: &mut Response<Body>, path: &str, token: &str, max_age: u64) {
    let cookie =
        format!("{COOKIE}={token}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
