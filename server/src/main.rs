//! The `isobar` binary.
//!
//! - `isobar serve [--config FILE]` runs the server: storage, the Postgres wire protocol
//!   listener (127.0.0.1:5433) and HTTP (`/health`, `/metrics` on 127.0.0.1:8086), all on
//!   embedded defaults unless the TOML file says otherwise (`docs/configuration.md`).
//! - `isobar demo [--config FILE]` is `serve` with the seed fleet's rule and a simulated fleet
//!   of 100 sensors publishing to the MQTT listener, and prints how to look at it with psql.
//! - `isobar simulate --broker mqtt://HOST:PORT --stations N --sensors M --rate HZ ...` publishes
//!   a simulated fleet over MQTT (`simulate.rs`).

mod auth;
mod config;
mod copy;
mod error;
mod http;
mod logging;
mod metrics;
mod pg;
mod pg_direct;
mod pg_functions;
mod pg_params;
mod serve;
mod simulate;
mod tls;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use isobar_ingest::simulator::seed_rule;

fn serve_command(args: &[String], demo: bool) -> Result<()> {
    let config_path = match args {
        [] => None,
        [flag, path] if flag == "--config" => Some(PathBuf::from(path)),
        _ => bail!("usage: isobar {} [--config FILE]", if demo { "demo" } else { "serve" }),
    };
    let mut config = config::Config::load(config_path.as_deref())?;
    let demo = demo.then(|| {
        if !config.rules.iter().any(|r| r.table == "weather") {
            config.rules.push(seed_rule());
        }
        serve::Demo { stations: 20, sensors_per_station: 5, rate_hz: 1.0 }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the async runtime")?;
    runtime.block_on(serve::serve(config, demo))?;
    Ok(())
}

fn main() -> Result<()> {
    logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = &args[args.len().min(1)..];
    match args.first().map(String::as_str) {
        Some("serve") | None => serve_command(rest, false),
        Some("demo") => serve_command(rest, true),
        Some("simulate") => simulate::command(rest),
        Some(other) => bail!("unknown command {other}; try `isobar serve`, `isobar demo` or `isobar simulate`"),
    }
}
