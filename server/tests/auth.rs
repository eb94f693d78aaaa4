//! Who may connect: SCRAM-SHA-256 for configured users; trust only on loopback.

mod common;

use std::process::Command;

use common::Server;
use tokio_postgres::error::SqlState;

async fn connect(server: &Server, user: &str, password: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!("host=127.0.0.1 port={} user={user} password='{password}' dbname=isobar", server.pg_port);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_users_authenticate_with_scram() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with(&dir.path().join("data"), "users = [{ name = \"grafana\", password = \"s3cret pass\" }]");
    let client = connect(&server, "grafana", "s3cret pass").await.expect("the right password connects");
    assert_eq!(client.query_one("SELECT 1::BIGINT", &[]).await.expect("query").get::<_, i64>(0), 1);
    for (user, password) in [("grafana", "wrong"), ("nobody", "s3cret pass")] {
        let err = connect(&server, user, password).await.err().unwrap_or_else(|| panic!("{user}/{password} must not connect"));
        assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{user}: {err}");
    }
    // A plain PostgreSQL version, as drivers parse it.
    let shown = client.simple_query("SHOW server_version").await.expect("show");
    let version = shown.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(version.as_deref(), Some("16.6"));
}

#[test]
fn trusting_clients_off_loopback_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Server::config(&dir.path().join("data"), "", "");
    let text = std::fs::read_to_string(&config).expect("read").replace("127.0.0.1:0\"\n\n[mqtt]", "0.0.0.0:0\"\n\n[mqtt]");
    std::fs::write(&config, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_isobar")).args(["serve", "--config"]).arg(&config).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no postgres.users are configured"), "{stderr}");
}

#[test]
fn tls_serves_clients_that_require_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let extra = format!("tls_cert_path = {:?}\ntls_key_path = {:?}", cert.display().to_string(), key.display().to_string());
    let server = Server::start_with(&dir.path().join("data"), &extra);
    let psql = |sslmode: &str| {
        Command::new("psql")
            .args(["-X", "-At", "-c", "SELECT 'queried'"])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", server.pg_port.to_string())
            .env("PGUSER", "isobar")
            .env("PGDATABASE", "isobar")
            .env("PGSSLMODE", sslmode)
            .output()
            .expect("psql runs")
    };
    for mode in ["require", "disable"] {
        let out = psql(mode);
        assert!(out.status.success(), "sslmode={mode}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "queried");
    }
}
