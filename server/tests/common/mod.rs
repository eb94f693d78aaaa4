//! A real `isobar serve` process on free ports, for end-to-end tests.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

pub(crate) mod faults;
pub(crate) mod kinesis;
pub(crate) mod mosquitto;
pub(crate) mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running server; killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) pg_port: u16,
    pub(crate) http_port: u16,
    pub(crate) mqtt_port: u16,
    pub(crate) flight_port: u16,
    pub(crate) data_dir: PathBuf,
    output: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `isobar serve` with data in `data_dir` and waits until it listens.
    pub(crate) fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, "")
    }

    /// The configuration file for `data_dir`, with `top_extra` lines before the first table
    /// (rules, say) and `postgres_extra` lines in `[postgres]`; every listener on a free port.
    pub(crate) fn config(data_dir: &Path, top_extra: &str, postgres_extra: &str) -> PathBuf {
        let config = data_dir.with_extension("toml");
        let toml = format!(
            "data_dir = {:?}\n{top_extra}\n[postgres]\nlisten = \"127.0.0.1:0\"\n{postgres_extra}\n\
             [mqtt]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[flight]\nlisten = \"127.0.0.1:0\"\n",
            data_dir.display().to_string()
        );
        std::fs::write(&config, toml).expect("write config");
        config
    }

    /// Starts `isobar serve` with extra `[postgres]` settings.
    /// A config whose HTTP listener admits only user `telegraf` with password `s3cret`.
    pub(crate) fn config_with_http_user(data_dir: &Path) -> PathBuf {
        let config = Self::config(data_dir, "", "");
        let toml = std::fs::read_to_string(&config).expect("config");
        let toml = toml.replace("[http]\n", "[http]\nusers = [{ name = \"telegraf\", password = \"s3cret\" }]\n");
        std::fs::write(&config, toml).expect("write config");
        config
    }

    pub(crate) fn start_with(data_dir: &Path, postgres_extra: &str) -> Self {
        Self::start_config(data_dir, &Self::config(data_dir, "", postgres_extra))
    }

    /// Starts `isobar serve` with `top_extra` lines before the first table (`[query]` or
    /// `[storage]` settings, say).
    pub(crate) fn start_top(data_dir: &Path, top_extra: &str) -> Self {
        Self::start_config(data_dir, &Self::config(data_dir, top_extra, ""))
    }

    /// The seed fleet's rule (`../shared/seed/`), for `top_extra`.
    pub(crate) const SEED_RULE: &str = r#"
