//! PostgreSQL functions drivers call on connect that `pg_catalog` does not bring:
//! `version()` (SQLAlchemy and Grafana parse the server version out of it),
//! `current_setting(name)` (Grafana's version detection and search path) and
//! `to_regtype(name)` (psycopg's type lookup), answered from `pg_catalog.pg_type`, and
//! `pg_type_is_visible(oid)` (SQLAlchemy's domain reflection): every type is, as isobar has
//! one schema.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// What `SELECT version()` answers.
pub(crate) const VERSION: &str = concat!("PostgreSQL 16.6 (isobar ", env!("CARGO_PKG_VERSION"), ") on x86_64-pc-linux-gnu");

/// Settings `current_setting` knows, with the values isobar runs with.
const SETTINGS: &[(&str, &str)] = &[
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("search_path", "\"$user\", public"),
    ("timezone", "UTC"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("max_identifier_length", "63"),
    ("default_transaction_read_only", "off"),
    ("transaction_read_only", "off"),
    ("is_superuser", "on"),
    ("lc_collate", "C.UTF-8"),
    ("lc_ctype", "C.UTF-8"),
];

/// SQL names of types that `pg_type` knows under another name.
const TYPE_ALIASES: &[(&str, &str)] = &[
    ("integer", "int4"),
    ("int", "int4"),
    ("bigint", "int8"),
    ("smallint", "int2"),
    ("real", "float4"),
    ("double precision", "float8"),
    ("boolean", "bool"),
    ("character varying", "varchar"),
    ("character", "bpchar"),
    ("timestamp with time zone", "timestamptz"),
    ("timestamp without time zone", "timestamp"),
    ("time without time zone", "time"),
    ("decimal", "numeric"),
];

/// Registers the functions; needs `pg_catalog` set up first.
pub(crate) async fn register(context: &SessionContext) -> Result<()> {
    let answer = |_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(VERSION.to_owned()))));
    context.register_udf(create_udf("version", Vec::new(), DataType::Utf8, Volatility::Immutable, Arc::new(answer)));
    context.register_udf(to_regtype(context).await?);
    context.register_udf(current_setting());
    let visible = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let [oid] = args else { return exec_err!("pg_type_is_visible takes one argument") };
        Ok(match oid {
            ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))),
            ColumnarValue::Array(oids) => ColumnarValue::Array(Arc::new(BooleanArray::from(vec![true; oids.len()]))),
        })
    };
    context.register_udf(create_udf("pg_type_is_visible", vec![DataType::Int32], DataType::Boolean, Volatility::Stable, Arc::new(visible)));
    Ok(())
}

/// `current_setting(name)`: the server's value of a setting; an error names an unknown one.
fn current_setting() -> ScalarUDF {
    text_function("current_setting", DataType::Utf8, |name| {
        let lower = name.to_lowercase();
        match SETTINGS.iter().find(|(n, _)| *n == lower) {
            Some((_, value)) => Ok(ScalarValue::Utf8(Some((*value).to_owned()))),
            None => exec_err!("unrecognized configuration parameter \"{name}\""),
        }
    })
}

/// A one-argument text function: `f` maps each non-null name to a value of `out_type`; NULL
/// maps to NULL.
fn text_function(name: &str, out_type: DataType, f: impl Fn(&str) -> Result<ScalarValue> + Send + Sync + 'static) -> ScalarUDF {
    let null = ScalarValue::try_from(&out_type).unwrap_or(ScalarValue::Null);
    let function = move |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let [arg] = args else { return exec_err!("this function takes one argument") };
        let names = arg.to_array(1)?;
        let names = cast(&names, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let values: Vec<ScalarValue> =
            (0..names.len()).map(|i| if names.is_null(i) { Ok(null.clone()) } else { f(names.value(i)) }).collect::<Result<_>>()?;
        match arg {
            ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(values.into_iter().next().unwrap_or_else(|| null.clone()))),
            ColumnarValue::Array(_) if values.is_empty() => Ok(ColumnarValue::Array(new_null_array(&null.data_type(), 0))),
            ColumnarValue::Array(_) => Ok(ColumnarValue::Array(ScalarValue::iter_to_array(values)?)),
        }
    };
    create_udf(name, vec![DataType::Utf8], out_type, Volatility::Stable, Arc::new(function))
}

/// `to_regtype(name)`: the type's OID in `pg_type`, or NULL for a type the server lacks.
async fn to_regtype(context: &SessionContext) -> Result<ScalarUDF> {
    let batches = context.sql("SELECT typname, oid FROM pg_catalog.pg_type").await?.collect().await?;
    let oid_type = batches.first().map_or(DataType::Int32, |b| b.schema().field(1).data_type().clone());
    let mut oids: HashMap<String, ScalarValue> = HashMap::new();
    for batch in &batches {
        let names = cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        for row in 0..batch.num_rows() {
            if !names.is_null(row) {
                oids.insert(names.value(row).to_owned(), ScalarValue::try_from_array(batch.column(1), row)?);
            }
        }
    }
    let null = ScalarValue::try_from(&oid_type)?;
    let lookup = move |name: &str| -> Result<ScalarValue> {
        let name = name.trim().trim_matches('"').to_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        let name = TYPE_ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, real)| real);
        Ok(oids.get(name).cloned().unwrap_or_else(|| null.clone()))
    };
    Ok(text_function("to_regtype", oid_type, lookup))
}
