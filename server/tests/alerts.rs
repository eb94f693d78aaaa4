//! Alerts end to end: a sensor pushed over a threshold fires exactly once and resolves once it
//! returns, told to a webhook receiver in this test (which refuses the first attempt, so the
//! retry is exercised, and checks the signature), to moto's SNS in server mode (through an SQS
//! queue subscribed to the topic) and to an MQTT subscriber of isobar's listener; isobar is
//! killed while the series fires and keeps its state across the restart.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Server;
use common::kinesis::{Kind, LocalKinesis, python};
use common::mosquitto::Subscriber;

const MINUTE_MS: i64 = 60_000;
const SECRET: &str = "webhook-s3cret";

/// One request the webhook receiver took: its headers (names in lower case) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
    accepted: bool,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON notification")
    }
}

/// An HTTP receiver on a free port that answers 500 to its first request and 204 after.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut stream = stream;
                loop {
                    let mut headers = Vec::new();
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.trim_end().split_once(':') {
                            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                        }
                    }
                    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).expect("body");
                    let mut log = log.lock().expect("log");
                    let accepted = !log.is_empty();
                    log.push(Received { headers, body: String::from_utf8_lossy(&body).into_owned(), accepted });
                    let status = if accepted { "204 No Content" } else { "500 Internal Server Error" };
                    let _ = stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes());
                }
            });
        }
    });
    (port, received)
}

