//! Devices publishing to isobar's MQTT listener with mosquitto_pub and paho-mqtt: rows appear
//! with the rule's tags, times and types, and bad messages leave their neighbours alone.

mod common;

use std::process::Command;

use common::Server;

const SEED_RULE: &str = Server::SEED_RULE;

fn publish(server: &Server, qos: u8, topic: &str, payload: &str) {
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.mqtt_port.to_string(),
            "-q",
            &qos.to_string(),
            "-i",
            "test-device",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .output()
        .expect("mosquitto_pub runs (scripts/setup installs mosquitto-clients)");
    assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_readings_become_rows_and_bad_ones_do_not_block_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, SEED_RULE, ""));
    let topic = |station: &str| format!("weather/wa/seattle/{station}/temperature/{station}-t");
    for (qos, i) in [(0u8, 0), (1, 1), (2, 2), (1, 3)] {
        let payload =
            format!(r#"{{"sensor_timestamp": {}, "sensor_value": "{}.5", "direction": 1}}"#, 1_700_000_000_000i64 + i * 1000, 20 + i);
        publish(&server, qos, &topic("st-1"), &payload);
        // Bad neighbours: not JSON, no time, a topic no rule reads, and a text value.
        publish(&server, 1, &topic("st-2"), "not json");
        publish(&server, 1, &topic("st-2"), r#"{"sensor_value": 1}"#);
        publish(&server, 1, "elsewhere/x", r#"{"sensor_timestamp": 1700000000000, "sensor_value": 1}"#);
    }
    // QoS 0 is not acknowledged; the QoS 1 and 2 publishes after it were, so it is written too.
    let client = server.client().await;
    let rows = client
        .query("SELECT station_id, sensor, sensor_id, time, sensor_value, direction FROM weather ORDER BY time", &[])
        .await
        .expect("query");
    assert_eq!(rows.len(), 4, "one row per good reading");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, String>(0), "st-1");
        assert_eq!(row.get::<_, String>(1), "temperature");
        assert_eq!(row.get::<_, String>(2), "st-1-t");
        let time: std::time::SystemTime = row.get(3);
        let ms = time.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis();
        assert_eq!(ms, 1_700_000_000_000 + i as u128 * 1000);
        assert_eq!(row.get::<_, f64>(4), 20.5 + i as f64);
        assert_eq!(row.get::<_, i64>(5), 1);
    }
    // The bad ones are dead letters, and counted where an operator looks.
    let reasons: Vec<String> = client
        .query("SELECT reason FROM system.ingest_errors WHERE source = 'mqtt' AND client = 'test-device' ORDER BY time", &[])
        .await
        .expect("dead letters")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons.len(), 12, "{reasons:?}");
    for (i, reason) in reasons.iter().enumerate() {
        let wanted = ["not JSON", "time sensor_timestamp is missing", "no rule matches topic elsewhere/x"][i % 3];
        assert!(reason.contains(wanted), "{reason:?} lacks {wanted:?}");
    }
    let metrics = common::http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_mqtt_messages_total 16\n"), "{metrics}");
    assert!(metrics.contains("isobar_mqtt_messages_rejected_total 12\n"), "{metrics}");
    // Every acknowledged read and every write is timed, in buckets that add up to the count.
    for histogram in ["isobar_mqtt_ack_duration_seconds", "isobar_write_duration_seconds"] {
        let value = |line: &str| {
            let found = metrics.lines().find_map(|l| l.strip_prefix(line)).unwrap_or_else(|| panic!("no {line} in {metrics}"));
            found.trim().parse::<u64>().unwrap_or_else(|e| panic!("{line}{found}: {e}"))
        };
        let count = value(&format!("{histogram}_count "));
        assert!(count >= 1, "{histogram}: {count}");
        assert_eq!(value(&format!("{histogram}_bucket{{le=\"+Inf\"}} ")), count);
        assert!(value(&format!("{histogram}_bucket{{le=\"5\"}} ")) <= count);
    }
}

