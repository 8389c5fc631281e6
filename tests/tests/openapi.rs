//! `docs/openapi.yaml` against the code: every documented operation reaches
//! the handler it names, every route is documented, the error codes agree
//! with the API reference (docs/api.md), and a seeded fuzz of every operation, built from the
//! description, gets only documented answers and never a 5xx (against the
//! emulator, through the same handlers Lambda runs).
//!
//! `FUZZ_SEED=<n> FUZZ_CASES=<n>` replays or widens the fuzz; a failure
//! prints its seed and case.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use integration_tests::Stack;
use integration_tests::http::{Api, read, session_path};
use lambda_http::Body;
use lambda_http::http::{Method, Request};
use serde_json::{Value, json};
use waiting_room::api::{Route, route};
use yaml_rust2::{Yaml, YamlLoader};

fn spec() -> Yaml {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join("docs/openapi.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// One documented operation: method, path template, id, answers.
struct Operation {
    method: Method,
    path: String,
    id: String,
    statuses: BTreeSet<u16>,
}

fn operations(spec: &Yaml) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_hash().unwrap() {
        for (method, operation) in item.as_hash().unwrap() {
            let method = method.as_str().unwrap().to_ascii_uppercase();
            found.push(Operation {
                method: Method::from_bytes(method.as_bytes()).unwrap(),
                path: path.as_str().unwrap().to_owned(),
                id: operation["operationId"].as_str().unwrap().to_owned(),
                statuses: operation["responses"]
                    .as_hash()
                    .unwrap()
                    .keys()
                    .map(|s| s.as_str().unwrap().parse().unwrap())
                    .collect(),
            });
        }
    }
    found
}

/// The documented name of a route. Exhaustive: a new route does not
/// compile until it is named here, and then the test wants it documented.
fn operation_id(route: &Route) -> &'static str {
    match route {
        Route::Jwks => "jwks",
        Route::Join => "join",
        Route::Status(_) => "status",
        Route::Heartbeat(_) => "heartbeat",
        Route::Leave(_) => "leave",
        Route::Page(_) => "waitingPage",
        Route::PageJoin(_) => "waitingPageJoin",
        Route::PageSession(..) => "sessionPage",
        Route::PageLeave(..) => "sessionPageLeave",
        Route::Checkout(_) => "checkoutPage",
        Route::CheckoutOutcome(_) => "checkoutOutcome",
    }
}

fn error_codes(spec: &Yaml) -> BTreeSet<String> {
    spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_documented_operation_is_routed_and_every_route_is_documented() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    for op in operations(&spec) {
        let path = op
            .path
            .replace("{sessionId}", "abc123")
            .replace("{eventId}", "E1");
        let routed = route(&op.method, &path).unwrap_or_else(|e| {
            panic!(
                "{} {} is documented but not routed: {e:?}",
                op.method, op.path
            )
        });
        assert_eq!(operation_id(&routed), op.id, "{} {}", op.method, op.path);
        match &routed {
            Route::Status(id) | Route::Heartbeat(id) | Route::Leave(id) => {
                assert_eq!(id, "abc123", "the path parameter reaches the handler");
            }
            Route::PageSession(event, id) | Route::PageLeave(event, id) => {
                assert_eq!((event.as_str(), id.as_str()), ("E1", "abc123"));
            }
            Route::Page(event)
            | Route::PageJoin(event)
            | Route::Checkout(event)
            | Route::CheckoutOutcome(event) => assert_eq!(event, "E1"),
            Route::Jwks | Route::Join => {}
        }
        documented.insert(op.id);
    }
    let every_route = [
        Route::Jwks,
        Route::Join,
        Route::Status(String::new()),
        Route::Heartbeat(String::new()),
        Route::Leave(String::new()),
        Route::Page(String::new()),
        Route::PageJoin(String::new()),
        Route::PageSession(String::new(), String::new()),
        Route::PageLeave(String::new(), String::new()),
        Route::Checkout(String::new()),
        Route::CheckoutOutcome(String::new()),
    ];
    let routes: BTreeSet<String> = every_route
        .iter()
        .map(|r| operation_id(r).to_owned())
        .collect();
    assert_eq!(
        documented, routes,
        "the description and the router name the same operations"
    );
}

