//! The fan's side and the origin's side against the emulator: signed joins
//! and the join puzzle refuse forgeries, expired signatures, stale and
//! replayed solutions and store nothing for them; a fan goes from the
//! waiting page to the demo origin, completes, and the next fan is let in.

use std::time::Duration;

use integration_tests::http::{Api, keyed_join_request, read, request};
use integration_tests::{Stack, TEST_JOIN_KEY, eventually, lifecycle};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use waiting_room::domain::puzzle::{self, Solution};
use waiting_room::domain::signed_join::JoinKeys;
use waiting_room::domain::{Clock, EventId, SystemClock, UserId};
use waiting_room::service::admin::Configuration;

const PATIENCE: Duration = Duration::from_secs(30);

fn json_join(body: Value, key: &str) -> lambda_http::Request {
    let mut request = keyed_join_request("unused", "unused", key);
    *request.body_mut() = Body::Text(body.to_string());
    request
}

fn form(method: Method, path: &str, body: &str, cookie: Option<&str>) -> lambda_http::Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    builder.body(Body::Text(body.to_owned())).unwrap()
}

fn page_of(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => text.clone(),
        _ => String::new(),
    }
}

fn location(response: &Response<Body>) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

async fn configure(stack: &Stack, event: &EventId, config: Configuration) {
    stack
        .admin_service(1)
        .configure(event, &config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_joins_refuse_forgeries_and_expired_signatures_and_give_a_signed_fan_their_place_back()
 {
    let stack = Stack::new("signed").await;
    let api = Api::new(&stack);
    let event = EventId::parse("E-signed").unwrap();
    configure(
        &stack,
        &event,
        Configuration {
            signed_joins: Some(true),
            ..Default::default()
        },
    )
    .await;
    let keys = JoinKeys::of(vec![TEST_JOIN_KEY.to_vec()]);
    let fan = UserId::parse("fan-1").unwrap();
    let now = SystemClock.now().as_secs();
    let good = keys.sign(&event, &fan, now + 300).unwrap();
    let forged = JoinKeys::of(vec![vec![1; 32]])
        .sign(&event, &fan, now + 300)
        .unwrap();
    let someone_elses = keys
        .sign(&event, &UserId::parse("fan-2").unwrap(), now + 300)
        .unwrap();
    let expired = keys.sign(&event, &fan, now - 1).unwrap();
    let body = |signature: Option<(u64, &str)>| {
        let mut body = json!({"eventId": "E-signed", "userId": "fan-1"});
        if let Some((exp, hmac)) = signature {
            body["signature"] = json!({"exp": exp, "hmac": hmac});
        }
        body
    };
    let refusals = [
        (body(None), "signature_required"),
        (body(Some((forged.exp, &forged.hmac))), "signature_invalid"),
        (
            body(Some((someone_elses.exp, &someone_elses.hmac))),
            "signature_invalid",
        ),
        (body(Some((good.exp + 60, &good.hmac))), "signature_invalid"),
        (
            body(Some((expired.exp, &expired.hmac))),
            "signature_expired",
        ),
    ];
    for (n, (refused, code)) in refusals.into_iter().enumerate() {
        let (status, answer) = read(api.call(json_join(refused, &format!("k{n}"))).await);
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::FORBIDDEN, Some(code)),
            "{answer}"
        );
    }
    // The page's form is refused the same way, and shows the form again.
    let forged_form = format!("userId=fan-1&exp={}&sig={}", forged.exp, forged.hmac);
    let refused = api
        .call(form(
            Method::POST,
            "/waiting-room/E-signed",
            &forged_form,
            None,
        ))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(page_of(&refused).contains("role=\"alert\""));
    assert!(
        stack.sessions().await.is_empty(),
        "a refused join stores nothing"
    );

    let (status, first) = read(
        api.call(json_join(body(Some((good.exp, &good.hmac))), "device-1"))
            .await,
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    // A cleared browser: another key, the same signed user, the same place.
    let signed_form = format!(
        "userId=fan-1&key=device-2&exp={}&sig={}",
        good.exp, good.hmac
    );
    let again = api
        .call(form(
            Method::POST,
            "/waiting-room/E-signed",
            &signed_form,
            None,
        ))
        .await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(location(&again).ends_with(first["sessionId"].as_str().unwrap()));
    assert_eq!(stack.sessions().await.len(), 1);

    // Where signatures are not required, an unsigned rejoin never finds the place.
    let open = EventId::parse("E-open").unwrap();
    let open_signature = keys.sign(&open, &fan, now + 300).unwrap();
    let signed = json!({"eventId": "E-open", "userId": "fan-1", "signature": {"exp": open_signature.exp, "hmac": open_signature.hmac}});
    let (status, _) = read(api.call(json_join(signed, "a")).await);
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, answer) = read(
        api.call(json_join(
            json!({"eventId": "E-open", "userId": "fan-1"}),
            "b",
        ))
        .await,
    );
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::CONFLICT, Some("already_joined")),
        "{answer}"
    );
    assert!(answer.get("sessionId").is_none());
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_puzzle_refuses_missing_stale_unsolved_and_replayed_solutions() {
    let stack = Stack::new("puzzle").await;
    let api = Api::new(&stack);
    let event = EventId::parse("E-puzzle").unwrap();
    configure(
        &stack,
        &event,
        Configuration {
            puzzle_difficulty: Some(10),
            ..Default::default()
        },
    )
    .await;
    let fan = UserId::parse("fan-1").unwrap();
    let now = SystemClock.now().as_secs();
    let solved = puzzle::solve(&event, &fan, now, 10);
    let stale = puzzle::solve(&event, &fan, now - 400, 10);
    let unsolved = (0..)
        .map(|nonce| Solution {
            issued_at: now,
            nonce,
        })
        .find(|s| puzzle::leading_zero_bits(&puzzle::digest(&event, &fan, *s)) < 10)
        .unwrap();
    let body = |solution: Option<Solution>| {
        let mut body = json!({"eventId": "E-puzzle", "userId": "fan-1"});
        if let Some(s) = solution {
            body["puzzle"] = json!({"issuedAt": s.issued_at, "nonce": s.nonce});
        }
        body
    };
    for (n, (solution, code)) in [
        (None, "puzzle_required"),
        (Some(stale), "puzzle_invalid"),
        (Some(unsolved), "puzzle_invalid"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, answer) = read(api.call(json_join(body(solution), &format!("k{n}"))).await);
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::FORBIDDEN, Some(code)),
            "{answer}"
        );
    }
    assert!(
        stack.sessions().await.is_empty(),
        "a refused join stores nothing"
    );
    let (status, joined) = read(api.call(json_join(body(Some(solved)), "first")).await);
    assert_eq!(status, StatusCode::ACCEPTED, "{joined}");
    let id = joined["sessionId"].as_str().unwrap();
    // A retry of that join (its answer lost): same key, same solution, same place.
    let (status, retried) = read(api.call(json_join(body(Some(solved)), "first")).await);
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried["sessionId"].as_str(), Some(id));
    let (status, _) = api
        .send(
            Method::POST,
            &format!("/api/waiting-room/sessions/{id}:leave"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The place is gone, but the solution was spent: a replay is refused.
    let (status, answer) = read(api.call(json_join(body(Some(solved)), "replay")).await);
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::CONFLICT, Some("puzzle_reused")),
        "{answer}"
    );
    // Through the page's form, a fresh solution joins.
    let fresh = puzzle::solve(&event, &fan, now, 10);
    let fresh = if fresh == solved {
        puzzle::solve(&event, &fan, now + 1, 10)
    } else {
        fresh
    };
    let posted = format!(
        "userId=fan-1&puzzleIssuedAt={}&puzzleNonce={}",
        fresh.issued_at, fresh.nonce
    );
    let joined = api
        .call(form(Method::POST, "/waiting-room/E-puzzle", &posted, None))
        .await;
    assert_eq!(
        joined.status(),
        StatusCode::SEE_OTHER,
        "{}",
        page_of(&joined)
    );
    let replayed = api
        .call(form(Method::POST, "/waiting-room/E-puzzle", &posted, None))
        .await;
    assert_eq!(replayed.status(), StatusCode::CONFLICT);
    assert!(
        page_of(&replayed).contains("check did not go through"),
        "refused as a reused solution, before the user's live place is looked at"
    );
    stack.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_goes_from_the_page_to_the_demo_origin_and_the_next_fan_is_let_in() {
    let stack = Stack::new("journey").await;
    let api = Api::new(&stack);
    let event = EventId::parse("E-shop").unwrap();
    let origin = "http://localhost:8080/checkout/E-shop".to_owned();
    configure(
        &stack,
        &event,
        Configuration {
            capacity: Some(1),
            origin_url: Some(Some(origin.clone())),
            ..Default::default()
        },
    )
    .await;
    let granters = stack.start_granters(1, &lifecycle(1), 1).await;
    let worker = stack.start_checkout_outcomes();

    let landing = api
        .call(request(Method::GET, "/waiting-room/E-shop", None))
        .await;
    assert_eq!(landing.status(), StatusCode::OK);
    let mut places = Vec::new();
    for fan in ["fan-a", "fan-b"] {
        let joined = api
            .call(form(
                Method::POST,
                "/waiting-room/E-shop",
                &format!("userId={fan}&key={fan}"),
                None,
            ))
            .await;
        assert_eq!(
            joined.status(),
            StatusCode::SEE_OTHER,
            "{}",
            page_of(&joined)
        );
        places.push(location(&joined));
    }
    let page = |path: String| {
        let api = &api;
        async move { page_of(&api.call(request(Method::GET, &path, None)).await) }
    };
    let handover = format!("{origin}?token=");
    eventually(
        PATIENCE,
        "the first fan's page hands over to the origin",
        || async { page(places[0].clone()).await.contains(&handover) },
    )
    .await;
    let first = page(places[0].clone()).await;
    assert!(first.contains("It is your turn"));
    let token: String = first
        .split(&handover)
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    let second = page(places[1].clone()).await;
    assert!(
        second.contains("You are in line") && second.contains("<dd id=\"position\">1</dd>"),
        "{second}"
    );

    // The origin: nothing without a token, the token swapped for a cookie.
    let bare = api
        .call(request(Method::GET, "/checkout/E-shop", None))
        .await;
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let elsewhere = api
        .call(request(
            Method::GET,
            &format!("/checkout/E-other?token={token}"),
            None,
        ))
        .await;
    assert_eq!(
        elsewhere.status(),
        StatusCode::FORBIDDEN,
        "a token opens its own event only"
    );
    let entered = api
        .call(request(
            Method::GET,
            &format!("/checkout/E-shop?token={token}"),
            None,
        ))
        .await;
    assert_eq!(entered.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&entered), "/checkout/E-shop");
    let cookie = entered.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("Secure")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/checkout/E-shop"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let shop = api
        .call(form(Method::GET, "/checkout/E-shop", "", Some(&cookie)))
        .await;
    assert_eq!(shop.status(), StatusCode::OK);
    assert!(page_of(&shop).contains("value=\"completed\""));
    let bad = api
        .call(form(
            Method::POST,
            "/checkout/E-shop",
            "outcome=maybe",
            Some(&cookie),
        ))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let done = api
        .call(form(
            Method::POST,
            "/checkout/E-shop",
            "outcome=completed",
            Some(&cookie),
        ))
        .await;
    assert_eq!(done.status(), StatusCode::OK, "{}", page_of(&done));

    // The outcome frees the slot: the next fan is let in, the first is out.
    eventually(PATIENCE, "the second fan is handed over", || async {
        page(places[1].clone()).await.contains(&handover)
    })
    .await;
    assert!(
        page(places[0].clone())
            .await
            .contains("Your purchase is complete")
    );
    let after = api
        .call(form(Method::GET, "/checkout/E-shop", "", Some(&cookie)))
        .await;
    assert_eq!(
        after.status(),
        StatusCode::FORBIDDEN,
        "a completed session opens nothing"
    );

    // The second fan leaves from the page: out of the origin too.
    let session = places[1].rsplit('/').next().unwrap().to_owned();
    let left = api
        .call(form(Method::POST, &places[1], "action=leave", None))
        .await;
    assert_eq!(left.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&left), "/waiting-room/E-shop?left=1");
    let status = stack
        .status_of(&waiting_room::domain::SessionId::parse(&session).unwrap())
        .await;
    assert_eq!(status, Some(waiting_room::domain::SessionStatus::Left));

    worker.stop().await;
    granters.stop().await;
    stack.tear_down().await;
}
