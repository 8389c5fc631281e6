//! `bench report` runs every measurement and writes the results file;
//! `bench sim` runs the on-sale simulator alone. `make bench` provisions the
//! local stack, builds in release mode and calls `bench report`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bench::cost::{
    INDEX_WRITE_UNITS_PER_ADMITTED_USER, Usage, billed_gb_seconds, polls_while_waiting,
};
use bench::counting::{CallLedger, Calls, Tally, component};
use bench::e2e::{self, BoxError, GRANT, JOIN, LEAVE, POLL, PUBLISH, STREAM_READS};
use bench::functions::{self, Launch};
use bench::prices::LAMBDA_MEMORY_GB;
use bench::report::{criterion_median_ns, machine, table};
use bench::sim::{SimConfig, SimReport};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use waiting_room::adapters::aws::sdk_config;
use waiting_room::adapters::dynamodb::DynamoStore;
use waiting_room::domain::SessionId;
use waiting_room::ports::{Arrival, SessionStore};
use waiting_room::setup::config::process_env;
use waiting_room::setup::wiring::JoinSettings;

#[derive(Parser)]
#[command(about = "Benchmarks of the waiting room (see bench/RESULTS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything, against the stack in the environment; writes `--out`.
    Report {
        #[arg(long, default_value = "bench/RESULTS.md")]
        out: PathBuf,
        /// Where the release binaries are.
        #[arg(long, default_value = "target/release")]
        binaries: PathBuf,
        /// The Python interpreter with boto3 (the venv's).
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        #[arg(long, default_value_t = 15)]
        cold_start_runs: usize,
        #[arg(long, default_value_t = 1_000)]
        rss_events: usize,
        #[arg(long, default_value_t = 120)]
        users: usize,
        #[arg(long, default_value_t = 12)]
        capacity: u32,
        /// Users in the simulated on-sale (0 skips it). A million take
        /// hours with the current core (the wall time grows with the line).
        #[arg(long, default_value_t = 100_000)]
        sim_users: u64,
        /// A report of `bench sim` to use instead of running the simulator
        /// again (it is deterministic: same seed, same result).
        #[arg(long)]
        sim_report: Option<PathBuf>,
    },
    /// The on-sale simulator alone; prints its report as JSON.
    Sim(SimArgs),
    /// Appends the simulator section to a results file, from a saved
    /// `bench sim` report (the simulator is deterministic).
    AppendSim {
        #[arg(long)]
        sim_report: PathBuf,
        #[arg(long, default_value = "bench/RESULTS.md")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct SimArgs {
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    #[arg(long, default_value_t = 5_000)]
    capacity: u32,
    #[arg(long, default_value_t = 40)]
    shards: u16,
    #[arg(long, default_value_t = 90)]
    stay: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Granter instances that die holding a batch, per thousand batches.
    #[arg(long, default_value_t = 2)]
    crash_per_mille: u32,
    /// Shards of the table's stream (one granter instance follows each).
    #[arg(long, default_value_t = 8)]
    stream_shards: u16,
    /// The largest lag of the line index behind the table, in ms (at most
    /// the design's allowance, 3,000).
    #[arg(long, default_value_t = 2_000)]
    max_index_lag_ms: u64,
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            users: self.users,
            joins_per_second: self.rate,
            capacity: self.capacity,
            line_shards: self.shards,
            seed: self.seed,
            mean_stay_seconds: self.stay,
            granters: usize::from(self.shards).max(2),
            stream_delay_millis: 250,
            stream_shards: self.stream_shards,
            granter_crash_per_mille: self.crash_per_mille,
            max_index_lag_millis: self.max_index_lag_ms,
        }
    }
}

