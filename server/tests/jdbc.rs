//! pgJDBC's `DatabaseMetaData` (what DBeaver, Metabase, Superset and Tableau reflect tables
//! with) against a started server, compared with what psql's `\d` shows of the same tables.
//! The driver is Debian's `libpostgresql-jdbc-java`, run as a single-file Java program
//! (`tests/java/JdbcMetadata.java`); `scripts/setup` installs it and a JDK.

mod common;

use std::process::Command;

use common::Server;

/// psql's unaligned output of `command`, one row per line, fields split on `|`.
fn psql(server: &Server, command: &str) -> Vec<Vec<String>> {
    let port = server.pg_port.to_string();
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port, "-U", "isobar", "-d", "isobar", "-c", command])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql -c {command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(|l| l.split('|').map(str::to_owned).collect()).collect()
}

/// The JDBC program's lines for `table`, as (kind, fields).
fn jdbc(server: &Server, table: &str) -> Vec<(String, Vec<String>)> {
    let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/JdbcMetadata.java");
    let out = Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(&program)
        .args([&server.pg_port.to_string(), table])
        .output()
        .expect("run java (./scripts/setup installs a JDK and pgJDBC)");
    assert!(out.status.success(), "JdbcMetadata: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut fields = l.split(' ').map(str::to_owned);
            Some((fields.next()?, fields.collect()))
        })
        .collect()
}

fn of<'a>(lines: &'a [(String, Vec<String>)], kind: &str) -> Vec<&'a Vec<String>> {
    lines.iter().filter(|(k, _)| k == kind).map(|(_, f)| f).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_metadata_agrees_with_psql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE readings (time TIMESTAMPTZ NOT NULL, station TEXT, sensor TEXT, value DOUBLE PRECISION, \
             samples BIGINT, ok BOOLEAN, PRIMARY KEY (station, sensor, time));
             CREATE TABLE meters (time TIMESTAMPTZ NOT NULL, meter TEXT, kwh DOUBLE PRECISION, PRIMARY KEY (meter, time))",
        )
        .await
        .expect("create tables");
    let lines = jdbc(&server, "readings");

    // Tables: what psql's \dt lists in schema public.
    let mut psql_tables: Vec<String> = psql(&server, "\\dt public.*").into_iter().map(|r| r[1].clone()).collect();
    psql_tables.sort();
    let jdbc_tables: Vec<String> = of(&lines, "table").iter().map(|f| f[1].clone()).collect();
    assert_eq!(jdbc_tables, psql_tables, "getTables(TABLE) against \\dt");
    assert_eq!(jdbc_tables, ["meters", "readings"]);

    // Columns: names, order, types and nullability as \d shows them.
    let described = psql(&server, "\\d readings");
    assert!(!described.is_empty(), "\\d readings shows columns");
    let columns = of(&lines, "column");
    assert_eq!(columns.len(), described.len(), "{columns:?} against {described:?}");
    let sql_name = |jdbc_type: &str| {
        match jdbc_type {
            "timestamptz" => "timestamp with time zone",
            "float8" => "double precision",
            "int8" => "bigint",
            "bool" => "boolean",
            other => other,
        }
        .to_owned()
    };
    for (i, (column, row)) in columns.iter().zip(&described).enumerate() {
        assert_eq!(column[0], row[0], "column {i}'s name");
        assert_eq!(sql_name(&column[1]), row[1], "{}'s type", row[0]);
        assert_eq!(column[3], (i + 1).to_string(), "{}'s ordinal", row[0]);
        assert_eq!(column[4] == "NO", row[3] == "not null", "{}'s nullability", row[0]);
    }

    // The key: the tags, then time.
    let keys: Vec<(String, String)> = of(&lines, "key").iter().map(|f| (f[0].clone(), f[1].clone())).collect();
    let expected = [("station", "1"), ("sensor", "2"), ("time", "3")].map(|(c, s)| (c.to_owned(), s.to_owned()));
    assert_eq!(keys, expected);
    assert!(of(&lines, "schema").iter().any(|f| f[0] == "public"));
    assert!(of(&lines, "product")[0][0] == "PostgreSQL", "{lines:?}");
}
