//! The fan's pages: every variant within its budget and accessible, in
//! both languages; the forms end to end on the in-memory adapters.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};

use super::render::{CONTENT_SECURITY_POLICY, Page, SCRIPT, STYLE};
use super::text::{ENGLISH, FRENCH, LANGUAGES};
use super::*;
use crate::adapters::memory::{MemoryQueue, MemoryStore};
use crate::domain::signed_join::JoinKeys;
use crate::domain::{Admission, EndReason, Ending, EventCounters, EventState, Session, SessionId};
use crate::ports::EventSettings;
use crate::service::join::JoinService;
use crate::service::status::StatusReport;
use crate::service::tests::World;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn event() -> EventId {
    EventId::parse("E1").unwrap()
}

fn session() -> Session {
    Session::new_waiting(
        SessionId::new(&event(), [7; 16]),
        UserId::parse("fan-1").unwrap(),
        0,
        NOW,
    )
}

fn report(session: Session) -> StatusReport {
    StatusReport {
        session,
        people_ahead: None,
        estimated_wait: None,
        poll_after: Some(Duration::from_secs(4)),
        admission_token: None,
        opens_at: None,
        event_state: Some(EventState::Open),
        origin_url: None,
    }
}

fn visitor() -> Visitor {
    Visitor {
        user: "fan-1".into(),
        key: "k1".into(),
        signature: None,
    }
}

/// Every page the fan can see, in `text`'s language.
fn every_page(text: &'static Text) -> Vec<(String, Page<'static>)> {
    let mut pages = Vec::new();
    let open = EventCounters::default();
    pages.push((
        "open".into(),
        landing_page(text, &event(), &open, &visitor(), None, NOW),
    ));
    let puzzled = EventCounters {
        puzzle_difficulty: 16,
        ..EventCounters::default()
    };
    let signed = Visitor {
        signature: Some(("1800000600".into(), "x".repeat(43))),
        ..visitor()
    };
    pages.push((
        "puzzle, signed, refused".into(),
        landing_page(
            text,
            &event(),
            &puzzled,
            &signed,
            Some(text.refused_signature),
            NOW,
        ),
    ));
    for state in EventState::ALL {
        let counters = EventCounters {
            state,
            opens_at: Some(NOW.plus(Duration::from_secs(600))),
            ..EventCounters::default()
        };
        pages.push((
            format!("landing {state:?}"),
            landing_page(text, &event(), &counters, &visitor(), None, NOW),
        ));
    }
    let mut numbered = report(session());
    numbered.people_ahead = Some(41);
    numbered.estimated_wait = Some(Duration::from_secs(600));
    pages.push(("waiting".into(), session_page(text, &numbered, Some(82))));
    pages.push((
        "unnumbered".into(),
        session_page(text, &report(session()), None),
    ));
    for state in [EventState::Paused, EventState::Closed] {
        let mut paused = numbered.clone();
        paused.event_state = Some(state);
        pages.push((
            format!("waiting {state:?}"),
            session_page(text, &paused, None),
        ));
    }
    let mut drawn = report(session());
    drawn.opens_at = Some(NOW.plus(Duration::from_secs(60)));
    pages.push(("pre-queue".into(), session_page(text, &drawn, None)));
    let mut admitted = session();
    admitted
        .admit(Admission {
            admitted_at: NOW,
            admission_no: 1,
            expires_at: NOW.plus(Duration::from_secs(900)),
        })
        .unwrap();
    let mut active = report(admitted.clone());
    active.admission_token = Some("h.p.s".into());
    active.origin_url = Some("https://shop.example/buy?x=1".into());
    pages.push(("admitted".into(), session_page(text, &active, None)));
    active.origin_url = None;
    pages.push((
        "admitted, no origin".into(),
        session_page(text, &active, None),
    ));
    for reason in [
        EndReason::UserLeft,
        EndReason::Abandoned,
        EndReason::Expired,
        EndReason::CheckoutCompleted,
        EndReason::CheckoutFailed,
    ] {
        let mut ended = session();
        ended.end(Ending::new(reason, NOW)).unwrap();
        pages.push((
            format!("ended {reason:?}"),
            session_page(text, &report(ended), None),
        ));
    }
    pages
}

