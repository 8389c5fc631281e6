//! The public API through its HTTP handlers, against the emulator.

use std::time::Duration;

use integration_tests::http::{Api, join_request, keyed_join_request, read, request, session_path};
use integration_tests::proxy::FaultProxy;
use integration_tests::{Stack, emulator_endpoint, eventually, lifecycle};
use lambda_http::http::{Method, StatusCode};
use serde_json::Value;
use waiting_room::domain::{EventId, SessionStatus};
use waiting_room::ports::{EventStore, SessionStore};

async fn status_of(api: &Api, id: &str) -> Value {
    let (code, body) = api.send(Method::GET, &session_path(id), None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_poll_admitted_leave_and_the_next_user_is_admitted() {
    let stack = Stack::new("http-flow").await;
    let api = Api::new(&stack);
    stack
        .store()
        .set_capacity(&EventId::parse("E1").unwrap(), 1)
        .await
        .unwrap();
    let granters = stack.start_granters(1, &lifecycle(100), 1).await;

    let response = api.call(join_request("E1", "U1")).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (code, first) = read(response);
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(first["status"], "WAITING");
    let first_id = first["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(location, session_path(&first_id));

    eventually(Duration::from_secs(30), "U1 active", || async {
        status_of(&api, &first_id).await["status"] == "ACTIVE"
    })
    .await;
    let active = status_of(&api, &first_id).await;
    assert!(
        active["expiresAt"].is_string() && active["admittedAt"].is_string(),
        "{active}"
    );
    assert!(active.get("position").is_none());

    let (code, second) = read(api.call(join_request("E1", "U2")).await);
    assert_eq!(code, StatusCode::ACCEPTED);
    let second_id = second["sessionId"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), "U2 in line, first", || async {
        status_of(&api, &second_id).await["position"] == 1
    })
    .await;
    let waiting = status_of(&api, &second_id).await;
    assert_eq!(
        (waiting["status"].as_str(), waiting["peopleAhead"].as_u64()),
        (Some("WAITING"), Some(0))
    );
    assert!(waiting["pollAfterSeconds"].as_u64().unwrap() >= 1);

    let (code, body) = api
        .send(
            Method::POST,
            &format!("{}:leave", session_path(&first_id)),
            None,
        )
        .await;
    assert_eq!((code, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(status_of(&api, &first_id).await["status"], "LEFT");
    eventually(
        Duration::from_secs(30),
        "U2 admitted after U1 left",
        || async { status_of(&api, &second_id).await["status"] == "ACTIVE" },
    )
    .await;

    granters.stop().await;
    stack.tear_down().await;
}

#[tokio::test]
async fn a_user_id_alone_cannot_take_over_a_place() {
    let stack = Stack::new("http-takeover").await;
    let api = Api::new(&stack);
    let (code, victim) = read(api.call(join_request("E1", "fan@example.com")).await);
    assert_eq!(code, StatusCode::ACCEPTED);
    let victim_id = victim["sessionId"].as_str().unwrap().to_owned();

    // Whoever knows the user id (an e-mail address) and joins with it, with
    // no key or a guessed one, learns nothing about the victim's session.
    for attempt in [
        join_request("E1", "fan@example.com"),
        keyed_join_request("E1", "fan@example.com", "guess-1"),
    ] {
        let (code, body) = read(api.call(attempt).await);
        assert_eq!(code, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "already_joined");
        let text = body.to_string();
        assert!(!text.contains(&victim_id), "the session id leaked: {text}");
        let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["error", "message"], "nothing else is told");
    }
    let status = status_of(&api, &victim_id).await;
    assert_eq!(status["status"], "WAITING", "the victim keeps the place");
    assert_eq!(
        stack.sessions().await.len(),
        1,
        "no refused join stored anything"
    );
    stack.tear_down().await;
}

#[tokio::test]
async fn a_retried_join_with_its_key_keeps_the_session_and_place_until_it_ends() {
    let stack = Stack::new("http-idem").await;
    let api = Api::new(&stack);
    let key = "0b6f3c1e-retry";
    let (_, first) = read(
        api.call(keyed_join_request("E1", "fan@example.com", key))
            .await,
    );
    let (code, again) = read(
        api.call(keyed_join_request("E1", "fan@example.com", key))
            .await,
    );
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(again["sessionId"], first["sessionId"]);
    assert_eq!(again["position"], first["position"]);
    let (_, other_event) = read(api.call(join_request("E2", "fan@example.com")).await);
    assert_ne!(
        other_event["sessionId"], first["sessionId"],
        "each event has its own line"
    );

    let id = first["sessionId"].as_str().unwrap();
    api.send(Method::POST, &format!("{}:leave", session_path(id)), None)
        .await;
    let (code, rejoined) = read(api.call(join_request("E1", "fan@example.com")).await);
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_ne!(
        rejoined["sessionId"], first["sessionId"],
        "after leaving, a join starts a new session"
    );
    assert_eq!(rejoined["status"], "WAITING");
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_whose_answer_was_lost_says_so_and_its_retry_keeps_the_place() {
    let stack = Stack::new("http-lost").await;
    let proxy = FaultProxy::start(&emulator_endpoint().await).await;
    let mut api = Api::new(&stack);
    api.join = stack.via(&proxy.endpoint).await.join_service(1);
    // The join's write lands, and its answer is lost on the way back.
    proxy.down_after("TransactWriteItems");
    let (code, lost) = read(api.call(join_request("E1", "first@example.com")).await);
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{lost}");
    assert_eq!(lost["error"], "join_unconfirmed", "{lost}");
    let key = lost["idempotencyKey"].as_str().unwrap().to_owned();
    assert!(
        lost["message"].as_str().unwrap().contains(&key),
        "the message says how to get the place: {lost}"
    );
    let stored = stack.sessions().await;
    assert_eq!(stored.len(), 1, "the place was taken");
    proxy.up();

    // Someone joins after it; then the first fan's client retries.
    let direct = Api::new(&stack);
    let (_, later) = read(direct.call(join_request("E1", "later@example.com")).await);
    let (code, refused) = read(direct.call(join_request("E1", "first@example.com")).await);
    assert_eq!(
        (code, refused["error"].as_str()),
        (StatusCode::CONFLICT, Some("already_joined")),
        "without the key the place stays hidden"
    );
    let (code, again) = read(
        direct
            .call(keyed_join_request("E1", "first@example.com", &key))
            .await,
    );
    assert_eq!(code, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["sessionId"], stored[0].id.as_str());
    let later = stack
        .sessions()
        .await
        .into_iter()
        .find(|s| s.id.as_str() == later["sessionId"].as_str().unwrap())
        .unwrap();
    assert!(
        stored[0].place() < later.place(),
        "the retry keeps the first attempt's place, ahead of the later fan"
    );
    stack.tear_down().await;
}

#[tokio::test]
async fn repeated_leave_and_heartbeat_behave_as_documented() {
    let stack = Stack::new("http-repeat").await;
    let api = Api::new(&stack);
    let (_, joined) = read(api.call(join_request("E1", "U1")).await);
    let id = joined["sessionId"].as_str().unwrap();
    let heartbeat = format!("{}:heartbeat", session_path(id));
    let leave = format!("{}:leave", session_path(id));

    for _ in 0..2 {
        assert_eq!(
            api.send(Method::POST, &heartbeat, None).await,
            (StatusCode::NO_CONTENT, Value::Null)
        );
    }
    for _ in 0..3 {
        assert_eq!(
            api.send(Method::POST, &leave, None).await,
            (StatusCode::NO_CONTENT, Value::Null)
        );
    }
    let (code, body) = api.send(Method::POST, &heartbeat, None).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(
        (body["error"].as_str(), body["status"].as_str()),
        (Some("session_ended"), Some("LEFT"))
    );
    let ended = status_of(&api, id).await;
    assert_eq!(
        (ended["status"].as_str(), ended["endReason"].as_str()),
        (Some("LEFT"), Some("user_left"))
    );
    stack.tear_down().await;
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let stack = Stack::new("http-bad").await;
    let api = Api::new(&stack);
    let event = EventId::parse("E1").unwrap();
    let (_, joined) = read(api.call(join_request("E1", "U1")).await);
    let id = joined["sessionId"].as_str().unwrap().to_owned();
    let unknown = format!("E1.{}", "a".repeat(26));
    let path = session_path(&id);
    let before_sessions = stack.sessions().await;
    let before_counters = stack.store().event_counters(&event, 1).await.unwrap();

    let sessions = "/api/waiting-room/sessions";
    let long_event = format!(r#"{{"eventId":"{}","userId":"u"}}"#, "e".repeat(65));
    let long_user = format!(r#"{{"eventId":"E1","userId":"{}"}}"#, "u".repeat(129));
    let huge = format!(
        r#"{{"eventId":"E1","userId":"u","pad":"{}"}}"#,
        "x".repeat(2000)
    );
    let cases: Vec<(Method, String, Option<&str>, StatusCode, &str)> = vec![
        (
            Method::POST,
            sessions.into(),
            Some("{"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            sessions.into(),
            Some("[]"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            sessions.into(),
            Some("\"E1\""),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            sessions.into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            Method::POST,
            sessions.into(),
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"E1"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"","userId":"u"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"E1","userId":""}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"E1","userId":null}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":5,"userId":"u"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"E1","userId":["u"]}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"E#1","userId":"u"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"E1","userId":"a b"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(r#"{"eventId":"E1","userId":"ünï"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(&long_event),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(&long_user),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            Method::POST,
            sessions.into(),
            Some(&huge),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            Method::GET,
            format!("{sessions}/not-a-session"),
            None,
            StatusCode::NOT_FOUND,
            "session_not_found",
        ),
        (
            Method::GET,
            format!("{sessions}/{}", "x".repeat(5000)),
            None,
            StatusCode::NOT_FOUND,
            "session_not_found",
        ),
        (
            Method::GET,
            session_path(&unknown),
            None,
            StatusCode::NOT_FOUND,
            "session_not_found",
        ),
        (
            Method::POST,
            format!("{}:leave", session_path(&unknown)),
            None,
            StatusCode::NOT_FOUND,
            "session_not_found",
        ),
        (
            Method::POST,
            format!("{}:heartbeat", session_path(&unknown)),
            None,
            StatusCode::NOT_FOUND,
            "session_not_found",
        ),
        (
            Method::POST,
            format!("{path}:explode"),
            None,
            StatusCode::NOT_FOUND,
            "unknown_action",
        ),
        (
            Method::POST,
            format!("{path}:"),
            None,
            StatusCode::NOT_FOUND,
            "unknown_action",
        ),
        (
            Method::POST,
            path.clone(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            path.clone(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            format!("{path}:leave"),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            sessions.into(),
            Some("{}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            sessions.into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/api/waiting-room/elsewhere".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            format!("{path}/deeper"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (method, path, body, expected_status, expected_error) in cases {
        let response = api.call(request(method.clone(), &path, body)).await;
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let (status, json) = read(response);
        let shown = &path[..path.len().min(80)];
        assert_eq!(
            status, expected_status,
            "{method} {shown} {body:?} -> {json}"
        );
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {shown}"
        );
        assert_eq!(
            json["error"], expected_error,
            "{method} {shown} {body:?} -> {json}"
        );
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
    // A body that is not JSON at all, declared as something else.
    let mut form = request(Method::POST, sessions, Some("eventId=E1&userId=U9"));
    form.headers_mut().insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().unwrap(),
    );
    let (status, json) = read(api.call(form).await);
    assert_eq!(
        (status, json["error"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );

    // An Idempotency-Key that is not 1–64 visible ASCII characters.
    for key in [
        String::new(),
        "two words".into(),
        "k".repeat(65),
        "caf\u{e9}".into(),
    ] {
        let mut keyed = join_request("E1", "U-keyed");
        keyed.headers_mut().insert(
            "idempotency-key",
            lambda_http::http::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
        );
        let (status, json) = read(api.call(keyed).await);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key:?} -> {json}");
        assert_eq!(
            (json["error"].as_str(), json["field"].as_str()),
            (Some("invalid_field"), Some("Idempotency-Key")),
            "{key:?} -> {json}"
        );
    }

    assert_eq!(
        stack.sessions().await,
        before_sessions,
        "bad requests changed a session"
    );
    assert_eq!(
        stack.store().event_counters(&event, 1).await.unwrap(),
        before_counters
    );
    let after = stack
        .store()
        .get_session(&waiting_room::domain::SessionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.status(), SessionStatus::Waiting);
    stack.tear_down().await;
}
