//! The cold tier on S3, against moto's server mode (PyPI, installed by `scripts/setup`; it
//! serves S3 as it serves Kinesis): chunks move to the bucket byte for byte, the same queries
//! answer the same rows before and after, the local files go; and while moto is frozen
//! (SIGSTOP), writes and queries of hot data go on and the moves wait, then drain once it is
//! back. `ISOBAR_S3_OUTAGE_S` sets how long moto stays frozen (default 5; 60 for the
//! acceptance run).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Server;
use common::kinesis::{Kind, LocalKinesis, python};

const HOUR_MS: i64 = 3_600_000;
/// 2024-03-01T00:00:00Z.
const BASE_MS: i64 = 1_709_251_200_000;
const BUCKET: &str = "isobar-cold";

fn s3_objects(endpoint: &str, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/s3_objects.py");
    let out = Command::new(python()).arg(script).arg(endpoint).args(args).output().expect("run s3_objects.py");
    assert!(out.status.success(), "s3_objects.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `[storage]` with hour partitions, persists every 100 ms, and chunks moving once 6 hours old
/// (`cold_after_ms`) to the bucket on moto.
fn storage_config(endpoint: &str, cold_after_ms: i64) -> String {
    format!(
        "[storage]\npersist_interval_ms = 100\npartition_duration_ms = {HOUR_MS}\ncold_after_ms = {cold_after_ms}\n\
         [storage.cold]\nbucket = \"{BUCKET}\"\nprefix = \"test/run\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\nallow_http = true\n"
    )
}

/// One row per station every 10 minutes of hours `hours`.
async fn insert(client: &tokio_postgres::Client, hours: std::ops::Range<i64>) {
    for hour in hours {
        let rows: Vec<String> = (0..6)
            .flat_map(|m| {
                ["a", "b", "c"].map(|s| {
                    let ms = BASE_MS + hour * HOUR_MS + m * 600_000;
                    format!("(to_timestamp({ms}::double precision / 1000), '{s}', {}.25)", hour * 10 + m)
                })
            })
            .collect();
        client.batch_execute(&format!("INSERT INTO w (time, station, v) VALUES {}", rows.join(", "))).await.expect("insert");
    }
}

/// Every row, and per station and day the count, sum, min and max, as text.
async fn answers(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT station, time::text, v::text FROM w ORDER BY 1, 2",
        "SELECT station, date_bin(INTERVAL '1 day', time)::text, count(*)::text, sum(v)::text FROM w GROUP BY 1, 2 ORDER BY 1, 2",
    ] {
        for row in client.query(sql, &[]).await.expect("query") {
            out.push((0..row.len()).map(|i| row.get::<_, String>(i)).collect::<Vec<_>>().join(" "));
        }
    }
    out
}

/// Chunks by location, from `system.chunks`.
async fn locations(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client.query("SELECT location FROM system.chunks WHERE table_name = 'w' ORDER BY chunk", &[]).await.expect("chunks");
    rows.iter().map(|r| r.get(0)).collect()
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.path().is_dir() {
            true => out.extend(files(&entry.path())),
            false => out.push(std::fs::read(entry.path()).expect("read")),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_move_to_s3_and_read_the_same_and_an_outage_stops_only_the_moves() {
    let moto = LocalKinesis::start(Kind::Moto);
    s3_objects(&moto.endpoint, &["create", BUCKET]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    // Two days of rows in hour partitions, with nothing moving yet.
    let mut server = Server::start_top(&data, &storage_config(&moto.endpoint, 0));
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE w (time TIMESTAMPTZ, station TEXT, v DOUBLE PRECISION, PRIMARY KEY (station, time))")
        .await
        .expect("create");
    insert(&client, 0..48).await;
    wait_until("48 hour chunks", Duration::from_secs(30), || async { locations(&client).await.len() == 48 }).await;
    let before = answers(&client).await;
    let local_before: BTreeSet<Vec<u8>> = files(&data.join("chunks")).into_iter().collect();
    assert!(local_before.len() > 48, "w's chunks and its rollup's");
    assert_eq!(server.signal("TERM"), Some(0));

    // Hours older than 6 hours before the newest row move: 41 of 48.
    let mut server = Server::start_top(&data, &storage_config(&moto.endpoint, 6 * HOUR_MS));
    let client = server.client().await;
    let cold = |n: usize| {
        let client = &client;
        move || async move { locations(client).await.iter().filter(|l| *l == "cold").count() == n }
    };
    wait_until("41 chunks cold", Duration::from_secs(60), cold(41)).await;
    assert_eq!(answers(&client).await, before, "the same rows and aggregates, read from S3");
    // Left local: 7 hours of w, and its rollup's chunks (rollup_cold_after_ms is 0).
    let local = client.query_one("SELECT count(*) FROM system.chunks WHERE location = 'local'", &[]).await.expect("count");
    assert_eq!(files(&data.join("chunks")).len() as i64, local.get::<_, i64>(0), "the moved chunks' local files are gone");
    assert_eq!(locations(&client).await.len(), 48);
    let objects = dir.path().join("objects");
    s3_objects(&moto.endpoint, &["dump", BUCKET, objects.to_str().expect("utf-8")]);
    let bucket: BTreeSet<Vec<u8>> = files(&objects).into_iter().collect();
    assert_eq!(bucket.len(), 41);
    assert!(bucket.is_subset(&local_before), "every object is a chunk file, byte for byte");
    let metrics = common::http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_cold_chunks_moved_total 41"), "{metrics}");

    // moto frozen: writes and hot queries go on; the 12 hours that become due wait, then move.
    let outage = Duration::from_secs(std::env::var("ISOBAR_S3_OUTAGE_S").ok().and_then(|s| s.parse().ok()).unwrap_or(5));
    let pid = moto.pid().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().expect("kill").success());
    let frozen = Instant::now();
    insert(&client, 48..60).await;
    let hot = client
        .query_one("SELECT count(*) FROM w WHERE time >= to_timestamp($1::double precision / 1000)", &[&((BASE_MS + 48 * HOUR_MS) as f64)])
        .await;
    assert_eq!(hot.expect("hot query").get::<_, i64>(0), 12 * 18, "hot rows answer while S3 is away");
    assert!(frozen.elapsed() < outage, "writes and hot queries took {:?}", frozen.elapsed());
    tokio::time::sleep(outage.saturating_sub(frozen.elapsed())).await;
    assert_eq!(locations(&client).await.iter().filter(|l| *l == "cold").count(), 41, "nothing moved while S3 was away");
    let due = client.query_one("SELECT count(*) FROM system.chunks WHERE cold_due", &[]).await.expect("backlog");
    assert_eq!(due.get::<_, i64>(0), 12, "system.chunks shows the backlog");
    let metrics = common::http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_cold_backlog_chunks 12"), "{metrics}");
    assert!(Command::new("kill").args(["-CONT", &pid]).status().expect("kill").success());
    wait_until("the backlog drains", Duration::from_secs(120), cold(53)).await;
    let metrics = common::http_get(server.http_port, "/metrics");
    assert!(metrics.contains("isobar_cold_backlog_chunks 0"), "{metrics}");
    assert_eq!(server.signal("TERM"), Some(0));
}
