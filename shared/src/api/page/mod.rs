//! The fan's waiting page (docs/decisions/0037-the-fan-page.md), served by
//! the functions that already do each job, so none needs more rights:
//!
//! | route | function | answer |
//! | --- | --- | --- |
//! | `GET /waiting-room/{eventId}` | status | the join form (or the closed words) |
//! | `POST /waiting-room/{eventId}` | join | `303` to the session's page; the form again with the reason |
//! | `GET /waiting-room/{eventId}/{sessionId}` | status | the place in line, refreshing; admitted: on to the origin |
//! | `POST /waiting-room/{eventId}/{sessionId}` (`action=leave`) | session-command | `303` to the event's page |
//!
//! Everything works without JavaScript (forms, and a meta refresh at the
//! poll cadence); with it, the page polls the JSON API with jitter and
//! announces position changes in a live region.

pub mod render;
pub mod text;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use tracing::Instrument;

use self::render::{Page, Refresh, alert, button_link, escape, form, para};
use self::text::{Text, for_accept_language};
use super::json::{body_bytes, failed, media_type};
use super::{BASE_PATH, PAGE_PATH};
use crate::domain::ids::base32;
use crate::domain::puzzle::Solution;
use crate::domain::signed_join::JoinSignature;
use crate::domain::{
    Clock, EndReason, EventCounters, EventId, EventState, IdempotencyKey, SessionId, SessionStatus,
    Timestamp, UserId,
};
use crate::ports::{
    EventStore, IdSource, JoinQueue, LineStore, OsRandom, PuzzleLedger, SessionStore,
};
use crate::service::ServiceError;
use crate::service::join::{JoinProof, JoinService};
use crate::service::session_command::SessionCommands;
use crate::service::status::{StatusReport, StatusService};

/// Every page stays under this many bytes, script and styles included:
/// it then arrives in the first round trip of a new connection (ten TCP
/// segments), which matters on a crowded mobile network. A test renders
/// every variant and holds them to it.
pub const PAGE_BUDGET_BYTES: usize = 14_000;
/// Form bodies: a few short fields.
pub const MAX_FORM_BYTES: usize = 2048;
/// The poll cadence when the API gives none.
const DEFAULT_POLL_SECONDS: u64 = 5;
/// How long the admitted page shows before it moves on to the origin:
/// long enough for a screen reader to say so, and the link goes at once.
const HANDOVER_SECONDS: u64 = 5;