/// `tests/python/sns_sqs.py ENDPOINT args...`'s output.
fn sns_sqs(endpoint: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sns_sqs.py");
    let out = Command::new(python()).arg(script).arg(endpoint).args(args).output().expect("run sns_sqs.py");
    assert!(out.status.success(), "sns_sqs.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(webhook_port: u16, topic_arn: &str, moto: &str) -> String {
    format!(
        r#"
[[alerts]]
name = "hot"
table = "weather_1m"
condition = "v_max > 40"
for_windows = 2
notify = ["hook", "sns", "mqtt"]

[[notifiers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{webhook_port}/isobar"
secret = "{SECRET}"

[[notifiers]]
name = "sns"
kind = "sns"
topic_arn = "{topic_arn}"
endpoint = "{moto}"
access_key_id = "test"
secret_access_key = "test"

[[notifiers]]
name = "mqtt"
kind = "mqtt"
topic = "alerts/{{alert}}/{{sensor}}/{{state}}"
qos = 1
"#
    )
}

/// Waits until `check` holds, for at most a minute.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state of each series of alert `hot`.
async fn states(server: &Server) -> Vec<(String, String, i64)> {
    let client = server.client().await;
    let rows = client
        .query("SELECT series, state, breaching_windows FROM system.alerts WHERE alert = 'hot' ORDER BY series", &[])
        .await
        .expect("system.alerts");
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

/// One reading per sensor at 10 s into minute `minute` after `start_ms`.
async fn readings(server: &Server, start_ms: i64, minute: i64, hot: f64) {
    let at = chrono::DateTime::from_timestamp_millis(start_ms + minute * MINUTE_MS + 10_000).expect("time").to_rfc3339();
    let client = server.client().await;
    client
        .batch_execute(&format!("INSERT INTO weather (time, sensor, v) VALUES ('{at}', 'hot', {hot}), ('{at}', 'calm', 20)"))
        .await
        .expect("insert");
}

/// The alert state in `alerts.json` (`docs/file-format.md`).
fn alert_state(data: &Path) -> serde_json::Value {
    std::fs::read(data.join("alerts.json")).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

/// Notifications from SNS, through the queue subscribed to the topic, until there are `n`.
async fn sns_messages(moto: &str, queue: &str, n: usize) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    until("SNS's notifications", || {
        got.extend(sns_sqs(moto, &["receive", queue]).lines().map(|l| serde_json::from_str(l).expect("JSON")));
        let enough = got.len() >= n;
        async move { enough }
    })
    .await;
    got
}

fn verify_signature(request: &Received) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signed = format!("{}.{}", request.header("x-isobar-timestamp"), request.body);
    let hex = request.header("x-isobar-signature").strip_prefix("sha256=").expect("sha256=");
    let tag: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
    ring::hmac::verify(&key, signed.as_bytes(), &tag).expect("the signature verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breach_fires_once_resolves_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let moto = LocalKinesis::start(Kind::Moto);
    let created = sns_sqs(&moto.endpoint, &["create"]);
    let (topic_arn, queue) = created.trim().split_once(' ').expect("ARN and queue");
    let (webhook_port, webhook) = webhook_receiver();
    let config_path = Server::config(&data, &config(webhook_port, topic_arn, &moto.endpoint), "");
    let mut server = Server::start_config(&data, &config_path);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE weather (time TIMESTAMPTZ, sensor TEXT, v DOUBLE PRECISION, PRIMARY KEY (sensor, time))")
        .await
        .expect("create");
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let start_ms = (now_ms - 30 * MINUTE_MS) / MINUTE_MS * MINUTE_MS;
    readings(&server, start_ms, 0, 20.0).await;
    // The alert starts judging at the frontier it first sees.
    until("the alert's cursor", || async { alert_state(&data)["alerts"]["hot"]["cursor_ns"].is_i64() }).await;

    let subscribe = |server: &Server| {
        let port = server.mqtt_port.to_string();
        Subscriber::start(&["-p", &port, "-q", "1", "-v", "-t", "alerts/#", "-C", "1", "-W", "60"])
    };
    let firing_mqtt = subscribe(&server);
    // Minute 1 breaches (pending), minute 2 too (firing), 3 and 4 go on; each reading makes
    // the minute before it final.
    for (minute, v) in [(1, 45.0), (2, 46.0), (3, 47.0), (4, 48.0)] {
        readings(&server, start_ms, minute, v).await;
    }
    until("the series to fire", || async {
        states(&server).await.iter().any(|(s, state, n)| s == "sensor=hot" && state == "firing" && *n >= 2)
    })
    .await;
    until("the webhook's retry", || async { webhook.lock().expect("log").iter().any(|r| r.accepted) }).await;
    let firing = firing_mqtt.messages();
    assert_eq!(firing.len(), 1, "{firing:?}");
    let (topic, payload) = firing[0].split_once(' ').expect("topic and payload");
    assert_eq!(topic, "alerts/hot/hot/firing");
    let payload: serde_json::Value = serde_json::from_str(payload).expect("JSON");
    assert_eq!(payload["series"]["sensor"], "hot");
    assert_eq!(payload["values"]["v_max"], 46.0, "the window that made it fire");
    assert!(states(&server).await.iter().all(|(s, _, _)| s != "sensor=calm"), "the calm sensor never breached");
    let sns_firing = sns_messages(&moto.endpoint, queue, 1).await;
    assert_eq!(sns_firing.len(), 1, "{sns_firing:?}");
    assert_eq!(sns_firing[0]["subject"], "isobar alert hot firing: sensor=hot");
    assert_eq!(sns_firing[0]["message"]["state"], "firing");
    // Every notification delivered, and the outbox written empty.
    until("the outbox to empty", || async { alert_state(&data)["outbox"].as_array().is_some_and(Vec::is_empty) }).await;

    // Killed while firing: the state and the cursor are on disk.
    server.child.kill().expect("kill");
    let _ = server.child.wait();
    drop(server);
    let server = Server::start_config(&data, &config_path);
    assert!(states(&server).await.iter().any(|(s, state, _)| s == "sensor=hot" && state == "firing"), "firing after the restart");
    let resolved_mqtt = subscribe(&server);
    // Minute 5 still breaches; 6 and 7 are back to normal: 6 resolves the series.
    for (minute, v) in [(5, 48.0), (6, 20.0), (7, 20.0), (8, 20.0)] {
        readings(&server, start_ms, minute, v).await;
    }
    until("the series to resolve", || async { states(&server).await.iter().any(|(s, state, _)| s == "sensor=hot" && state == "resolved") })
        .await;
    let resolved = resolved_mqtt.messages();
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(resolved[0].starts_with("alerts/hot/hot/resolved "), "{resolved:?}");

    // The webhook: one firing and one resolution accepted, each signed; the refused first
    // attempt was the firing, sent again with the same id.
    until("the webhook's resolution", || async { webhook.lock().expect("log").iter().filter(|r| r.accepted).count() >= 2 }).await;
    let requests = webhook.lock().expect("log").clone();
    let accepted: Vec<&Received> = requests.iter().filter(|r| r.accepted).collect();
    assert_eq!(accepted.iter().map(|r| r.header("x-isobar-event")).collect::<Vec<_>>(), ["firing", "resolved"]);
    assert_eq!(requests[0].header("x-isobar-delivery"), accepted[0].header("x-isobar-delivery"), "a retry keeps its id");
    for request in &requests {
        verify_signature(request);
        assert_eq!(request.json()["series"]["sensor"], "hot");
    }
    assert_eq!(accepted[1].json()["firing_since"], accepted[0].json()["window"]);

    let sns_resolved = sns_messages(&moto.endpoint, queue, 1).await;
    assert_eq!(sns_resolved.len(), 1, "{sns_resolved:?}");
    assert_eq!(sns_resolved[0]["message"]["state"], "resolved");
    assert_eq!(sns_firing[0]["message"]["id"].as_str(), Some(accepted[0].header("x-isobar-delivery")));

    // Nothing more arrives: each transition went out once.
    readings(&server, start_ms, 9, 20.0).await;
    let client = server.client().await;
    until("the last window judged", || async {
        let rows = client.query("SELECT last_window FROM system.alerts WHERE series = 'sensor=hot'", &[]).await.expect("alerts");
        rows.first().map(|r| r.get::<_, SystemTime>(0)) == Some(UNIX_EPOCH + Duration::from_millis((start_ms + 8 * MINUTE_MS) as u64))
    })
    .await;
    assert_eq!(webhook.lock().expect("log").iter().filter(|r| r.accepted).count(), 2);
    assert_eq!(sns_sqs(&moto.endpoint, &["receive", queue]).lines().count(), 0);
}
