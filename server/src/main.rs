//! The `isobar` binary.
//!
//! - `isobar serve [--config FILE]` runs the server: storage, the Postgres wire protocol
//!   listener (127.0.0.1:5433), MQTT (127.0.0.1:1883) and HTTP (`/health`, `/metrics` on
//!   127.0.0.1:8086), all on embedded defaults unless the TOML file says otherwise
//!   (`docs/configuration.md`). `isobar` alone does the same.
//! - `isobar demo [--config FILE]` is `serve` with the seed fleet's rule and a simulated fleet
//!   of 100 sensors publishing to the MQTT listener, and prints how to look at it with psql.
//! - `isobar simulate --broker mqtt://HOST:PORT --stations N --sensors M --rate HZ ...` publishes
//!   a simulated fleet over MQTT (`simulate.rs`).
//! - `isobar verify [--config FILE]` checks a stopped server's data folder (`verify.rs`).
//!
//! A user's mistake (an unknown command, a bad flag, a bad configuration file) is one line on
//! stderr and exit code 2; a failure while running is one line and exit code 1.

mod alerts;
mod auth;
mod config;
mod copy;
mod error;
mod flight;
mod http;
mod logging;
mod metrics;
mod pg;
mod pg_compat;
mod pg_cursor;
mod pg_direct;
mod pg_functions;
mod pg_params;
mod pg_rows;
mod pg_session;
mod query_runtime;
mod serve;
mod simulate;
mod status;
mod tls;
mod tokens;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use isobar_ingest::simulator::seed_rule;

/// isobar: a time-series database for sensor fleets, in one binary.
#[derive(Debug, Parser)]
#[command(name = "isobar", version, about, propagate_version = true)]
struct Cli {
    /// The TOML configuration file (docs/configuration.md); without one, embedded defaults.
    #[arg(long, short, global = true, env = "ISOBAR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log line format on stderr; levels come from ISOBAR_LOG (e.g. `info`, `isobar=debug`).
    #[arg(long, global = true, env = "ISOBAR_LOG_FORMAT", value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Run the server with the seed fleet's rule and a simulated fleet of 100 weather sensors.
    Demo,
    /// Publish a simulated weather fleet over MQTT and report the rate and PUBACK times.
    Simulate(simulate::Args),
    /// Check every byte of a stopped server's data folder; exit 1 on damage.
    Verify,
}

/// How a command failed: the user's mistake (exit 2) or a failure while running (exit 1).
enum Failure {
    Usage(String),
    Run(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Run(e)
    }
}

fn load_config(cli: &Cli) -> Result<config::Config, Failure> {
    config::Config::load(cli.config.as_deref()).map_err(|e| Failure::Usage(e.to_string()))
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        None | Some(Command::Serve) => serve_command(load_config(&cli)?, None),
        Some(Command::Demo) => {
            let mut config = load_config(&cli)?;
            if !config.rules.iter().any(|r| r.table == "weather") {
                config.rules.push(seed_rule());
            }
            serve_command(config, Some(serve::Demo { stations: 20, sensors_per_station: 5, rate_hz: 1.0 }))
        }
        Some(Command::Simulate(ref args)) => {
            let options = args.options().map_err(Failure::Usage)?;
            Ok(simulate::command(options, args.timeline)?)
        }
        Some(Command::Verify) => {
            let config = load_config(&cli)?;
            Ok(verify::command(&config)?)
        }
    }
}

fn serve_command(config: config::Config, demo: Option<serve::Demo>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(anyhow::anyhow!("start the async runtime: {e}")))?;
    let queries = query_runtime::build(&config.query).map_err(|e| Failure::Run(anyhow::anyhow!("start the query runtime: {e}")))?;
    let served = runtime.block_on(serve::serve(config, demo, queries.handle().clone()));
    // Connections were drained or aborted by then; what is left is idle threads.
    queries.shutdown_timeout(std::time::Duration::from_secs(1));
    served.map_err(|e| match e {
        error::Error::Config(_) => Failure::Usage(e.to_string()),
        other => Failure::Run(other.into()),
    })
}

/// Rows are allocated by ingest threads and freed by the persist thread; mimalloc's per-thread
/// free lists take that at a fraction of glibc's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process, as Redis and MongoDB do
/// (`docs/benchmarks.md`, "MQTT acknowledgement times"). mimalloc asks for them on its large
/// regions, and the kernel then zeroes 2 MiB at the first touch of each: a commit that grew the
/// write buffer by a few pages held every writer's acknowledgement while megabytes were zeroed.
/// With 4 KiB pages that cost is spread over the writes that need the memory.
#[allow(unsafe_code)]
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of the calling process's memory map; it
    // reads no pointer.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        eprintln!("isobar: transparent huge pages stay on: {}", std::io::Error::last_os_error());
    }
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.to_string();
            let line = rendered.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            eprintln!("isobar: {line} (see isobar --help)");
            return ExitCode::from(2);
        }
    };
    logging::init(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("isobar: {}", one_line(&message));
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("isobar: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// A message on one line: line breaks inside it (from a TOML parser, say) become spaces.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
