//! isobar consuming a real local Kinesis server (kinesalite and moto, which each lack what the
//! other has): plain and KPL-aggregated records become one row per reading, bad records become
//! dead letters without stopping their neighbours, and neither SIGKILLs, a shard split or
//! merge, nor throttled and expired calls lose or double a record.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::kinesis::{FaultProxy, Kind, LocalKinesis};

const STREAM: &str = "weather";

/// The configuration consuming `STREAM` at `endpoint` through the seed-shaped rule, with
/// `extra` lines in `[[kinesis]]`.
fn config(endpoint: &str, extra: &str) -> String {
    format!(
        "[[kinesis]]\nstream = \"{STREAM}\"\nendpoint = \"{endpoint}\"\n{extra}\nregion = \"us-east-1\"\naccess_key_id = \"isobar\"\n\
         secret_access_key = \"isobar\"\nidle_poll_ms = 200\nlist_interval_ms = 1000\n\
         [[kinesis.rules]]\nname = \"weather\"\n\
         sql = \"SELECT sensor_id, station_id, cast(sensor_timestamp AS bigint) AS sensor_timestamp, \
         cast(sensor_value AS double) AS sensor_value, shard_id() AS shard, timestamp() AS read_ms FROM '{STREAM}'\"\n\
         table = \"weather\"\ntags = [\"station_id\", \"sensor_id\", \"shard\"]\ntime = \"sensor_timestamp\"\ntime_unit = \"ms\"\n"
    )
}

/// Waits until `weather` holds readings `0..n`, each once.
async fn wait_for_readings(server: &Server, n: i64) {
    wait_for_range(server, 0..n).await;
}