fn main() -> Result<(), BoxError> {
    match Cli::parse().command {
        Command::Sim(args) => {
            // What the services log, on stderr, when RUST_LOG asks for it
            // (times are the machine's, not the simulation's).
            if std::env::var_os("RUST_LOG").is_some() {
                tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                    .with_writer(std::io::stderr)
                    .init();
            }
            let report = bench::sim::run(args.config())?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::AppendSim { sim_report, out } => {
            let report: SimReport = serde_json::from_str(&std::fs::read_to_string(&sim_report)?)?;
            let mut results = std::fs::read_to_string(&out)?;
            write_simulation(&mut results, &report);
            std::fs::write(&out, results)?;
            Ok(())
        }
        Command::Report {
            out,
            binaries,
            python,
            cold_start_runs,
            rss_events,
            users,
            capacity,
            sim_users,
            sim_report,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            let mut results = String::new();
            write_header(&mut results);
            runtime.block_on(async {
                let python = Launch::Python {
                    interpreter: python,
                    script: PathBuf::from("bench/python/handler.py"),
                };
                // The end-to-end run goes first, on the fresh table: the
                // publisher it counts reads the table's stream from its start.
                let mut end_to_end = String::new();
                calls_and_cost(&mut end_to_end, users, capacity).await?;
                cold_starts(&mut results, &binaries, &python, cold_start_runs).await?;
                peak_memory(&mut results, &binaries, &python, rss_events).await?;
                handler_cpu(&mut results);
                results.push_str(&end_to_end);
                Ok::<_, BoxError>(())
            })?;
            if let Some(saved) = sim_report {
                let report: SimReport = serde_json::from_str(&std::fs::read_to_string(&saved)?)?;
                write_simulation(&mut results, &report);
            } else if sim_users > 0 {
                simulated_onsale(&mut results, sim_users)?;
            }
            std::fs::write(&out, results)?;
            eprintln!("wrote {}", out.display());
            Ok(())
        }
    }
}

fn write_header(out: &mut String) {
    let now = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(
        out,
        "- Command: `make bench` (see the README's Performance section)"
    );
    let _ = writeln!(out, "- Date: {now}");
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(
        out,
        "- Stack: release builds, the local emulator (moto, DynamoDB requests serialised) on 127.0.0.1:4566\n"
    );
    let _ = writeln!(
        out,
        "Timings are medians (or the stated percentile) of repeated runs; the emulator's own speed is reported next to ours.\n"
    );
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn cold_starts(
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
async fn peak_memory(
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

fn handler_cpu(out: &mut String) {
    let criterion = PathBuf::from("target/criterion");
    let rows: Vec<Vec<String>> = [
        ("join", "join (claim + session write + queue send)"),
        (
            "status_waiting",
            "status of a waiting user (position, estimate, next poll)",
        ),
        (
            "status_admitted",
            "status of an admitted user (signs the admission token)",
        ),
        (
            "grant_batch_of_10",
            "granter, one batch of 10 join messages (number + admit)",
        ),
    ]
    .iter()
    .map(|(id, what)| {
        let value = criterion_median_ns(&criterion, id).map_or_else(
            || "not run".to_owned(),
            |ns| format!("{:.1} µs", ns / 1000.0),
        );
        vec![(*what).to_owned(), value]
    })
    .collect();
    let _ = writeln!(
        out,
        "## 3. Handler CPU per request (criterion, in-memory adapters)\n"
    );
    let _ = writeln!(
        out,
        "Median time of our code alone (`cargo bench -p bench --bench handlers`): the adapters answer from memory, so this is the CPU a Lambda spends besides waiting on AWS.\n"
    );
    let _ = writeln!(out, "{}", table(&["handler", "median"], &rows));
}

async fn calls_and_cost(out: &mut String, users: usize, capacity: u32) -> Result<(), BoxError> {
    eprintln!("end-to-end run of {users} users (capacity {capacity})…");
    let ledger = CallLedger::default();
    let run = e2e::run(users, capacity, &ledger).await?;
    let (emulator_get, emulator_sqs) = e2e::emulator_latency(200).await?;
    let quiet = e2e::quiet_durations(30).await?;
    let admitted = run.admitted.max(1) as f64;
    let per_user = |name: &str| component(&run.calls, name).calls as f64 / admitted;
    let polls = run.polls.max(1) as f64;
    let poll_calls = component(&run.calls, POLL).calls as f64 / polls;
    let outside_polling = per_user(JOIN) + per_user(GRANT) + per_user(LEAVE);

    let _ = writeln!(out, "## 4. AWS calls per admitted user\n");
    let _ = writeln!(
        out,
        "{users} users join one event of capacity {capacity} through the local stack (join, poll every 2 s, admitted by the granter's queue poller and table-stream wake-ups, stay 0.2–1 s, leave) while the publisher turns changes into events. Every SDK call is counted by an interceptor on the clients. Target: ≤ 3.5 calls per admitted user outside polling.\n"
    );
    let rows = vec![
        vec!["per join".into(), format!("{:.2}", per_user(JOIN))],
        vec![
            "per grant (granter, per admitted user)".into(),
            format!("{:.2}", per_user(GRANT)),
        ],
        vec!["per leave".into(), format!("{:.2}", per_user(LEAVE))],
        vec![
            "**outside polling, per admitted user**".into(),
            format!("**{outside_polling:.2}**"),
        ],
        vec!["per poll (status call)".into(), format!("{poll_calls:.2}")],
        vec![
            "events published (SNS), per admitted user".into(),
            format!("{:.2}", per_user(PUBLISH)),
        ],
        vec![
            format!("{STREAM_READS}, per admitted user"),
            format!("{:.2}", per_user(STREAM_READS)),
        ],
    ];
    let _ = writeln!(out, "{}", table(&["calls", "count"], &rows));
    let _ = writeln!(
        out,
        "Median call times under this load (the emulator serialises DynamoDB requests): join {:.0} ms, poll {:.0} ms, leave {:.0} ms. Outside the local pollers, the queue's ReceiveMessage and DeleteMessageBatch are made by Lambda's event source mapping, not by our code; they are billed all the same, so they are counted here.\n",
        run.join_ms, run.poll_ms, run.leave_ms
    );
    let detail: Vec<Vec<String>> = run
        .calls
        .iter()
        .map(|((who, operation), t)| {
            vec![
                who.clone(),
                operation.clone(),
                t.calls.to_string(),
                format!("{:.1}", t.write_units),
                format!("{:.1}", t.read_units),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "<details><summary>Every call, by component and operation</summary>\n"
    );
    let _ = writeln!(
        out,
        "{}",
        table(&["component", "operation", "calls", "WRU", "RRU"], &detail)
    );
    let _ = writeln!(out, "</details>\n");

    let _ = writeln!(
        out,
        "## 5. Admission latency (slot freed → next user `ACTIVE`)\n"
    );
    let _ = writeln!(
        out,
        "From the `ended_at` of an exit to the `admitted_at` of the admission that took its slot, both stamped by the server. Quiet: one slot and 30 users in line, one exit at a time, with the granter and publisher running as above. Loaded: every slot change of the run above ({} users polling, stays of 0.2–1 s). Target: p99 ≤ 1 s.\n",
        run.users
    );
    let row = |what: &str, l: &e2e::Latency| {
        vec![
            what.to_owned(),
            l.samples.to_string(),
            format!("{:.0} ms", l.p50),
            format!("{:.0} ms", l.p90),
            format!("{:.0} ms", l.p99),
            format!("{:.0} ms", l.max),
        ]
    };
    let rows = [
        row("quiet", &run.quiet_latency),
        row("loaded", &run.loaded_latency),
    ];
    let _ = writeln!(
        out,
        "{}",
        table(&["", "samples", "p50", "p90", "p99", "max"], &rows)
    );
    let _ = writeln!(
        out,
        "The emulator's own speed in the same run: GetItem {emulator_get:.1} ms, an SQS call {emulator_sqs:.1} ms (medians of 200). Locally a freed slot reaches the granter through its table-stream poller (read every 100 ms); in AWS the stream's event source mapping plays that part.\n"
    );
    write_cost(out, &run.calls, quiet, admitted, polls);
    Ok(())
}

fn usage_of(tally: &Tally) -> (f64, f64) {
    (tally.write_units, tally.read_units)
}

/// `quiet`: join, poll and leave durations (ms) measured one at a time.
fn write_cost(out: &mut String, calls: &Calls, quiet: (f64, f64, f64), admitted: f64, polls: f64) {
    let (join_ms, poll_ms, leave_ms) = quiet;
    let sqs_requests: f64 = calls
        .iter()
        .filter(|((c, op), _)| {
            [JOIN, GRANT].contains(&c.as_str())
                && [
                    "SendMessage",
                    "ReceiveMessage",
                    "DeleteMessageBatch",
                    "DeleteMessage",
                ]
                .contains(&op.as_str())
        })
        .map(|(_, t)| t.calls as f64)
        .sum();
    let units = |name: &str| usage_of(&component(calls, name));
    let (join_w, join_r) = units(JOIN);
    let (grant_w, grant_r) = units(GRANT);
    let (leave_w, leave_r) = units(LEAVE);
    let (poll_w, poll_r) = units(POLL);
    // Lambda: join, leave and the granter's share (one invocation per
    // admitted user is an upper bound: batches of up to 10 and stream
    // wake-ups), the publisher's one per user (stream batches); granter and
    // publisher run at 256 MB for an assumed 100 ms each.
    let granter_gb_s = 2.0 * billed_gb_seconds(100.0, 2.0 * LAMBDA_MEMORY_GB);
    let outside = Usage {
        write_units: (join_w + grant_w + leave_w) / admitted + INDEX_WRITE_UNITS_PER_ADMITTED_USER,
        read_units: (join_r + grant_r + leave_r) / admitted,
        sqs_requests: sqs_requests / admitted,
        sns_publishes: component(calls, PUBLISH).calls as f64 / admitted,
        invocations: 4.0,
        gb_seconds: billed_gb_seconds(join_ms, LAMBDA_MEMORY_GB)
            + billed_gb_seconds(leave_ms, LAMBDA_MEMORY_GB)
            + granter_gb_s,
        http_requests: 2.0,
    };
    let per_poll = Usage {
        write_units: poll_w / polls,
        read_units: poll_r / polls,
        invocations: 1.0,
        gb_seconds: billed_gb_seconds(poll_ms, LAMBDA_MEMORY_GB),
        http_requests: 1.0,
        ..Usage::default()
    };
    let abandon = waiting_room::setup::config::LifecycleSettings::from_env(&process_env())
        .ok()
        .and_then(|l| l.abandon_after);
    let mut rows = Vec::new();
    let mut ten_minute_total = 0.0;
    for minutes in [1u64, 10, 30] {
        let poll_count = polls_while_waiting(Duration::from_secs(minutes * 60), 50.0, abandon);
        let all = outside.plus(&per_poll, poll_count as f64);
        let cost = all.cost();
        let million = |dollars: f64| format!("${:.2}", dollars * 1e6);
        if minutes == 10 {
            ten_minute_total = cost.total() * 1e6;
        }
        rows.push(vec![
            format!("{minutes} min"),
            poll_count.to_string(),
            million(cost.dynamodb),
            million(cost.sqs),
            million(cost.sns),
            million(cost.lambda),
            million(cost.api_gateway),
            format!("**{}**", million(cost.total())),
        ]);
    }
    let _ = writeln!(
        out,
        "## 6. Cost per million admitted users (list prices, us-east-1)\n"
    );
    let _ = writeln!(
        out,
        "From the counted calls and billed units above (DynamoDB units per call from the request: 1 WRU per write, 2 per transaction item, 1 RRU per item read or query, plus {INDEX_WRITE_UNITS_PER_ADMITTED_USER} WRU of index maintenance per user), the medians of join ({:.1} ms), poll ({:.1} ms) and leave ({:.1} ms) measured one at a time against the emulator (whose call latency is close to DynamoDB's) as Lambda durations at 128 MB arm64, the granter and publisher at 256 MB for an assumed 100 ms per admitted user each, one HTTP API request per call, and the polls a user makes following the status answer's own `Retry-After` in a line admitting 50 users/s. Prices and their sources: `bench/src/prices.rs` (recorded 2026-11-23). Target: ≤ $25 for a 10-minute average wait.\n",
        join_ms, poll_ms, leave_ms
    );
    let _ = writeln!(
        out,
        "{}",
        table(
            &[
                "average wait",
                "polls",
                "DynamoDB",
                "SQS",
                "SNS",
                "Lambda",
                "HTTP API",
                "total"
            ],
            &rows
        )
    );
    let _ = writeln!(
        out,
        "10-minute wait: **${ten_minute_total:.2} per million admitted users**. Idle (no on-sale) is not quite $0: the sweeper's schedule (43,200 invocations and 16 index queries each a month, about $0.10) and the SQS event source mappings' long polls of the two queues (Lambda keeps polling an empty queue, roughly 0.5–1 M requests a month, $0.30–0.60) come to about a dollar a month. The table, queues and topic have no hourly price; disabling the schedule and the mappings between on-sales would make idle $0.\n"
    );
}

fn simulated_onsale(out: &mut String, users: u64) -> Result<(), BoxError> {
    let args = SimArgs {
        users,
        rate: 10_000,
        capacity: 5_000,
        shards: 40,
        stay: 90,
        seed: 7,
        crash_per_mille: 2,
        stream_shards: 8,
        max_index_lag_ms: 2_000,
    };
    eprintln!("simulating {users} users at 10,000 joins/s (this takes a while)…");
    let report: SimReport = bench::sim::run(args.config())?;
    write_simulation(out, &report);
    Ok(())
}

fn write_simulation(out: &mut String, report: &SimReport) {
    let config = &report.config;
    let _ = writeln!(
        out,
        "## 7. One event at 10,000 joins/s (deterministic simulator)\n"
    );
    let _ = writeln!(
        out,
        "The real join service, granter (join queue and table stream, through the Lambda handlers' own entry points), sweeper and reconciliation against models of DynamoDB (per-partition 1,000 WCU / 3,000 RCU on the event, ticket counter, head and index partitions, 2 units per transaction item, throttling with SDK retries, conditional-write conflicts and transaction conflicts on items in flight, indexes lagging the table by up to {} ms, TTL deleting ended sessions, the table stream filtered and batched as the granter's mapping is, {} shards, {} ms late, failed records delivered again) and SQS FIFO (300 sends/s per message group, one batch in flight per group, 60 s visibility timeout, receive counts and the dead-letter queue), in virtual time from seed {}. {} granter batches in a thousand (join queue or stream) kill their instance before, during or after its writes, always before the batch is deleted. Users stay an exponentially distributed {} s on average, then leave. Command: `cargo run --release -p bench -- sim --users {} --rate {} --capacity {} --shards {} --stay {} --seed {} --crash-per-mille {} --stream-shards {} --max-index-lag-ms {}`. Targets: no join lost, no capacity violation, nobody admitted twice, nobody admitted after someone who joined more than {} s later, Kendall tau-b (place order vs admission order) ≥ 0.99.\n",
        config.max_index_lag_millis,
        config.stream_shards,
        config.stream_delay_millis,
        config.seed,
        config.granter_crash_per_mille,
        config.mean_stay_seconds,
        config.users,
        config.joins_per_second,
        config.capacity,
        config.line_shards,
        config.mean_stay_seconds,
        config.seed,
        config.granter_crash_per_mille,
        config.stream_shards,
        config.max_index_lag_millis,
        waiting_room::domain::line::FAIRNESS_WINDOW.as_secs(),
    );
    let admitted = report.admitted.max(1) as f64;
    let rows = vec![
        vec![
            "users / capacity / line shards / granters / stream shards".into(),
            format!(
                "{} / {} / {} / {} / {}",
                config.users,
                config.capacity,
                config.line_shards,
                config.granters,
                config.stream_shards
            ),
        ],
        vec![
            "joins accepted (retries after an error; refused)".into(),
            format!(
                "{} ({}; {})",
                report.joins_accepted, report.join_retries, report.joins_refused
            ),
        ],
        vec![
            "sustained joins/s".into(),
            format!("{:.0}", report.joins_per_second),
        ],
        vec![
            "admitted (lost)".into(),
            format!("{} ({})", report.admitted, report.lost),
        ],
        vec![
            "admits/s (mean, peak)".into(),
            format!(
                "{:.0}, {}",
                report.admits_per_second, report.peak_admits_per_second
            ),
        ],
        vec![
            "Kendall tau-b, place order vs admission order".into(),
            format!("{:.5}", report.kendall_tau_b),
        ],
        vec![
            "largest overtake (places)".into(),
            report.largest_overtake.to_string(),
        ],
        vec![
            "admissions past the fairness bound (largest lead of someone still waiting)".into(),
            format!(
                "{} ({} ms)",
                report.fairness_violations, report.largest_join_gap_millis
            ),
        ],
        vec![
            "max ACTIVE sessions, counted from admissions and exits (capacity violations)".into(),
            format!("{} ({})", report.max_active, report.capacity_violations),
        ],
        vec![
            "sessions admitted twice".into(),
            report.duplicate_admissions.to_string(),
        ],
        vec![
            "granter instances that died holding a batch".into(),
            report.granter_crashes.to_string(),
        ],
        vec![
            "largest index lag drawn".into(),
            format!("{} ms", report.max_index_lag_millis),
        ],
        vec![
            "DynamoDB / SQS throttles".into(),
            format!("{} / {}", report.dynamodb_throttles, report.sqs_throttles),
        ],
        vec![
            "conditional-write conflicts; transaction conflicts".into(),
            format!("{}; {}", report.conflicts, report.transaction_contention),
        ],
        vec![
            "join batches given back; stream batches retried (records dropped); wake-ups handed to the queue; dead letters".into(),
            format!(
                "{}; {} ({}); {}; {}",
                report.failed_batches,
                report.stream_retries,
                report.stream_records_dropped,
                report.wakes_handed_off,
                report.dead_letters
            ),
        ],
        vec![
            "reconciliations that admitted / armed the hint".into(),
            format!("{} / {}", report.reconcile_admitted, report.reconcile_armed),
        ],
        vec![
            "DynamoDB / SQS calls".into(),
            format!("{} / {}", report.dynamodb_calls, report.sqs_calls),
        ],
        vec![
            "DynamoDB WRU / RRU per admitted user (index maintenance included)".into(),
            format!(
                "{:.1} / {:.1}",
                report.write_units_per_admitted, report.read_units_per_admitted
            ),
        ],
        vec![
            "virtual time / wall time".into(),
            format!(
                "{:.0} s / {:.0} s",
                report.virtual_seconds, report.wall_seconds
            ),
        ],
    ];
    let _ = writeln!(out, "{}", table(&["", ""], &rows));
    if !report.operations.is_empty() {
        let detail: Vec<Vec<String>> = report
            .operations
            .iter()
            .map(|(operation, tally)| {
                vec![
                    operation.clone(),
                    format!("{:.2}", tally.calls as f64 / admitted),
                    format!("{:.2}", tally.write_units / admitted),
                    format!("{:.2}", tally.read_units / admitted),
                    tally.conflicts.to_string(),
                    tally.contention.to_string(),
                ]
            })
            .collect();
        let _ = writeln!(
            out,
            "<details><summary>DynamoDB requests by store operation, per admitted user</summary>\n"
        );
        let _ = writeln!(
            out,
            "{}",
            table(
                &[
                    "operation",
                    "requests",
                    "WRU",
                    "RRU",
                    "condition failed",
                    "transaction conflicts"
                ],
                &detail
            )
        );
        let _ = writeln!(out, "</details>\n");
    }
}
