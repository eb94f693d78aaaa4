//! Rollups end to end: the simulated seed fleet publishes to `isobar serve` over MQTT, and
//! `weather_1m` answers the seed's stream-processor aggregation (per sensor and minute: the
//! average value, the average smoothed value, the sum and the message count) with the same
//! numbers as SQL over the raw table; also after isobar is killed mid-stream and restarted.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::Server;

/// The seed's aggregation written as SQL over the raw table.
const RAW_SQL: &str = "SELECT sensor_id, date_bin(INTERVAL '60 seconds', time) AS minute, \
     avg(sensor_value), avg(sensor_value_smoothed), sum(sensor_value), count(*) \
     FROM weather GROUP BY 1, 2";
/// The same from the rollup table.
const ROLLUP_SQL: &str = "SELECT sensor_id, time, sensor_value_avg, sensor_value_smoothed_avg, sensor_value_sum, \
     sensor_value_count, final FROM weather_1m";

type Minute = (String, SystemTime);
/// avg value, avg smoothed value, sum, count.
type Aggregates = (f64, f64, f64, i64);

async fn raw_minutes(client: &tokio_postgres::Client) -> BTreeMap<Minute, Aggregates> {
    let rows = client.query(RAW_SQL, &[]).await.expect("raw aggregation");
    rows.iter().map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4), r.get(5)))).collect()
}

/// Rollup rows by minute, with whether each is final.
async fn rollup_minutes(client: &tokio_postgres::Client) -> BTreeMap<Minute, (Aggregates, bool)> {
    let rows = client.query(ROLLUP_SQL, &[]).await.expect("rollup rows");
    rows.iter().map(|r| ((r.get(0), r.get(1)), ((r.get(2), r.get(3), r.get(4), r.get(5)), r.get(6)))).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Checks every final rollup minute against the raw aggregation, that every raw minute has a
/// rollup row, and returns how many minutes are final.
async fn compare(server: &Server) -> usize {
    let client = server.client().await;
    if client.query("SELECT 1 FROM weather_1m LIMIT 1", &[]).await.is_err() {
        return 0; // No reading has arrived yet.
    }
    let raw = raw_minutes(&client).await;
    let rollup = rollup_minutes(&client).await;
    assert!(!raw.is_empty(), "the fleet wrote readings");
    for key in raw.keys() {
        assert!(rollup.contains_key(key), "minute {key:?} has no rollup row");
    }
    let mut finals = 0;
    for (key, (got, is_final)) in &rollup {
        let want = raw.get(key).unwrap_or_else(|| panic!("rollup minute {key:?} has no raw rows"));
        if !is_final {
            continue;
        }
        finals += 1;
        assert_eq!(got.3, want.3, "count of {key:?}");
        assert!(close(got.0, want.0) && close(got.1, want.1) && close(got.2, want.2), "{key:?}: rollup {got:?}, raw {want:?}");
    }
    finals
}

async fn count_finals(server: &Server) -> usize {
    let client = server.client().await;
    let finals = client.query_one("SELECT count(*) FROM weather_1m WHERE final", &[]).await;
    finals.map_or(0, |r| usize::try_from(r.get::<_, i64>(0)).unwrap_or(0))
}

/// `isobar simulate` replaying `minutes` of readings of 4 stations × 3 sensors at 1 Hz into
/// `server`, 60 times faster than real time.
fn simulate(server: &Server, minutes: u32) -> Child {
    Command::new(env!("CARGO_BIN_EXE_isobar"))
        .args(["simulate", "--broker", &format!("mqtt://127.0.0.1:{}", server.mqtt_port)])
        .args(["--stations", "4", "--sensors", "3", "--rate", "1", "--time-scale", "60"])
        .args(["--duration", &(minutes * 60).to_string(), "--connections", "2"])
        .stdout(Stdio::null())
        .spawn()
        .expect("isobar simulate")
}

/// Waits until at least `at_least` rollup minutes are final and, with `still`, the count
/// holds still, comparing them with the raw rows. While readings arrive the two queries see
/// different moments, so without `still` it only counts.
async fn wait_for_finals(server: &Server, at_least: usize, still: bool) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = usize::MAX;
    loop {
        let finals = if still { compare(server).await } else { count_finals(server).await };
        if finals >= at_least && (!still || finals == last) {
            return finals;
        }
        last = finals;
        assert!(Instant::now() < deadline, "{at_least} final minutes; found {finals}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_table_answers_the_seed_aggregation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, Server::SEED_RULE, ""));
    let status = simulate(&server, 5).wait().expect("simulate");
    assert!(status.success());
    // Five minutes of 12 sensors: at least four whole minutes each are behind the watermark.
    let finals = wait_for_finals(&server, 12 * 4, true).await;
    assert!(finals <= 12 * 6, "{finals} final minutes of a 5-minute run");

    // system.rollups says how far weather_1m is final: up to the end of its newest final minute.
    let client = server.client().await;
    let status = client
        .query_one("SELECT rollup, source, interval_ms, final_before, stale_windows FROM system.rollups", &[])
        .await
        .expect("system.rollups");
    assert_eq!(
        (status.get::<_, String>(0), status.get::<_, String>(1), status.get::<_, i64>(2)),
        ("weather_1m".into(), "weather".into(), 60_000)
    );
    let newest_final = client.query_one("SELECT max(time) FROM weather_1m WHERE final", &[]).await.expect("newest final minute");
    let final_before: SystemTime = status.get(3);
    assert_eq!(final_before, newest_final.get::<_, SystemTime>(0) + Duration::from_secs(60));
    assert_eq!(status.get::<_, i64>(4), 0, "no window waits to be written again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_the_raw_rows_after_a_kill_mid_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, Server::SEED_RULE, "");
    let mut server = Server::start_config(&data, &config);
    // Thirty simulated minutes (30 s): enough that the fleet still publishes at the kill on a
    // loaded machine; it is stopped once the kill is done.
    let mut fleet = simulate(&server, 30);
    // Kill isobar once a few minutes are final, while the fleet still publishes.
    wait_for_finals(&server, 12 * 2, false).await;
    server.signal("KILL");
    assert!(fleet.try_wait().expect("fleet").is_none(), "the fleet was still publishing");
    let _ = fleet.kill();
    let _ = fleet.wait();
    let server = Server::start_config(&data, &config);
    wait_for_finals(&server, 12 * 2, true).await;
}

/// The seed's output shape (`../shared/seed/`), as an `[[emit]]` entry.
const SEED_EMIT: &str = r#"
[[emit]]
table = "weather_1m"
topic = "rollups/{station_id}/{sensor_id}"
qos = 1
[emit.fields]
sensor_id = "sensor_id"
sensor = "sensor"
station_id = "station_id"
sensor_avg_value = "sensor_value_avg"
sensor_smooth_avg_value = "sensor_value_smoothed_avg"
"60sec_sum_of_sensor_value" = "sensor_value_sum"
"60sec_number_of_msg" = "sensor_value_count"
record_timestamp = "time"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_windows_are_published_in_the_seed_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, &format!("{}{SEED_EMIT}", Server::SEED_RULE), ""));
    // A dashboard subscribes to isobar's listener before the fleet starts.
    let subscriber = subscribe(server.mqtt_port, 24, &[]);
    assert!(simulate(&server, 4).wait().expect("simulate").success());
    let published = check_published(&server, &subscriber.messages().join("\n")).await;
    assert_eq!(published, 24, "24 final windows published");
    let metrics = common::http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_rollup_windows_unpublished_total 0\n"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_windows_reach_an_external_broker_that_was_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = common::mosquitto::free_port();
    let mosquitto_dir = dir.path().join("mosquitto");
    std::fs::create_dir_all(&mosquitto_dir).expect("mosquitto dir");
    // A dashboard has a persistent session on the external broker, which is down while the
    // fleet publishes to isobar.
    let mut mosquitto = common::mosquitto::Mosquitto::start_persistent(&mosquitto_dir, port);
    let dashboard = ["-i", "dashboard", "-c"];
    let _ = subscribe(port, 1, &[&dashboard[..], &["-W", "1"]].concat()).messages();
    mosquitto.stop();
    let emit = SEED_EMIT.replace("qos = 1\n", &format!("qos = 1\nbroker = \"mqtt://127.0.0.1:{port}\"\n"));
    let server = Server::start_config(&data, &Server::config(&data, &format!("{}{emit}", Server::SEED_RULE), ""));
    assert!(simulate(&server, 3).wait().expect("simulate").success());
    let finals = wait_for_finals(&server, 12 * 2, true).await;
    // Once the broker is back, isobar publishes every window that became final meanwhile.
    let _mosquitto = common::mosquitto::Mosquitto::start_persistent(&mosquitto_dir, port);
    let subscriber = subscribe(port, finals, &[&dashboard[..], &["-W", "40"]].concat());
    let published = check_published(&server, &subscriber.messages().join("\n")).await;
    assert_eq!(published, finals, "every final window reached the broker");
    let metrics = common::http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_emit_windows_dropped_total 0\n"), "{metrics}");
}

