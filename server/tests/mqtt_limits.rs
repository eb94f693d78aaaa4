//! The MQTT listener's boundaries, seen from a raw client speaking 3.1.1 and 5 byte by byte:
//! access lists per user (with `%u`), isobar's own rollup topics reserved, limits on
//! connections, subscriptions and silent clients, QoS 2 stored once per packet id, U+0000
//! refused, only stored messages retained, and an oversize message from an external broker
//! dead-lettered and acknowledged rather than redelivered forever.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use common::mosquitto::{Mosquitto, free_port};

/// A client that writes packets as bytes and reads what the listener answers.
struct Raw {
    stream: TcpStream,
    level: u8,
}

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n & 0x7f) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u16::try_from(s.len()).expect("short").to_be_bytes());
    out.extend_from_slice(s);
}

impl Raw {
    /// Connects with MQTT `level` (4: 3.1.1, 5) and returns the client and CONNACK's code.
    fn connect(port: u16, level: u8, client_id: &str, user: Option<(&str, &str)>, keep_alive_s: u16) -> (Self, Option<u8>) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut raw = Self { stream, level };
        let mut body = Vec::new();
        string(&mut body, b"MQTT");
        body.push(level);
        body.push(0x02 | if user.is_some() { 0xc0 } else { 0 });
        body.extend_from_slice(&keep_alive_s.to_be_bytes());
        if level == 5 {
            body.push(0);
        }
        string(&mut body, client_id.as_bytes());
        if let Some((name, password)) = user {
            string(&mut body, name.as_bytes());
            string(&mut body, password.as_bytes());
        }
        raw.send(&packet(0x10, &body));
        let code = raw.read().map(|(_, body)| body[1]);
        (raw, code)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn publish(&mut self, qos: u8, topic: &str, payload: &str, pkid: u16, flags: u8) {
        let mut body = Vec::new();
        string(&mut body, topic.as_bytes());
        if qos > 0 {
            body.extend_from_slice(&pkid.to_be_bytes());
        }
        if self.level == 5 {
            body.push(0);
        }
        body.extend_from_slice(payload.as_bytes());
        self.send(&packet(0x30 | (qos << 1) | flags, &body));
    }

    fn subscribe(&mut self, pkid: u16, filters: &[&str]) -> Vec<u8> {
        let mut body = pkid.to_be_bytes().to_vec();
        if self.level == 5 {
            body.push(0);
        }
        for f in filters {
            string(&mut body, f.as_bytes());
            body.push(1);
        }
        self.send(&packet(0x82, &body));
        let (kind, body) = self.read().expect("SUBACK");
        assert_eq!(kind, 9);
        body[2 + usize::from(self.level == 5)..].to_vec()
    }

    /// The next packet's type and body; `None` when the listener closed the connection.
    fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut first = [0u8; 1];
        if self.stream.read_exact(&mut first).is_err() {
            return None;
        }
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b).ok()?;
            len |= usize::from(b[0] & 0x7f) << shift;
            shift += 7;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).ok()?;
        Some((first[0] >> 4, body))
    }

    /// The reason code of the acknowledgement for `pkid` (0 when it has none: success).
    fn ack(&mut self, kind: u8, pkid: u16) -> u8 {
        let (got, body) = self.read().expect("an acknowledgement");
        assert_eq!((got, u16::from_be_bytes([body[0], body[1]])), (kind, pkid));
        body.get(2).copied().unwrap_or(0)
    }
}

fn config(data: &std::path::Path, mqtt: &str, extra: &str) -> std::path::PathBuf {
    let config = Server::config(data, &format!("{}\n{extra}", Server::SEED_RULE), "");
    let toml = std::fs::read_to_string(&config).expect("config").replace("[mqtt]\n", &format!("[mqtt]\n{mqtt}\n"));
    std::fs::write(&config, toml).expect("write config");
    config
}

const READING: &str = r#"{"sensor_timestamp": 1700000000000, "sensor_value": 1, "direction": 1}"#;

