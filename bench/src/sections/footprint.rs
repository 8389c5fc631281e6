//! Cold start and peak memory of every function binary next to the
//! Python baseline: the results file's first two sections.

use std::fmt::Write as _;
use std::time::Duration;

use crate::e2e::BoxError;
use crate::functions::{self, Launch};
use crate::report::table;
use serde_json::{Value, json};
use waiting_room::adapters::aws::sdk_config;
use waiting_room::adapters::dynamodb::DynamoStore;
use waiting_room::domain::SessionId;
use waiting_room::ports::{Arrival, SessionStore};
use waiting_room::setup::config::process_env;
use waiting_room::setup::wiring::JoinSettings;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub async fn cold_starts(
    out: &mut String,
    binaries: &std::path::Path,
    python: &Launch,
    runs: usize,
) -> Result<(), BoxError> {
    eprintln!("cold starts ({runs} runs each)…");
    let baseline = functions::cold_start(python, "python-baseline", runs).await?;
    let mut rows = Vec::new();
    let mut slowest = Duration::ZERO;
    for (name, path) in functions::binaries(binaries) {
        let ready = functions::cold_start(&Launch::Binary(path), name, runs).await?;
        slowest = slowest.max(ready);
        rows.push(vec![
            name.to_owned(),
            ms(ready),
            format!(
                "{:.0}×",
                baseline.as_secs_f64() / ready.as_secs_f64().max(1e-9)
            ),
        ]);
    }
    rows.sort();
    rows.push(vec![
        "Python 3.11 + boto3 (DynamoDB and SQS clients)".into(),
        ms(baseline),
        "1×".into(),
    ]);
    let _ = writeln!(
        out,
        "## 1. Cold start: exec to ready for the first event (median of {runs})\n"
    );
    let _ = writeln!(
        out,
        "Each binary runs under an in-repo Lambda Runtime API stub with the settings of the local stack; ready = its first request for an event (settings read, SDK clients built). Target: ≥ 30× faster than the Python baseline.\n"
    );
    let _ = writeln!(
        out,
        "{}",
        table(&["function", "cold start", "Python / ours"], &rows)
    );
    let _ = writeln!(
        out,
        "Slowest of ours: {} — {:.0}× faster than the baseline.\n",
        ms(slowest),
        baseline.as_secs_f64() / slowest.as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// Scheduled sweeps in the memory benchmark: a sweep reconciles every event
/// the table lists (one a minute on AWS), so a thousand of them against a
/// local table of many events would take longer than the phase allows.
const SWEEPS: usize = 50;

/// The events each function gets in the memory benchmark: real work against
/// the local stack, made from sessions the join function creates first.
pub async fn peak_memory(
    out: &mut String,
    binaries: &std::path::Path,
    python: &Launch,
    count: usize,
) -> Result<(), BoxError> {
    eprintln!("peak memory over {count} events per function…");
    let paths = functions::binaries(binaries);
    let launch = |name: &str| {
        paths
            .get(name)
            .cloned()
            .map(Launch::Binary)
            .ok_or("no such function")
    };
    let event_id = format!("bench-rss-{}", std::process::id());
    let joins: Vec<Value> = (0..count)
        .map(|n| {
            let body = json!({"eventId": event_id, "userId": format!("fan-{n}")});
            let mut event =
                functions::http_event("POST", "/api/waiting-room/sessions", Some(&body));
            // The key that lets `joined_sessions` find these sessions again.
            event["headers"]["idempotency-key"] = json!(format!("join-fan-{n}"));
            event
        })
        .collect();
    let mut rows = Vec::new();
    let join_peak = functions::peak_rss(&launch("join")?, "join", joins).await?;
    rows.push(vec!["join".to_owned(), mib(join_peak)]);

    // Sessions for the other functions: join them again through the library
    // (same table), as the join function did.
    let sessions = joined_sessions(&event_id, count).await?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk_config().await),
        JoinSettings::from_env(&process_env())?.table,
    );
    let mut arrivals = Vec::new();
    let mut images = Vec::new();
    for id in &sessions {
        if let Some(session) = store.get_session(id).await? {
            arrivals.push(json!(Arrival {
                session_id: id.to_string(),
                event_id: session.event_id.to_string(),
                shard: session.shard,
                joined_at: session.joined_at.as_millis(),
            }));
            images.push(session_image(id).await?);
        }
    }
    let path = |id: &SessionId, suffix: &str| format!("/api/waiting-room/sessions/{id}{suffix}");
    let per_function: Vec<(&str, Vec<Value>)> =
        vec![
        (
            "status",
            sessions
                .iter()
                .map(|id| functions::http_event("GET", &path(id, ""), None))
                .collect(),
        ),
        (
            "session-command",
            sessions
                .iter()
                .map(|id| functions::http_event("POST", &path(id, ":heartbeat"), None))
                .collect(),
        ),
        (
            "not-found",
            (0..count)
                .map(|_| functions::http_event("GET", "/api/waiting-room/nope", None))
                .collect(),
        ),
        (
            "jwks",
            (0..count)
                .map(|_| functions::http_event("GET", "/.well-known/jwks.json", None))
                .collect(),
        ),
        (
            "granter",
            arrivals
                .iter()
                .enumerate()
                .map(|(n, t)| {
                    functions::sqs_event(
                        t,
                        n,
                        "arn:aws:sqs:us-east-1:000000000000:bench-join.fifo",
                        Some("bench"),
                    )
                })
                .collect(),
        ),
        (
            "sweeper",
            (0..count.min(SWEEPS)).map(|_| functions::scheduled_event()).collect(),
        ),
        (
            "checkout-outcomes",
            sessions
                .iter()
                .enumerate()
                .map(|(n, id)| {
                    let outcome = json!({"type": "CHECKOUT_FAILED", "session_id": id.to_string(),
                        "event_id": event_id, "user_id": format!("fan-{n}"), "reason": "bench"});
                    functions::sqs_event(
                        &outcome,
                        n,
                        "arn:aws:sqs:us-east-1:000000000000:bench-outcomes",
                        None,
                    )
                })
                .collect(),
        ),
        (
            "publisher",
            images
                .iter()
                .enumerate()
                .map(|(n, image)| functions::stream_event(image, n))
                .collect(),
        ),
        (
            "authorizer",
            (0..count)
                .map(|n| functions::authorizer_event(&format!("not-a-token-{n}")))
                .collect(),
        ),
    ];
    for (name, events) in per_function {
        let peak = functions::peak_rss(&launch(name)?, name, events).await?;
        rows.push(vec![name.to_owned(), mib(peak)]);
    }
    rows.sort();
    let status_events: Vec<Value> = sessions
        .iter()
        .map(|id| {
            let mut event = functions::http_event("GET", &path(id, ""), None);
            event["pathParameters"] = json!({"id": id.to_string()});
            event
        })
        .collect();
    let python_peak = functions::peak_rss(python, "python-baseline", status_events).await?;
    rows.push(vec![
        "Python 3.11 + boto3 (a status-like handler)".into(),
        mib(python_peak),
    ]);
    let _ = writeln!(out, "## 2. Peak memory over {count} events (VmHWM)\n");
    let _ = writeln!(
        out,
        "Each function answers {count} real events against the local stack (joins, polls and heartbeats of {count} sessions, their join messages, outcomes and stream records, refused tokens); the sweeper answers {} scheduled sweeps, each a full sweep and a reconciliation of every event the local table lists. Target: ≤ 20 MB.\n",
        count.min(SWEEPS)
    );
    let _ = writeln!(out, "{}", table(&["function", "peak RSS"], &rows));
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

/// The sessions the join function created for `fan-0..count`, found again
/// through a join of the same users with the same keys (same sessions).
async fn joined_sessions(event: &str, count: usize) -> Result<Vec<SessionId>, BoxError> {
    let join = waiting_room::setup::wiring::join_service().await?;
    let event = waiting_room::domain::EventId::parse(event)?;
    let mut sessions = Vec::with_capacity(count);
    for n in 0..count {
        let user = waiting_room::domain::UserId::parse(&format!("fan-{n}"))?;
        let key = waiting_room::domain::IdempotencyKey::parse(&format!("join-fan-{n}"))?;
        sessions.push(
            join.join(event.clone(), user, Some(key))
                .await?
                .session()
                .id
                .clone(),
        );
    }
    Ok(sessions)
}

/// A session item as the table stream shows it (typed JSON).
async fn session_image(id: &SessionId) -> Result<Value, BoxError> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let table = JoinSettings::from_env(&process_env())?.table;
    let client = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let item = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(format!("SESSION#{id}")))
        .send()
        .await?
        .item
        .ok_or("session item missing")?;
    let typed: serde_json::Map<String, Value> = item
        .into_iter()
        .filter_map(|(name, value)| {
            let typed = match value {
                AttributeValue::S(s) => json!({"S": s}),
                AttributeValue::N(n) => json!({"N": n}),
                _ => return None,
            };
            Some((name, typed))
        })
        .collect();
    Ok(Value::Object(typed))
}