/// `mosquitto_sub` on `rollups/#` of the broker on `port` with `options`, until `count`
/// messages (or 60 s).
fn subscribe(port: u16, count: usize, options: &[&str]) -> common::mosquitto::Subscriber {
    let (port, count) = (port.to_string(), count.to_string());
    let mut args = vec!["-h", "127.0.0.1", "-p", &port, "-t", "rollups/#", "-v", "-q", "1", "-C", &count, "-W", "60"];
    args.extend_from_slice(options);
    common::mosquitto::Subscriber::start(&args)
}

/// Checks that each line of `text` (mosquitto_sub -v: topic, then payload) is a final window
/// of `weather_1m` in the seed's shape, with its numbers; returns how many distinct windows
/// it holds.
async fn check_published(server: &Server, text: &str) -> usize {
    let client = server.client().await;
    let rollup = rollup_minutes(&client).await;
    let mut windows = std::collections::BTreeSet::new();
    for line in text.lines() {
        let (topic, payload) = line.split_once(' ').expect("topic and payload");
        let json: serde_json::Value = serde_json::from_str(payload).expect("JSON payload");
        let sensor_id = json["sensor_id"].as_str().expect("sensor_id");
        assert_eq!(topic, format!("rollups/{}/{sensor_id}", json["station_id"].as_str().expect("station_id")));
        for key in ["sensor", "sensor_avg_value", "sensor_smooth_avg_value", "60sec_sum_of_sensor_value", "60sec_number_of_msg"] {
            assert!(!json[key].is_null(), "{key} in {payload}");
        }
        let minute = chrono::NaiveDateTime::parse_from_str(json["record_timestamp"].as_str().expect("time"), "%Y-%m-%d %H:%M:%S%.3f")
            .expect("the seed's time format")
            .and_utc();
        let key =
            (sensor_id.to_owned(), SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(minute.timestamp()).expect("after 1970")));
        let ((avg, _, sum, count), is_final) = rollup.get(&key).unwrap_or_else(|| panic!("published window {key:?} is in weather_1m"));
        assert!(is_final);
        assert_eq!(json["60sec_number_of_msg"].as_i64(), Some(*count));
        assert!(
            close(json["sensor_avg_value"].as_f64().expect("avg"), *avg)
                && close(json["60sec_sum_of_sensor_value"].as_f64().expect("sum"), *sum)
        );
        windows.insert(key);
    }
    windows.len()
}
