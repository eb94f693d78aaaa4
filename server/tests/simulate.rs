//! `isobar simulate` publishing the seed fleet: into isobar's listener, where the readings
//! become rows, and into mosquitto, where a subscriber sees them.

mod common;

use std::process::Command;

use common::Server;
use common::mosquitto::Mosquitto;

/// Runs `isobar simulate` against `port`; returns what it printed.
fn simulate(port: u16, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_isobar"))
        .args(["simulate", "--broker", &format!("mqtt://127.0.0.1:{port}"), "--stations", "4", "--sensors", "5", "--rate", "5"])
        .args(["--duration", "2"])
        .args(extra)
        .output()
        .expect("run isobar simulate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_readings_become_seed_shaped_rows_the_same_for_the_same_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sums = Vec::new();
    for run in ["a", "b"] {
        let data = dir.path().join(run);
        let server = Server::start_config(&data, &Server::config(&data, Server::SEED_RULE, ""));
        let printed = simulate(server.mqtt_port, &["--seed", "7"]);
        assert!(printed.contains("published 200 messages"), "{printed}");
        assert!(printed.contains("PUBACK p50"), "QoS 1 by default, with its acknowledgement times: {printed}");
        let client = server.client().await;
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT sensor_id), count(DISTINCT station_id), count(DISTINCT sensor), \
                 sum(CASE WHEN sensor IN ('pressure', 'rain') THEN sensor_value END), count(sensor_value_smoothed), \
                 sum(direction * direction) FROM weather",
                &[],
            )
            .await
            .expect("query");
        assert_eq!(row.get::<_, i64>(0), 200, "4 stations × 5 sensors × 5 Hz × 2 s");
        assert_eq!((row.get::<_, i64>(1), row.get::<_, i64>(2), row.get::<_, i64>(3)), (20, 4, 5));
        assert_eq!((row.get::<_, i64>(5), row.get::<_, i64>(6)), (200, 200), "every reading has its smoothed value and a ±1 direction");
        sums.push(row.get::<_, f64>(4));
        let dead = client.query_one("SELECT count(*) FROM system.ingest_errors", &[]).await.expect("dead letters");
        assert_eq!(dead.get::<_, i64>(0), 0);
    }
    // Equal but for the order in which a parallel sum added them. (Temperature, humidity and
    // wind follow the time of day, so only pressure and rain are the same at another start.)
    assert!((sums[0] - sums[1]).abs() < 1e-9 * sums[0].abs(), "the same seed publishes the same readings: {sums:?}");
}

#[test]
fn the_simulator_publishes_to_mosquitto() {
    let broker = Mosquitto::start();
    let port = broker.port.to_string();
    let subscriber =
        common::mosquitto::Subscriber::start(&["-h", "127.0.0.1", "-p", &port, "-t", "weather/#", "-v", "-C", "200", "-W", "60"]);
    let printed = simulate(broker.port, &[]);
    assert!(printed.contains("published 200 messages"), "{printed}");
    let lines = subscriber.messages();
    assert_eq!(lines.len(), 200);
    for line in &lines {
        let (topic, payload) = line.split_once(' ').expect("topic and payload");
        assert_eq!(topic.split('/').count(), 6, "{topic}");
        assert!(topic.starts_with("weather/"), "{topic}");
        let json: serde_json::Value = serde_json::from_str(payload).expect("JSON payload");
        for key in ["sensor_timestamp", "sensor_value", "sensor_value_smoothed", "direction"] {
            assert!(json.get(key).is_some(), "{key} in {payload}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_fills_the_seed_table_and_says_how_to_query_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_command("demo", &data, &Server::config(&data, "", ""));
    let client = server.client().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let sensors = loop {
        let found = client.query_one("SELECT count(DISTINCT sensor_id) FROM weather", &[]).await.map(|r| r.get::<_, i64>(0));
        match found {
            Ok(n) if n == 100 => break n,
            _ if std::time::Instant::now() > deadline => panic!("the demo fleet's readings arrive: {found:?}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    assert_eq!(sensors, 100);
    let printed = server.output().join("\n");
    assert!(printed.contains(&format!("psql -h 127.0.0.1 -p {} -U isobar", server.pg_port)), "{printed}");
    assert!(printed.contains(&format!("http://127.0.0.1:{}/", server.http_port)), "the console's address: {printed}");
    // The example queries it prints run.
    for query in printed.lines().map(str::trim).filter(|l| l.starts_with("SELECT")) {
        client.simple_query(query).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    }
}