pub fn language(request: &Request) -> &'static Text {
    for_accept_language(
        request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A page as the answer, with headers that keep it private and confined.
pub fn html_response(status: StatusCode, page: &Page) -> Response<Body> {
    let mut response = Response::new(Body::Text(page.html()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-language"));
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(page.text.lang),
    );
    if let Ok(policy) = HeaderValue::from_str(&render::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// `303 See Other`: after a form post, the page to show.
pub fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A page that only says what went wrong, with a way back.
pub fn problem_page(
    text: &'static Text,
    status: StatusCode,
    message: &str,
    back: Option<(&str, &str)>,
) -> Response<Body> {
    let mut main = alert(message);
    if let Some((href, label)) = back {
        main.push_str(&button_link(href, label));
    }
    html_response(
        status,
        &Page {
            text,
            heading: text.error_heading,
            refresh: None,
            data: Vec::new(),
            main,
            script: false,
        },
    )
}

fn page_path(event: &EventId) -> String {
    format!("{PAGE_PATH}/{event}")
}

fn session_path(session: &SessionId, event: &EventId) -> String {
    format!("{PAGE_PATH}/{event}/{session}")
}

/// A time as a fan reads it: to the minute, in UTC.
fn shown_time(at: Timestamp) -> String {
    let full = at.to_rfc3339();
    let minutes: String = full.chars().take(16).collect();
    format!(
        "<time datetime=\"{}\">{} UTC</time>",
        escape(&full),
        escape(&minutes.replace('T', " "))
    )
}

/// Who is about to join: from the ticketing site's link (`userId`, and
/// `exp` with `sig` for signed joins), else a guest id drawn here. `key`
/// makes a resubmitted form find the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    pub user: String,
    pub key: String,
    pub signature: Option<(String, String)>,
}

impl Visitor {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![("userId", self.user.clone()), ("key", self.key.clone())];
        if let Some((exp, sig)) = &self.signature {
            fields.push(("exp", exp.clone()));
            fields.push(("sig", sig.clone()));
        }
        fields
    }
}

/// The join page of `event`, in its state.
pub fn landing_page(
    text: &'static Text,
    event: &EventId,
    counters: &EventCounters,
    visitor: &Visitor,
    notice: Option<&str>,
    now: Timestamp,
) -> Page<'static> {
    let mut main = String::new();
    if let Some(notice) = notice {
        main.push_str(&alert(notice));
    }
    let closed = !counters.state.takes_joins() || counters.closes_at.is_some_and(|at| at <= now);
    // A signed event takes no join without the ticketing site's link.
    let unsigned = counters.signed_joins && visitor.signature.is_none();
    if closed {
        main.push_str(&para(text.closed));
    } else if unsigned {
        main.push_str(&para(text.refused_signature));
    } else {
        match (counters.state, counters.scheduled_opening()) {
            (EventState::Scheduled, Some(opens_at)) => {
                main.push_str(&para(text.scheduled));
                main.push_str(&format!(
                    "<p>{} {}.</p>",
                    escape(text.opens_at),
                    shown_time(opens_at)
                ));
            }
            (EventState::Paused, _) => {
                main.push_str(&para(text.join_intro));
                main.push_str(&para(text.paused));
            }
            _ => main.push_str(&para(text.join_intro)),
        }
        let mut fields = visitor.fields();
        if counters.puzzle_difficulty > 0 {
            fields.push(("puzzleIssuedAt", String::new()));
            fields.push(("puzzleNonce", String::new()));
            main.push_str(&format!(
                "<noscript>{}</noscript>",
                alert(text.puzzle_needs_script)
            ));
        }
        main.push_str(&form(
            Some("join"),
            &page_path(event),
            &fields,
            text.join_button,
            false,
        ));
    }
    Page {
        text,
        heading: text.join_heading,
        refresh: None,
        data: vec![
            ("event", event.to_string()),
            ("puzzle", counters.puzzle_difficulty.to_string()),
            ("now", now.as_millis().to_string()),
            ("working", text.puzzle_working.to_owned()),
            ("failed", text.refused_puzzle.to_owned()),
        ],
        main,
        script: counters.puzzle_difficulty > 0 && !closed && !unsigned,
    }
}

/// A fan's place, in its state: waiting (position, people ahead, wait,
/// progress), admitted (on to the origin) or ended (the reason).
/// `start` is the people ahead when the fan was first numbered, the
/// progress bar's baseline, carried in the page's own URL.
pub fn session_page(
    text: &'static Text,
    report: &StatusReport,
    start: Option<u64>,
) -> Page<'static> {
    let session = &report.session;
    let event = &session.event_id;
    let self_path = session_path(&session.id, event);
    let leave = form(
        None,
        &self_path,
        &[("action", "leave".to_owned())],
        text.leave_button,
        true,
    );
    match session.status() {
        SessionStatus::Waiting => {
            let mut main = String::new();
            match report.event_state {
                Some(EventState::Paused) => main.push_str(&para(text.paused)),
                Some(EventState::Closed) => main.push_str(&para(text.closed_waiting)),
                _ => {}
            }
            if let Some(opens_at) = report.opens_at {
                main.push_str(&para(text.scheduled));
                main.push_str(&format!(
                    "<p>{} {}.</p>",
                    escape(text.opens_at),
                    shown_time(opens_at)
                ));
            } else if report.people_ahead.is_none() {
                main.push_str(&para(text.waiting_unnumbered));
            }
            let ahead = report.people_ahead;
            let start = match (start, ahead) {
                (Some(start), Some(ahead)) => Some(start.max(ahead)),
                (None, ahead) => ahead,
                (start, None) => start,
            };
            let dash = || "–".to_owned();
            let wait = match report.estimated_wait {
                None => text.wait_unknown.to_owned(),
                Some(wait) if wait.as_secs() < 60 => text.under_a_minute.to_owned(),
                Some(wait) => format!("{} {}", (wait.as_secs() + 30) / 60, text.minutes),
            };
            main.push_str(&format!(
                "<dl><dt>{}</dt><dd id=\"position\">{}</dd><dt>{}</dt><dd id=\"ahead\">{}</dd>\
                 <dt>{}</dt><dd id=\"wait\">{}</dd></dl>",
                escape(text.position),
                report.position().map_or_else(dash, |p| p.to_string()),
                escape(text.people_ahead),
                ahead.map_or_else(dash, |a| a.to_string()),
                escape(text.estimated_wait),
                escape(&wait),
            ));
            let percent = match (start, ahead) {
                (Some(start), Some(ahead)) if start > 0 => {
                    u128::from(start.saturating_sub(ahead)) * 100 / u128::from(start)
                }
                (Some(_), Some(_)) => 100,
                _ => 0,
            };
            main.push_str(&format!(
                "<label for=\"progress\">{}</label><progress id=\"progress\" max=\"100\" value=\"{percent}\">{percent}%</progress>",
                escape(text.progress)
            ));
            main.push_str(&para(text.keep_open));
            main.push_str(&leave);
            let poll = report
                .poll_after
                .map_or(DEFAULT_POLL_SECONDS, |p| p.as_secs().max(1));
            let again = match start {
                Some(start) => format!("{self_path}?start={start}"),
                None => self_path.clone(),
            };
            Page {
                text,
                heading: text.waiting_heading,
                refresh: Some(Refresh::WithoutScript(poll, again)),
                data: vec![
                    ("status", "WAITING".to_owned()),
                    ("poll", poll.to_string()),
                    ("api", format!("{BASE_PATH}/{}", session.id)),
                    ("self", self_path),
                    ("start", start.unwrap_or(0).to_string()),
                    (
                        "position",
                        report.position().map(|p| p.to_string()).unwrap_or_default(),
                    ),
                    (
                        "event-state",
                        report
                            .event_state
                            .map(|s| s.as_str().to_owned())
                            .unwrap_or_default(),
                    ),
                    (
                        "opens-at",
                        report.opens_at.map(|_| "1".to_owned()).unwrap_or_default(),
                    ),
                    ("wait-unknown", text.wait_unknown.to_owned()),
                    ("under-minute", text.under_a_minute.to_owned()),
                    ("minutes", text.minutes.to_owned()),
                    ("position-label", text.position.to_owned()),
                ],
                main,
                script: true,
            }
        }
        SessionStatus::Active => {
            let handover = report.handover_url();
            let mut main = String::new();
            match &handover {
                Some(url) => {
                    main.push_str(&para(text.admitted));
                    main.push_str(&button_link(url, text.continue_button));
                }
                None => main.push_str(&para(text.admitted_no_origin)),
            }
            main.push_str(&leave);
            Page {
                text,
                heading: text.admitted_heading,
                refresh: handover.map(|url| Refresh::Always(HANDOVER_SECONDS, url)),
                data: vec![("status", "ACTIVE".to_owned())],
                main,
                script: false,
            }
        }
        _ => {
            let heading = match session.ending().map(|e| e.reason) {
                Some(EndReason::UserLeft | EndReason::Evicted) | None => text.ended_left,
                Some(EndReason::Abandoned) => text.ended_abandoned,
                Some(EndReason::Expired | EndReason::CheckoutExpired) => text.ended_expired,
                Some(EndReason::CheckoutCompleted) => text.ended_completed,
                Some(EndReason::CheckoutFailed) => text.ended_failed,
            };
            Page {
                text,
                heading,
                refresh: None,
                data: vec![("status", session.status().as_str().to_owned())],
                main: button_link(&page_path(event), text.join_again),
                script: false,
            }
        }
    }
}

