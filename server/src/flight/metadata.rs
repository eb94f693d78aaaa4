//! Flight SQL's metadata calls, answered from isobar's catalog: catalogs, schemas, tables with
//! their Arrow schemas, table types, primary keys, SQL info and the types isobar stores.
//!
//! Tables of schema `public` (isobar's tables and rollups) are `BASE TABLE`s, as in
//! `information_schema` and as Grafana's table picker asks for; a filter on `TABLE` (JDBC's
//! `DatabaseMetaData.getTables`) finds them too. `system` tables are `SYSTEM TABLE`s and
//! `information_schema`'s are `VIEW`s. `pg_catalog` is for Postgres clients and is not listed.
//! A table's primary key is its tags and `time`: one row per series and time.

use std::sync::{Arc, LazyLock};

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, Nullable, Searchable, SqlInfo, SqlNullOrdering,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, XdbcDataType,
};
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt8Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use isobar_query::{CATALOG, DEFAULT_SCHEMA, QueryEngine};
use isobar_storage::{ColumnKind, TIME_COLUMN};

/// The schemas Flight SQL clients see, with the type of their tables.
const SCHEMAS: [(&str, &str); 3] = [(DEFAULT_SCHEMA, "BASE TABLE"), ("system", "SYSTEM TABLE"), ("information_schema", "VIEW")];

/// The table types isobar has.
pub(crate) const TABLE_TYPES: [&str; 3] = ["BASE TABLE", "SYSTEM TABLE", "VIEW"];

/// The schema names matching a `LIKE` pattern (`%` any run, `_` one character).
fn schemas_matching(pattern: Option<&str>) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    SCHEMAS.into_iter().filter(move |(name, _)| pattern.is_none_or(|p| like(p, name)))
}

/// Whether `text` matches SQL `LIKE` pattern `pattern`.
fn like(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// Whether `catalog` (a filter a client sent) names isobar's catalog.
fn in_catalog(catalog: Option<&str>) -> bool {
    catalog.is_none_or(|c| c.is_empty() || c == CATALOG)
}

/// `GetDbSchemas`.
pub(crate) fn schemas(query: CommandGetDbSchemas) -> Result<RecordBatch, FlightError> {
    let catalog_matches = in_catalog(query.catalog.as_deref());
    let pattern = query.db_schema_filter_pattern.clone();
    let mut builder = query.into_builder();
    if catalog_matches {
        for (schema, _) in schemas_matching(pattern.as_deref()) {
            builder.append(CATALOG, schema);
        }
    }
    builder.build()
}

/// `GetTables`, with each table's Arrow schema when asked.
pub(crate) async fn tables(engine: &QueryEngine, query: CommandGetTables) -> Result<RecordBatch, FlightError> {
    let catalog_matches = in_catalog(query.catalog.as_deref());
    let pattern = query.db_schema_filter_pattern.clone();
    let mut types = query.table_types.clone();
    if types.iter().any(|t| t.eq_ignore_ascii_case("TABLE")) {
        types.push("BASE TABLE".into());
    }
    let mut builder = arrow_flight::sql::metadata::GetTablesBuilder::new(
        None::<String>,
        None::<String>,
        query.table_name_filter_pattern.clone(),
        types,
        query.include_schema,
    );
    let catalog = engine.context().catalog(CATALOG).filter(|_| catalog_matches);
    for (schema_name, table_type) in schemas_matching(pattern.as_deref()) {
        let Some(schema) = catalog.as_ref().and_then(|c| c.schema(schema_name)) else { continue };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            let Ok(Some(table)) = schema.table(&name).await else { continue };
            builder.append(CATALOG, schema_name, &name, table_type, &table.schema())?;
        }
    }
    builder.build()
}

