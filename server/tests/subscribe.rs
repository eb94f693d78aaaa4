//! isobar subscribing to a real mosquitto with a persistent session: readings published to the
//! broker become rows, and none published while isobar or the broker was away is lost.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::mosquitto::{Mosquitto, free_port};

/// Publishes readings `from..to` (one a second from a fixed start) at QoS 1 to the broker.
fn publish(port: u16, from: i64, to: i64) {
    let lines: String = (from..to)
        .map(|i| format!("{{\"sensor_timestamp\": {}, \"sensor_value\": {i}, \"direction\": 1}}\n", 1_700_000_000_000 + i * 1000))
        .collect();
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-i", "station-7", "-l"])
        .args(["-t", "weather/wa/seattle/st-7/temperature/t-7"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), lines.as_bytes()).expect("send");
    drop(child.stdin.take());
    assert!(child.wait().expect("wait").success());
}

/// Waits until `weather` holds `n` rows summing to 0 + 1 + ... + (n - 1).
async fn wait_for_rows(server: &Server, n: i64) {
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = client
            .query_one("SELECT count(*), coalesce(sum(sensor_value), 0) FROM weather", &[])
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1)));
        if let Ok((count, sum)) = found {
            if count == n {
                assert_eq!(sum, (n * (n - 1) / 2) as f64, "each reading once");
                return;
            }
            assert!(count < n, "more rows than readings: {count}");
        }
        assert!(Instant::now() < deadline, "{n} rows arrive; found {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reading_is_lost_while_isobar_or_the_broker_is_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker_dir = dir.path().join("mosquitto");
    std::fs::create_dir_all(&broker_dir).expect("broker dir");
    let port = free_port();
    let mut broker = Mosquitto::start_persistent(&broker_dir, port);
    let data = dir.path().join("data");
    let subscription = format!(
        "[[subscriptions]]\nbroker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"isobar-test\"\ntopics = [\"weather/#\"]\nkeep_alive_s = 5\n"
    );
    let config = Server::config(&data, &format!("{}{subscription}", Server::SEED_RULE), "");
    let mut server = Server::start_config(&data, &config);
    // The subscription is in place once a first reading arrives.
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = server.client().await;
    while client.query_one("SELECT count(*) FROM weather", &[]).await.map(|r| r.get::<_, i64>(0)).unwrap_or(0) == 0 {
        publish(port, 0, 1);
        assert!(Instant::now() < deadline, "isobar subscribes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    publish(port, 1, 500);
    wait_for_rows(&server, 500).await;

    // isobar is killed; what is published meanwhile waits in its session on the broker.
    server.signal("KILL");
    publish(port, 500, 1000);
    let server = Server::start_config(&data, &config);
    wait_for_rows(&server, 1000).await;

    // The broker stops and starts again; isobar reconnects to its saved session.
    broker.stop();
    let _broker = Mosquitto::start_persistent(&broker_dir, port);
    publish(port, 1000, 1500);
    wait_for_rows(&server, 1500).await;
    let metrics = common::http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_subscription_connects_total 2\n"), "{metrics}");
}
