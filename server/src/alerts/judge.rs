//! The judge: once a second, each alert whose rollup table's frontier has passed its cursor
//! reads the windows between them with SQL (the condition evaluated by the query engine as a
//! column), judges them in time order (`state.rs`), and writes the state durably before the
//! deliverer may send what it decided.
//!
//! An alert first seen judges the windows that become final from then on: its cursor starts
//! at its table's frontier then (or at the beginning, when no window of the table is final
//! yet). A cursor far behind (isobar was down) catches up `WINDOWS_PER_JUDGEMENT` windows at a
//! time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, UInt64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use isobar_query::{Output, QueryEngine};
use serde_json::{Map, Value};

use super::AlertSpec;
use super::state::{Judged, Store};

/// How often the judge looks for newly final windows, in milliseconds.
const JUDGE_INTERVAL_MS: u64 = 1_000;
/// Windows of a table's interval one judgement of a lagging alert reads, at most.
const WINDOWS_PER_JUDGEMENT: i64 = 60;
/// The condition's column in the judge's query.
const BREACH_COLUMN: &str = "__isobar_breach";

/// The alerts' counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct AlertMetrics {
    /// Series windows judged.
    pub(crate) windows_judged: AtomicU64,
    /// Judgements whose query failed (retried the next second).
    pub(crate) judge_errors: AtomicU64,
    /// Notifications delivered.
    pub(crate) notifications_sent: AtomicU64,
    /// Attempts at delivering that failed (and were retried, or given up).
    pub(crate) notification_failures: AtomicU64,
    /// Notifications given up after their attempts, or to keep the outbox bounded.
    pub(crate) notifications_given_up: AtomicU64,
}

