//! The fast path of `INSERT INTO t [(columns)] VALUES (...), (...)`: when every value is a
//! literal or a parameter (optionally cast to its column's own type), the rows go straight
//! into storage's columns (`row_columns.rs`), with no plan per statement; anything else
//! (`INSERT ... SELECT`, expressions, `RETURNING`, `ON CONFLICT`) takes DataFusion's path.
//! From a syntax tree (the extended protocol, with parameters) or, for the simple protocol,
//! from the statement's text (`values_text.rs`).
//!
//! Every row is converted before any is written; a value it cannot read or convert sends the
//! whole statement down the general path, so errors (and PostgreSQL's conversions of odd
//! values) are the general path's. Storage's own per-row refusals (limits) fail the statement
//! naming the rows, as on the general path.

use std::borrow::Cow;

use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, CastKind, DataType as SqlType, Expr, Insert, SetExpr, Statement, TableObject, UnaryOperator, Value as SqlValue,
};
use isobar_storage::{FieldType, Storage, TableSchema, WriteBatch};

use crate::row_columns::{RowColumns, Target, Value};

/// The rows of a `VALUES` list, each in parentheses.
type ValueRows = [ast::Parens<Vec<Expr>>];

/// Rows a statement may carry on the fast path, at most; larger ones take the general path.
const ROWS_MAX: usize = 1 << 20;

/// The rows of `statement` as a batch to write, if it is an `INSERT ... VALUES` the fast path
/// takes, with `params` for its placeholders; `None` when the general path must run it.
pub(crate) fn values_batch(storage: &Storage, statement: &Statement, params: Option<&ParamValues>) -> Option<WriteBatch> {
    let (table, mut builder, rows) = builder(storage, statement)?;
    let targets = builder.targets().to_vec();
    for row in rows {
        if row.len() != targets.len() {
            return None;
        }
        let mut readable = true;
        let values = row.iter().zip(&targets).map(|(e, t)| {
            let value = literal(e, *t, params);
            readable &= value.is_some();
            Ok(value.unwrap_or(Value::Null))
        });
        // A value the fast path cannot read or convert: the general path runs the statement
        // (and names what is wrong), nothing having been written.
        if builder.push_row(values).is_err() || !readable {
            return None;
        }
    }
    Some(batch(&table, builder))
}

/// The rows of a simple-protocol `INSERT ... VALUES` of literals as a batch to write, read
/// from the text (`values_text.rs`), with the statement's head (its row a placeholder, for
/// the session's checks); `None` when the general path must run it.
pub(crate) fn text_batch(storage: &Storage, sql: &str) -> Option<(Statement, WriteBatch)> {
    let (head, rows) = crate::values_text::split(sql)?;
    let statement = crate::values_text::head_statement(head)?;
    let (table, mut builder, _) = builder(storage, &statement)?;
    crate::values_text::read_rows(rows, &mut builder)?;
    let batch = batch(&table, builder);
    Some((statement, batch))
}

/// The table, a row builder for the statement's columns and its rows.
fn builder<'a>(storage: &Storage, statement: &'a Statement) -> Option<(TableSchema, RowColumns, &'a ValueRows)> {
    let Statement::Insert(insert) = statement else { return None };
    let (table, rows) = plain_values(storage, insert)?;
    let columns = match insert.columns.is_empty() {
        true => crate::table::column_names(&table),
        false => {
            insert.columns.iter().map(|c| c.0.last().and_then(|p| p.as_ident()).map(crate::ddl::identifier_name)).collect::<Option<_>>()?
        }
    };
    let builder = RowColumns::new(&table, &columns).ok()?;
    Some((table, builder, rows))
}

fn batch(table: &TableSchema, mut builder: RowColumns) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.push_columns(&table.name, builder.take());
    batch
}