#[test]
fn every_page_is_within_budget_has_one_heading_and_loads_nothing_from_elsewhere() {
    for text in LANGUAGES {
        for (name, page) in every_page(text) {
            let html = page.html();
            assert!(
                html.len() <= PAGE_BUDGET_BYTES,
                "{} {name}: {} bytes, over the {PAGE_BUDGET_BYTES}-byte budget",
                text.lang,
                html.len()
            );
            assert_eq!(html.matches("<h1>").count(), 1, "{name}");
            assert!(
                html.contains(&format!("<html lang=\"{}\">", text.lang)),
                "{name}"
            );
            assert!(
                html.contains("role=\"status\" aria-live=\"polite\""),
                "{name}: live region"
            );
            for external in ["src=", "<link", "@import", "url("] {
                assert!(!html.contains(external), "{name} loads {external}");
            }
        }
    }
}

#[test]
fn the_policy_allows_exactly_the_inline_style_and_script() {
    use base64::Engine;
    use sha2::Digest;
    let hash = |t: &str| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(t));
    assert!(CONTENT_SECURITY_POLICY.contains(&format!("'sha256-{}'", hash(STYLE))));
    assert!(CONTENT_SECURITY_POLICY.contains(&format!("'sha256-{}'", hash(SCRIPT))));
    assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
    // The styles respect a fan who asked for less motion, and show focus.
    assert!(STYLE.contains("prefers-reduced-motion:no-preference"));
    assert!(STYLE.contains(":focus-visible"));
}

#[test]
fn a_waiting_page_refreshes_at_the_poll_cadence_without_script_and_polls_with_it() {
    let mut numbered = report(session());
    numbered.people_ahead = Some(41);
    let html = session_page(&ENGLISH, &numbered, Some(82)).html();
    let id = session().id;
    // The meta refresh only without script; the script polls instead.
    assert!(html.contains(&format!(
        "<noscript><meta http-equiv=\"refresh\" content=\"4;url=/waiting-room/E1/{id}?start=82\"></noscript>"
    )));
    assert!(html.contains(&format!("data-api=\"/api/waiting-room/sessions/{id}\"")));
    assert!(html.contains("data-poll=\"4\""));
    assert!(html.contains("<dd id=\"position\">42</dd>"));
    assert!(html.contains("value=\"50\""), "41 of 82 ahead: half way");
    assert!(html.contains("Math.random()"), "the poll has jitter");
    assert!(
        html.contains("name=\"action\" value=\"leave\""),
        "leave is offered"
    );
}

#[test]
fn an_admitted_fan_is_taken_to_the_origin_with_the_token() {
    let mut admitted = session();
    admitted
        .admit(Admission {
            admitted_at: NOW,
            admission_no: 1,
            expires_at: NOW.plus(Duration::from_secs(900)),
        })
        .unwrap();
    let mut active = report(admitted);
    active.admission_token = Some("h.p.s".into());
    active.origin_url = Some("https://shop.example/buy?x=1#top".into());
    let html = session_page(&FRENCH, &active, None).html();
    let url = "https://shop.example/buy?x=1&amp;token=h.p.s#top";
    assert!(html.contains(&format!(
        "<meta http-equiv=\"refresh\" content=\"5;url={url}\">"
    )));
    assert!(html.contains(&format!("href=\"{url}\"")));
    assert!(html.contains(FRENCH.continue_button));
    assert!(html.contains(&escape(FRENCH.leave_button)));
}