[[rules]]
name = "weather"
sql = "SELECT topic(6) AS sensor_id, topic(4) AS station_id, topic(5) AS sensor, sensor_timestamp, cast(sensor_value AS double) AS sensor_value, cast(sensor_value_smoothed AS double) AS sensor_value_smoothed, cast(direction AS int) AS direction FROM 'weather/+/+/+/+/+'"
table = "weather"
tags = ["station_id", "sensor", "sensor_id"]
time = "sensor_timestamp"
time_unit = "ms"
"#;

    /// Starts `isobar serve` with `config`.
    pub(crate) fn start_config(data_dir: &Path, config: &Path) -> Self {
        Self::start_command("serve", data_dir, config)
    }

    /// Starts `isobar <command> --config <config>` (`serve` or `demo`).
    pub(crate) fn start_command(command: &str, data_dir: &Path, config: &Path) -> Self {
        Self::start_env(command, data_dir, config, &[])
    }

    /// Starts `isobar <command> --config <config>` with extra environment variables.
    pub(crate) fn start_env(command: &str, data_dir: &Path, config: &Path, env: &[(String, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_isobar"))
            .args([command, "--config"])
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start isobar");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let port = |line: &str| line.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("port");
        let (mut pg_port, mut http_port, mut mqtt_port, mut flight_port) = (None, None, None, None);
        while pg_port.is_none() || http_port.is_none() || mqtt_port.is_none() || flight_port.is_none() {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("isobar prints its ports");
            if line.starts_with("isobar postgres listening on") {
                pg_port = Some(port(&line));
            } else if line.starts_with("isobar http listening on") {
                http_port = Some(port(&line));
            } else if line.starts_with("isobar mqtt listening on") {
                mqtt_port = Some(port(&line));
            } else if line.starts_with("isobar flight sql listening on") {
                flight_port = Some(port(&line));
            }
        }
        Self {
            child,
            pg_port: pg_port.unwrap_or_default(),
            http_port: http_port.unwrap_or_default(),
            mqtt_port: mqtt_port.unwrap_or_default(),
            flight_port: flight_port.unwrap_or_default(),
            data_dir: data_dir.to_owned(),
            output: rx,
        }
    }

    /// A tokio-postgres client, with its connection driven on the current runtime.
    pub(crate) async fn client(&self) -> tokio_postgres::Client {
        connect(self.pg_port).await
    }

    /// Publishes `minutes` of the seed fleet (`stations` × `sensors`, 1 Hz) with `isobar
    /// simulate`, 60 times faster than real time, and waits until at least `stations` ×
    /// `sensors` × (`minutes` - 1) rollup windows are final, asking through `client`. The
    /// server runs the seed's rule.
    pub(crate) async fn simulate_fleet(&self, client: &tokio_postgres::Client, stations: u32, sensors: u32, minutes: u32) {
        let status = Command::new(env!("CARGO_BIN_EXE_isobar"))
            .args(["simulate", "--broker", &format!("mqtt://127.0.0.1:{}", self.mqtt_port)])
            .args(["--stations", &stations.to_string(), "--sensors", &sensors.to_string(), "--rate", "1", "--time-scale", "60"])
            .args(["--duration", &(minutes * 60).to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("isobar simulate");
        assert!(status.success(), "isobar simulate");
        let want = i64::from(stations * sensors * (minutes - 1));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let finals: i64 = client.query_one("SELECT count(*) FROM weather_1m WHERE final", &[]).await.expect("finals").get(0);
            if finals >= want {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{want} final rollup windows; {finals} so far");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Sends a signal and waits for the process to exit; returns its exit code.
    pub(crate) fn signal(&mut self, signal: &str) -> Option<i32> {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        self.child.wait().expect("wait").code()
    }

    /// Lines the server printed since the last call.
    pub(crate) fn output(&self) -> Vec<String> {
        self.output.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tokio-postgres client of the server listening on `pg_port`, with its connection driven
/// on the current runtime.
pub(crate) async fn connect(pg_port: u16) -> tokio_postgres::Client {
    connect_url(&format!("host=127.0.0.1 port={pg_port} user=isobar dbname=isobar")).await
}

/// A client of `user` with `password`.
pub(crate) async fn connect_as(pg_port: u16, user: &str, password: &str) -> tokio_postgres::Client {
    connect_url(&format!("host=127.0.0.1 port={pg_port} user={user} password='{password}' dbname=isobar")).await
}

async fn connect_url(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// The body and headers of `GET path` from the server's HTTP listener.
pub(crate) fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}

/// An HTTP answer: its status, its head, and its body (chunked transfer decoded).
pub(crate) struct HttpAnswer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

/// `POST path` with `body` of `content_type` (and `extra` header lines, each ending in
/// `\r\n`) to the server's HTTP listener.
pub(crate) fn http_post(port: u16, path: &str, content_type: &str, extra: &str, body: &[u8]) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body)).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an answer head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let mut rest = &raw[split + 4..];
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("a chunk size");
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16).expect("a hex chunk size");
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    HttpAnswer { status, head, body }
}

/// Name, nice value and CPU ticks (user + system) of each thread of process `pid`.
pub(crate) fn threads_of(pid: u32) -> Vec<(String, i64, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("read the server's threads");
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // `tid (name) state ...`: the name may hold spaces, the fields after it do not.
            let (head, rest) = stat.rsplit_once(") ")?;
            let name = head.split_once(" (")?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // Fields 14, 15 and 19 of proc(5), counted from `state`, field 3.
            let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some((name, fields.get(16)?.parse().ok()?, ticks))
        })
        .collect()
}