fn topic(station: &str) -> String {
    format!("weather/wa/seattle/{station}/temperature/{station}-t")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lists_limit_what_each_user_publishes_and_subscribes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let users = r#"users = [
        { name = "st-7", password = "p7", publish = ["weather/+/+/%u/#"], subscribe = ["rollups/%u/#"] },
        { name = "dash", password = "pd", publish = [] },
    ]"#;
    let emit = "[[emit]]\ntable = \"weather_1m\"\ntopic = \"rollups/{station_id}/{sensor_id}\"\n";
    let server = Server::start_config(&data, &config(&data, users, emit));
    let port = server.mqtt_port;

    let (mut v5, code) = Raw::connect(port, 5, "dev-7", Some(("st-7", "p7")), 30);
    assert_eq!(code, Some(0));
    v5.publish(1, &topic("st-7"), READING, 1, 0);
    assert_eq!(v5.ack(4, 1), 0, "its own station's topic");
    v5.publish(1, &topic("st-8"), READING, 2, 0);
    assert_eq!(v5.ack(4, 2), 0x87, "another station's: not authorized");
    v5.publish(1, "rollups/st-7/st-7-t", "{}", 3, 0);
    assert_eq!(v5.ack(4, 3), 0x87, "isobar's own rollup topics");
    assert_eq!(v5.subscribe(4, &["rollups/st-7/#", "weather/#"]), [1, 0x87]);

    let (mut v3, code) = Raw::connect(port, 4, "dev-7b", Some(("st-7", "p7")), 30);
    assert_eq!(code, Some(0));
    v3.publish(1, &topic("st-8"), READING, 1, 0);
    assert_eq!(v3.ack(4, 1), 0, "3.1.1 cannot say no: a plain PUBACK, and nothing stored");
    assert_eq!(v3.subscribe(2, &["weather/#"]), [0x80]);
    let (mut dash, _) = Raw::connect(port, 5, "grafana", Some(("dash", "pd")), 30);
    dash.publish(1, &topic("st-7"), READING, 1, 0);
    assert_eq!(dash.ack(4, 1), 0x87, "an empty publish list allows nothing");
    assert_eq!(dash.subscribe(2, &["#"]), [1], "no subscribe list: anything");

    // A retained publish the list refused is neither stored nor retained.
    v5.publish(1, &topic("st-8"), READING, 5, 0x01);
    assert_eq!(v5.ack(4, 5), 0x87);
    dash.stream.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    assert_eq!(dash.subscribe(3, &["weather/#"]), [1]);
    assert!(dash.read().is_none(), "neither delivered nor retained");
    let client = server.client().await;
    let stations: Vec<String> = client.query("SELECT station_id FROM weather", &[]).await.expect("rows").iter().map(|r| r.get(0)).collect();
    assert_eq!(stations, ["st-7"], "only the allowed publish became a row");
    let dead: i64 = client.query_one("SELECT count(*) FROM system.ingest_errors", &[]).await.expect("count").get(0);
    assert_eq!(dead, 0, "refused publishes are not dead letters either");
    assert!(common::http_get(server.http_port, "/metrics").contains("isobar_mqtt_denied_total 7\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_subscriptions_and_silent_clients_are_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let limits = "connections_max = 2\nsubscriptions_per_client_max = 2\nidle_timeout_ms = 300";
    let server = Server::start_config(&data, &config(&data, limits, ""));
    let port = server.mqtt_port;
    let (mut a, code) = Raw::connect(port, 4, "a", None, 30);
    assert_eq!(code, Some(0));
    assert_eq!(a.subscribe(1, &["x/1", "x/2", "x/3"]), [1, 1, 0x80], "two subscriptions, the third refused");
    // Keep-alive 0 asks for none; the listener still disconnects it after the idle timeout.
    let (mut silent, code) = Raw::connect(port, 4, "b", None, 0);
    assert_eq!(code, Some(0));
    let (_, code) = Raw::connect(port, 4, "c", None, 30);
    assert_eq!(code, Some(3), "a third connection: server unavailable");
    let started = Instant::now();
    assert!(silent.read().is_none(), "closed");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after the idle timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, code) = Raw::connect(port, 4, "d", None, 30);
        if code == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "a slot frees when a client goes");
    }
    assert!(common::http_get(server.http_port, "/metrics").contains("isobar_mqtt_connections_refused_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_is_stored_once_per_packet_id_nul_is_refused_and_only_stored_messages_are_retained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &config(&data, "", ""));
    let port = server.mqtt_port;
    let client = server.client().await;
    let dead = || async { client.query_one("SELECT count(*) FROM system.ingest_errors", &[]).await.expect("count").get::<_, i64>(0) };

    // A message no rule reads becomes one dead letter each time it is stored.
    let (mut c, _) = Raw::connect(port, 4, "q2", None, 30);
    c.publish(2, "nowhere/x", "first", 5, 0);
    assert_eq!(c.ack(5, 5), 0);
    c.publish(2, "nowhere/x", "first", 5, 0x08); // sent again (DUP) before PUBREL
    assert_eq!(c.ack(5, 5), 0);
    assert_eq!(dead().await, 1, "one packet id, stored once");
    c.send(&packet(0x62, &5u16.to_be_bytes()));
    assert_eq!(c.ack(7, 5), 0, "PUBCOMP");
    c.publish(2, "nowhere/x", "second", 5, 0);
    assert_eq!(c.ack(5, 5), 0);
    assert_eq!(dead().await, 2, "after PUBREL the id is free for a new message");

    // Retained: what was stored (a row, a dead letter) is kept for later subscribers; a publish
    // the access list refused is not.
    c.publish(1, &topic("st-1"), READING, 6, 0x01);
    assert_eq!(c.ack(4, 6), 0);
    c.publish(1, "nowhere/status", "online", 7, 0x01);
    assert_eq!(c.ack(4, 7), 0);
    let (mut late, _) = Raw::connect(port, 4, "late", None, 30);
    late.stream.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    assert_eq!(late.subscribe(1, &["#"]), [1]);
    let mut retained = Vec::new();
    while let Some((3, body)) = late.read() {
        let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
        retained.push(String::from_utf8_lossy(&body[2..2 + n]).into_owned());
    }
    assert_eq!(retained, ["nowhere/status".to_owned(), topic("st-1")]);

    // U+0000 in a topic closes the connection, as MQTT requires; nothing is stored.
    let (mut nul, _) = Raw::connect(port, 4, "nul", None, 30);
    nul.publish(1, "nowhere/a\0b", "x", 1, 0);
    assert!(nul.read().is_none(), "closed without a PUBACK");
    assert_eq!(dead().await, 3, "the two QoS 2 messages and the status message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_from_a_broker_is_a_dead_letter_not_a_reconnect_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let _broker = Mosquitto::start_persistent(
        &{
            let d = dir.path().join("mosquitto");
            std::fs::create_dir_all(&d).expect("dir");
            d
        },
        port,
    );
    let data = dir.path().join("data");
    let subscription = format!(
        "[[subscriptions]]\nbroker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"isobar-big\"\ntopics = [\"weather/#\"]\nkeep_alive_s = 5\n"
    );
    let server = Server::start_config(&data, &Server::config(&data, &format!("{}\n{subscription}", Server::SEED_RULE), ""));
    let metrics = || common::http_get(server.http_port, "/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics().contains("isobar_subscription_connects_total 1\n") {
        assert!(Instant::now() < deadline, "isobar subscribes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let big = dir.path().join("big.json");
    std::fs::write(&big, format!("{{\"sensor_timestamp\": 1700000000000, \"pad\": \"{}\"}}", "x".repeat(17 << 20))).expect("write");
    let publish = |args: &[&str]| {
        let out = std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", &topic("st-9")])
            .args(args)
            .output()
            .expect("mosquitto_pub");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    publish(&["-f", &big.display().to_string()]);
    publish(&["-m", r#"{"sensor_timestamp": 1700000001000, "sensor_value": 2, "direction": 1}"#]);
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The table is created by its first row, so until then the query fails.
        let rows = client.query_one("SELECT count(*) FROM weather", &[]).await.map(|r| r.get::<_, i64>(0));
        if rows.as_ref().is_ok_and(|n| *n == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the message after the oversize one is stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason: String = client.query_one("SELECT reason FROM system.ingest_errors", &[]).await.expect("one dead letter").get(0);
    assert!(reason.contains("exceeds the 16777216-byte packet limit"), "{reason}");
    assert!(metrics().contains("isobar_subscription_connects_total 1\n"), "acknowledged, so never redelivered: one connection");
}
