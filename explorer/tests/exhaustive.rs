//! The exhaustive model check of the admission protocol (`explorer::model`):
//! every interleaving and crash point of a small configuration keeps every
//! promise, and each switch that puts a known bug back is caught.

use explorer::model::{
    self, CAPACITY, COUNTERS, Config, Faults, HINT_COVERS, IndexLag, LIVENESS, ORDER,
};

/// The configuration `make test` checks exhaustively: two users, one slot
/// that an operator may raise to two, two granters that may crash, the
/// reconciler, unbounded index lag. (`EXHAUSTIVE_USERS=3` checks three; the
/// explorer's `--model-users 3` records the larger runs.)
fn small() -> Config {
    let users = std::env::var("EXHAUSTIVE_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    Config {
        users,
        ..Config::default()
    }
}

/// Unbounded index lag: a granter woken by a freed slot may not see a user
/// who joined long before, so filling that slot can be left to the next
/// reconciliation (the hint stays armed for it: `HINT_COVERS`). Everything
/// else holds in every interleaving.
#[test]
fn every_interleaving_of_a_small_sale_keeps_the_safety_promises() {
    let report = model::check(&small());
    println!("{report}");
    assert!(report.complete, "the check stopped early:\n{report}");
    let failures: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|p| *p != LIVENESS)
        .collect();
    assert!(failures.is_empty(), "failed: {failures:?}\n{report}");
    for property in [CAPACITY, COUNTERS, ORDER, HINT_COVERS] {
        assert!(report.holds(property), "{property} not judged:\n{report}");
    }
}

/// The index catching up faster than the stream delivers (as DynamoDB's
/// does in practice): then no reconciliation is needed, nobody is left
/// waiting beside a free slot once the wake-ups are done.
#[test]
fn with_the_index_ahead_of_the_stream_nobody_is_stranded() {
    let config = Config {
        lag: IndexLag::ShorterThanStream,
        ..small()
    };
    let report = model::check(&config);
    println!("{report}");
    assert!(report.complete, "the check stopped early:\n{report}");
    assert!(
        report.failures().is_empty(),
        "failed: {:?}\n{report}",
        report.failures()
    );
    for property in [CAPACITY, COUNTERS, ORDER, LIVENESS, HINT_COVERS] {
        assert!(report.holds(property), "{property} not judged:\n{report}");
    }
}

/// Each known bug, put back, is found (breadth first: a shortest path).
#[test]
fn each_known_bug_put_back_is_found() {
    let cases: [(&str, Faults, &str); 6] = [
        (
            "the admitting write clears the hint (the first design)",
            Faults {
                granter_clears_hint: true,
                ..Faults::default()
            },
            HINT_COVERS,
        ),
        (
            "the write does not check capacity and admissions",
            Faults {
                no_capacity_condition: true,
                ..Faults::default()
            },
            CAPACITY,
        ),
        (
            "the reconciler clears without waiting out the index lag",
            Faults {
                clear_ignores_lag: true,
                ..Faults::default()
            },
            HINT_COVERS,
        ),
        (
            "the plan takes the latest first",
            Faults {
                unordered_plan: true,
                ..Faults::default()
            },
            ORDER,
        ),
        (
            "the write does not check the admitted still wait",
            Faults {
                no_waiting_condition: true,
                ..Faults::default()
            },
            COUNTERS,
        ),
        (
            // A fan the lagging index does not show yet is known only from
            // the wake-up: a plan that ignores them can leave them waiting
            // with the hint down.
            "the plan ignores the user the wake-up names",
            Faults {
                granter_ignores_known: true,
                ..Faults::default()
            },
            HINT_COVERS,
        ),
    ];
    for (name, faults, property) in cases {
        let config = Config { faults, ..small() };
        found(name, &config, property);
    }
}

/// An arm without the proof that no exit happened since the read can land
/// after an exit that woke nobody: with the index ahead of the stream, where
/// nobody is ever stranded otherwise, someone then waits beside a free slot.
#[test]
fn an_arm_without_its_proof_is_found() {
    let config = Config {
        lag: IndexLag::ShorterThanStream,
        faults: Faults {
            no_arm_proof: true,
            ..Faults::default()
        },
        ..small()
    };
    found("the arm without the proof of no exit", &config, LIVENESS);
}

/// Breadth first, so the path printed is a shortest one.
fn found(name: &str, config: &Config, property: &'static str) {
    let report = model::find_counterexample(config, property);
    let path = report.counterexample(property);
    assert!(path.is_some(), "{name}: {property} not violated\n{report}");
    println!(
        "{name}: {property} violated after {} steps",
        path.map_or(0, <[String]>::len)
    );
}
