//! A long exploration, for the record: `make explore` (or `cargo run
//! --release -p explorer -- --schedules 1000000`) runs that many schedules
//! in chunks, reports progress, and writes what it found to a results file
//! with the command and the machine, as the benchmarks do.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::model;
use crate::schedule::{Summary, Switch, explore};

/// What to run.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The first seed.
    pub first: u64,
    pub schedules: u64,
    /// Schedules between two progress lines.
    pub chunk: u64,
    pub threads: usize,
    /// Users of the exhaustive model check to record as well (0: none).
    pub model_users: u8,
}

/// What it came to.
#[derive(Debug)]
pub struct Record {
    pub campaign: Campaign,
    pub summary: Summary,
    pub elapsed: Duration,
    pub models: Vec<model::Report>,
}

impl Campaign {
    /// Runs the campaign; `progress` sees the record so far after every
    /// chunk (so a run stopped early still leaves its results).
    pub fn run(&self, mut progress: impl FnMut(&Record)) -> Record {
        let started = Instant::now();
        let mut summary = Summary::default();
        let mut next = self.first;
        let end = self.first + self.schedules;
        while next < end {
            let count = self.chunk.max(1).min(end - next);
            let part = explore(next, count, Switch::None, self.threads, 5);
            summary.merge(part, 5);
            next += count;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "[explore] {} of {} schedules, {} failed, {:.0} s ({:.1} schedules/s)",
                summary.schedules,
                self.schedules,
                summary.failed,
                secs,
                summary.schedules as f64 / secs.max(1e-9)
            );
            summary.failures.sort_by_key(|o| o.scenario.seed);
            let record = Record {
                campaign: self.clone(),
                summary,
                elapsed: started.elapsed(),
                models: Vec::new(),
            };
            progress(&record);
            summary = record.summary;
        }
        let mut models = Vec::new();
        if self.model_users > 0 {
            for lag in [
                model::IndexLag::Unbounded,
                model::IndexLag::ShorterThanStream,
            ] {
                let config = model::Config {
                    users: self.model_users,
                    lag,
                    ..model::Config::default()
                };
                eprintln!("[explore] exhaustive model check: {config}");
                models.push(model::check(&config));
            }
        }
        Record {
            campaign: self.clone(),
            summary,
            elapsed: started.elapsed(),
            models,
        }
    }
}

impl Record {
    /// The results file: command, machine, counts, and each failure's seed
    /// and report (a failure is a bug: fix it, keep the seed).
    pub fn markdown(&self, command: &str, date: &str, machine: &str) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(out, "# Schedule explorer: a long run\n");
        let _ = writeln!(out, "- Command: `{command}`");
        let _ = writeln!(out, "- Date: {date}");
        let _ = writeln!(out, "- Machine: {machine}");
        let _ = writeln!(
            out,
            "- Seeds {} to {}, {} threads, release build\n",
            self.campaign.first,
            self.campaign.first + s.schedules.saturating_sub(1),
            self.campaign.threads
        );
        let _ = writeln!(out, "| | |\n| --- | --- |");
        let _ = writeln!(
            out,
            "| schedules | {} of the {} asked for{} |",
            s.schedules,
            self.campaign.schedules,
            if s.schedules < self.campaign.schedules {
                " (still running, or stopped early)"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "| schedules that broke a promise | {} |", s.failed);
        let _ = writeln!(out, "| admissions checked | {} |", s.admissions);
        let _ = writeln!(
            out,
            "| longest wait beside a free slot once quiet | {:.1} s |",
            s.longest_strand.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| time | {:.0} s ({:.1} schedules/s) |",
            self.elapsed.as_secs_f64(),
            s.schedules as f64 / self.elapsed.as_secs_f64().max(1e-9)
        );
        if !s.by_invariant.is_empty() {
            let _ = writeln!(out, "\n## Broken promises\n");
            for (invariant, count) in &s.by_invariant {
                let first = s.first_seed.get(invariant).copied().unwrap_or_default();
                let _ = writeln!(out, "- {invariant}: {count} schedules, first seed {first}");
            }
            for failure in &s.failures {
                let _ = writeln!(out, "\n```\n{}```", failure.report(60));
            }
        }
        for report in &self.models {
            let _ = writeln!(out, "\n## Exhaustive model check\n\n```\n{report}```");
        }
        out
    }
}
