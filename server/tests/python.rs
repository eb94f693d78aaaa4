//! Python clients against a started server: psycopg 3 (parameters, COPY), SQLAlchemy 2
//! (connect, reflect a table) and pandas (`read_sql`) over the Postgres wire protocol; InfluxDB's
//! own clients (`influxdb-client` for the v2 API, `influxdb` for v1) over the HTTP listener;
//! ADBC's Flight SQL driver over the Flight SQL listener; the HTTP query API; and the web
//! console in headless Chromium, driven by Selenium.
//! `scripts/setup` installs them into a venv; `ISOBAR_PYTHON` names its interpreter.

mod common;

use common::Server;

/// Runs `tests/python/<script>` with `args` in the venv of the newest clients; fails with its
/// output unless it succeeds.
fn run_script(script: &str, args: &[String]) {
    let python = std::env::var("ISOBAR_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/isobar/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    run_script_with(&python, script, args);
}

/// Runs `tests/python/<script>` with `args` under `python`.
fn run_script_with(python: &str, script: &str, args: &[String]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {python} (./scripts/setup installs it): {e}"));
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The Parquet lake read by DuckDB: 1.2 M rows copied in, and the two closed days' per-sensor
/// count, sum, min and max from `read_parquet(..., hive_partitioning=1)` equal isobar's.
#[test]
fn duckdb_reads_the_lake_as_isobar_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let extra = format!(
        "[storage]\npersist_interval_ms = 100\nlake_tables = [\"weather\"]\n[storage.cold]\ndir = {:?}\n",
        store.display().to_string()
    );
    let server = Server::start_top(&dir.path().join("data"), &extra);
    run_script("lake_duckdb.py", &[server.pg_port.to_string(), store.join("lake").display().to_string()]);
}

/// The newest psycopg (3.3), SQLAlchemy (2.1) and pandas: queries, COPY, `inspect()` and
/// `read_sql`.
#[test]
fn psycopg_sqlalchemy_and_pandas_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    run_script("clients.py", &[server.pg_port.to_string()]);
}

/// The same with the older line many users are still on: psycopg 3.2, SQLAlchemy 2.0, pandas 2
/// (`scripts/setup`'s second venv; `ISOBAR_LEGACY_PYTHON` names another interpreter).
#[test]
fn psycopg_sqlalchemy_and_pandas_older_line_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let python = std::env::var("ISOBAR_LEGACY_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/isobar/venv-legacy/bin/python", std::env::var("HOME").unwrap_or_default()));
    run_script_with(&python, "clients.py", &[server.pg_port.to_string()]);
}

#[test]
fn influxdb_clients_write_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config_with_http_user(&data);
    let server = Server::start_config(&data, &config);
    let args = [server.http_port.to_string(), server.pg_port.to_string(), "telegraf".to_owned(), "s3cret".to_owned()];
    run_script("influx_clients.py", &args);
}

/// Random writes, `ALTER TABLE`, `TRUNCATE`, `DELETE` and `DROP TABLE` against isobar and DuckDB: the same
/// rows after each step, and isobar's final rollup windows equal to DuckDB's `GROUP BY`. The
/// server persists every 100 ms, so steps meet rows in chunks as well as in the buffer.
/// `ISOBAR_DIFFERENTIAL_STEPS` sets the steps (default 150); the seed is printed on a failure.
#[test]
fn table_changes_match_duckdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_top(&dir.path().join("data"), "[storage]\npersist_interval_ms = 100\n");
    let steps = std::env::var("ISOBAR_DIFFERENTIAL_STEPS").unwrap_or_else(|_| "150".into());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() % 100_000);
    run_script("differential.py", &[server.pg_port.to_string(), seed.to_string(), steps]);
}

/// The same across kills: three runs of 60 steps, the server killed with SIGKILL after each and
/// started again on its data, and each run first checks that isobar still holds every row and
/// final window DuckDB holds (DuckDB's file carries the model from run to run).
#[test]
fn table_changes_match_duckdb_across_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let duck = dir.path().join("model.duckdb").display().to_string();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() % 100_000);
    for run in 0..3 {
        let mut server = Server::start_top(&data, "[storage]\npersist_interval_ms = 100\n");
        run_script("differential.py", &[server.pg_port.to_string(), (seed + run).to_string(), "60".into(), duck.clone()]);
        assert_eq!(server.signal("KILL"), None, "killed by the signal");
    }
    let server = Server::start_top(&data, "[storage]\npersist_interval_ms = 100\n");
    run_script("differential.py", &[server.pg_port.to_string(), seed.to_string(), "0".into(), duck]);
}

/// The user the scripts' servers with users have.
const USERS: &str = "users = [{ name = \"analyst\", password = \"s3cret\" }]";

/// Runs `script` against a fresh server, given the port `port` picks and, `with_users`, the
/// user and password of [`USERS`].
fn run_against_server(script: &str, port: fn(&Server) -> u16, with_users: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("data"), if with_users { USERS } else { "" });
    let mut args = vec![port(&server).to_string()];
    if with_users {
        args.extend(["analyst".to_owned(), "s3cret".to_owned()]);
    }
    run_script(script, &args);
}

/// ADBC's Flight SQL driver on a server that trusts loopback clients: queries with and without
/// parameters to Arrow and pandas, catalog calls, INSERT, and a 1 M-row `adbc_ingest`.
#[test]
fn adbc_flight_sql_without_users() {
    run_against_server("flight_adbc.py", |s| s.flight_port, false);
}

/// The same with users: no credentials and wrong ones are refused, the right ones get a token.
#[test]
fn adbc_flight_sql_with_users() {
    run_against_server("flight_adbc.py", |s| s.flight_port, true);
}

/// The HTTP query API on a server that trusts loopback clients: JSON, CSV and Arrow answers,
/// parameters, errors with their SQLSTATE, and a login session that keeps its settings.
#[test]
fn http_query_api_without_users() {
    run_against_server("http_query.py", |s| s.http_port, false);
}

/// The same with users: no credentials and a wrong password are refused; Basic credentials and
/// a login's cookie are taken, and a logout ends the session.
#[test]
fn http_query_api_with_users() {
    run_against_server("http_query.py", |s| s.http_port, true);
}

/// The web console in headless Chromium over a simulated fleet, on a server that trusts
/// loopback clients: the fleet view, the SQL editor's rows and chart, and an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_without_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, Server::SEED_RULE, ""));
    server.simulate_fleet(&server.client().await, 2, 3, 4).await;
    run_script("console_browser.py", &[server.http_port.to_string(), server.pg_port.to_string()]);
}

/// `isobar demo` (what `./scripts/run` starts): the console shows the simulated fleet (its
/// table with rows in the last minute, and a band chart) within 90 seconds of the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_fleet_is_in_the_console_within_90_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let started = std::time::Instant::now();
    let server = Server::start_command("demo", &data, &Server::config(&data, "", ""));
    let left_s = 90.0 - started.elapsed().as_secs_f64();
    run_script("console_browser.py", &[server.http_port.to_string(), server.pg_port.to_string(), "--demo".into(), format!("{left_s:.1}")]);
}

/// The same with users: the console asks for a login and refuses a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_with_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, Server::SEED_RULE, USERS));
    server.simulate_fleet(&common::connect_as(server.pg_port, "analyst", "s3cret").await, 2, 3, 4).await;
    let args = [server.http_port.to_string(), server.pg_port.to_string(), "analyst".into(), "s3cret".into()];
    run_script("console_browser.py", &args);
}
