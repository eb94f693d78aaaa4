//! Devices publishing to isobar's MQTT listener with mosquitto_pub: rows appear with the rule's
//! tags, times and types, and bad messages leave their neighbours alone.

mod common;

use std::process::Command;

use common::Server;

const SEED_RULE: &str = r#"
[[rules]]
name = "weather"
sql = "SELECT topic(6) AS sensor_id, topic(4) AS station_id, topic(5) AS sensor, sensor_timestamp, cast(sensor_value AS double) AS sensor_value, cast(direction AS int) AS direction FROM 'weather/+/+/+/+/+'"
table = "weather"
tags = ["station_id", "sensor", "sensor_id"]
time = "sensor_timestamp"
time_unit = "ms"
"#;

fn publish(server: &Server, qos: u8, topic: &str, payload: &str) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &server.mqtt_port.to_string(), "-q", &qos.to_string(), "-i", "test-device", "-t", topic, "-m", payload])
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
        let payload = format!(r#"{{"sensor_timestamp": {}, "sensor_value": "{}.5", "direction": 1}}"#, 1_700_000_000_000i64 + i * 1000, 20 + i);
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
    // The bad ones are counted where an operator looks.
    let metrics = http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_mqtt_messages_total 16\n"), "{metrics}");
    assert!(metrics.contains("isobar_mqtt_messages_rejected_total 12\n"), "{metrics}");
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}