/// The API reference's error table and the description list the same codes.
#[test]
fn the_error_codes_agree_with_the_api_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let reference = std::fs::read_to_string(root.join("docs/api.md")).unwrap();
    let table: BTreeSet<String> = reference
        .lines()
        .filter(|l| l.starts_with("| 4") || l.starts_with("| 5"))
        .flat_map(|l| {
            let cell = l.split('|').nth(2).unwrap_or("");
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut described = error_codes(&spec());
    // A bug's answer: documented in the description so a client can parse
    // it, but not in the reference's table of answers a client should expect.
    described.remove("internal");
    assert_eq!(table, described);
}

/// SplitMix64: small, seeded, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A hostile or ordinary string: valid ids, unicode, controls, quotes,
    /// empty, and lengths around and far over the limits.
    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "E1",
            "U-1",
            "fan@example.com",
            "é",
            "𝄞",
            "\u{0}",
            "\n",
            "\"",
            "\\",
            " ",
            "%",
            ":",
            "/",
            "<script>",
            "\u{202e}",
            "a",
            "Z9_-",
            "=+.",
            "\u{feff}",
        ];
        match self.below(6) {
            0 => String::new(),
            1 => "x".repeat(*self.pick(&[63, 64, 65, 127, 128, 129, 2000])),
            _ => (0..1 + self.below(6)).map(|_| *self.pick(PIECES)).collect(),
        }
    }

    fn json(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(*self.pick(&[0.0, -0.0, 1e308, -1.5, 4_294_967_296.0])),
            3 | 4 => json!(self.string()),
            5 => Value::Array((0..self.below(3)).map(|_| self.json(depth - 1)).collect()),
            _ => {
                let fields = (0..self.below(3)).map(|_| (self.string(), self.json(depth - 1)));
                Value::Object(fields.collect())
            }
        }
    }

    /// A join body: mostly the documented object with each field valid,
    /// missing or of any shape, sometimes any JSON or not JSON at all.
    fn join_body(&mut self) -> Body {
        match self.below(8) {
            0 => Body::Binary(vec![b'{', 0xff, 0xfe, b'}']),
            1 => Body::Text(r#"{"eventId":"E1","userId":"#.to_owned()),
            2 => Body::Text(self.json(2).to_string()),
            3 => Body::Empty,
            _ => {
                let mut body = serde_json::Map::new();
                for field in ["eventId", "userId"] {
                    match self.below(4) {
                        0 => {}
                        1 => {
                            body.insert(field.into(), self.json(1));
                        }
                        _ => {
                            let valid = format!("fuzz-{}", self.below(50));
                            body.insert(field.into(), json!(valid));
                        }
                    }
                }
                if self.below(4) == 0 {
                    body.insert(self.string(), self.json(1));
                }
                for proof in ["signature", "puzzle"] {
                    if self.below(6) == 0 {
                        body.insert(proof.into(), self.json(2));
                    }
                }
                Body::Text(Value::Object(body).to_string())
            }
        }
    }

    /// A form body: the page's fields, valid, missing, repeated or junk.
    fn form_body(&mut self) -> Body {
        const FIELDS: &[&str] = &[
            "userId",
            "key",
            "exp",
            "sig",
            "puzzleIssuedAt",
            "puzzleNonce",
            "action",
            "outcome",
            "x",
        ];
        const VALUES: &[&str] = &[
            "fan-1",
            "leave",
            "completed",
            "failed",
            "1",
            "99999999999999999999",
            "18446744073709551615",
            "",
        ];
        let mut pairs = Vec::new();
        for _ in 0..self.below(5) {
            let value = if self.below(2) == 0 {
                (*self.pick(VALUES)).to_owned()
            } else {
                percent_encode(&self.string())
            };
            pairs.push(format!("{}={value}", self.pick(FIELDS)));
        }
        match self.below(6) {
            0 => Body::Binary(vec![0xff, b'=', 0xfe]),
            _ => Body::Text(pairs.join("&")),
        }
    }

    /// A page path: the event's, a session's, the demo origin's.
    fn page_path(&mut self, known: &[String]) -> String {
        let event = if self.below(3) == 0 {
            percent_encode(&self.string())
        } else {
            "E1".to_owned()
        };
        match self.below(4) {
            0 => format!("/waiting-room/{event}"),
            1 => format!("/checkout/{event}?token={}", percent_encode(&self.string())),
            2 => format!("/checkout/{event}"),
            _ => {
                let id = if !known.is_empty() && self.below(2) == 0 {
                    self.pick(known).clone()
                } else {
                    percent_encode(&self.string())
                };
                let start =
                    *self.pick(&["", "?start=18446744073709551615", "?start=x", "?start=3"]);
                format!("/waiting-room/{event}/{id}{start}")
            }
        }
    }

    /// A path segment for a session: a real id, garbage (percent-encoded so
    /// that it is a valid URI), or an id with an encoded or unknown action.
    fn session_segment(&mut self, known: &[String]) -> String {
        let id = if !known.is_empty() && self.below(2) == 0 {
            self.pick(known).clone()
        } else {
            percent_encode(&self.string())
        };
        match self.below(6) {
            0 => format!("{id}:heartbeat"),
            1 => format!("{id}:leave"),
            2 => format!("{id}%3Aleave"),
            3 => format!("{id}:{}", percent_encode(&self.string())),
            _ => id,
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_get_documented_answers_and_never_a_5xx() {
    let seed: u64 = std::env::var("FUZZ_SEED").map_or(20_261_203, |s| s.parse().unwrap());
    let cases: usize = std::env::var("FUZZ_CASES").map_or(400, |s| s.parse().unwrap());
    let spec = spec();
    let codes = error_codes(&spec);
    let documented: BTreeMap<(String, String), BTreeSet<u16>> = operations(&spec)
        .into_iter()
        .map(|op| ((op.method.to_string(), op.id), op.statuses))
        .collect();
    let stack = Stack::new("fuzz").await;
    let api = Api::new(&stack);
    let mut rng = Rng(seed);
    let mut known_sessions = Vec::new();
    let mut seen = BTreeMap::<u16, usize>::new();

    for case in 0..cases {
        let method = Method::from_bytes(rng.pick(METHODS).as_bytes()).unwrap();
        // Mostly a documented operation, sometimes any path at all.
        let (path, body) = match rng.below(13) {
            0..=3 => ("/api/waiting-room/sessions".to_owned(), rng.join_body()),
            10..=12 => (rng.page_path(&known_sessions), rng.form_body()),
            4..=7 => (
                session_path(&rng.session_segment(&known_sessions)),
                Body::Empty,
            ),
            // (The JWKS function is not in this harness: the smoke test
            // and tokens_jose call it.)
            _ => (format!("/{}", percent_encode(&rng.string())), Body::Empty),
        };
        let mut builder = Request::builder().method(method.clone()).uri(&path);
        if let Some(content_type) = rng.pick(&[
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ]) {
            builder = builder.header("content-type", *content_type);
        }
        if rng.below(3) == 0 {
            let key = rng.string();
            if lambda_http::http::HeaderValue::from_str(&key).is_ok() {
                builder = builder.header("idempotency-key", key);
            }
        }
        let request = builder.body(body.clone()).unwrap();
        let shown = format!("seed {seed} case {case}: {method} {path} {body:?}");

        let response = api.call(request).await;
        let status = response.status().as_u16();
        let html = response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.to_str().unwrap().starts_with("text/html"));
        let (_, answer) = if html {
            // A page: its reason is in an alert, not in a JSON code.
            let text = match response.body() {
                Body::Text(text) => text.clone(),
                _ => String::new(),
            };
            assert!(
                status < 400 || text.contains("role=\"alert\""),
                "{shown}: a refusal page without its reason"
            );
            (response.status(), json!({"page": status}))
        } else {
            read(response)
        };
        *seen.entry(status).or_default() += 1;
        assert!(status < 500, "{shown} got {status}: {answer}");
        if status >= 400 && !html {
            let code = answer["error"].as_str().unwrap_or_default();
            assert!(codes.contains(code), "{shown}: undocumented error {answer}");
        }
        match route(&method, &path) {
            Ok(routed) => {
                let allowed = &documented[&(method.to_string(), operation_id(&routed).to_owned())];
                assert!(
                    allowed.contains(&status),
                    "{shown}: {status} is not documented for it: {answer}"
                );
            }
            Err(err) => assert_eq!(status, err.status().as_u16(), "{shown}: {answer}"),
        }
        if let Some(id) = answer["sessionId"].as_str() {
            known_sessions.push(id.to_owned());
        }
    }
    // The fuzz reached the handlers, not only the router's refusals.
    for status in [202, 200, 204, 400, 404] {
        assert!(
            seen.contains_key(&status),
            "no {status} in {seen:?} (seed {seed})"
        );
    }
    println!("answers by status (seed {seed}, {cases} cases): {seen:?}");
}
