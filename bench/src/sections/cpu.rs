//! Handler CPU: the Criterion medians of the hot paths, read from
//! `target/criterion`.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::report::{criterion_median_ns, table};

pub fn handler_cpu(out: &mut String) {
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
