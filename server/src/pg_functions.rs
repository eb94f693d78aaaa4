//! PostgreSQL functions drivers call on connect that `pg_catalog` does not bring:
//! `version()` (SQLAlchemy and Grafana parse the server version out of it),
//! `current_setting(name)` (Grafana's version detection and search path) and
//! `to_regtype(name)` (psycopg's type lookup), answered from `pg_catalog.pg_type`, and
//! `pg_type_is_visible(oid)` (SQLAlchemy's domain reflection) and `pg_collation_is_visible(oid)`:
//! every type and collation is, as isobar has one schema; and `pg_get_serial_sequence(table, column)` (SQLAlchemy 2.1's column
//! reflection): NULL, as isobar has no sequences; `json_build_object(key, value, ...)`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf};
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
    for name in ["pg_type_is_visible", "pg_collation_is_visible"] {
        context.register_udf(create_udf(name, vec![DataType::Int32], DataType::Boolean, Volatility::Stable, Arc::new(visible)));
    }
    let no_sequence = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let [table, _column] = args else { return exec_err!("pg_get_serial_sequence takes two arguments") };
        Ok(match table {
            ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::Utf8(None)),
            ColumnarValue::Array(tables) => ColumnarValue::Array(new_null_array(&DataType::Utf8, tables.len())),
        })
    };
    let text2 = vec![DataType::Utf8, DataType::Utf8];
    context.register_udf(create_udf("pg_get_serial_sequence", text2, DataType::Utf8, Volatility::Stable, Arc::new(no_sequence)));
    context.register_udf(ScalarUDF::new_from_impl(JsonBuildObject { signature: Signature::variadic_any(Volatility::Immutable) }));
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

/// `json_build_object(key, value, ...)`: a JSON object of the pairs, as text (SQLAlchemy's
/// column reflection builds identity and collation details with it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return exec_err!("json_build_object takes pairs of keys and values");
        }
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let mut objects = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                object.insert(json_key(&key), json_value(&value));
            }
            objects.push(Some(serde_json::Value::Object(object).to_string()));
        }
        let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        Ok(match (all_scalar, objects.pop()) {
            (true, Some(only)) if rows == 1 => ColumnarValue::Scalar(ScalarValue::Utf8(only)),
            (_, last) => {
                objects.push(last.flatten());
                ColumnarValue::Array(Arc::new(datafusion::arrow::array::StringArray::from(objects)))
            }
        })
    }
}

fn json_key(key: &ScalarValue) -> String {
    match key {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if value.is_null() {
        return Value::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => Value::String(s.clone()),
        ScalarValue::Float64(Some(f)) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        ScalarValue::Float32(Some(f)) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        other => match other.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(i))) if other.data_type().is_integer() => Value::from(i),
            _ => Value::String(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};
    use datafusion::prelude::SessionContext;

    use super::JsonBuildObject;

    #[tokio::test]
    async fn json_build_object_pairs_keys_with_json_values() {
        let context = SessionContext::new();
        context.register_udf(ScalarUDF::new_from_impl(JsonBuildObject { signature: Signature::variadic_any(Volatility::Immutable) }));
        let sql = "SELECT json_build_object('n', 1, 's', 'x', 'f', 1.5, 'z', NULL, 'b', true) AS o FROM (VALUES (1), (2)) AS t(v)";
        let batches = context.sql(sql).await.expect("plan").collect().await.expect("run");
        let objects: Vec<&str> = batches.iter().flat_map(|b| b.column(0).as_string::<i32>().iter().flatten().collect::<Vec<_>>()).collect();
        assert_eq!(objects, [r#"{"b":true,"f":1.5,"n":1,"s":"x","z":null}"#; 2]);
        let odd = context.sql("SELECT json_build_object('k')").await.expect("plan").collect().await;
        assert!(odd.is_err(), "a key without a value is an error");
    }
}
