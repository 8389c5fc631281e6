//! The on-sale simulator's section of the results file.

use std::fmt::Write as _;

use crate::e2e::BoxError;
use crate::report::table;
use crate::sim::{SimConfig, SimReport};

/// Runs the simulator and writes its section.
pub fn simulated_onsale(out: &mut String, config: SimConfig) -> Result<(), BoxError> {
    eprintln!(
        "simulating {} users at {} joins/s (this takes a while)…",
        config.users, config.joins_per_second
    );
    let report = crate::sim::run(config)?;
    write_simulation(out, &report);
    Ok(())
}

pub fn write_simulation(out: &mut String, report: &SimReport) {
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