/// The table and rows of an `INSERT INTO <isobar table> [(columns)] VALUES ...` with nothing
/// else to it.
fn plain_values<'a>(storage: &Storage, insert: &'a Insert) -> Option<(TableSchema, &'a ValueRows)> {
    let plain = insert.or.is_none()
        && !insert.ignore
        && !insert.overwrite
        && insert.table_alias.is_none()
        && insert.assignments.is_empty()
        && insert.partitioned.is_none()
        && insert.after_columns.is_empty()
        && insert.on.is_none()
        && insert.returning.is_none()
        && insert.output.is_none()
        && !insert.replace_into
        && insert.priority.is_none()
        && insert.insert_alias.is_none()
        && insert.settings.is_none()
        && insert.format_clause.is_none()
        && insert.multi_table_insert_type.is_none()
        && insert.multi_table_into_clauses.is_empty();
    let TableObject::TableName(name) = &insert.table else { return None };
    let query = insert.source.as_ref()?;
    let plain_query = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && query.locks.is_empty()
        && query.for_clause.is_none()
        && query.settings.is_none()
        && query.format_clause.is_none()
        && query.pipe_operators.is_empty();
    let SetExpr::Values(values) = query.body.as_ref() else { return None };
    if !plain || !plain_query || values.explicit_row || values.rows.len() > ROWS_MAX {
        return None;
    }
    // Names in schema `system` are refused here; the general path says why.
    let table = crate::ddl::table_name(name).ok()?;
    Some((storage.table(&table)?, &values.rows))
}

/// A literal, a placeholder or a signed number, optionally cast to a type of the column's own
/// kind, as a value; `None` for anything else (the general path evaluates it).
fn literal<'a>(expr: &'a Expr, target: Target, params: Option<&'a ParamValues>) -> Option<Value<'a>> {
    // A sign binds less tightly than a cast: `-1.5::float8` is `-(1.5::float8)`.
    let (sign, expr) = match expr {
        Expr::UnaryOp { op: op @ (UnaryOperator::Minus | UnaryOperator::Plus), expr } => (Some(*op == UnaryOperator::Minus), expr.as_ref()),
        other => (None, other),
    };
    let expr = match expr {
        Expr::Cast { kind: CastKind::DoubleColon | CastKind::Cast, expr, data_type, format: None, .. } if same_kind(data_type, target) => {
            expr.as_ref()
        }
        other => other,
    };
    let Expr::Value(v) = expr else { return None };
    sql_value(&v.value, sign, params)
}

/// A literal's value; `signed` when a sign stands before it (then it must be a number).
fn sql_value<'a>(value: &'a SqlValue, signed: Option<bool>, params: Option<&'a ParamValues>) -> Option<Value<'a>> {
    let value = match value {
        SqlValue::Number(n, _) => {
            let n = if signed == Some(true) { Cow::Owned(format!("-{n}")) } else { Cow::Borrowed(n.as_str()) };
            match n.parse::<i64>() {
                Ok(i) => Value::I64(i),
                Err(_) => Value::F64(n.parse::<f64>().ok()?),
            }
        }
        _ if signed.is_some() => return None,
        SqlValue::SingleQuotedString(s) | SqlValue::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => Value::Text(s),
        SqlValue::Boolean(b) => Value::Bool(*b),
        SqlValue::Null => Value::Null,
        SqlValue::Placeholder(name) => return param(name, params?),
        _ => return None,
    };
    Some(value)
}

/// Parameter `$n` as a value, if it is of a type isobar stores.
fn param<'a>(name: &str, params: &'a ParamValues) -> Option<Value<'a>> {
    let ParamValues::List(list) = params else { return None };
    let n = name.strip_prefix('$')?.parse::<usize>().ok()?;
    let ns = |v: Option<i64>, per: i64| v.map_or(Some(Value::Null), |v| v.checked_mul(per).map(Value::TimestampNs));
    match &list.get(n.checked_sub(1)?)?.value {
        v if v.is_null() => Some(Value::Null),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Some(Value::Text(s)),
        ScalarValue::Float64(Some(v)) => Some(Value::F64(*v)),
        ScalarValue::Float32(Some(v)) => Some(Value::F64(f64::from(*v))),
        ScalarValue::Int64(Some(v)) => Some(Value::I64(*v)),
        ScalarValue::Int32(Some(v)) => Some(Value::I64(i64::from(*v))),
        ScalarValue::Int16(Some(v)) => Some(Value::I64(i64::from(*v))),
        ScalarValue::Int8(Some(v)) => Some(Value::I64(i64::from(*v))),
        ScalarValue::Boolean(Some(v)) => Some(Value::Bool(*v)),
        ScalarValue::TimestampNanosecond(v, _) => ns(*v, 1),
        ScalarValue::TimestampMicrosecond(v, _) => ns(*v, 1_000),
        ScalarValue::TimestampMillisecond(v, _) => ns(*v, 1_000_000),
        ScalarValue::TimestampSecond(v, _) => ns(*v, 1_000_000_000),
        _ => None,
    }
}

