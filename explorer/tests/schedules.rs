//! The seeded schedule explorer in the test suite (see explorer/src/schedule
//! and docs/decisions/0018-explorer.md).
//!
//! - `schedules_keep_every_promise`: `EXPLORER_SCHEDULES` schedules (10,000
//!   by default), every promise checked in each; a failure prints its seed,
//!   its set-up and its trace.
//! - one test per promise: a switch that breaks it on purpose must turn the
//!   explorer red, so no check here is one that cannot fail.
//! - `replay` (ignored unless asked for): `EXPLORER_SEED=<seed>` prints that
//!   schedule's whole trace.

use explorer::schedule::{Invariant, Scenario, Switch, explore, run, run_scenario};

fn schedules() -> u64 {
    std::env::var("EXPLORER_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[test]
fn schedules_keep_every_promise() {
    let count = schedules();
    let started = std::time::Instant::now();
    let summary = explore(0, count, Switch::None, threads(), 3);
    println!(
        "{} schedules, {} admissions, longest strand once quiet {:.1} s, {:.1} s",
        summary.schedules,
        summary.admissions,
        summary.longest_strand.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for failure in &summary.failures {
        println!("{}", failure.report(150));
    }
    assert_eq!(summary.schedules, count);
    assert_eq!(
        summary.failed, 0,
        "{} of {} schedules broke a promise: {:?} (first seeds {:?})",
        summary.failed, summary.schedules, summary.by_invariant, summary.first_seed
    );
}

/// Breaking `invariant` on purpose with `switch` must be found within
/// `within` schedules.
fn finds(switch: Switch, invariant: Invariant, within: u64) {
    let summary = explore(0, within, switch, threads(), 1);
    let key = format!("{invariant:?}");
    for (other, seed) in &summary.first_seed {
        if other != &key {
            println!("{switch:?} also broke {other}, first at seed {seed}");
        }
    }
    println!(
        "{switch:?}: {} of {} schedules broke {key} (first seed {:?}); all: {:?}",
        summary.by_invariant.get(&key).copied().unwrap_or(0),
        summary.schedules,
        summary.first_seed.get(&key),
        summary.by_invariant
    );
    assert!(
        summary.by_invariant.contains_key(&key),
        "{switch:?} breaks {key}, and no schedule of {within} noticed"
    );
}

#[test]
fn over_admitting_is_caught() {
    finds(Switch::OverAdmit, Invariant::Capacity, 200);
}

#[test]
fn a_slot_given_back_twice_is_caught() {
    finds(Switch::DoubleRelease, Invariant::Counter, 200);
}

#[test]
fn admitting_twice_is_caught() {
    finds(Switch::AdmitTwice, Invariant::ExactlyOnce, 200);
}

#[test]
fn overtaking_is_caught() {
    finds(Switch::ReverseOrder, Invariant::Fairness, 200);
}

#[test]
fn a_position_going_up_is_caught() {
    finds(Switch::StaleHeads, Invariant::Position, 200);
}

#[test]
fn a_stranded_line_is_caught() {
    finds(Switch::NoWakeOnFreedSlot, Invariant::Liveness, 200);
}

#[test]
fn a_lost_user_is_caught() {
    finds(Switch::DropWaiting, Invariant::NotLost, 200);
}

#[test]
fn a_waiting_user_in_the_dead_letter_queue_is_caught() {
    finds(Switch::GiveBackWhenFull, Invariant::DeadLetter, 200);
}

#[test]
fn one_event_holding_back_another_is_caught() {
    // Every schedule of this switch poisons an event and retries its stream
    // batch for ever, so each is long: a few are enough.
    finds(Switch::StopAtFirstFailure, Invariant::Isolation, 20);
}

#[test]
fn a_lost_event_is_caught() {
    finds(Switch::DropEvents, Invariant::Outbox, 200);
}

#[test]
fn an_admission_while_paused_is_caught() {
    finds(Switch::AdmitWhilePaused, Invariant::Paused, 200);
}

#[test]
fn a_join_taken_after_the_close_is_caught() {
    finds(Switch::IgnoreClose, Invariant::Closed, 200);
}

#[test]
fn an_admission_before_the_draw_settles_is_caught() {
    finds(Switch::AdmitBeforeDraw, Invariant::Opening, 200);
}

#[test]
fn a_revived_stay_is_caught() {
    finds(Switch::ReviveStays, Invariant::Stay, 200);
}

#[test]
fn a_schedule_is_reproducible() {
    let a = run(42, Switch::None);
    let b = run(42, Switch::None);
    assert_eq!(
        a.trace, b.trace,
        "the same seed must give the same schedule"
    );
    assert!(a.admissions > 0, "the schedule did something");
}

/// Seeds the long runs found breaking a promise, kept once fixed.
#[test]
fn seeds_that_once_broke_a_promise_keep_them() {
    // 590873: the stream's advance after a join failed (store unavailable)
    // and was handed to the wake-up group without the join; that bare
    // wake-up found the event full and had nobody to arm the backlog hint
    // for, so the operator's capacity raise was filtered out of the stream
    // and the fan stood 16.5 s beside the new slot (bound 15 s).
    // 704022, 925714: a join batch (or a wake-up) given back after a store
    // failure stayed invisible for the 60 s visibility timeout and held back
    // its message group; the fan behind it had nobody to arm the hint for
    // them, so the next exit was filtered out of the stream and they stood
    // beside a free slot until the reconciliation (24.8 s and 17.1 s). A
    // message given back now returns within seconds.
    // They were found before operators could pause or close: each runs as
    // it was found, and again with the controls its seed now draws.
    const SEEDS: &[u64] = &[590_873, 704_022, 925_714];
    for &seed in SEEDS {
        let as_found = Scenario::from_seed(seed, Switch::None).without_controls();
        let outcome = run_scenario(seed, as_found);
        assert!(outcome.passed(), "seed {seed}: {}", outcome.report(80));
        let outcome = run(seed, Switch::None);
        assert!(
            outcome.passed(),
            "seed {seed} with controls: {}",
            outcome.report(80)
        );
    }
}

/// Seeds found breaking a promise once operators could pause and close.
#[test]
fn seeds_that_once_broke_a_control_keep_it() {
    // 196: a join's read of its event's state lost its answer right after
    // the close, and the join went ahead as if open: a place taken 2.0 s
    // after the close. A join whose state read fails is now refused as
    // unavailable, nothing stored.
    const SEEDS: &[u64] = &[196];
    for &seed in SEEDS {
        let outcome = run(seed, Switch::None);
        assert!(outcome.passed(), "seed {seed}: {}", outcome.report(80));
    }
}

/// A tool, not a check: `EXPLORER_SEED=<seed>` (and
/// `EXPLORER_SWITCH=<switch>`, e.g. `ReverseOrder`) prints that schedule's
/// whole trace, and fails if it broke a promise.
#[test]
#[ignore = "a replay tool: run with EXPLORER_SEED=<seed> and --ignored"]
fn replay() {
    let seed: u64 = std::env::var("EXPLORER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("set EXPLORER_SEED to the seed to replay");
    let switch = std::env::var("EXPLORER_SWITCH")
        .ok()
        .and_then(|name| Switch::parse(&name))
        .unwrap_or(Switch::None);
    let outcome = run(seed, switch);
    println!("{}", outcome.report(usize::MAX));
    assert!(switch != Switch::None || outcome.passed());
}
