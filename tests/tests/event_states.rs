//! An operator's controls against the emulator: pause holds admissions while
//! joins go on, resume admits in order at once, close refuses new joins
//! while the line drains, and a control the state does not allow changes
//! nothing; an evicted session gives its place or slot back once.

use std::time::Duration;

use integration_tests::http::{Api, join_request, read, session_path};
use integration_tests::{Stack, eventually, lifecycle};
use lambda_http::http::{Method, StatusCode};
use waiting_room::domain::draw::draw_order;
use waiting_room::domain::{
    Clock, Control, EventId, EventState, SessionId, SessionStatus, SystemClock, Timestamp,
};
use waiting_room::ports::EventStore;
use waiting_room::runtime::publisher::poll_table_stream;
use waiting_room::service::ServiceError;
use waiting_room::service::admin::{Configuration, control, event_report};
use waiting_room::service::join::STATE_READ_EVERY;
use waiting_room::service::session_command::Ended;

const PATIENCE: Duration = Duration::from_secs(30);

fn now() -> Timestamp {
    SystemClock.now()
}

async fn join(api: &Api, event: &str, user: &str) -> String {
    let (code, body) = read(api.call(join_request(event, user)).await);
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    body["sessionId"].as_str().unwrap().to_owned()
}

async fn status(api: &Api, id: &str) -> String {
    let (code, body) = api.send(Method::GET, &session_path(id), None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

async fn active_of(api: &Api, ids: &[String]) -> Vec<usize> {
    let mut active = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        if status(api, id).await == "ACTIVE" {
            active.push(n);
        }
    }
    active
}

/// The first `count` changes of events' state the `audit` subscription
/// received (waiting up to `PATIENCE` for them).
async fn state_events(stack: &Stack, audit: &str, count: usize) -> Vec<serde_json::Value> {
    let mut changes = Vec::new();
    let started = std::time::Instant::now();
    while changes.len() < count && started.elapsed() < PATIENCE {
        changes.extend(
            stack
                .consume(audit)
                .await
                .into_iter()
                .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("EVENT_"))),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_holds_admissions_while_joins_go_on_and_resume_admits_in_order() {
    let stack = Stack::new("pause").await;
    let api = Api::new(&stack);
    let e = EventId::parse("E-pause").unwrap();
    stack.store().set_capacity(&e, 2).await.unwrap();
    let audit = stack.subscribe_consumer("audit").await;
    let publisher = {
        let (publisher, stack) = (stack.publisher(), stack.clone());
        tokio::spawn(async move {
            let mut reader = stack.stream_reader("publisher").await;
            poll_table_stream(&publisher, &mut reader, std::future::pending()).await;
        })
    };
    let paused = control(&stack.store(), &e, Control::Pause, 1, now())
        .await
        .unwrap();
    assert_eq!(
        (paused.from, paused.state, paused.changed),
        ("OPEN", "PAUSED", true)
    );
    let granters = stack.start_granters(1, &lifecycle(100), 1).await;

    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(join(&api, "E-pause", &format!("fan-{n}")).await);
    }
    // Numbered (joins go on), but nobody admitted beside two free slots.
    eventually(PATIENCE, "everyone numbered", || async {
        event_report(&stack.store(), &e, 1, 100)
            .await
            .unwrap()
            .waiting
            == 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(active_of(&api, &ids).await, Vec::<usize>::new());
    let report = event_report(&stack.store(), &e, 1, 100).await.unwrap();
    assert_eq!((report.state, report.active, report.free), ("PAUSED", 0, 2));
    let again = control(&stack.store(), &e, Control::Pause, 1, now())
        .await
        .unwrap();
    assert!(!again.changed, "pausing a paused event changes nothing");

    control(&stack.store(), &e, Control::Resume, 1, now())
        .await
        .unwrap();
    eventually(PATIENCE, "the first two admitted", || async {
        active_of(&api, &ids).await.len() == 2
    })
    .await;
    assert_eq!(active_of(&api, &ids).await, vec![0, 1], "in join order");

    // Each change of state is a domain event of the event, in order.
    let changes = state_events(&stack, &audit, 2).await;
    let types: Vec<&str> = changes
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["EVENT_PAUSED", "EVENT_RESUMED"]);
    for change in &changes {
        assert_eq!(change["event_id"], "E-pause");
        assert_eq!(change["_partition"], "E-pause", "ordered per event");
        assert!(change.get("session_id").is_none(), "{change}");
    }
    publisher.abort();
    granters.stop().await;
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_event_refuses_joins_and_drains_its_line() {
    let stack = Stack::new("close").await;
    let api = Api::new(&stack);
    let e = EventId::parse("E-close").unwrap();
    stack.store().set_capacity(&e, 1).await.unwrap();
    let granters = stack.start_granters(1, &lifecycle(100), 1).await;
    let first = join(&api, "E-close", "fan-0").await;
    let second = join(&api, "E-close", "fan-1").await;
    eventually(PATIENCE, "the first admitted", || async {
        status(&api, &first).await == "ACTIVE"
    })
    .await;

    let closed = control(&stack.store(), &e, Control::Close, 1, now())
        .await
        .unwrap();
    assert_eq!((closed.from, closed.state), ("OPEN", "CLOSED"));
    // Every join instance sees the close within STATE_READ_EVERY.
    tokio::time::sleep(STATE_READ_EVERY + Duration::from_millis(200)).await;
    let sessions_before = stack.sessions().await.len();
    let (code, body) = read(api.call(join_request("E-close", "fan-2")).await);
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "event_closed");
    assert_eq!(
        stack.sessions().await.len(),
        sessions_before,
        "a refused join creates nothing"
    );

    // A closed event takes no other control, and stays closed.
    for refused in [Control::Pause, Control::Resume] {
        match control(&stack.store(), &e, refused, 1, now()).await {
            Err(ServiceError::RefusedControl(err)) => assert_eq!(err.from, EventState::Closed),
            other => panic!("{refused:?} of a closed event: {other:?}"),
        }
    }
    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    assert_eq!(counters.state, EventState::Closed);

    // The line drains: the first leaves, the second is admitted.
    let (code, body) = api
        .send(
            Method::POST,
            &format!("{}:leave", session_path(&first)),
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    eventually(PATIENCE, "the second admitted after the close", || async {
        stack.status_of(&SessionId::parse(&second).unwrap()).await == Some(SessionStatus::Active)
    })
    .await;
    granters.stop().await;
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evicted_session_frees_its_slot_once_and_says_why() {
    let stack = Stack::new("evict").await;
    let api = Api::new(&stack);
    let e = EventId::parse("E-evict").unwrap();
    stack.store().set_capacity(&e, 1).await.unwrap();
    let granters = stack.start_granters(1, &lifecycle(100), 1).await;
    let first = join(&api, "E-evict", "fan-0").await;
    let second = join(&api, "E-evict", "fan-1").await;
    let third = join(&api, "E-evict", "fan-2").await;
    eventually(PATIENCE, "the first admitted", || async {
        status(&api, &first).await == "ACTIVE"
    })
    .await;

    let commands = stack.commands();
    let id = |s: &str| SessionId::parse(s).unwrap();
    // An active session: its slot goes to the next in line.
    assert_eq!(commands.evict(&id(&first)).await.unwrap(), Ended::Now);
    eventually(PATIENCE, "the second admitted", || async {
        status(&api, &second).await == "ACTIVE"
    })
    .await;
    // A waiting one: it leaves the line.
    assert_eq!(commands.evict(&id(&third)).await.unwrap(), Ended::Now);
    // Again: nothing changes, and the answer says it had ended.
    match commands.evict(&id(&first)).await.unwrap() {
        Ended::Before(ended) => assert_eq!(ended.status(), SessionStatus::Left),
        Ended::Now => panic!("evicted twice"),
    }
    let counters = stack.store().event_counters(&e, 1).await.unwrap();
    assert_eq!(
        (counters.active, counters.admitted, counters.left),
        (1, 2, 1),
        "one slot given back, once"
    );
    let (code, body) = api.send(Method::GET, &session_path(&first), None).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["endReason"].as_str()),
        (Some("LEFT"), Some("evicted"))
    );
    granters.stop().await;
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_event_lets_its_pre_queue_in_by_the_published_draw_then_the_rest() {
    let stack = Stack::new("draw").await;
    let api = Api::new(&stack);
    let e = EventId::parse("E-draw").unwrap();
    let admin = stack.admin_service(100);
    let opens_at = now().plus(Duration::from_secs(5));
    let scheduled = admin
        .configure(
            &e,
            &Configuration {
                capacity: Some(1),
                opens_at: Some(opens_at),
                ..Configuration::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (scheduled.state, &scheduled.draw_seed),
        ("SCHEDULED", &None)
    );
    let audit = stack.subscribe_consumer("audit").await;
    let publisher = {
        let (publisher, stack) = (stack.publisher(), stack.clone());
        tokio::spawn(async move {
            let mut reader = stack.stream_reader("publisher").await;
            poll_table_stream(&publisher, &mut reader, std::future::pending()).await;
        })
    };
    let granters = stack.start_granters(1, &lifecycle(100), 1).await;

    // The pre-queue: answered WAITING with the opening time, no position.
    let mut early = Vec::new();
    for n in 0..5 {
        let (code, body) = read(
            api.call(join_request("E-draw", &format!("early-{n}")))
                .await,
        );
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
        assert_eq!(
            body["opensAt"].as_str(),
            Some(opens_at.to_rfc3339().as_str())
        );
        assert!(body.get("position").is_none(), "{body}");
        early.push(SessionId::parse(body["sessionId"].as_str().unwrap()).unwrap());
    }
    let (_, polled) = api
        .send(Method::GET, &session_path(early[0].as_str()), None)
        .await;
    assert_eq!(
        (polled["status"].as_str(), polled.get("position")),
        (Some("WAITING"), None)
    );
    assert!(polled["opensAt"].is_string(), "{polled}");

    tokio::time::sleep(opens_at.since(now()) + Duration::from_millis(500)).await;
    let late = [
        join(&api, "E-draw", "late-0").await,
        join(&api, "E-draw", "late-1").await,
    ];
    let all: Vec<String> = early
        .iter()
        .map(|id| id.to_string())
        .chain(late.iter().cloned())
        .collect();
    assert_eq!(
        active_of(&api, &all).await,
        Vec::<usize>::new(),
        "the draw settles first"
    );

    // One at a time (capacity 1): each admitted fan leaves.
    let commands = stack.commands();
    let mut order: Vec<String> = Vec::new();
    while order.len() < all.len() {
        eventually(PATIENCE, "the next admitted", || async {
            active_of(&api, &all).await.len() == 1
        })
        .await;
        let next = all[active_of(&api, &all).await[0]].clone();
        commands
            .leave(&SessionId::parse(&next).unwrap())
            .await
            .unwrap();
        order.push(next);
    }
    let report = event_report(&stack.store(), &e, 1, 100).await.unwrap();
    assert_eq!(report.state, "OPEN");
    let seed_hex = report.draw_seed.clone().expect("published once open");
    let seed = u64::from_str_radix(&seed_hex, 16).unwrap();
    let mut expected: Vec<String> = draw_order(seed, &early)
        .iter()
        .map(|id| id.to_string())
        .collect();
    expected.extend(late.iter().cloned());
    assert_eq!(
        order, expected,
        "the draw of the published seed, then join order"
    );

    // The schedule and the opening (with the same seed) are domain events.
    let changes = state_events(&stack, &audit, 2).await;
    let types: Vec<&str> = changes
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["EVENT_SCHEDULED", "EVENT_OPENED"]);
    assert!(
        changes[0].get("draw_seed").is_none(),
        "secret before the opening"
    );
    assert_eq!(changes[1]["draw_seed"].as_str(), Some(seed_hex.as_str()));
    publisher.abort();
    granters.stop().await;
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opening_by_hand_lets_the_pre_queue_in_once_the_draw_settles() {
    let stack = Stack::new("open-now").await;
    let api = Api::new(&stack);
    let e = EventId::parse("E-open").unwrap();
    let admin = stack.admin_service(100);
    admin
        .configure(
            &e,
            &Configuration {
                capacity: Some(2),
                opens_at: Some(now().plus(Duration::from_secs(3600))),
                ..Configuration::default()
            },
        )
        .await
        .unwrap();
    let granters = stack.start_granters(1, &lifecycle(100), 1).await;
    let mut early = Vec::new();
    for n in 0..3 {
        early.push(SessionId::parse(&join(&api, "E-open", &format!("early-{n}")).await).unwrap());
    }
    let request = admin_request(Method::POST, "/admin/events/E-open:open", None);
    let (code, opened) = read(waiting_room::api::admin::handle(&admin, request).await);
    assert_eq!(
        (code, opened["from"].as_str(), opened["state"].as_str()),
        (StatusCode::OK, Some("SCHEDULED"), Some("OPEN")),
        "{opened}"
    );
    let opened_at = now();
    // A join within a second of the opening may still see the event
    // scheduled and join the draw (the settle covers it); this one comes
    // after that.
    tokio::time::sleep(STATE_READ_EVERY + Duration::from_millis(200)).await;
    let (code, body) = read(api.call(join_request("E-open", "late-0")).await);
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    assert!(
        body.get("opensAt").is_none(),
        "not in the pre-queue: {body}"
    );
    let late = body["sessionId"].as_str().unwrap().to_owned();
    // The stream's wake-up of the opening is held until the draw settles,
    // then the first two of the draw go in; the rest have positions.
    let report = event_report(&stack.store(), &e, 1, 100).await.unwrap();
    let seed = u64::from_str_radix(report.draw_seed.as_deref().unwrap(), 16).unwrap();
    let order: Vec<String> = draw_order(seed, &early)
        .iter()
        .map(|id| id.to_string())
        .collect();
    eventually(PATIENCE, "the first two of the draw admitted", || async {
        active_of(&api, &order).await == vec![0, 1]
    })
    .await;
    assert!(
        now().since(opened_at) >= Duration::from_secs(4),
        "not before the draw settled"
    );
    let (_, third) = api.send(Method::GET, &session_path(&order[2]), None).await;
    let (_, last) = api.send(Method::GET, &session_path(&late), None).await;
    assert_eq!(
        (third["position"].as_u64(), last["position"].as_u64()),
        (Some(1), Some(2)),
        "{third} {last}"
    );
    granters.stop().await;
    stack.tear_down().await;
}

fn admin_request(method: Method, path: &str, body: Option<&str>) -> lambda_http::Request {
    integration_tests::http::request(method, path, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_api_lists_shows_configures_controls_and_evicts() {
    let stack = Stack::new("admin-api").await;
    let api = Api::new(&stack);
    let admin = stack.admin_service(100);
    let call = |method: Method, path: &str, body: Option<&str>| {
        let request = admin_request(method, path, body);
        let admin = &admin;
        async move { read(waiting_room::api::admin::handle(admin, request).await) }
    };
    let granters = stack.start_granters(1, &lifecycle(100), 1).await;
    let first = join(&api, "E-admin", "fan-0").await;
    let second = join(&api, "E-admin", "fan-1").await;

    let (code, set) = call(
        Method::PUT,
        "/admin/events/E-admin",
        Some(r#"{"capacity": 1}"#),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{set}");
    assert_eq!(
        (set["capacity"].as_u64(), set["state"].as_str()),
        (Some(1), Some("OPEN"))
    );
    eventually(PATIENCE, "one admitted", || async {
        active_of(&api, &[first.clone(), second.clone()]).await == vec![0]
    })
    .await;

    // Bad input: a clear error, and nothing changes.
    for (body, field) in [
        (r#"{"capacity": -1}"#, "capacity"),
        (r#"{"capacity": 10000001}"#, "capacity"),
        (r#"{"capacity": "ten"}"#, "capacity"),
        (r#"{"opensAt": "tomorrow at ten"}"#, "opensAt"),
        (r#"{"opensAt": 1893456000}"#, "opensAt"),
        (r#"{"closesAt": "2030-01-01T10:00:00+01:00"}"#, "closesAt"),
        (r#"{"originUrl": "ftp://shop.example"}"#, "originUrl"),
        (r#"{"originUrl": "https://shop.example/a b"}"#, "originUrl"),
        (r#"{"staySeconds": 5}"#, "staySeconds"),
        (r#"{"abandonAfterSeconds": 10}"#, "abandonAfterSeconds"),
    ] {
        let (code, error) = call(Method::PUT, "/admin/events/E-admin", Some(body)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}");
    }
    let (code, error) = call(
        Method::PUT,
        "/admin/events/E-admin",
        Some(r#"{"capacity": 2, "state": "OPEN"}"#),
    )
    .await;
    assert_eq!(
        (code, error["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let (code, error) = call(Method::PUT, "/admin/events/E-admin", Some("{}")).await;
    assert_eq!(
        (code, error["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    // Well-formed but refused by the event: 409, nothing changed.
    for body in [
        r#"{"opensAt": "2020-01-01T10:00:00Z"}"#.to_owned(),
        r#"{"staySeconds": 7200, "maxStaySeconds": 3600}"#.to_owned(),
        format!(
            r#"{{"capacity": 5, "opensAt": "{}"}}"#,
            now().plus(Duration::from_secs(3600)).to_rfc3339()
        ),
    ] {
        let (code, error) = call(Method::PUT, "/admin/events/E-admin", Some(&body)).await;
        assert_eq!(
            (code, error["error"].as_str()),
            (StatusCode::CONFLICT, Some("configuration_refused")),
            "{body}: {error}"
        );
    }
    let (code, configured) = call(
        Method::PUT,
        "/admin/events/E-admin",
        Some(
            r#"{"originUrl": "https://shop.example/buy", "closesAt": "2099-01-01T00:00:00Z", "staySeconds": 600}"#,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{configured}");
    assert_eq!(
        (
            configured["originUrl"].as_str(),
            configured["closesAt"].as_str(),
            configured["capacity"].as_u64(),
            configured["state"].as_str(),
            configured["staySeconds"].as_u64(),
            configured.get("maxStaySeconds")
        ),
        (
            Some("https://shop.example/buy"),
            Some("2099-01-01T00:00:00.000Z"),
            Some(1),
            Some("OPEN"),
            Some(600),
            None
        ),
        "the refused configurations changed nothing"
    );
    let longest = format!("https://shop.example/{}", "a".repeat(2048 - 21));
    let (code, long) = call(
        Method::PUT,
        "/admin/events/E-admin",
        Some(&format!(r#"{{"originUrl": "{longest}"}}"#)),
    )
    .await;
    assert_eq!(
        (code, long["originUrl"].as_str()),
        (StatusCode::OK, Some(longest.as_str())),
        "the longest origin URL fits"
    );
    let (code, error) = call(Method::POST, "/admin/events/E-admin:explode", None).await;
    assert_eq!(
        (code, error["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_action"))
    );
    let (_, shown) = call(Method::GET, "/admin/events/E-admin", None).await;
    assert_eq!(
        (shown["capacity"].as_u64(), shown["active"].as_u64()),
        (Some(1), Some(1))
    );

    let (code, listed) = call(Method::GET, "/admin/events", None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        listed["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["eventId"] == "E-admin"),
        "{listed}"
    );

    let (code, paused) = call(Method::POST, "/admin/events/E-admin:pause", None).await;
    assert_eq!(
        (code, paused["state"].as_str()),
        (StatusCode::OK, Some("PAUSED")),
        "{paused}"
    );
    let (code, evicted) = call(
        Method::POST,
        &format!("/admin/sessions/{first}:evict"),
        None,
    )
    .await;
    assert_eq!(
        (code, evicted["evicted"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{evicted}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status(&api, &second).await,
        "WAITING",
        "paused: the freed slot waits"
    );
    call(Method::POST, "/admin/events/E-admin:resume", None).await;
    eventually(PATIENCE, "the second admitted on resume", || async {
        status(&api, &second).await == "ACTIVE"
    })
    .await;
    // Evicted and blocked: the user's next join is refused and stores nothing.
    let (code, error) = call(
        Method::POST,
        &format!("/admin/sessions/{second}:evict"),
        Some(r#"{"block": "yes"}"#),
    )
    .await;
    assert_eq!(
        (code, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("block"))
    );
    assert_eq!(
        status(&api, &second).await,
        "ACTIVE",
        "a bad request changes nothing"
    );
    let (code, blocked) = call(
        Method::POST,
        &format!("/admin/sessions/{second}:evict"),
        Some(r#"{"block": true}"#),
    )
    .await;
    assert_eq!(
        (
            code,
            blocked["evicted"].as_bool(),
            blocked["blocked"].as_bool()
        ),
        (StatusCode::OK, Some(true), Some(true)),
        "{blocked}"
    );
    let before = stack.sessions().await.len();
    let (code, refused) = read(api.call(join_request("E-admin", "fan-1")).await);
    assert_eq!(
        (code, refused["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("blocked")),
        "{refused}"
    );
    assert_eq!(
        stack.sessions().await.len(),
        before,
        "a refused join stores nothing"
    );
    let (_, rejoined) = read(api.call(join_request("E-admin", "fan-9")).await);
    assert_eq!(rejoined["status"], "WAITING", "another user still joins");
    // A mistyped id closes nothing (closing is final).
    let (code, error) = call(Method::POST, "/admin/events/E-admni:close", None).await;
    assert_eq!(
        (code, error["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("event_not_found"))
    );
    let (_, typo) = call(Method::GET, "/admin/events/E-admni", None).await;
    assert_eq!(typo["state"], "OPEN");
    let (code, closed) = call(Method::POST, "/admin/events/E-admin:close", None).await;
    assert_eq!(
        (code, closed["state"].as_str()),
        (StatusCode::OK, Some("CLOSED"))
    );
    let (code, refused) = call(Method::POST, "/admin/events/E-admin:resume", None).await;
    assert_eq!(
        (code, refused["error"].as_str()),
        (StatusCode::CONFLICT, Some("control_refused"))
    );
    let (code, again) = call(
        Method::POST,
        &format!("/admin/sessions/{first}:evict"),
        None,
    )
    .await;
    assert_eq!(
        (code, again["evicted"].as_bool(), again["status"].as_str()),
        (StatusCode::OK, Some(false), Some("LEFT"))
    );
    granters.stop().await;
    stack.tear_down().await;
}
