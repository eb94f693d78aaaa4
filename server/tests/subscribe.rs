//! isobar subscribing to a real mosquitto with a persistent session: readings published to the
//! broker become rows, none published while isobar or the broker was away is lost, and two
//! nodes split one feed with a shared subscription.

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

/// Rows of `weather` on `server`, and the sum of their readings; none before the table exists.
async fn rows_and_sum(server: &Server) -> (i64, f64) {
    let client = server.client().await;
    let row = client.query_one("SELECT count(*), coalesce(sum(sensor_value), 0) FROM weather", &[]).await;
    row.map_or((0, 0.0), |row| (row.get(0), row.get(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_split_one_feed_with_a_shared_subscription() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start();
    let broker_port = broker.port;
    let node = |name: &str| {
        let data = dir.path().join(name);
        let subscription = format!(
            "[[subscriptions]]\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\nclient_id = \"isobar-{name}\"\ntopics = [\"$share/isobar/weather/#\"]\n"
        );
        Server::start_config(&data, &Server::config(&data, &format!("{}{subscription}", Server::SEED_RULE), ""))
    };
    let (a, b) = (node("a"), node("b"));
    // Both nodes are in the group once each has taken a reading of a probe feed, which is
    // not counted below (its times are far from the readings').
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = 0;
    while rows_and_sum(&a).await.0 == 0 || rows_and_sum(&b).await.0 == 0 {
        let payload = format!("{{\"sensor_timestamp\": {}, \"sensor_value\": 0, \"direction\": 1}}", 1_600_000_000_000i64 + probes * 1000);
        let out = Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker_port.to_string(),
                "-q",
                "1",
                "-t",
                "weather/wa/probe/st-0/temperature/t-0",
                "-m",
                &payload,
            ])
            .output()
            .expect("mosquitto_pub");
        assert!(out.status.success());
        probes += 1;
        assert!(Instant::now() < deadline, "both nodes join the shared subscription");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (before_a, before_b) = (rows_and_sum(&a).await, rows_and_sum(&b).await);
    publish(broker_port, 1, 1001);
    // Every reading lands on exactly one node: together they hold each once, and each node
    // took a share.
    let (now_a, now_b) = wait_for_split(&a, before_a, &b, before_b, 1001).await;
    assert!(now_a.0 - before_a.0 >= 100 && now_b.0 - before_b.0 >= 100, "both nodes take a share: {now_a:?} {now_b:?}");

    // Node b goes down. Its persistent session stays in the group, so the broker keeps b's
    // share for it (compat-checklist MQ2); b takes it when it comes back under its client id.
    let mut b = b;
    let b_at_kill = rows_and_sum(&b).await.0;
    b.signal("KILL");
    let a_alone = rows_and_sum(&a).await.0;
    publish(broker_port, 1001, 2001);
    let b = node("b");
    let (now_a, now_b) = wait_for_split(&a, before_a, &b, before_b, 2001).await;
    let (taken_a, taken_b) = (now_a.0 - a_alone, now_b.0 - b_at_kill);
    assert!(taken_b >= 100, "b's share waited for it while it was away: a took {taken_a} and b {taken_b} of 1000");
}

/// Waits until nodes `a` and `b` together hold readings `1..to` once each beyond the counts
/// `before_a` and `before_b`, and returns the nodes' counts.
async fn wait_for_split(a: &Server, before_a: (i64, f64), b: &Server, before_b: (i64, f64), to: i64) -> ((i64, f64), (i64, f64)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (now_a, now_b) = (rows_and_sum(a).await, rows_and_sum(b).await);
        let (rows, sum) = (now_a.0 - before_a.0 + now_b.0 - before_b.0, now_a.1 - before_a.1 + now_b.1 - before_b.1);
        if rows == to - 1 {
            assert_eq!(sum, (1..to).sum::<i64>() as f64, "each reading once");
            return (now_a, now_b);
        }
        assert!(rows < to - 1 && Instant::now() < deadline, "{} readings across the nodes; found {rows}", to - 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