#[test]
fn a_closed_event_offers_no_form_and_a_puzzle_needs_the_script() {
    let closed = EventCounters {
        state: EventState::Closed,
        ..EventCounters::default()
    };
    let html = landing_page(&ENGLISH, &event(), &closed, &visitor(), None, NOW).html();
    assert!(!html.contains("<form"));
    assert!(html.contains(ENGLISH.closed));
    let closing = EventCounters {
        closes_at: Some(NOW),
        ..EventCounters::default()
    };
    let html = landing_page(&ENGLISH, &event(), &closing, &visitor(), None, NOW).html();
    assert!(!html.contains("<form"), "past its closing time");
    let puzzled = EventCounters {
        puzzle_difficulty: 12,
        ..EventCounters::default()
    };
    let html = landing_page(&ENGLISH, &event(), &puzzled, &visitor(), None, NOW).html();
    assert!(html.contains("name=\"puzzleNonce\""));
    assert!(html.contains("data-puzzle=\"12\""));
    assert!(html.contains("<noscript><p role=\"alert\">"));
    assert!(html.contains("<script>"));
    let signed = EventCounters {
        signed_joins: true,
        ..EventCounters::default()
    };
    let unsigned = landing_page(&ENGLISH, &event(), &signed, &visitor(), None, NOW).html();
    assert!(
        !unsigned.contains("<form"),
        "a signed event without the site's link offers no form"
    );
    assert!(unsigned.contains(&escape(ENGLISH.refused_signature)));
    let plain = landing_page(
        &ENGLISH,
        &event(),
        &EventCounters::default(),
        &visitor(),
        None,
        NOW,
    )
    .html();
    assert!(
        !html.is_empty() && !plain.contains("<script>"),
        "no script where none is needed"
    );
}

// --- The forms, end to end on the in-memory adapters -----------------------

/// The join service with the deployment's join keys set to `keys`.
fn join_with_keys(
    world: &World,
    keys: JoinKeys,
) -> JoinService<Arc<MemoryStore>, Arc<MemoryQueue>> {
    JoinService {
        join_keys: keys,
        ..world.join(1)
    }
}

fn post_form(path: &str, body: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept-language", "fr")
        .body(Body::Text(body.to_owned()))
        .unwrap()
}

fn get(path: &str) -> Request {
    lambda_http::http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .body(Body::Empty)
        .unwrap()
}

