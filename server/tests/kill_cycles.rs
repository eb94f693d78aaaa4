//! Kill cycles: a real `isobar serve` takes rows over pgwire COPY, multi-row INSERT, line
//! protocol over HTTP or MQTT QoS 1 and is SIGKILLed at a random moment, again and again; after
//! each restart every row it acknowledged (a COPY's or INSERT's `CommandComplete`, a 204, a
//! PUBACK) is there. Persists run during the load, so some kills
//! land in them.
//!
//! `ISOBAR_KILL_CYCLES` sets the number of cycles per test (default 5);
//! `./scripts/kill-cycles` runs 100 of each, with the storage engine's own crash test.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;
use futures::SinkExt;
use rand::Rng;

const STORAGE: &str = "[storage]\npersist_interval_ms = 100\npersist_buffer_bytes = 1048576\n";

fn cycles() -> usize {
    std::env::var("ISOBAR_KILL_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(5)
}

/// A random moment into the load.
fn pause() -> Duration {
    Duration::from_millis(rand::rng().random_range(50..600))
}

/// The `v` values stored in `table`.
async fn stored(server: &Server, table: &str, column: &str) -> BTreeSet<i64> {
    let client = server.client().await;
    let rows = client.query(&format!("SELECT CAST({column} AS BIGINT) FROM {table}"), &[]).await.expect("read back");
    rows.iter().map(|r| r.get::<_, i64>(0)).collect()
}

fn check_acknowledged(acknowledged: &BTreeSet<i64>, stored: &BTreeSet<i64>, cycle: usize) {
    let lost: Vec<_> = acknowledged.difference(stored).take(10).collect();
    assert!(lost.is_empty(), "cycle {cycle}: acknowledged rows lost after SIGKILL: {lost:?} (of {})", acknowledged.len());
}

/// Rows in each acknowledged unit (a COPY, an INSERT statement, a line protocol body).
const ROWS_PER_BATCH: i64 = 200;

/// How a test writes batch `b` (the rows `v` = b * ROWS_PER_BATCH .. (b + 1) * ROWS_PER_BATCH
/// of table `m`): until the server goes away, from `first` on, sending each acknowledged batch
/// on `acks`.
type Writer = fn(&Server, i64, std::sync::mpsc::Sender<i64>) -> tokio::task::JoinHandle<()>;

/// Kill cycles against a server writing `m` with `writer`: after each SIGKILL and restart,
/// every row of every acknowledged batch is there.
async fn kill_cycles(path: &str, writer: Writer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, STORAGE, "");
    let mut server = Server::start_config(&data, &config);
    server
        .client()
        .await
        .batch_execute("CREATE TABLE m (time TIMESTAMPTZ, s TEXT, v BIGINT, PRIMARY KEY (s, time))")
        .await
        .expect("create");
    let mut acknowledged = BTreeSet::new();
    let mut next = 0i64;
    for cycle in 0..cycles() {
        let (acks, acked) = std::sync::mpsc::channel();
        let writing = writer(&server, next, acks);
        let first = acked.recv_timeout(Duration::from_secs(30)).expect("a batch is acknowledged");
        std::thread::sleep(pause());
        server.signal("KILL");
        writing.await.expect("writer");
        // Batches cut off by the kill were never acknowledged, so they are not counted.
        let acked: Vec<i64> = [first].into_iter().chain(acked.try_iter()).collect();
        for batch in &acked {
            acknowledged.extend(batch * ROWS_PER_BATCH..(batch + 1) * ROWS_PER_BATCH);
        }
        next = acked.iter().max().map_or(next, |b| b + 1);
        server = Server::start_config(&data, &config);
        check_acknowledged(&acknowledged, &stored(&server, "m", "v").await, cycle);
    }
    assert!(acknowledged.len() >= cycles() * ROWS_PER_BATCH as usize, "only {} rows were acknowledged in all", acknowledged.len());
    eprintln!("{path}: {} kills, {} rows acknowledged, every one kept", cycles(), acknowledged.len());
}