/// A query string's or a form's fields; a field given twice is refused.
fn fields_of(encoded: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(encoded) {
        if fields.iter().any(|(n, _)| *n == name) {
            let shown: String = name.chars().take(32).collect();
            return Err(format!("{shown} is given twice"));
        }
        fields.push((name.into_owned(), value.into_owned()));
    }
    Ok(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn random_text() -> Option<String> {
    OsRandom.random_id().map(|bytes| base32(&bytes))
}

/// The landing page's visitor, from the ticketing site's link.
fn visitor_from_query(query: &[(String, String)]) -> Result<Visitor, String> {
    let user = match field(query, "userId") {
        Some(user) => UserId::parse(user)
            .map_err(|e| format!("userId {}", e.problem))?
            .to_string(),
        None => format!("guest-{}", random_text().ok_or("no randomness")?),
    };
    let signature = match (field(query, "exp"), field(query, "sig")) {
        (Some(exp), Some(sig)) => Some((exp.to_owned(), sig.to_owned())),
        (None, None) => None,
        _ => return Err("exp and sig come together".into()),
    };
    Ok(Visitor {
        user,
        key: random_text().ok_or("no randomness")?,
        signature,
    })
}

/// `GET /waiting-room/{eventId}` and `GET /waiting-room/{eventId}/{sessionId}`.
pub async fn show<S: SessionStore + EventStore + LineStore>(
    service: &StatusService<S>,
    request: &Request,
    event: &str,
    session: Option<&str>,
) -> Response<Body> {
    let text = language(request);
    let Ok(event) = EventId::parse(event) else {
        return problem_page(text, StatusCode::NOT_FOUND, text.not_found, None);
    };
    let query = match fields_of(request.uri().query().unwrap_or("").as_bytes()) {
        Ok(query) => query,
        Err(why) => return problem_page(text, StatusCode::BAD_REQUEST, &why, None),
    };
    let Some(session) = session else {
        let visitor = match visitor_from_query(&query) {
            Ok(visitor) => visitor,
            Err(why) => return problem_page(text, StatusCode::BAD_REQUEST, &why, None),
        };
        let span = tracing::info_span!("page", event = %event);
        return match service.event(&event).instrument(span).await {
            Ok(counters) => {
                let notice = field(&query, "left").map(|_| text.left);
                let page = landing_page(
                    text,
                    &event,
                    &counters,
                    &visitor,
                    notice,
                    service.clock.now(),
                );
                html_response(StatusCode::OK, &page)
            }
            Err(err) => problem_for(text, err, &event),
        };
    };
    let gone = || {
        problem_page(
            text,
            StatusCode::NOT_FOUND,
            text.not_found,
            Some((&page_path(&event), text.join_again)),
        )
    };
    let Ok(id) = SessionId::parse(session) else {
        return gone();
    };
    let start = field(&query, "start").and_then(|s| s.parse().ok());
    let span = tracing::info_span!("page", session = %id);
    match service.status(&id).instrument(span).await {
        Ok(report) if report.session.event_id == event => {
            html_response(StatusCode::OK, &session_page(text, &report, start))
        }
        Ok(_) | Err(ServiceError::SessionNotFound) => gone(),
        Err(err) => problem_for(text, err, &event),
    }
}

/// A failure as a page: logged as the API logs it, worded for a fan.
fn problem_for(text: &'static Text, err: ServiceError, event: &EventId) -> Response<Body> {
    let message = fan_words(text, &err);
    let status = failed(err).status();
    problem_page(
        text,
        status,
        message,
        Some((&page_path(event), text.try_again)),
    )
}

fn fan_words(text: &'static Text, err: &ServiceError) -> &'static str {
    match err {
        ServiceError::JoinRefused(crate::service::JoinRefusal::Signature(_)) => {
            text.refused_signature
        }
        ServiceError::JoinRefused(crate::service::JoinRefusal::Puzzle(_)) => text.refused_puzzle,
        ServiceError::Blocked => text.refused_blocked,
        ServiceError::AlreadyJoined => text.already_joined,
        ServiceError::EventClosed => text.closed,
        ServiceError::SessionNotFound => text.not_found,
        _ => text.unavailable,
    }
}

/// What the join form posts.
struct JoinForm {
    visitor: Visitor,
    user: UserId,
    key: Option<IdempotencyKey>,
    proof: JoinProof,
}

/// A form post's fields: the right media type, within `MAX_FORM_BYTES`,
/// no field twice.
pub(crate) fn form_fields(request: &Request) -> Result<Vec<(String, String)>, String> {
    if media_type(request).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err("send the form as application/x-www-form-urlencoded".into());
    }
    let bytes = body_bytes(request);
    if bytes.len() > MAX_FORM_BYTES {
        return Err(format!("the form must be at most {MAX_FORM_BYTES} bytes"));
    }
    fields_of(bytes)
}

fn parse_join_form(fields: &[(String, String)]) -> Result<JoinForm, String> {
    const KNOWN: [&str; 6] = [
        "userId",
        "key",
        "exp",
        "sig",
        "puzzleIssuedAt",
        "puzzleNonce",
    ];
    if let Some((name, _)) = fields.iter().find(|(n, _)| !KNOWN.contains(&n.as_str())) {
        let shown: String = name.chars().take(32).collect();
        return Err(format!("unknown field {shown:?}"));
    }
    let raw_user = field(fields, "userId").ok_or("userId is required")?;
    let user = UserId::parse(raw_user).map_err(|e| format!("userId {}", e.problem))?;
    let key = field(fields, "key")
        .map(|k| IdempotencyKey::parse(k).map_err(|e| format!("key {}", e.problem)))
        .transpose()?;
    let number = |name: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{name} must be a whole number"))
    };
    let signature = match (field(fields, "exp"), field(fields, "sig")) {
        (Some(exp), Some(sig)) => Some(JoinSignature {
            exp: number("exp", exp)?,
            hmac: sig.to_owned(),
        }),
        (None, None) => None,
        _ => return Err("exp and sig come together".into()),
    };
    let puzzle = match (
        field(fields, "puzzleIssuedAt"),
        field(fields, "puzzleNonce"),
    ) {
        (Some(at), Some(nonce)) => Some(Solution {
            issued_at: number("puzzleIssuedAt", at)?,
            nonce: number("puzzleNonce", nonce)?,
        }),
        (None, None) => None,
        _ => return Err("puzzleIssuedAt and puzzleNonce come together".into()),
    };
    Ok(JoinForm {
        visitor: Visitor {
            user: user.to_string(),
            key: key
                .as_ref()
                .map(|k| k.as_str().to_owned())
                .unwrap_or_default(),
            signature: signature
                .as_ref()
                .map(|s| (s.exp.to_string(), s.hmac.clone())),
        },
        user,
        key,
        proof: JoinProof { signature, puzzle },
    })
}

/// `POST /waiting-room/{eventId}`: the join form. A place taken (or found
/// again) goes on to its page; a refusal shows the form again with why.
pub async fn join<S: SessionStore + EventStore + PuzzleLedger, Q: JoinQueue>(
    service: &JoinService<S, Q>,
    request: &Request,
    event: &str,
) -> Response<Body> {
    let text = language(request);
    let Ok(event) = EventId::parse(event) else {
        return problem_page(text, StatusCode::NOT_FOUND, text.not_found, None);
    };
    let back = page_path(&event);
    let form = match form_fields(request).and_then(|f| parse_join_form(&f)) {
        Ok(form) => form,
        Err(why) => {
            return problem_page(
                text,
                StatusCode::BAD_REQUEST,
                &why,
                Some((&back, text.try_again)),
            );
        }
    };
    let span = tracing::info_span!("page_join", event = %event);
    let outcome = service
        .join_with(event.clone(), form.user, form.key, &form.proof)
        .instrument(span)
        .await;
    match outcome {
        Ok(outcome) => see_other(&session_path(&outcome.session().id, &event)),
        Err(err) => {
            let message = fan_words(text, &err);
            let status = failed(err).status();
            match service.event(&event).await {
                Ok(counters) => {
                    let page = landing_page(
                        text,
                        &event,
                        &counters,
                        &form.visitor,
                        Some(message),
                        service.clock.now(),
                    );
                    html_response(status, &page)
                }
                Err(_) => problem_page(text, status, message, Some((&back, text.try_again))),
            }
        }
    }
}

/// `POST /waiting-room/{eventId}/{sessionId}` with `action=leave`.
pub async fn leave<S: SessionStore + EventStore>(
    commands: &SessionCommands<S>,
    request: &Request,
    event: &str,
    session: &str,
) -> Response<Body> {
    let text = language(request);
    let (Ok(event), Ok(id)) = (EventId::parse(event), SessionId::parse(session)) else {
        return problem_page(text, StatusCode::NOT_FOUND, text.not_found, None);
    };
    let back = page_path(&event);
    let fields = match form_fields(request) {
        Ok(fields) => fields,
        Err(why) => {
            return problem_page(
                text,
                StatusCode::BAD_REQUEST,
                &why,
                Some((&back, text.try_again)),
            );
        }
    };
    if fields.len() != 1 || field(&fields, "action") != Some("leave") {
        return problem_page(
            text,
            StatusCode::BAD_REQUEST,
            "the only action is action=leave",
            Some((&back, text.try_again)),
        );
    }
    if id.as_str().split('.').next() != Some(event.as_str()) {
        return problem_page(
            text,
            StatusCode::NOT_FOUND,
            text.not_found,
            Some((&back, text.join_again)),
        );
    }
    let span = tracing::info_span!("page_leave", session = %id);
    match commands.leave(&id).instrument(span).await {
        Ok(_) => see_other(&format!("{back}?left=1")),
        Err(ServiceError::SessionNotFound) => problem_page(
            text,
            StatusCode::NOT_FOUND,
            text.not_found,
            Some((&back, text.join_again)),
        ),
        Err(err) => problem_for(text, err, &event),
    }
}

#[cfg(test)]
mod tests;