/// Judges `alerts` until the task is dropped.
pub(super) async fn run(alerts: Vec<AlertSpec>, engine: QueryEngine, store: Arc<Store>, metrics: Arc<AlertMetrics>) {
    let mut tick = tokio::time::interval(Duration::from_millis(JUDGE_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last problem logged per alert, so that one that lasts is logged once.
    let mut problems: HashMap<String, String> = HashMap::new();
    loop {
        tick.tick().await;
        let rollups: HashMap<String, (Option<i64>, i64)> =
            engine.storage().rollups().into_iter().map(|r| (r.table, (r.frontier_ns, r.interval_ns))).collect();
        let mut changed = false;
        for alert in &alerts {
            let outcome = match rollups.get(&alert.table) {
                None => Err(format!("no rollup table is named {} (yet)", alert.table)),
                Some(&(frontier_ns, interval_ns)) => judge(alert, &engine, &store, &metrics, frontier_ns, interval_ns).await,
            };
            match outcome {
                Ok(judged) => {
                    changed |= judged;
                    if problems.remove(&alert.name).is_some() {
                        tracing::info!("alert {}: judging again", alert.name);
                    }
                }
                Err(problem) => {
                    if problems.get(&alert.name) != Some(&problem) {
                        tracing::warn!("alert {}: {problem}", alert.name);
                        problems.insert(alert.name.clone(), problem);
                    }
                }
            }
        }
        if changed && let Err(e) = store.save().await {
            tracing::error!("alerts: {e}; notifications wait until the state is written");
        }
    }
}

/// Judges the windows of `alert` that became final since its cursor; whether the state changed.
async fn judge(
    alert: &AlertSpec,
    engine: &QueryEngine,
    store: &Store,
    metrics: &AlertMetrics,
    frontier_ns: Option<i64>,
    interval_ns: i64,
) -> Result<bool, String> {
    let Some(cursor_ns) = store.cursor(&alert.name) else {
        store.judge(alert, frontier_ns.unwrap_or(i64::MIN), Vec::new(), now_ms());
        return Ok(true);
    };
    let Some(frontier_ns) = frontier_ns.filter(|f| *f > cursor_ns) else { return Ok(false) };
    let until_ns = match cursor_ns {
        i64::MIN => frontier_ns,
        _ => frontier_ns.min(cursor_ns.saturating_add(WINDOWS_PER_JUDGEMENT.saturating_mul(interval_ns))),
    };
    let tags: Vec<String> = engine.storage().table(&alert.table).map(|t| t.tags().map(|c| c.name.clone()).collect()).unwrap_or_default();
    let sql = query(alert, cursor_ns, until_ns);
    let outputs = engine
        .with_timeout(engine.execute(&sql))
        .await
        .and_then(|outcome| outcome)
        .map_err(|e| format!("reading windows of {}: {e}", alert.table))?;
    let mut windows = Vec::new();
    for output in outputs {
        if let Output::Rows(batches) = output {
            for batch in batches {
                read_windows(&batch, &tags, &mut windows)?;
            }
        }
    }
    metrics.windows_judged.fetch_add(windows.len() as u64, Ordering::Relaxed);
    let given_up = store.judge(alert, until_ns, windows, now_ms());
    metrics.notifications_given_up.fetch_add(given_up as u64, Ordering::Relaxed);
    Ok(true)
}

/// The windows in `[from_ns, until_ns)` with the condition as a column, in time order.
fn query(alert: &AlertSpec, from_ns: i64, until_ns: i64) -> String {
    let table = format!("\"{}\"", alert.table.replace('"', "\"\""));
    let mut sql = format!("SELECT *, ({}) AS {BREACH_COLUMN} FROM {table} WHERE time < to_timestamp_nanos({until_ns})", alert.condition);
    if from_ns != i64::MIN {
        sql += &format!(" AND time >= to_timestamp_nanos({from_ns})");
    }
    if let Some(filter) = &alert.filter {
        sql += &format!(" AND ({filter})");
    }
    sql + " ORDER BY time"
}

/// The rows of `batch` as judged windows: tags from the columns named in `tags`, the window's
/// start from `time`, the breach from the condition's column and the other columns as values.
fn read_windows(batch: &RecordBatch, tags: &[String], out: &mut Vec<Judged>) -> Result<(), String> {
    let schema = batch.schema();
    let column = |name: &str| schema.index_of(name).ok().map(|i| batch.column(i));
    let breach = column(BREACH_COLUMN).ok_or("the query lost the condition's column")?;
    let breach = breach.as_boolean_opt().ok_or_else(|| format!("the condition is {}, not boolean", breach.data_type()))?;
    let time = column("time").ok_or("the table has no time column")?;
    let time = cast(&cast(time, &DataType::Timestamp(TimeUnit::Nanosecond, None)).map_err(|e| e.to_string())?, &DataType::Int64)
        .map_err(|e| e.to_string())?;
    let time = time.as_primitive::<Int64Type>();
    let tag_columns: Vec<(&String, ArrayRef)> =
        tags.iter().filter_map(|name| Some((name, cast(column(name)?, &DataType::Utf8).ok()?))).collect();
    let values: Vec<(usize, &str)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() != "time" && f.name() != BREACH_COLUMN && !tags.contains(f.name()))
        .map(|(i, f)| (i, f.name().as_str()))
        .collect();
    for row in 0..batch.num_rows() {
        let tags = tag_columns
            .iter()
            .filter(|(_, c)| c.is_valid(row))
            .map(|(name, c)| ((*name).clone(), c.as_string::<i32>().value(row).to_owned()))
            .collect();
        let values: Map<String, Value> = values.iter().map(|(i, name)| ((*name).to_owned(), cell(batch.column(*i), row))).collect();
        let breach = breach.is_valid(row).then(|| breach.value(row));
        out.push(Judged { tags, window_ns: time.value(row), breach, values });
    }
    Ok(())
}

/// One cell as JSON: numbers and booleans as themselves, anything else as its text.
fn cell(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Float64 => {
            serde_json::Number::from_f64(array.as_primitive::<Float64Type>().value(row)).map_or(Value::Null, Value::Number)
        }
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        _ => ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
            .map_or(Value::Null, |f| Value::String(f.value(row).to_string())),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::collections::BTreeMap;

    /// Series windows by series key.
    fn by_series(windows: &[Judged]) -> BTreeMap<String, Vec<(i64, Option<bool>)>> {
        let mut out: BTreeMap<String, Vec<(i64, Option<bool>)>> = BTreeMap::new();
        for w in windows {
            let key = w.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            out.entry(key).or_default().push((w.window_ns, w.breach));
        }
        out
    }

    #[test]
    fn the_query_bounds_the_windows_and_names_the_condition() {
        let alert = AlertSpec {
            name: "hot".into(),
            table: "weather_1m".into(),
            condition: "sensor_value_max > 40".into(),
            filter: Some("sensor = 'temperature'".into()),
            ..AlertSpec::default()
        };
        assert_eq!(
            query(&alert, 60, 120),
            "SELECT *, (sensor_value_max > 40) AS __isobar_breach FROM \"weather_1m\" WHERE time < to_timestamp_nanos(120) \
             AND time >= to_timestamp_nanos(60) AND (sensor = 'temperature') ORDER BY time"
        );
        assert!(!query(&alert, i64::MIN, 120).contains(">= to_timestamp_nanos"));
    }

    #[test]
    fn rows_become_windows_of_their_series() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
            Field::new("sensor_id", DataType::Utf8, true),
            Field::new("sensor_value_max", DataType::Float64, true),
            Field::new("sensor_value_count", DataType::Int64, false),
            Field::new(BREACH_COLUMN, DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![60, 60, 120])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
                Arc::new(Float64Array::from(vec![Some(41.5), None, Some(3.0)])),
                Arc::new(Int64Array::from(vec![60, 0, 1])),
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ],
        )
        .expect("batch");
        let mut windows = Vec::new();
        read_windows(&batch, &["sensor_id".to_owned()], &mut windows).expect("windows");
        assert_eq!(
            by_series(&windows).into_iter().collect::<Vec<_>>(),
            [
                (String::new(), vec![(120, Some(false))]),
                ("sensor_id=a".to_owned(), vec![(60, Some(true))]),
                ("sensor_id=b".to_owned(), vec![(60, None)]),
            ]
        );
        assert_eq!(windows[0].values.get("sensor_value_max"), Some(&Value::from(41.5)));
        assert_eq!(windows[0].values.get("sensor_value_count"), Some(&Value::from(60)));
        assert_eq!(windows[1].values.get("sensor_value_max"), Some(&Value::Null));
        assert!(!windows[0].values.contains_key(BREACH_COLUMN) && !windows[0].values.contains_key("sensor_id"));
    }
}