/// The values of batch `batch`.
fn batch_values(batch: i64) -> std::ops::Range<i64> {
    batch * ROWS_PER_BATCH..(batch + 1) * ROWS_PER_BATCH
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgwire_copy_loses_no_acknowledged_row_across_kills() {
    kill_cycles("COPY", |server, first, acks| {
        let port = server.pg_port;
        tokio::spawn(async move {
            let client = common::connect(port).await;
            for batch in first.. {
                let Ok(sink) = client.copy_in("COPY m (time, s, v) FROM STDIN").await else { break };
                futures::pin_mut!(sink);
                let rows: String = batch_values(batch).map(|v| format!("{}\ts{}\t{v}\n", timestamp(v), v % 7)).collect();
                if sink.send(bytes::Bytes::from(rows)).await.is_err() {
                    break;
                }
                match sink.finish().await {
                    Ok(n) => {
                        assert_eq!(n, ROWS_PER_BATCH as u64, "COPY reports every row");
                        let _ = acks.send(batch);
                    }
                    Err(_) => break,
                }
            }
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_row_insert_loses_no_acknowledged_row_across_kills() {
    kill_cycles("INSERT", |server, first, acks| {
        let port = server.pg_port;
        tokio::spawn(async move {
            let client = common::connect(port).await;
            for batch in first.. {
                let values: Vec<String> = batch_values(batch).map(|v| format!("('{}', 's{}', {v})", timestamp(v), v % 7)).collect();
                let sql = format!("INSERT INTO m (time, s, v) VALUES {}", values.join(", "));
                // Both fast paths: the extended protocol's (from the syntax tree) and the
                // simple protocol's (read from the text).
                let inserted = match batch % 2 {
                    0 => client.execute(&sql, &[]).await,
                    _ => client.simple_query(&sql).await.map(|messages| {
                        messages
                            .iter()
                            .find_map(|m| match m {
                                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                                _ => None,
                            })
                            .unwrap_or(0)
                    }),
                };
                match inserted {
                    Ok(n) => {
                        assert_eq!(n, ROWS_PER_BATCH as u64, "INSERT reports every row");
                        let _ = acks.send(batch);
                    }
                    Err(_) => break,
                }
            }
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_loses_no_acknowledged_row_across_kills() {
    kill_cycles("line protocol", |server, first, acks| {
        let port = server.http_port;
        tokio::task::spawn_blocking(move || {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return };
            for batch in first.. {
                let body: String = batch_values(batch).map(|v| format!("m,s=s{} v={v}i {}\n", v % 7, 1_700_000_000 + v)).collect();
                let head = format!("POST /write?db=x&precision=s HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
                if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).is_err() {
                    break;
                }
                // A 204 has no body: its head is the whole answer.
                let mut answer = Vec::new();
                let mut byte = [0u8; 1];
                while !answer.ends_with(b"\r\n\r\n") && matches!(std::io::Read::read(&mut stream, &mut byte), Ok(1)) {
                    answer.push(byte[0]);
                }
                match answer.starts_with(b"HTTP/1.1 204") && answer.ends_with(b"\r\n\r\n") {
                    true => {
                        let _ = acks.send(batch);
                    }
                    false => break,
                }
            }
        })
    })
    .await;
}

/// Row `v`'s time: a second apart from its neighbours'.
fn timestamp(v: i64) -> String {
    chrono::DateTime::from_timestamp(1_700_000_000 + v, 0).expect("in range").to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_qos1_loses_no_acknowledged_reading_across_kills() {
    const MESSAGES_PER_CYCLE: i64 = 30_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = Server::config(&data, &format!("{}\n{STORAGE}", Server::SEED_RULE), "");
    let mut server = Server::start_config(&data, &config);
    let mut acknowledged = BTreeSet::new();
    for cycle in 0..cycles() {
        let first = cycle as i64 * MESSAGES_PER_CYCLE;
        // mosquitto_pub -l sends a line per message with packet ids 1, 2, ... in order and,
        // with -d, prints each PUBACK's id.
        let mut publisher = Command::new("stdbuf")
            .args(["-oL", "mosquitto_pub", "-d", "-h", "127.0.0.1", "-p", &server.mqtt_port.to_string(), "-q", "1", "-l"])
            .args(["-i", &format!("device-{cycle}"), "-t", "weather/wa/seattle/st-1/temperature/t-1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_pub");
        let mut stdin = publisher.stdin.take().expect("stdin");
        let feeder = std::thread::spawn(move || {
            for i in first..first + MESSAGES_PER_CYCLE {
                let line = format!("{{\"sensor_timestamp\": {}, \"sensor_value\": {i}, \"direction\": 1}}\n", 1_700_000_000_000 + i * 1000);
                if stdin.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        });
        let stdout = publisher.stdout.take().expect("stdout");
        let (acks, acked) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mid =
                |line: &str| line.split("received PUBACK (Mid: ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<i64>().ok();
            for mid in BufReader::new(stdout).lines().map_while(Result::ok).filter_map(|l| mid(&l)) {
                let _ = acks.send(mid);
            }
        });
        let first_ack = acked.recv_timeout(Duration::from_secs(30)).expect("a PUBACK");
        std::thread::sleep(pause());
        server.signal("KILL");
        let _ = publisher.kill();
        let _ = publisher.wait();
        let _ = feeder.join();
        reader.join().expect("reader");
        acknowledged.extend([first_ack].into_iter().chain(acked.try_iter()).map(|mid| first + mid - 1));
        server = Server::start_config(&data, &config);
        check_acknowledged(&acknowledged, &stored(&server, "weather", "sensor_value").await, cycle);
    }
    assert!(acknowledged.len() >= cycles() * 10, "only {} readings were acknowledged in all", acknowledged.len());
    eprintln!("MQTT QoS 1: {} kills, {} readings acknowledged, every one kept", cycles(), acknowledged.len());
}
