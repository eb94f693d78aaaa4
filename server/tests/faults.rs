//! Disk faults under a real `isobar serve`: EIO and ENOSPC injected into the calls the binary
//! and RocksDB make (`common/faults.rs`). Nothing acknowledged is lost, every failure is
//! reported (the client's error, `/health`, `/metrics`), a failed WAL write or fsync refuses
//! all later writes until a restart (never retried and then acknowledged), failing chunk
//! writes are retried until they succeed, without a restart, and a nearly full disk refuses
//! writes before the WAL meets ENOSPC, until space returns.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::faults::Faults;
use common::{Server, http_get};

const TABLE: &str = "CREATE TABLE m (time TIMESTAMPTZ, s TEXT, v BIGINT, PRIMARY KEY (s, time))";

async fn insert(client: &tokio_postgres::Client, i: i64) -> Result<u64, tokio_postgres::Error> {
    client.execute("INSERT INTO m (time, s, v) VALUES (to_timestamp($1::BIGINT), 's', $1::BIGINT)", &[&i]).await
}

/// What the server said.
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), |d| format!("{} {}", d.code().code(), d.message()))
}

/// The values stored in `m`.
async fn stored(client: &tokio_postgres::Client) -> Vec<i64> {
    client.query("SELECT v FROM m ORDER BY v", &[]).await.expect("select").iter().map(|r| r.get(0)).collect()
}

/// Polls `condition` until it holds; panics with `what` after a minute.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn health(server: &Server) -> String {
    http_get(server.http_port, "/health")
}

fn start(data: &Path, config: &Path, faults: &Faults) -> Server {
    Server::start_env("serve", data, config, &faults.env())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wal_write_or_fsync_refuses_writes_until_restart_and_loses_nothing_acknowledged() {
    for (errno, ops) in [("EIO", "sync"), ("ENOSPC", "write"), ("EIO", "write")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let faults = Faults::build(&dir.path().join("faults"));
        let config = Server::config(&data, "", "");
        let mut server = start(&data, &config, &faults);
        let client = server.client().await;
        client.batch_execute(TABLE).await.expect("create");
        let mut acknowledged = Vec::new();
        for i in 0..50 {
            insert(&client, i).await.expect("insert");
            acknowledged.push(i);
        }
        // The WAL lives in RocksDB under catalog/: its next append or fsync fails.
        faults.fail(errno, ops, &data.join("catalog"), 0);
        let e = insert(&client, 50).await.expect_err("a write whose WAL record failed is not acknowledged");
        let said = message(&e);
        assert!(said.starts_with("58030 ") && said.contains("WAL write failed"), "{errno} {ops}: {said}");
        assert!(!faults.injected().is_empty(), "the fault was hit");
        assert!(health(&server).contains("503") && health(&server).contains("writes refused"), "{}", health(&server));
        // The disk recovers, but what the failed call covered may be lost: isobar keeps refusing
        // rather than retry and acknowledge.
        faults.clear();
        let e = insert(&client, 51).await.expect_err("still refused");
        assert!(message(&e).starts_with("58030 ") && message(&e).contains("stopped accepting writes"), "{}", message(&e));
        assert!(http_get(server.http_port, "/metrics").contains("isobar_storage_health{state=\"writes_refused\"} 1"));
        assert_eq!(stored(&client).await, acknowledged, "queries still answer");
        drop(client);
        server.signal("KILL");

        let server = start(&data, &config, &faults);
        let client = server.client().await;
        let after = stored(&client).await;
        assert!(acknowledged.iter().all(|i| after.contains(i)), "{errno} {ops}: lost acknowledged rows: {after:?}");
        assert!(health(&server).contains("200 OK"), "{}", health(&server));
        insert(&client, 52).await.expect("writes again after the restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_chunk_writes_are_reported_and_retried_until_they_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let faults = Faults::build(&dir.path().join("faults"));
    let config = Server::config(&data, "[storage]\npersist_interval_ms = 200\nrollup_interval_ms = 0\n", "");
    let mut server = start(&data, &config, &faults);
    let client = server.client().await;
    client.batch_execute(TABLE).await.expect("create");
    let chunks = data.join("chunks");
    let mut next = 0;
    for (errno, ops) in [("ENOSPC", "write"), ("EIO", "write"), ("EIO", "sync"), ("ENOSPC", "create"), ("EIO", "rename")] {
        faults.fail(errno, ops, &chunks, 0);
        for _ in 0..20 {
            insert(&client, next).await.unwrap_or_else(|e| panic!("{errno} {ops}: the WAL is fine, the write is acknowledged: {e}"));
            next += 1;
        }
        wait_for("health to report the failing persist", || health(&server).contains("503"));
        let reported = health(&server);
        assert!(reported.contains("background work failing") && reported.contains("persist"), "{errno} {ops}: {reported}");
        assert!(faults.injected().iter().any(|l| l.starts_with(errno)), "{errno} {ops}: {:?}", faults.injected());
        assert_eq!(stored(&client).await, (0..next).collect::<Vec<_>>(), "{errno} {ops}: rows stay readable from the buffer");
        faults.clear();
        wait_for("a retried persist to succeed", || health(&server).contains("200 OK"));
    }
    assert!(http_get(server.http_port, "/metrics").contains("isobar_storage_health{state=\"ok\"} 1"));
    drop(client);
    server.signal("KILL");
    let server = start(&data, &config, &faults);
    let client = server.client().await;
    assert_eq!(stored(&client).await, (0..next).collect::<Vec<_>>(), "every acknowledged row after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_refuses_writes_until_space_returns_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let faults = Faults::build(&dir.path().join("faults"));
    let config = Server::config(&data, "[storage]\ndisk_free_min_bytes = 104857600\n", "");
    let server = start(&data, &config, &faults);
    let client = server.client().await;
    client.batch_execute(TABLE).await.expect("create");
    for i in 0..20 {
        insert(&client, i).await.expect("insert");
    }
    // 50 MiB left, under the 100 MiB margin.
    faults.free_space(50 << 20, &data);
    wait_for("health to report the full disk", || health(&server).contains("503"));
    let e = insert(&client, 20).await.expect_err("refused while the disk is nearly full");
    let said = message(&e);
    assert!(said.starts_with("53100 ") && said.contains("disk_free_min_bytes"), "{said}");
    assert!(health(&server).contains("writes refused until space is freed"), "{}", health(&server));
    assert!(http_get(server.http_port, "/metrics").contains("isobar_storage_health{state=\"disk_full\"} 1"));
    assert_eq!(stored(&client).await, (0..20).collect::<Vec<_>>(), "queries still answer");
    // Space is freed: writes resume by themselves, no restart.
    faults.clear();
    wait_for("health to recover", || health(&server).contains("200 OK"));
    insert(&client, 20).await.expect("writes resume once space returns");
    assert_eq!(stored(&client).await, (0..21).collect::<Vec<_>>());
}
