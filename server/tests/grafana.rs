//! What Grafana's PostgreSQL data source sends, after its own macro expansion, and what it
//! needs back (`compat-checklist.md` §1.2).

mod common;

use common::Server;
use tokio_postgres::SimpleQueryMessage;

const READINGS: &str = "CREATE TABLE readings (time TIMESTAMPTZ, ts_epoch BIGINT, device_id TEXT, temp DOUBLE PRECISION, \
                        PRIMARY KEY (device_id, time))";

async fn seeded() -> (tempfile::TempDir, Server, tokio_postgres::Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let client = server.client().await;
    client.batch_execute(READINGS).await.expect("create");
    client
        .batch_execute(
            "INSERT INTO readings VALUES \
             ('2018-04-12T18:00:00Z', 1523556000, 'd1', 10.0), ('2018-04-12T18:01:40Z', 1523556100, 'd1', 20.0), \
             ('2018-04-12T18:04:59Z', 1523556299, 'd2', 30.0), ('2018-04-12T18:06:40Z', 1523556400, 'd2', 99.0)",
        )
        .await
        .expect("insert");
    (dir, server, client)
}

fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_and_version_detection() {
    let (_dir, _server, client) = seeded().await;
    // "Save & test" is pgx's Ping: a comment-only query answered with EmptyQueryResponse.
    let ping = client.simple_query("-- ping").await.expect("ping");
    assert!(rows(&ping).is_empty());
    let version = client.simple_query("SELECT current_setting('server_version_num')::int/100 as version").await.expect("version");
    assert_eq!(rows(&version), [[Some("1600".to_owned())]]);
    let timescale = client.simple_query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").await.expect("extension");
    assert!(rows(&timescale).is_empty(), "not TimescaleDB: Grafana keeps its own time grouping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expanded_macros_run() {
    let (_dir, _server, client) = seeded().await;
    // $__timeGroupAlias(time,'5m') and $__timeFilter(time), with a fractional bound.
    let grouped = client
        .simple_query(
            "SELECT floor(extract(epoch from time)/300)*300 AS \"time\", avg(temp) FROM readings \
             WHERE time BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:04:59.5Z' GROUP BY 1 ORDER BY 1",
        )
        .await
        .expect("timeGroup");
    // Grafana reads numbers from their text; `20` and `20.0` are the same to it.
    let number = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<f64>().ok());
    let grouped = rows(&grouped);
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert_eq!((number(&grouped[0][0]), number(&grouped[0][1])), (Some(1_523_556_000.0), Some(20.0)));
    // $__unixEpochFilter on an integer epoch column.
    let epoch = client
        .simple_query("SELECT count(*) FROM readings WHERE ts_epoch >= 1523556000 AND ts_epoch <= 1523556300")
        .await
        .expect("unixEpochFilter");
    assert_eq!(rows(&epoch), [[Some("3".to_owned())]]);
    // A multi-value template variable, and a trailing SQLCommenter comment.
    let chosen = client
        .simple_query(
            "SELECT device_id, max(temp) FROM readings WHERE device_id IN ('d1','d2') GROUP BY 1 ORDER BY 1 /*application='grafana'*/;",
        )
        .await
        .expect("IN list");
    let chosen: Vec<(Option<String>, Option<f64>)> = rows(&chosen).into_iter().map(|r| (r[0].clone(), number(&r[1]))).collect();
    assert_eq!(chosen, [(Some("d1".to_owned()), Some(20.0)), (Some("d2".to_owned()), Some(99.0))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_builder_lists_tables_and_columns() {
    let (_dir, _server, client) = seeded().await;
    let search_path = "SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END \
        FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1), \
        array_upper(string_to_array(current_setting('search_path'),','),1)) as i, string_to_array(current_setting('search_path'),',') s";
    let tables = format!(
        "SELECT CASE WHEN quote_ident(table_schema) IN ({search_path}) THEN quote_ident(table_name) \
         ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" \
         FROM information_schema.tables \
         WHERE quote_ident(table_schema) NOT IN ('information_schema','pg_catalog','_timescaledb_cache','_timescaledb_catalog','_timescaledb_internal','_timescaledb_config','timescaledb_information','timescaledb_experimental') \
         ORDER BY CASE WHEN quote_ident(table_schema) IN ({search_path}) THEN 0 ELSE 1 END, 1"
    );
    let listed = rows(&client.simple_query(&tables).await.expect("table list"));
    assert!(listed.iter().any(|r| matches!(r[0].as_deref(), Some("readings" | "public.readings"))), "readings missing from {listed:?}");
    let columns = "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" FROM information_schema.columns \
        WHERE CASE WHEN array_length(parse_ident('public.readings'),1) = 2 \
        THEN quote_ident(table_schema) = (parse_ident('public.readings'))[1] AND quote_ident(table_name) = (parse_ident('public.readings'))[2] \
        ELSE quote_ident(table_name) = 'public.readings' END";
    let described = rows(&client.simple_query(columns).await.expect("column list"));
    let pairs: Vec<(String, String)> =
        described.into_iter().map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default())).collect();
    for (column, ty) in [("time", "timestamp with time zone"), ("device_id", "text"), ("temp", "double precision"), ("ts_epoch", "bigint")]
    {
        assert!(pairs.iter().any(|(c, t)| c == column && t == ty), "{column} {ty} missing from {pairs:?}");
    }
}

/// `sql` with Grafana's PostgreSQL macros expanded as Grafana expands them, for the time range
/// `from`..`to` (RFC 3339), and `$station` as the multi-value variable `stations`.
fn expand(sql: &str, from: &str, to: &str, stations: &[String]) -> String {
    let mut out = sql.replace("$station", &stations.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(","));
    // $__name(args) → its expansion.
    for macro_name in ["$__timeFilter", "$__timeGroupAlias", "$__timeGroup"] {
        while let Some(at) = out.find(&format!("{macro_name}(")) {
            let open = at + macro_name.len();
            let close = open + out[open..].find(')').expect("a closing parenthesis");
            let args: Vec<&str> = out[open + 1..close].split(',').map(str::trim).collect();
            let expansion = match macro_name {
                "$__timeFilter" => format!("{} BETWEEN '{from}' AND '{to}'", args[0]),
                _ => {
                    let interval = args[1].trim_matches('\'');
                    let (count, unit) = interval.split_at(interval.len() - 1);
                    let seconds = count.parse::<u64>().expect("an interval") * if unit == "m" { 60 } else { 1 };
                    let group = format!("floor(extract(epoch from {})/{seconds})*{seconds}", args[0]);
                    match macro_name {
                        "$__timeGroupAlias" => format!("{group} AS \"time\""),
                        _ => group,
                    }
                }
            };
            out.replace_range(at..=close, &expansion);
        }
    }
    out
}

/// The seed fleet's dashboard (`docs/grafana/dashboards/seed-fleet.json`), every query as
/// Grafana sends it, against a server fed by `isobar simulate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioned_dashboard_answers_over_a_simulated_fleet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start_config(&data, &Server::config(&data, Server::SEED_RULE, ""));
    let client = server.client().await;
    server.simulate_fleet(&client, 4, 3, 5).await;
    let range = rows(
        &client
            .simple_query("SELECT CAST(floor(extract(epoch from min(time))) AS BIGINT) - 60, CAST(ceil(extract(epoch from max(time))) AS BIGINT) + 60 FROM weather")
            .await
            .expect("range"),
    );
    let rfc3339 = |seconds: &Option<String>| {
        let seconds = seconds.as_deref().and_then(|s| s.parse::<i64>().ok()).expect("epoch seconds");
        chrono::DateTime::from_timestamp(seconds, 0).expect("a time").to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let (from, to) = (rfc3339(&range[0][0]), rfc3339(&range[0][1]));

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/dashboards/seed-fleet.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard")).expect("JSON");
    // The station variable, then each panel's queries with two of its stations chosen.
    let variable = dashboard["templating"]["list"][0]["query"].as_str().expect("the station variable's query");
    let stations: Vec<String> =
        rows(&client.simple_query(variable).await.expect("station variable")).into_iter().flatten().flatten().collect();
    assert_eq!(stations, ["st-00000", "st-00001", "st-00002", "st-00003"]);
    let chosen = &stations[1..3];
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 4, "the dashboard has its panels");
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let sql = expand(target["rawSql"].as_str().expect("rawSql"), &from, &to, chosen);
            assert!(!sql.contains('$'), "every macro and variable expanded: {sql}");
            let answer = rows(&client.simple_query(&sql).await.unwrap_or_else(|e| panic!("{}: {e}\n{sql}", panel["title"])));
            assert!(!answer.is_empty(), "{} answers rows:\n{sql}", panel["title"]);
            let title = panel["title"].as_str().unwrap_or_default();
            if title.starts_with("Sensor value per minute") {
                // Every minute of the chosen stations' sensors, with min <= avg <= max.
                let want = rows(
                    &client
                        .simple_query("SELECT count(*) FROM weather_1m WHERE station_id IN ('st-00001', 'st-00002')")
                        .await
                        .expect("count"),
                );
                assert_eq!(Some(answer.len().to_string()), want[0][0], "{title}");
                for row in &answer {
                    let n = |i: usize| row[i].as_deref().and_then(|v| v.parse::<f64>().ok()).expect("a number");
                    assert!(n(3) <= n(2) && n(2) <= n(4), "min <= avg <= max in {row:?}");
                }
            }
            if title == "Last value per sensor" {
                assert_eq!(answer.len(), 6, "three sensors at each of two stations: {answer:?}");
            }
        }
    }
}