/// The columns of a `GetPrimaryKeys` answer.
pub(crate) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// `GetPrimaryKeys`: an isobar table's tags and `time`.
pub(crate) fn primary_keys(engine: &QueryEngine, query: &CommandGetPrimaryKeys) -> Result<RecordBatch, FlightError> {
    let schema_matches = query.db_schema.as_deref().is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEMA);
    let table = engine.storage().table(&query.table).filter(|_| in_catalog(query.catalog.as_deref()) && schema_matches);
    let columns: Vec<String> = table
        .map(|t| {
            let tags = t.columns.iter().filter(|c| c.kind == ColumnKind::Tag).map(|c| c.name.clone());
            tags.chain(std::iter::once(TIME_COLUMN.to_owned())).collect()
        })
        .unwrap_or_default();
    let n = columns.len();
    let repeat = |value: &str| Arc::new(StringArray::from(vec![value; n])) as ArrayRef;
    let key_name = format!("{}_pkey", query.table);
    Ok(RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            repeat(CATALOG),
            repeat(DEFAULT_SCHEMA),
            repeat(&query.table),
            Arc::new(StringArray::from(columns)),
            repeat(&key_name),
            Arc::new(Int32Array::from_iter_values(1..=i32::try_from(n).unwrap_or(i32::MAX))),
        ],
    )?)
}

/// The columns of a `GetExportedKeys`, `GetImportedKeys` or `GetCrossReference` answer:
/// isobar has no foreign keys, so the answer is always empty, but typed.
pub(crate) fn foreign_keys() -> Result<RecordBatch, FlightError> {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let schema = Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]));
    let columns = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int32 => Arc::new(Int32Array::from(Vec::<i32>::new())) as ArrayRef,
            DataType::UInt8 => Arc::new(UInt8Array::from(Vec::<u8>::new())) as ArrayRef,
            _ => Arc::new(StringArray::from(Vec::<String>::new())) as ArrayRef,
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// What `GetSqlInfo` answers: the server, and the SQL JDBC's `DatabaseMetaData` asks about.
pub(crate) static SQL_INFO: LazyLock<Result<SqlInfoData, String>> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "isobar");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow columnar format version (Schema.fbs).
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, true);
    // Unquoted names fold to lower case; quoted ones keep theirs, as in PostgreSQL.
    b.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32);
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    b.append(SqlInfo::SqlKeywords, &["BUCKET", "INTERVAL", "TIME_BUCKET", "DATE_BIN", "FIRST", "LAST"][..]);
    b.append(SqlInfo::SqlNumericFunctions, &["abs", "ceil", "floor", "round", "sqrt", "ln", "log", "power", "exp"][..]);
    b.append(SqlInfo::SqlStringFunctions, &["lower", "upper", "length", "substr", "concat", "trim", "replace", "split_part"][..]);
    b.append(SqlInfo::SqlSystemFunctions, &["current_database", "current_schema", "version"][..]);
    b.append(SqlInfo::SqlDatetimeFunctions, &["now", "date_bin", "date_trunc", "date_part", "time_bucket", "to_timestamp"][..]);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlMaxColumnNameLength, 63i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 63i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, true);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().map_err(|e| e.to_string())
});

/// What `GetXdbcTypeInfo` answers: the types of isobar's columns.
pub(crate) static XDBC_TYPES: LazyLock<Result<XdbcTypeInfoData, String>> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let ty = |name: &str, data_type: XdbcDataType, column_size: i32, prefix: Option<&str>, case_sensitive| XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: Some(column_size),
        literal_prefix: prefix.map(Into::into),
        literal_suffix: prefix.map(Into::into),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive,
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: matches!(data_type, XdbcDataType::XdbcBigint | XdbcDataType::XdbcDouble).then_some(10),
        interval_precision: None,
    };
    // In ascending order of `data_type`, as JDBC's getTypeInfo lists them.
    b.append(ty("bigint", XdbcDataType::XdbcBigint, 19, None, false));
    b.append(ty("text", XdbcDataType::XdbcVarchar, i32::MAX, Some("'"), true));
    b.append(ty("double precision", XdbcDataType::XdbcDouble, 15, None, false));
    b.append(ty("boolean", XdbcDataType::XdbcBit, 1, None, false));
    b.append(ty("timestamp with time zone", XdbcDataType::XdbcTimestamp, 35, Some("'"), false));
    b.build().map_err(|e| e.to_string())
});

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns_match_as_in_sql() {
        for (pattern, text, matches) in [
            ("%", "weather", true),
            ("weather", "weather", true),
            ("wea%", "weather", true),
            ("%_1m", "weather_1m", true),
            ("w_ather", "weather", true),
            ("w_ather", "wether", false),
            ("%x%", "weather", false),
            ("", "weather", false),
        ] {
            assert_eq!(like(pattern, text), matches, "{pattern} {text}");
        }
    }
}
