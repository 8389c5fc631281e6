//! `bench report` runs every measurement and writes the results file;
//! `bench sim` runs the on-sale simulator alone. `make bench` provisions the
//! local stack, builds in release mode and calls `bench report`.

use std::fmt::Write as _;
use std::path::PathBuf;

use bench::e2e::BoxError;
use bench::functions::Launch;
use bench::report::machine;
use bench::sections::calls::calls_and_cost;
use bench::sections::cpu::handler_cpu;
use bench::sections::footprint::{cold_starts, peak_memory};
use bench::sections::simulation::{simulated_onsale, write_simulation};
use bench::sim::{SimConfig, SimReport};
use clap::{Parser, Subcommand};

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
    /// What the join puzzle costs a solver in native code (a bot farm's
    /// core): solves `--solves` puzzles of `--difficulty` bits, prints the
    /// hash rate and the mean time per solve as JSON.
    Puzzle {
        #[arg(long, default_value_t = 16)]
        difficulty: u8,
        #[arg(long, default_value_t = 200)]
        solves: u64,
    },
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
        Command::Puzzle { difficulty, solves } => {
            let event = waiting_room::domain::EventId::parse("E1")?;
            let started = std::time::Instant::now();
            let mut hashes = 0u64;
            for n in 0..solves {
                let user = waiting_room::domain::UserId::parse(&format!("bot-{n}"))?;
                let solution =
                    waiting_room::domain::puzzle::solve(&event, &user, 1_800_000_000, difficulty);
                hashes += solution.nonce + 1;
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "difficulty": difficulty,
                    "solves": solves,
                    "hashesPerSecond": (hashes as f64 / seconds).round(),
                    "meanSecondsPerSolve": seconds / solves as f64,
                })
            );
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
                // The recorded sale: the defaults of `bench sim`.
                let sale = SimArgs {
                    users: sim_users,
                    rate: 10_000,
                    capacity: 5_000,
                    shards: 40,
                    stay: 90,
                    seed: 7,
                    crash_per_mille: 2,
                    stream_shards: 8,
                    max_index_lag_ms: 2_000,
                };
                simulated_onsale(&mut results, sale.config())?;
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