/// Whether a cast to `ty` leaves a value for `target` as the column's own conversion would.
fn same_kind(ty: &SqlType, target: Target) -> bool {
    match target {
        Target::Time => matches!(ty, SqlType::Timestamp(..) | SqlType::TimestampNtz(_)),
        Target::Tag(_) | Target::Field(_, FieldType::String) => {
            matches!(ty, SqlType::Text | SqlType::Varchar(None) | SqlType::String(None))
        }
        Target::Field(_, FieldType::F64) => matches!(ty, SqlType::DoublePrecision | SqlType::Float8 | SqlType::Double(_)),
        Target::Field(_, FieldType::I64) => matches!(ty, SqlType::BigInt(None) | SqlType::Int8(None)),
        Target::Field(_, FieldType::Bool) => matches!(ty, SqlType::Boolean | SqlType::Bool),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::common::metadata::ScalarAndMetadata;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use isobar_storage::{ColumnKind, StorageConfig};

    use proptest::prelude::*;

    use super::*;
    use crate::error::Result;

    fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
        let columns = [
            ("station".to_owned(), ColumnKind::Tag),
            ("v".to_owned(), ColumnKind::Field(FieldType::F64)),
            ("n".to_owned(), ColumnKind::Field(FieldType::I64)),
        ];
        storage.create_table("t", &columns).expect("create");
        (dir, storage)
    }

    /// Runs `sql` on the fast path, both from its syntax tree and (without parameters) from
    /// its text, which must agree on taking it.
    fn run(storage: &Storage, sql: &str, params: Option<&ParamValues>) -> Option<Result<u64>> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses").remove(0);
        let batch = values_batch(storage, &statement, params);
        if params.is_none() {
            let from_text = text_batch(storage, sql).map(|(_, b)| b);
            assert_eq!(from_text.is_some(), batch.is_some(), "text and tree disagree on {sql}");
            if let (Some(text), Some(tree)) = (&from_text, &batch) {
                assert_eq!(format!("{text:?}"), format!("{tree:?}"), "{sql}");
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Some(runtime.block_on(crate::insert::write_batch(storage, batch?, 0)))
    }

    /// The table's rows as SQL reads them.
    fn rows(storage: &Storage) -> String {
        let engine = crate::QueryEngine::new(storage.clone(), crate::QueryConfig::default()).expect("engine");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(crate::fast_paths_tests::rows(&engine, "SELECT time, station, v, n FROM t ORDER BY time"))
    }

    #[test]
    fn literals_and_parameters_take_the_fast_path() {
        let (_dir, storage) = storage();
        let written = run(
            &storage,
            "INSERT INTO t (time, station, v, n) VALUES ('1970-01-01T00:00:01Z', 'a', 1.5, -2), \
             ('1970-01-01 00:00:02'::timestamptz, 'a', -3, NULL)",
            None,
        );
        assert_eq!(written.expect("fast path").expect("written"), 2);
        let params = ParamValues::List(vec![
            ScalarAndMetadata::from(ScalarValue::TimestampMicrosecond(Some(3_000_000), Some("UTC".into()))),
            ScalarAndMetadata::from(ScalarValue::Utf8(Some("b".into()))),
            ScalarAndMetadata::from(ScalarValue::Float64(Some(0.25))),
        ]);
        let written = run(&storage, "INSERT INTO public.t (time, station, v) VALUES ($1, $2, $3)", Some(&params));
        assert_eq!(written.expect("fast path").expect("written"), 1);
        let want = "\
+----------------------+---------+------+----+
| time                 | station | v    | n  |
+----------------------+---------+------+----+
| 1970-01-01T00:00:01Z | a       | 1.5  | -2 |
| 1970-01-01T00:00:02Z | a       | -3.0 |    |
| 1970-01-01T00:00:03Z | b       | 0.25 |    |
+----------------------+---------+------+----+";
        assert_eq!(rows(&storage), want);
    }

    #[test]
    fn anything_else_is_left_to_the_general_path() {
        let (_dir, storage) = storage();
        for sql in [
            "INSERT INTO t (time, station, v) VALUES (now(), 'a', 1)",
            "INSERT INTO t (time, station, v) VALUES ('1970-01-01T00:00:01Z', 'a', 1 + 1)",
            "INSERT INTO t (time, station, v) VALUES ('1970-01-01T00:00:01Z', 'a', '1'::real)",
            "INSERT INTO t (time, station, n) VALUES ('1970-01-01T00:00:01Z', 'a', 1.5)",
            "INSERT INTO t (time, station, v) VALUES ('yesterday', 'a', 1)",
            "INSERT INTO t (time, station, v) SELECT time, station, v FROM t",
            "INSERT INTO t (time, station, v) VALUES ('1970-01-01T00:00:01Z', 'a', 1) RETURNING v",
            "INSERT INTO missing (time, v) VALUES ('1970-01-01T00:00:01Z', 1)",
            "INSERT INTO t (time, nope) VALUES ('1970-01-01T00:00:01Z', 1)",
            "INSERT INTO \"system.ingest_errors\" (time, v) VALUES ('1970-01-01T00:00:01Z', 1)",
            "INSERT INTO t (time, station, v) VALUES ($1, 'a', 1)",
        ] {
            assert!(run(&storage, sql, None).is_none(), "{sql}");
        }
        assert_eq!(rows(&storage), "++\n++", "nothing was written");
    }

    /// A literal for the double column `v`, as SQL spells it; now and then one the fast path
    /// leaves to the general path.
    fn double_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (-1e6f64..1e6).prop_map(|v| format!("{v}")),
            2 => any::<i32>().prop_map(|n| n.to_string()),
            1 => (-1e6f64..1e6).prop_map(|v| format!("{v:e}::float8")),
            1 => (-1e3f64..1e3).prop_map(|v| format!("'{v}'")),
            1 => Just("NULL".to_owned()),
            1 => prop_oneof![Just("'x'".to_owned()), Just("1 + 1".to_owned()), Just("'1'::real".to_owned())],
        ]
    }

    /// A literal for the bigint column `n`.
    fn bigint_literal() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => any::<i64>().prop_map(|n| n.to_string()),
            1 => any::<i32>().prop_map(|n| format!("'{n}'::bigint")),
            1 => Just("NULL".to_owned()),
            1 => prop_oneof![Just("1.5".to_owned()), Just("TRUE".to_owned()), Just("-(1)".to_owned())],
        ]
    }

    /// The simple protocol's reading of the text and the syntax tree's take the same
    /// statements, to the same rows; and most statements are taken.
    #[test]
    fn text_and_syntax_tree_agree() {
        let (_dir, storage) = storage();
        let rows = proptest::collection::vec((0..100i64, "[a-c' ]{0,3}", double_literal(), bigint_literal()), 1..5);
        let taken = std::cell::Cell::new(0);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
        let outcome = runner.run(&rows, |rows| {
            let rows: Vec<String> = rows
                .iter()
                .map(|(t, station, v, n)| format!("('1970-01-01T00:00:{:02}Z', '{}', {v}, {n})", t % 60, station.replace('\'', "''")))
                .collect();
            let sql = format!("INSERT INTO t (time, station, v, n) VALUES {}", rows.join(", "));
            let statement = Parser::parse_sql(&PostgreSqlDialect {}, &sql).expect("parses").remove(0);
            let tree = values_batch(&storage, &statement, None).map(|b| format!("{b:?}"));
            let text = text_batch(&storage, &sql).map(|(_, b)| format!("{b:?}"));
            taken.set(taken.get() + u32::from(tree.is_some()));
            prop_assert_eq!(text, tree, "{}", sql);
            Ok(())
        });
        outcome.expect("text and tree agree");
        assert!(taken.get() >= 50, "only {} of 300 statements took the fast path", taken.get());
    }
}