/// What should become of one published message.
enum Outcome {
    /// A row of `weather` at the message's `sensor_timestamp`.
    Stored,
    /// A dead letter whose reason contains this.
    Dead(&'static str),
}

/// Publishes `payload` (bytes, from a file) at QoS 1 and waits for its PUBACK.
fn publish_bytes(server: &Server, dir: &std::path::Path, topic: &str, payload: &[u8]) {
    let mut args = vec!["-h".to_owned(), "127.0.0.1".into(), "-p".into(), server.mqtt_port.to_string(), "-q".into(), "1".into()];
    args.extend(["-i".into(), "fuzzy-device".into(), "-t".into(), topic.into()]);
    if payload.is_empty() {
        args.push("-n".into());
    } else {
        let file = dir.join("payload");
        std::fs::write(&file, payload).expect("write payload");
        args.extend(["-f".into(), file.display().to_string()]);
    }
    let out = Command::new("mosquitto_pub").args(&args).output().expect("mosquitto_pub runs");
    assert!(out.status.success(), "mosquitto_pub on {topic}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_payload_is_a_dead_letter_or_stored_as_documented_and_its_neighbours_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let raw_rule = "[[rules]]\nname = \"raw\"\nsql = \"SELECT *, topic(2) AS device FROM 'raw/+'\"\ntable = \"raw\"\ntags = [\"device\"]\ntime = \"ts\"\ntime_unit = \"ms\"\n";
    let server = Server::start_config(&data, &Server::config(&data, &format!("{SEED_RULE}{raw_rule}"), ""));
    let topic = "weather/wa/seattle/st-9/temperature/t-9";
    let base_ms = 1_700_000_000_000i64;
    let reading = |ms: i64, value: &str| format!(r#"{{"sensor_timestamp": {ms}, "sensor_value": {value}, "direction": 2}}"#);
    let nested = format!("{}1{}", "{\"a\":".repeat(1000), "}".repeat(1000));
    let mut big = reading(base_ms + 900, "1").into_bytes();
    big.extend(std::iter::repeat_n(b' ', 10 << 20));
    let cases: Vec<(&str, String, Vec<u8>, Outcome)> = vec![
        ("not JSON", topic.into(), b"not json".to_vec(), Outcome::Dead("not JSON")),
        ("empty payload", topic.into(), Vec::new(), Outcome::Dead("not JSON")),
        ("truncated JSON", topic.into(), b"{\"sensor_timestamp\": 17".to_vec(), Outcome::Dead("not JSON")),
        ("an array", topic.into(), b"[1, 2, 3]".to_vec(), Outcome::Dead("time sensor_timestamp is missing")),
        ("null", topic.into(), b"null".to_vec(), Outcome::Dead("time sensor_timestamp is missing")),
        ("a number", topic.into(), b"42".to_vec(), Outcome::Dead("time sensor_timestamp is missing")),
        ("a string", topic.into(), b"\"hello\"".to_vec(), Outcome::Dead("time sensor_timestamp is missing")),
        ("an empty object", topic.into(), b"{}".to_vec(), Outcome::Dead("time sensor_timestamp is missing")),
        ("no time", topic.into(), br#"{"sensor_value": 1}"#.to_vec(), Outcome::Dead("time sensor_timestamp is missing")),
        (
            "time as words",
            topic.into(),
            br#"{"sensor_timestamp": "yesterday", "sensor_value": 1}"#.to_vec(),
            Outcome::Dead("= \"yesterday\" is not a time"),
        ),
        ("time before 1970", topic.into(), reading(-1000, "1").into_bytes(), Outcome::Dead("before 1970")),
        ("time in the year 2200", topic.into(), reading(7_258_118_400_000, "1").into_bytes(), Outcome::Dead("ahead of the server's clock")),
        (
            "time past 2262",
            topic.into(),
            reading(99_999_999_999_999, "1").into_bytes(),
            Outcome::Dead("= 99999999999999 is not a time in milliseconds"),
        ),
        (
            "time as a huge float",
            topic.into(),
            br#"{"sensor_timestamp": 1e30, "sensor_value": 1}"#.to_vec(),
            Outcome::Dead("= 1e+30 is not a time"),
        ),
        ("bare NaN is not JSON", topic.into(), reading(base_ms + 102, "NaN").into_bytes(), Outcome::Dead("not JSON")),
        ("a number beyond f64", topic.into(), reading(base_ms + 103, "1e400").into_bytes(), Outcome::Dead("not JSON")),
        ("nesting 1,000 deep", topic.into(), nested.into_bytes(), Outcome::Dead("not JSON")),
        ("a 10 MB payload", topic.into(), big, Outcome::Dead("exceeds the 1048576-byte packet limit")),
        (
            "invalid UTF-8 before JSON",
            topic.into(),
            [&b"\xff\xfe"[..], reading(base_ms + 104, "1").as_bytes()].concat(),
            Outcome::Dead("not JSON"),
        ),
        (
            "invalid UTF-8 in a string",
            topic.into(),
            [&b"{\"sensor_timestamp\": 1700000000105, \"sensor_value\": \"\xff\"}"[..]].concat(),
            Outcome::Dead("not JSON"),
        ),
        (
            "a byte-order mark",
            topic.into(),
            [&b"\xef\xbb\xbf"[..], reading(base_ms + 106, "1").as_bytes()].concat(),
            Outcome::Dead("not JSON"),
        ),
        (
            "an unknown topic",
            "elsewhere/x".into(),
            reading(base_ms + 107, "1").into_bytes(),
            Outcome::Dead("no rule matches topic elsewhere/x"),
        ),
        ("too few topic levels", "weather/wa".into(), reading(base_ms + 108, "1").into_bytes(), Outcome::Dead("no rule matches")),
        (
            "no field survives its cast",
            topic.into(),
            br#"{"sensor_timestamp": 1700000000109, "sensor_value": "x", "direction": "y"}"#.to_vec(),
            Outcome::Dead("no fields"),
        ),
        ("SELECT * of a non-object", "raw/a".into(), b"[1]".to_vec(), Outcome::Dead("SELECT * needs a JSON object payload")),
        // Stored as docs/rules.md says: a failed cast drops its key, other keys are ignored,
        // the last of duplicate keys counts, text that casts is a number.
        ("value that does not cast", topic.into(), reading(base_ms + 200, "\"abc\"").into_bytes(), Outcome::Stored),
        ("value NaN as text", topic.into(), reading(base_ms + 206, "\"NaN\"").into_bytes(), Outcome::Stored),
        ("value Infinity as text", topic.into(), reading(base_ms + 207, "\"Infinity\"").into_bytes(), Outcome::Stored),
        ("value as an object", topic.into(), reading(base_ms + 201, "{\"a\": 1}").into_bytes(), Outcome::Stored),
        ("value as text", topic.into(), reading(base_ms + 202, "\"3.25\"").into_bytes(), Outcome::Stored),
        (
            "extra keys and a NUL",
            topic.into(),
            br#"{"sensor_timestamp": 1700000000203, "sensor_value": 1, "x": "\u0000"}"#.to_vec(),
            Outcome::Stored,
        ),
        (
            "duplicate keys",
            topic.into(),
            br#"{"sensor_timestamp": 5, "sensor_timestamp": 1700000000204, "sensor_value": 1}"#.to_vec(),
            Outcome::Stored,
        ),
        (
            "a 1,000-byte sensor id",
            format!("weather/wa/seattle/st-9/temperature/{}", "s".repeat(1000)),
            reading(base_ms + 205, "1").into_bytes(),
            Outcome::Stored,
        ),
    ];
    assert!(cases.len() >= 30, "the acceptance asks for at least 30 cases");
    let mut neighbour_ms = base_ms + 10_000;
    for (_, topic_of_case, payload, _) in &cases {
        publish_bytes(&server, dir.path(), topic_of_case, payload);
        // A good reading after each bad one.
        publish_bytes(&server, dir.path(), topic, reading(neighbour_ms, "20.5").as_bytes());
        neighbour_ms += 1000;
    }
    // A type conflict for the SELECT * rule: `v` is a double, then text.
    publish_bytes(&server, dir.path(), "raw/a", br#"{"ts": 1700000000000, "v": 1}"#);
    publish_bytes(&server, dir.path(), "raw/a", br#"{"ts": 1700000001000, "v": "text"}"#);

    let client = server.client().await;
    let dead: Vec<(String, String, String, String)> = client
        .query("SELECT source, topic, client, reason FROM system.ingest_errors ORDER BY time", &[])
        .await
        .expect("dead letters")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let expected: Vec<(&str, &str)> =
        cases.iter().filter_map(|(name, _, _, o)| if let Outcome::Dead(r) = o { Some((*name, *r)) } else { None }).collect();
    assert_eq!(dead.len(), expected.len() + 1, "one dead letter per bad case and the type conflict: {dead:#?}");
    for ((source, _, client_id, reason), (name, wanted)) in dead.iter().zip(&expected) {
        assert_eq!((source.as_str(), client_id.as_str()), ("mqtt", "fuzzy-device"));
        assert!(reason.contains(wanted), "{name}: reason {reason:?} lacks {wanted:?}");
    }
    let conflict = &dead[expected.len()];
    assert_eq!(conflict.1, "raw/a");
    assert!(conflict.3.contains("column v"), "{conflict:?}");

    let stored_ms: Vec<i64> = client
        .query("SELECT CAST(extract(epoch FROM time) * 1000 AS BIGINT) FROM weather ORDER BY time", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let stored_cases = cases.iter().filter(|c| matches!(c.3, Outcome::Stored)).count();
    assert_eq!(stored_ms.len(), stored_cases + cases.len(), "the stored cases and every neighbour: {stored_ms:?}");
    for i in 0..cases.len() as i64 {
        assert!(stored_ms.contains(&(base_ms + 10_000 + i * 1000)), "neighbour {i} is stored");
    }
    for ms in 200..=207 {
        assert!(stored_ms.contains(&(base_ms + ms)), "the case at +{ms} ms is stored");
    }
    let raw = client.query_one("SELECT count(*) FROM raw", &[]).await.expect("raw").get::<_, i64>(0);
    assert_eq!(raw, 1, "the first raw reading is stored, the conflicting one is a dead letter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_acknowledged_before_a_kill_9_survive_it_and_redelivery_adds_no_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, SEED_RULE, "");
    let mut server = Server::start_config(&data, &config);
    // N readings from one device in one session, QoS 1: mosquitto_pub exits once every PUBACK
    // is in, and isobar is killed at once.
    let n = 2000i64;
    let lines: String = (0..n)
        .map(|i| format!("{{\"sensor_timestamp\": {}, \"sensor_value\": {i}, \"direction\": 1}}\n", 1_700_000_000_000 + i * 1000))
        .collect();
    let publish_all = |port: u16| {
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-i", "burst", "-l"])
            .args(["-t", "weather/wa/seattle/st-1/temperature/t-1"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("mosquitto_pub");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), lines.as_bytes()).expect("send lines");
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success());
    };
    publish_all(server.mqtt_port);
    server.signal("KILL");
    let server = Server::start_config(&data, &config);
    let count = |client: tokio_postgres::Client| async move {
        client.query_one("SELECT count(*), sum(sensor_value) FROM weather", &[]).await.map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1)))
    };
    let expected = (n, (n * (n - 1) / 2) as f64);
    assert_eq!(count(server.client().await).await.expect("count"), expected, "every acknowledged reading survived");
    // A device that did not see its PUBACKs sends everything again: the same rows, no more.
    publish_all(server.mqtt_port);
    assert_eq!(count(server.client().await).await.expect("count"), expected, "redelivered readings replace themselves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_users_configured_only_devices_with_their_password_get_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("isobar.toml");
    let toml = format!(
        "data_dir = {:?}\n{SEED_RULE}\n[postgres]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nlisten = \"127.0.0.1:0\"\n\
         users = [{{ name = \"station-7\", password = \"s3cret\" }}]\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [flight]\nlisten = \"127.0.0.1:0\"\n",
        data.display().to_string()
    );
    std::fs::write(&config, toml).expect("config");
    let server = Server::start_config(&data, &config);
    let reading = |ms: i64| format!(r#"{{"sensor_timestamp": {ms}, "sensor_value": 1, "direction": 1}}"#);
    let attempt = |credentials: &[&str], ms: i64| {
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &server.mqtt_port.to_string(), "-q", "1", "-i", "station-7"])
            .args(["-t", "weather/wa/seattle/st-7/temperature/t-7", "-m", &reading(ms)])
            .args(credentials)
            .output()
            .expect("mosquitto_pub")
            .status
            .success()
    };
    assert!(!attempt(&[], 1_700_000_000_000), "no credentials");
    assert!(!attempt(&["-u", "station-7", "-P", "wrong"], 1_700_000_001_000), "a wrong password");
    assert!(!attempt(&["-u", "station-8", "-P", "s3cret"], 1_700_000_002_000), "an unknown user");
    assert!(attempt(&["-u", "station-7", "-P", "s3cret"], 1_700_000_003_000), "the right pair");
    let client = server.client().await;
    let rows = client.query("SELECT CAST(extract(epoch FROM time) AS BIGINT) FROM weather", &[]).await.expect("rows");
    let seconds: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seconds, [1_700_000_003], "only the admitted device's reading is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_mqtt_publishes_with_both_versions_and_every_qos() {
    let python = std::env::var("ISOBAR_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/isobar/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, SEED_RULE, ""));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/mqtt_clients.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(server.mqtt_port.to_string())
        .output()
        .unwrap_or_else(|e| panic!("run {python} (./scripts/setup installs paho-mqtt): {e}"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let client = server.client().await;
    let rows = client
        .query("SELECT sensor_id, count(*), sum(sensor_value) FROM weather GROUP BY sensor_id ORDER BY sensor_id", &[])
        .await
        .expect("rows");
    let got: Vec<(String, i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    // 30 readings from each version; QoS 0 ones too, since the acknowledged ones after them
    // were written after them.
    assert_eq!(got, [("paho-311".to_owned(), 30, (0..30).sum::<i64>() as f64), ("paho-5".to_owned(), 30, (30..60).sum::<i64>() as f64)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_live_readings_and_retained_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, SEED_RULE, ""));
    let port = server.mqtt_port.to_string();
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-r", "-t", "devices/st-1/status", "-m", "online"])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
    let subscriber = common::mosquitto::Subscriber::start(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-q",
        "1",
        "-v",
        "-C",
        "4",
        "-W",
        "30",
        "-t",
        "weather/wa/+/st-1/#",
        "-t",
        "devices/+/status",
    ]);
    for i in 0..3 {
        publish(
            &server,
            1,
            "weather/wa/seattle/st-1/temperature/t-1",
            &format!(r#"{{"sensor_timestamp": {}, "sensor_value": {i}}}"#, 1_700_000_000_000i64 + i * 1000),
        );
        publish(&server, 1, "weather/or/portland/st-2/temperature/t-2", r#"{"sensor_timestamp": 1700000000000, "sensor_value": 9}"#);
    }
    let lines = subscriber.messages();
    assert_eq!(
        lines,
        [
            "devices/st-1/status online".to_owned(),
            r#"weather/wa/seattle/st-1/temperature/t-1 {"sensor_timestamp": 1700000000000, "sensor_value": 0}"#.to_owned(),
            r#"weather/wa/seattle/st-1/temperature/t-1 {"sensor_timestamp": 1700000001000, "sensor_value": 1}"#.to_owned(),
            r#"weather/wa/seattle/st-1/temperature/t-1 {"sensor_timestamp": 1700000002000, "sensor_value": 2}"#.to_owned(),
        ]
    );
}
