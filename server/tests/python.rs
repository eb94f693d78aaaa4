//! Python's Postgres clients against a started server: psycopg 3 (parameters, COPY),
//! SQLAlchemy 2 (connect, reflect a table) and pandas (`read_sql`). `scripts/setup` installs
//! them into a venv; `ISOBAR_PYTHON` names its interpreter.

mod common;

#[test]
fn psycopg_sqlalchemy_and_pandas_work() {
    let python = std::env::var("ISOBAR_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/isobar/venv/bin/python", std::env::var("HOME").unwrap_or_default()));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::Server::start(&dir.path().join("data"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/clients.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(server.pg_port.to_string())
        .output()
        .unwrap_or_else(|e| panic!("run {python} (./scripts/setup installs it): {e}"));
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