fn text_of(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => text.clone(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn the_forms_join_show_the_place_and_leave() {
    let world = World::new();
    let join = world.join(1);
    let status = world.status(1);
    let landing = show(&status, &get("/waiting-room/E1"), "E1", None).await;
    assert_eq!(landing.status(), StatusCode::OK);
    let html = text_of(&landing);
    assert!(
        html.contains("name=\"userId\" value=\"guest-"),
        "a guest id for an anonymous fan"
    );
    assert!(
        landing.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );

    let joined = super::join(
        &join,
        &post_form("/waiting-room/E1", "userId=fan-1&key=k-1"),
        "E1",
    )
    .await;
    assert_eq!(joined.status(), StatusCode::SEE_OTHER);
    let place = joined.headers()["location"].to_str().unwrap().to_owned();
    assert!(place.starts_with("/waiting-room/E1/E1."), "{place}");
    // The same form again (a double click, a resubmission) finds the same place.
    let again = super::join(
        &join,
        &post_form("/waiting-room/E1", "userId=fan-1&key=k-1"),
        "E1",
    )
    .await;
    assert_eq!(again.headers()["location"], place.as_str());

    let session = place.rsplit('/').next().unwrap().to_owned();
    let page = show(&status, &get(&place), "E1", Some(&session)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(text_of(&page).contains(ENGLISH.waiting_heading));
    // Another event's path does not show this session.
    let elsewhere = show(&status, &get(&place), "E2", Some(&session)).await;
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);

    let commands = world.commands();
    let bad = leave(&commands, &post_form(&place, "action=stay"), "E1", &session).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let left = leave(
        &commands,
        &post_form(&place, "action=leave"),
        "E1",
        &session,
    )
    .await;
    assert_eq!(left.status(), StatusCode::SEE_OTHER);
    assert_eq!(left.headers()["location"], "/waiting-room/E1?left=1");
    let id = SessionId::parse(&session).unwrap();
    assert_eq!(
        world
            .store
            .get_session(&id)
            .await
            .unwrap()
            .unwrap()
            .status(),
        SessionStatus::Left
    );
    let gone = text_of(&show(&status, &get(&place), "E1", Some(&session)).await);
    assert!(gone.contains(ENGLISH.ended_left));
}

#[tokio::test]
async fn bad_forms_are_refused_with_a_reason_and_store_nothing() {
    let world = World::new();
    let join = world.join(1);
    for body in [
        "",
        "userId=",
        "userId=a%20b",
        "userId=fan&userId=fan2",
        "userId=fan&color=red",
        "userId=fan&exp=1",
        "userId=fan&puzzleNonce=1",
        "userId=fan&exp=x&sig=y",
        &format!("userId={}", "a".repeat(3000)),
    ] {
        let answer = super::join(&join, &post_form("/waiting-room/E1", body), "E1").await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{body}");
        assert!(text_of(&answer).contains("role=\"alert\""), "{body}");
    }
    let json = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/waiting-room/E1")
        .header("content-type", "application/json")
        .body(Body::Text("{}".into()))
        .unwrap();
    assert_eq!(
        super::join(&join, &json, "E1").await.status(),
        StatusCode::BAD_REQUEST
    );
    let bad_event = super::join(
        &join,
        &post_form("/waiting-room/E%201", "userId=fan"),
        "E 1",
    )
    .await;
    assert_eq!(bad_event.status(), StatusCode::NOT_FOUND);
    assert!(
        world.store.events().await.unwrap().is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn a_signed_event_refuses_a_forged_form_and_gives_a_signed_fan_their_place_back() {
    let world = World::new();
    let keys = JoinKeys::of(vec![vec![3; 32]]);
    let join = join_with_keys(&world, keys.clone());
    world
        .store
        .configure_event(
            &event(),
            &EventSettings {
                signed_joins: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let fan = UserId::parse("fan-9").unwrap();
    let exp = NOW.as_secs() + 300;
    let signed = keys.sign(&event(), &fan, exp).unwrap();
    let forged = JoinKeys::of(vec![vec![4; 32]])
        .sign(&event(), &fan, exp)
        .unwrap();
    let refused = super::join(
        &join,
        &post_form(
            "/waiting-room/E1",
            &format!("userId=fan-9&exp={exp}&sig={}", forged.hmac),
        ),
        "E1",
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let html = text_of(&refused);
    assert!(html.contains(FRENCH.refused_signature.split(' ').next().unwrap()));
    assert!(html.contains("<form"), "the form again, to try once more");
    let unsigned = super::join(&join, &post_form("/waiting-room/E1", "userId=fan-9"), "E1").await;
    assert_eq!(unsigned.status(), StatusCode::FORBIDDEN);

    let form = format!("userId=fan-9&key=first&exp={exp}&sig={}", signed.hmac);
    let first = super::join(&join, &post_form("/waiting-room/E1", &form), "E1").await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    // Cleared their browser: a new key, the same signed user, the same place.
    let form = format!("userId=fan-9&key=second&exp={exp}&sig={}", signed.hmac);
    let back = super::join(&join, &post_form("/waiting-room/E1", &form), "E1").await;
    assert_eq!(back.headers()["location"], first.headers()["location"]);
}

#[tokio::test]
async fn a_signed_event_without_keys_is_the_operators_error_not_the_fans() {
    let world = World::new();
    let join = world.join(1);
    world
        .store
        .configure_event(
            &event(),
            &EventSettings {
                signed_joins: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let signed = JoinKeys::of(vec![vec![3; 32]])
        .sign(
            &event(),
            &UserId::parse("fan-1").unwrap(),
            NOW.as_secs() + 60,
        )
        .unwrap();
    let form = format!("userId=fan-1&exp={}&sig={}", signed.exp, signed.hmac);
    let answer = super::join(&join, &post_form("/waiting-room/E1", &form), "E1").await;
    assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    use crate::ports::QueueConsumer;
    let sent = world.queue.receive(10, Duration::ZERO).await.unwrap();
    assert!(sent.is_empty(), "no join was taken: {sent:?}");
}
