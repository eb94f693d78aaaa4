//! The `isobar` command line as users meet it: help and version, one clear line and exit code
//! 2 for their mistakes, `ISOBAR_CONFIG`, JSON logs, and `isobar verify` finding damage.

mod common;

use std::process::{Command, Output};

fn isobar(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_isobar"));
    command.args(args).env_remove("ISOBAR_CONFIG").env_remove("ISOBAR_LOG").env_remove("ISOBAR_LOG_FORMAT");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run isobar")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A user's mistake: exit code 2 and one line on stderr containing `expected`.
fn assert_usage_error(out: &Output, expected: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("isobar: ") && stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn help_and_version_describe_every_command() {
    let help = isobar(&["--help"], &[]);
    assert!(help.status.success());
    let stdout = text(&help.stdout);
    for command in ["serve", "demo", "simulate", "verify", "--config", "ISOBAR_CONFIG"] {
        assert!(stdout.contains(command), "{command} in {stdout}");
    }
    let version = isobar(&["--version"], &[]);
    assert!(version.status.success());
    assert_eq!(text(&version.stdout).trim(), format!("isobar {}", env!("CARGO_PKG_VERSION")));
    let simulate = isobar(&["simulate", "--help"], &[]);
    assert!(text(&simulate.stdout).contains("--time-scale"), "{}", text(&simulate.stdout));
}

#[test]
fn mistakes_are_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_usage_error(&isobar(&["serv"], &[]), "unrecognized subcommand 'serv'");
    assert_usage_error(&isobar(&["serve", "--port", "1"], &[]), "unexpected argument '--port'");
    assert_usage_error(&isobar(&["simulate", "--qos", "3"], &[]), "--qos");
    assert_usage_error(&isobar(&["simulate", "--rate", "0"], &[]), "--rate must be above 0");
    let missing = dir.path().join("missing.toml");
    assert_usage_error(&isobar(&["serve", "--config", &missing.display().to_string()], &[]), "missing.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[postgres]\nlisen = \"127.0.0.1:1\"\n").expect("write");
    let out = isobar(&["serve"], &[("ISOBAR_CONFIG", &bad.display().to_string())]);
    assert_usage_error(&out, "line 2, column 1 (lisen = \"127.0.0.1:1\"): unknown field `lisen`");
    let remote = dir.path().join("remote.toml");
    let data = dir.path().join("data");
    std::fs::write(&remote, format!("data_dir = {:?}\n[postgres]\nlisten = \"0.0.0.0:0\"\n", data.display().to_string())).expect("write");
    assert_usage_error(&isobar(&["serve", "--config", &remote.display().to_string()], &[]), "no postgres.users are configured");
    assert!(!data.exists(), "a configuration refused before anything is opened");
}

#[test]
fn logs_are_json_lines_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", dir.path().join("nothing").display().to_string())).expect("write");
    // A bad ISOBAR_LOG is itself logged as a warning, which is all this run logs.
    let out =
        isobar(&["verify", "--config", &config.display().to_string()], &[("ISOBAR_LOG", "isobar=[bad"), ("ISOBAR_LOG_FORMAT", "json")]);
    assert_eq!(out.status.code(), Some(1), "no data folder to check: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("a JSON log line in {stderr}"));
    let event: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(event["level"], "WARN");
    assert!(event["fields"]["message"].as_str().is_some_and(|m| m.contains("ISOBAR_LOG")), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_damaged_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = common::Server::config(&data, "", "");
    let mut server = common::Server::start_config(&data, &config);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE m (time TIMESTAMPTZ, s TEXT, v DOUBLE PRECISION, PRIMARY KEY (s, time)); \
             INSERT INTO m SELECT to_timestamp(value), 's' || (value % 7), value * 0.5 FROM generate_series(1, 5000)",
        )
        .await
        .expect("rows");
    drop(client);
    assert_eq!(server.signal("TERM"), Some(0), "a clean stop persists the rows into chunks");
    let config = config.display().to_string();
    let clean = isobar(&["verify", "--config", &config], &[]);
    assert!(clean.status.success(), "{}{}", text(&clean.stdout), text(&clean.stderr));
    assert!(text(&clean.stdout).contains("no damage found"), "{}", text(&clean.stdout));

    let chunk = walk(&data.join("chunks")).into_iter().max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).expect("a chunk");
    let mut bytes = std::fs::read(&chunk).expect("read chunk");
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x5a;
    std::fs::write(&chunk, bytes).expect("damage the chunk");
    let damaged = isobar(&["verify", "--config", &config], &[]);
    assert_eq!(damaged.status.code(), Some(1));
    let stdout = text(&damaged.stdout);
    assert!(stdout.contains("damaged:") && stdout.contains(&chunk.display().to_string()), "{stdout}");

    // Damage where start-up looks (the trailer): the server starts with the rest, sets the
    // chunk aside and says so.
    let mut bytes = std::fs::read(&chunk).expect("read chunk");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(&chunk, bytes).expect("damage the trailer");
    let server = common::Server::start_config(&data, std::path::Path::new(&config));
    let health = common::http_get(server.http_port, "/health");
    assert!(health.starts_with("HTTP/1.1 200") && health.contains("quarantined") && health.contains("trailer"), "{health}");
    assert!(common::http_get(server.http_port, "/metrics").contains("isobar_chunks_quarantined 1\n"));
    assert!(!chunk.exists() && data.join("quarantine").exists(), "moved aside");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] })
        .collect()
}
