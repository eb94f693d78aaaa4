//! MQTT over TLS, both ways: devices publishing to isobar's TLS listener with mosquitto_pub,
//! and isobar subscribing, with a user name and password, to a mosquitto that speaks only TLS
//! (`mqtts://`) and admits no anonymous client.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Server;
use common::mosquitto::{Mosquitto, free_port};
use common::tls::make_certs;

/// Publishes reading `i` with mosquitto_pub at QoS 1, over TLS when `ca` is given.
fn publish(port: u16, ca: Option<&Path>, i: i64) -> Output {
    publish_as(port, ca, i, &[])
}

/// [`publish`] with extra mosquitto_pub arguments (credentials).
fn publish_as(port: u16, ca: Option<&Path>, i: i64, extra: &[&str]) -> Output {
    let payload = format!("{{\"sensor_timestamp\": {}, \"sensor_value\": {i}, \"direction\": 1}}", 1_700_000_000_000 + i * 1000);
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-i", "station-9"]);
    command.args(["-t", "weather/wa/tacoma/st-9/temperature/t-9", "-m", &payload]);
    if let Some(ca) = ca {
        command.arg("--cafile").arg(ca);
    }
    command.args(extra).output().expect("mosquitto_pub runs")
}

/// Waits until `weather` holds `n` rows.
async fn wait_for_rows(server: &Server, n: i64) {
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let count = client.query_one("SELECT count(*) FROM weather", &[]).await.map(|r| r.get::<_, i64>(0)).unwrap_or(0);
        if count == n {
            return;
        }
        assert!(count < n && Instant::now() < deadline, "{n} rows; found {count}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_publish_over_tls_and_plain_mqtt_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(&dir.path().join("certs"));
    let data = dir.path().join("data");
    let config = Server::config(&data, Server::SEED_RULE, "");
    let tls = format!("tls_cert_path = {:?}\ntls_key_path = {:?}\n", certs.cert.display().to_string(), certs.key.display().to_string());
    let text = std::fs::read_to_string(&config).expect("read config").replace("[mqtt]\n", &format!("[mqtt]\n{tls}"));
    std::fs::write(&config, text).expect("write config");
    let server = Server::start_config(&data, &config);

    for i in 0..3 {
        let out = publish(server.mqtt_port, Some(&certs.ca), i);
        assert!(out.status.success(), "over TLS: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for_rows(&server, 3).await;
    // A device that does not speak TLS gets no session, and the listener carries on.
    assert!(!publish(server.mqtt_port, None, 3).status.success(), "plain MQTT on a TLS listener");
    let out = publish(server.mqtt_port, Some(&certs.ca), 4);
    assert!(out.status.success(), "over TLS after a plain client: {}", String::from_utf8_lossy(&out.stderr));
    wait_for_rows(&server, 4).await;
    let client = server.client().await;
    let sum: f64 = client.query_one("SELECT sum(sensor_value) FROM weather", &[]).await.expect("sum").get(0);
    assert_eq!(sum, 0.0 + 1.0 + 2.0 + 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isobar_subscribes_to_a_tls_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = make_certs(&dir.path().join("certs"));
    let port = free_port();
    let passwords = dir.path().join("passwords");
    for (user, password) in [("isobar", "s3cret"), ("station", "pw")] {
        let mut add = Command::new("mosquitto_passwd");
        if !passwords.exists() {
            add.arg("-c");
        }
        assert!(add.arg("-b").arg(&passwords).args([user, password]).status().expect("mosquitto_passwd").success());
    }
    let settings = format!(
        "allow_anonymous false\npassword_file {}\ncertfile {}\nkeyfile {}\n",
        passwords.display(),
        certs.cert.display(),
        certs.key.display()
    );
    let _broker = Mosquitto::start_configured(dir.path(), port, &settings);
    let station = ["-u", "station", "-P", "pw"];
    assert!(!publish(port, Some(&certs.ca), 0).status.success(), "the broker admits no anonymous client");
    let data = dir.path().join("data");
    let subscription = format!(
        "[[subscriptions]]\nbroker = \"mqtts://127.0.0.1:{port}\"\nclient_id = \"isobar-tls\"\ntopics = [\"weather/#\"]\nca_path = {:?}\n\
         username = \"isobar\"\npassword = \"s3cret\"\n",
        certs.ca.display().to_string()
    );
    let server = Server::start_config(&data, &Server::config(&data, &format!("{}{subscription}", Server::SEED_RULE), ""));
    // Readings published before the subscription is in place are not for isobar's session;
    // publish until the first arrives, then count exactly from there.
    let client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while client.query_one("SELECT count(*) FROM weather", &[]).await.map(|r| r.get::<_, i64>(0)).unwrap_or(0) == 0 {
        assert!(publish_as(port, Some(&certs.ca), sent, &station).status.success(), "publish to the TLS broker");
        sent += 1;
        assert!(Instant::now() < deadline, "isobar subscribes over TLS");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in sent..sent + 20 {
        assert!(publish_as(port, Some(&certs.ca), i, &station).status.success());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let query = format!("SELECT count(*) FROM weather WHERE sensor_value >= {sent}");
    loop {
        let count: i64 = client.query_one(&query, &[]).await.expect("count").get(0);
        if count == 20 {
            break;
        }
        assert!(count < 20 && Instant::now() < deadline, "20 readings over TLS; found {count}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