/// Waits until `weather` holds exactly the readings of `range`, each once.
async fn wait_for_range(server: &Server, range: std::ops::Range<i64>) {
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let query = "SELECT count(*), coalesce(sum(sensor_value), 0), min(sensor_value) FROM weather";
    let n = range.end - range.start;
    loop {
        let found = client.query_one(query, &[]).await.map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1), r.get::<_, Option<f64>>(2)));
        if let Ok((count, sum, min)) = found {
            assert!(count <= n, "more rows than readings: {count} > {n}");
            assert!(min.is_none_or(|m| m >= range.start as f64), "a reading before {}: {min:?}", range.start);
            if count == n {
                assert_eq!(sum, range.sum::<i64>() as f64, "each reading once");
                return;
            }
        }
        assert!(Instant::now() < deadline, "{n} readings arrive; found {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every shard of the stream was polled at least once.
async fn wait_until_polled(server: &Server, shards: i64) {
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let query = "SELECT count(*) FROM system.kinesis_shards WHERE millis_behind IS NOT NULL";
    while client.query_one(query, &[]).await.expect("system.kinesis_shards").get::<_, i64>(0) < shards {
        assert!(Instant::now() < deadline, "{shards} shards polled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dead letters of the stream's records, as (reason, client) pairs.
async fn dead_letters(server: &Server) -> Vec<(String, String)> {
    let client = server.client().await;
    let rows = client
        .query("SELECT reason, client FROM system.ingest_errors WHERE source = 'kinesis:weather' ORDER BY time", &[])
        .await
        .expect("dead letters");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

async fn consume(kind: Kind) {
    let kinesis = LocalKinesis::start(kind);
    kinesis.put(&["create", STREAM, "2"]);
    kinesis.put(&["put", STREAM, "0", "300"]);
    // A producer's retries: the same readings again, under new sequence numbers.
    kinesis.put(&["put", STREAM, "0", "10"]);
    kinesis.put(&["aggregate", STREAM, "300", "450", "50"]);
    kinesis.put(&["bad", STREAM]);

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, &config(&kinesis.endpoint, ""), "");
    let mut server = Server::start_config(&data, &config);
    wait_for_readings(&server, 450).await;

    // The bad records: not JSON, a time its cast refuses, a broken aggregate; each named by
    // shard and sequence number, none holding back the readings around them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut letters = dead_letters(&server).await;
    while letters.len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        letters = dead_letters(&server).await;
    }
    assert_eq!(letters.len(), 3, "{letters:?}");
    let reasons: Vec<&str> = letters.iter().map(|(r, _)| r.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("not JSON")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("time sensor_timestamp is missing")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("KPL-aggregated record")), "{reasons:?}");
    assert!(letters.iter().all(|(_, client)| client.starts_with("shardId-")), "{letters:?}");

    // Every row names the shard it came from (a tag, from `shard_id()`), and the plain
    // readings of a partition key (a sensor) came from one shard. (An aggregate is put under
    // its first reading's key, so its readings share that key's shard.)
    let client = server.client().await;
    let shards = client
        .query("SELECT sensor_id, count(DISTINCT shard) FROM weather WHERE sensor_value < 300 GROUP BY sensor_id", &[])
        .await
        .expect("shards per sensor");
    assert_eq!(shards.len(), 8);
    assert!(shards.iter().all(|r| r.get::<_, i64>(1) == 1));

    // Killed, with more put while it is away: they are read once from the checkpoints.
    server.signal("KILL");
    kinesis.put(&["put", STREAM, "450", "600"]);
    if kind == Kind::Moto {
        // moto 5.2 keeps putting records into a shard it closed by a split, so no consumer that
        // reads a parent to its end before its children can follow its reshards; kinesalite
        // reshards as Kinesis does.
        let server = Server::start_config(&data, &config);
        wait_for_readings(&server, 600).await;
        kinesis.put(&["put", STREAM, "600", "850"]);
        wait_for_readings(&server, 850).await;
        assert_eq!(dead_letters(&server).await.len(), 3, "bad records stored once");
        shards_checkpointed_at_their_ends(&server, &kinesis, 0).await;
        return;
    }
    // While it is still away, a split and a merge between readings: at its start the parents
    // hold readings that their children's follow.
    kinesis.put(&["split", STREAM]);
    kinesis.put(&["put", STREAM, "600", "700"]);
    kinesis.put(&["merge", STREAM]);
    kinesis.put(&["put", STREAM, "700", "750"]);
    let server = Server::start_config(&data, &config);
    wait_for_readings(&server, 750).await;
    // Per partition key, the readings were stored in the order they were put: a parent's before
    // its children's (`read_ms` is when isobar read each; the readings before 450 include a
    // producer's repeats).
    let out_of_order = "SELECT count(*) FROM (SELECT read_ms - lag(read_ms) OVER (PARTITION BY sensor_id ORDER BY time) AS d \
                        FROM weather WHERE sensor_value >= 450) AS r WHERE d < 0";
    let client = server.client().await;
    assert_eq!(client.query_one(out_of_order, &[]).await.expect("order").get::<_, i64>(0), 0);
    // A split and a merge while it reads.
    kinesis.put(&["split", STREAM]);
    kinesis.put(&["put", STREAM, "750", "775"]);
    wait_for_readings(&server, 775).await;
    kinesis.put(&["merge", STREAM]);
    kinesis.put(&["put", STREAM, "775", "800"]);
    wait_for_readings(&server, 800).await;
    let mut server = server;
    server.signal("KILL");
    let server = Server::start_config(&data, &config);
    kinesis.put(&["put", STREAM, "800", "850"]);
    wait_for_readings(&server, 850).await;
    assert_eq!(dead_letters(&server).await.len(), 3, "bad records stored once");
    shards_checkpointed_at_their_ends(&server, &kinesis, 6).await;
}

/// Waits until `system.kinesis_shards` shows every shard checkpointed at its last record and
/// every closed shard (`closed` of them) finished.
async fn shards_checkpointed_at_their_ends(server: &Server, kinesis: &LocalKinesis, closed: usize) {
    let mut expected: Vec<(String, Option<String>, String)> = kinesis
        .put(&["last", STREAM])
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let (shard, closed, last) = (words.next().expect("shard"), words.next().expect("closed"), words.next());
            let state = if closed == "closed" { "finished" } else { "reading" };
            (shard.to_owned(), last.map(str::to_owned), state.to_owned())
        })
        .collect();
    expected.sort();
    assert_eq!(expected.iter().filter(|(_, _, state)| state == "finished").count(), closed, "{expected:?}");
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = client
            .query("SELECT shard, checkpoint, state FROM system.kinesis_shards WHERE stream = 'weather' ORDER BY shard", &[])
            .await
            .expect("system.kinesis_shards");
        let found: Vec<(String, Option<String>, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
        if found == expected {
            return;
        }
        assert!(Instant::now() < deadline, "checkpoints at the shards' ends: expected {expected:?}, found {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_kinesalite_is_consumed_exactly_once() {
    consume(Kind::Kinesalite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_moto_is_consumed_exactly_once() {
    consume(Kind::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_at_random_moments_lose_and_double_nothing() {
    const CYCLES: i64 = 20;
    const PER_CYCLE: i64 = 100;
    let kinesis = LocalKinesis::start(Kind::Kinesalite);
    kinesis.put(&["create", STREAM, "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Small reads, so that a kill lands between the writes of one backlog.
    let config = Server::config(&data, &config(&kinesis.endpoint, "records_per_call = 20"), "");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for cycle in 0..CYCLES {
        let (from, to) = ((cycle * PER_CYCLE).to_string(), ((cycle + 1) * PER_CYCLE).to_string());
        kinesis.put(&["put", STREAM, &from, &to]);
        let mut server = Server::start_config(&data, &config);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The kill is the test: at a moment anywhere in the consumption of the backlog.
        std::thread::sleep(Duration::from_millis(300 + seed % 900));
        server.signal("KILL");
    }
    let mut server = Server::start_config(&data, &config);
    wait_for_readings(&server, CYCLES * PER_CYCLE).await;
    shards_checkpointed_at_their_ends(&server, &kinesis, 0).await;

    // Started again with nothing new, it reads on from the checkpoints: no record again (a
    // stream read anew would also leave each reading once, replacing itself).
    server.signal("KILL");
    let server = Server::start_config(&data, &config);
    wait_until_polled(&server, 2).await;
    let client = server.client().await;
    let read: i64 = client.query_one("SELECT sum(records) FROM system.kinesis_shards", &[]).await.expect("records read").get(0);
    assert_eq!(read, 0, "records read again after a restart");
    wait_for_readings(&server, CYCLES * PER_CYCLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_expired_calls_lose_nothing_and_keep_to_the_call_rate() {
    let kinesis = LocalKinesis::start(Kind::Kinesalite);
    kinesis.put(&["create", STREAM, "2"]);
    kinesis.put(&["put", STREAM, "0", "150"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("calls.log");
    let proxy = FaultProxy::start(&kinesis, &log, &[]);
    let data = dir.path().join("data");
    let config = Server::config(&data, &config(&proxy.endpoint, "records_per_call = 10"), "");
    let server = Server::start_config(&data, &config);
    wait_for_readings(&server, 150).await;
    kinesis.put(&["put", STREAM, "150", "300"]);
    wait_for_readings(&server, 300).await;

    let calls: Vec<(f64, String, String)> = std::fs::read_to_string(&log)
        .expect("proxy log")
        .lines()
        .map(|l| {
            let mut words = l.split(' ');
            let (time, shard, outcome) = (words.next().expect("time"), words.next().expect("shard"), words.next().expect("outcome"));
            (time.parse().expect("time"), shard.to_owned(), outcome.to_owned())
        })
        .collect();
    let count = |what: &str| calls.iter().filter(|(_, _, o)| o == what).count();
    assert!(count("throttled") >= 3 && count("expired") >= 2, "faults injected: {calls:?}");
    // At most 5 calls a second on each shard, and one more for calls paced 200 ms apart on
    // isobar's side that arrive a little closer together at the proxy.
    assert!(calls.iter().all(|(_, shard, _)| shard.starts_with("shardId-")), "every call's shard known: {calls:?}");
    for (i, (start, shard, _)) in calls.iter().enumerate() {
        let within = calls[i..].iter().take_while(|(t, _, _)| t - start < 1.0).filter(|(_, s, _)| s == shard).count();
        assert!(within <= 6, "{within} GetRecords calls on {shard} within 1 s of {start}");
    }
    // Counted in /metrics (isobar keeps polling, so the log read after may hold more). A
    // throttle the proxy has logged may still be on its way to isobar: wait until the counter
    // has caught up with the log read above.
    let counted = || {
        let metrics = common::http_get(server.http_port, "/metrics");
        let throttles = metrics.lines().find_map(|l| l.strip_prefix("isobar_kinesis_throttles_total ")).expect("throttle counter");
        throttles.parse::<usize>().expect("count")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut throttles = counted();
    while throttles < count("throttled") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        throttles = counted();
    }
    let logged_after = std::fs::read_to_string(&log).expect("proxy log").matches(" throttled").count();
    assert!((count("throttled")..=logged_after).contains(&throttles), "{throttles} throttles counted, {logged_after} injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_at_timestamp_start_where_they_say() {
    let kinesis = LocalKinesis::start(Kind::Kinesalite);
    kinesis.put(&["create", STREAM, "2"]);
    kinesis.put(&["put", STREAM, "0", "100"]);
    // Readings 0..100 arrived before the boundary, 100..150 after it (the stream keeps arrival
    // times in milliseconds).
    let boundary = chrono::Utc::now() + chrono::Duration::milliseconds(2);
    std::thread::sleep(Duration::from_millis(5));
    kinesis.put(&["put", STREAM, "100", "150"]);
    let dir = tempfile::tempdir().expect("tempdir");

    let at = boundary.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let data = dir.path().join("at");
    let extra = format!("start = \"at_timestamp\"\nstart_timestamp = \"{at}\"");
    let server = Server::start_config(&data, &Server::config(&data, &config(&kinesis.endpoint, &extra), ""));
    wait_for_range(&server, 100..150).await;
    drop(server);

    let data = dir.path().join("latest");
    let server = Server::start_config(&data, &Server::config(&data, &config(&kinesis.endpoint, "start = \"latest\""), ""));
    wait_until_polled(&server, 2).await;
    kinesis.put(&["put", STREAM, "150", "200"]);
    wait_for_range(&server, 150..200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_listed_a_page_at_a_time_are_all_read() {
    // moto pages ListShards by MaxResults (kinesalite ignores it); the proxy asks for pages of one.
    let kinesis = LocalKinesis::start(Kind::Moto);
    kinesis.put(&["create", STREAM, "4"]);
    kinesis.put(&["put", STREAM, "0", "200"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = FaultProxy::start(&kinesis, &dir.path().join("calls.log"), &["--pages-of", "1"]);
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, &config(&proxy.endpoint, ""), ""));
    wait_for_readings(&server, 200).await;
    let client = server.client().await;
    let shards: i64 = client.query_one("SELECT count(DISTINCT shard) FROM weather", &[]).await.expect("shards").get(0);
    assert_eq!(shards, 4, "readings from every shard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_are_consumed_at_once_each_through_its_rules() {
    let kinesis = LocalKinesis::start(Kind::Kinesalite);
    for (stream, from, to) in [("north", "0", "60"), ("south", "60", "100")] {
        kinesis.put(&["create", stream, "1"]);
        kinesis.put(&["put", stream, from, to]);
    }
    let source = |stream: &str| {
        format!(
            "[[kinesis]]\nstream = \"{stream}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"x\"\n\
             secret_access_key = \"x\"\nidle_poll_ms = 200\n[[kinesis.rules]]\nname = \"{stream}\"\n\
             sql = \"SELECT sensor_id, sensor_timestamp, cast(sensor_value AS double) AS sensor_value FROM '{stream}'\"\n\
             table = \"{stream}\"\ntags = [\"sensor_id\"]\ntime = \"sensor_timestamp\"\ntime_unit = \"ms\"\n",
            kinesis.endpoint
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, &format!("{}{}", source("north"), source("south")), "");
    let server = Server::start_config(&data, &config);
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = "SELECT (SELECT count(*) FROM north) AS a, (SELECT sum(sensor_value) FROM north) AS b, \
                 (SELECT count(*) FROM south) AS c, (SELECT sum(sensor_value) FROM south) AS d";
    let expected = (60, (0..60).sum::<i64>() as f64, 40, (60..100).sum::<i64>() as f64);
    loop {
        let found =
            client.query_one(query, &[]).await.map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1), r.get::<_, i64>(2), r.get::<_, f64>(3)));
        if found.as_ref().ok() == Some(&expected) {
            break;
        }
        assert!(Instant::now() < deadline, "both streams consumed: {found:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shards = client.query("SELECT stream FROM system.kinesis_shards ORDER BY stream", &[]).await.expect("shards");
    assert_eq!(shards.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>(), ["north", "south"]);
}
