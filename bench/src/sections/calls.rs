//! AWS calls per admitted user and what they cost, from the end-to-end
//! run against the emulator.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cost::{
    INDEX_WRITE_UNITS_PER_ADMITTED_USER, Usage, billed_gb_seconds, polls_while_waiting,
};
use crate::counting::{CallLedger, Calls, Tally, component};
use crate::e2e::{self, BoxError, GRANT, JOIN, LEAVE, POLL, PUBLISH, STREAM_READS};
use crate::prices::LAMBDA_MEMORY_GB;
use crate::report::table;
use waiting_room::setup::config::process_env;

pub async fn calls_and_cost(out: &mut String, users: usize, capacity: u32) -> Result<(), BoxError> {
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
