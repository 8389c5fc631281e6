//! `explore`: a long run of the schedule explorer, written to a results
//! file (see explorer/src/campaign.rs).

use std::path::PathBuf;

use clap::Parser;
use explorer::campaign::Campaign;

#[derive(Parser)]
#[command(about = "Runs many explorer schedules and records what they found")]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    schedules: u64,
    #[arg(long, default_value_t = 0)]
    first: u64,
    #[arg(long, default_value_t = 10_000)]
    chunk: u64,
    /// Threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Users of the exhaustive model check to record too (0: none).
    #[arg(long, default_value_t = 0)]
    model_users: u8,
    #[arg(long, default_value = "bench/EXPLORER.md")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let command = format!(
        "cargo run --release -p explorer -- --schedules {} --first {} --model-users {}",
        args.schedules, args.first, args.model_users
    );
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let machine = machine();
    let write = |record: &explorer::campaign::Record| {
        let text = record.markdown(&command, &date, &machine);
        if let Err(err) = std::fs::write(&args.out, &text) {
            eprintln!("[explore] cannot write {}: {err}", args.out.display());
        }
        text
    };
    let record = Campaign {
        first: args.first,
        schedules: args.schedules,
        chunk: args.chunk,
        threads,
        model_users: args.model_users,
    }
    .run(|partial| {
        write(partial);
    });
    print!("{}", write(&record));
    if record.summary.failed > 0 {
        std::process::exit(1);
    }
}

/// CPU model, cores and memory, as the benchmark results give them.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!(
        "{model}, {cores} cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
