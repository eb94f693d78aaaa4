//! Tag conditions that storage's series index resolves (`pushdown.rs`) select exactly the rows
//! DataFusion's own filter selects: each is compared with the same condition on an expression
//! of the tag (`substr(tag, 1)`), which is not pushed down, over series with mixed-case values
//! and series lacking a tag (NULL, which meets no condition).

use isobar_storage::{FieldValue, Point, Storage, StorageConfig, WriteBatch};

use crate::engine::{QueryConfig, QueryEngine};
use crate::fast_paths_tests::rows;

/// 40 stations (`st0`..`st39`, every seventh `St<n>`), each with sensors `temp`, `hum` and
/// one without a sensor tag; 5 rows per series, persisted in part.
fn storage(dir: &std::path::Path) -> Storage {
    let storage = Storage::open(StorageConfig::test_config(dir)).expect("open");
    for round in 0..5i64 {
        let mut batch = WriteBatch::new();
        for station in 0..40 {
            let name = if station % 7 == 0 { format!("St{station}") } else { format!("st{station}") };
            for sensor in [Some("temp"), Some("hum"), None] {
                let mut point = Point::new(round * 1_000_000 + station).tag("station", &name);
                if let Some(sensor) = sensor {
                    point = point.tag("sensor", sensor);
                }
                batch.push("m", point.field("v", FieldValue::F64((station * 10 + round) as f64)));
            }
        }
        storage.write(&batch).expect("write");
        if round == 2 {
            storage.persist().expect("persist");
        }
    }
    storage
}

const CONDITIONS: &[&str] = &[
    "station = 'st3'",
    "station <> 'st3'",
    "station IN ('st1', 'st12', 'zz')",
    "station NOT IN ('st1', 'st2')",
    "station LIKE 'st1%'",
    "station NOT LIKE 'st1%'",
    "station LIKE 'st1'",
    "station LIKE 'st_1%'",
    "station ILIKE 'ST1%'",
    "station NOT ILIKE '%t2%'",
    "station LIKE '%1'",
    "station ~ '^st1[0-5]$'",
    "station ~* 'st2'",
    "station !~ '1'",
    "station !~ '^st'",
    "sensor <> 'temp'",
    "sensor NOT IN ('temp', 'x')",
    "sensor !~ 'te'",
    "sensor LIKE '%m'",
    "station LIKE 'st1%' AND sensor IN ('hum', 'wind')",
    "station NOT LIKE 'St%' AND sensor = 'temp'",
];

#[tokio::test]
async fn pushed_down_tag_conditions_select_what_datafusion_selects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = QueryEngine::new(storage(dir.path()), QueryConfig::default()).expect("engine");
    let query = |condition: &str| {
        format!("SELECT station, sensor, count(*), sum(v) FROM m WHERE {condition} GROUP BY station, sensor ORDER BY station, sensor")
    };
    for condition in CONDITIONS.iter().copied() {
        let plan = rows(&engine, &format!("EXPLAIN {}", query(condition))).await;
        assert!(plan.contains("tags=["), "{condition} is resolved by the series index: {plan}");
        let unpushed = condition.replace("station", "substr(station, 1)").replace("sensor", "substr(sensor, 1)");
        let plan = rows(&engine, &format!("EXPLAIN {}", query(&unpushed))).await;
        assert!(!plan.contains("tags=["), "{unpushed} is left to DataFusion: {plan}");
        let (got, expected) = (rows(&engine, &query(condition)).await, rows(&engine, &query(&unpushed)).await);
        assert_eq!(got, expected, "{condition}");
        assert!(got.lines().count() > 4, "{condition} selects some series: {got}");
    }
    // Conditions the index does not resolve stay correct, above the scan.
    for condition in ["station IN ('st1', NULL)", "station > 'st3'", "station LIKE 'st\\_%' ESCAPE '\\'"] {
        let unpushed = condition.replace("station", "substr(station, 1)");
        assert_eq!(rows(&engine, &query(condition)).await, rows(&engine, &query(&unpushed)).await, "{condition}");
    }
    let broken = engine.execute(&query("station ~ '('")).await.err().map(|e| e.to_string());
    assert!(broken.as_deref().is_some_and(|e| e.contains("regex")), "{broken:?}");
}

#[tokio::test]
async fn the_newest_rows_of_series_a_tag_condition_selects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = storage(dir.path());
    let fast = QueryEngine::new(storage.clone(), QueryConfig::default()).expect("engine");
    let general = QueryEngine::new(storage, QueryConfig { fast_paths: false, ..QueryConfig::default() }).expect("engine");
    for condition in ["station LIKE 'st1%'", "station ~* '^st2' AND sensor <> 'hum'", "station NOT IN ('st5')"] {
        let sql = format!(
            "SELECT station, sensor, last_value(v ORDER BY time) FROM m WHERE {condition} GROUP BY station, sensor ORDER BY station, sensor"
        );
        let plan = rows(&fast, &format!("EXPLAIN {sql}")).await;
        assert!(plan.contains("newest row") && plan.contains("tags=["), "{plan}");
        assert_eq!(rows(&fast, &sql).await, rows(&general, &sql).await, "{condition}");
    }
}
