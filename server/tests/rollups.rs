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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_the_raw_rows_after_a_kill_mid_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, Server::SEED_RULE, "");
    let mut server = Server::start_config(&data, &config);
    let mut fleet = simulate(&server, 10);
    // Kill isobar once a few minutes are final, while the fleet still publishes.
    wait_for_finals(&server, 12 * 2, false).await;
    server.signal("KILL");
    assert!(fleet.try_wait().expect("fleet").is_none(), "the fleet was still publishing");
    let _ = fleet.wait();
    let server = Server::start_config(&data, &config);
    wait_for_finals(&server, 12 * 2, true).await;
}
