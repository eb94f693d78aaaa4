//! `information_schema` with PostgreSQL's type names, which BI tools and Grafana's query
//! builder key on (`double precision`, not `Float64`). Each table is built when a query plans
//! it, from every schema of the catalog as it is then.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result;

/// The schema's name.
pub(crate) const INFORMATION_SCHEMA: &str = "information_schema";
const TABLES: [&str; 3] = ["tables", "columns", "schemata"];
const OWNER: &str = "isobar";

/// `information_schema` over one catalog.
#[derive(Debug)]
pub(crate) struct InformationSchema {
    catalog_name: String,
    /// The catalog this schema lives in; weak, as the catalog holds this schema.
    catalog: std::sync::Weak<dyn CatalogProvider>,
}

impl InformationSchema {
    pub(crate) fn new(catalog_name: &str, catalog: std::sync::Weak<dyn CatalogProvider>) -> Self {
        Self { catalog_name: catalog_name.to_owned(), catalog }
    }

    /// (schema, table, table type, its Arrow schema) for every table of the catalog.
    async fn all_tables(&self) -> Result<Vec<(String, String, &'static str, Option<SchemaRef>)>> {
        let Some(catalog) = self.catalog.upgrade() else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for schema_name in schemas {
            if schema_name == INFORMATION_SCHEMA {
                out.extend(TABLES.iter().map(|t| (schema_name.clone(), (*t).to_owned(), "VIEW", None)));
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else { continue };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                let table = schema.table(&name).await?;
                out.push((schema_name.clone(), name, "BASE TABLE", table.map(|t| t.schema())));
            }
        }
        Ok(out)
    }

    async fn build(&self, name: &str) -> Result<Option<RecordBatch>> {
        let text = |values: Vec<Option<String>>| Arc::new(StringArray::from(values)) as ArrayRef;
        let text_field = |n: &str| Field::new(n, DataType::Utf8, true);
        let catalog = || Some(self.catalog_name.clone());
        Ok(Some(match name {
            "tables" => {
                let tables = self.all_tables().await?;
                let schema = Schema::new(["table_catalog", "table_schema", "table_name", "table_type"].map(text_field).to_vec());
                RecordBatch::try_new(
                    Arc::new(schema),
                    vec![
                        text(tables.iter().map(|_| catalog()).collect()),
                        text(tables.iter().map(|t| Some(t.0.clone())).collect()),
                        text(tables.iter().map(|t| Some(t.1.clone())).collect()),
                        text(tables.iter().map(|t| Some(t.2.to_owned())).collect()),
                    ],
                )?
            }
            "columns" => {
                let mut rows: Vec<(String, String, String, i32, bool, DataType)> = Vec::new();
                for (schema, table, _, columns) in self.all_tables().await? {
                    for (i, f) in columns.iter().flat_map(|s| s.fields().iter().cloned().collect::<Vec<_>>()).enumerate() {
                        let position = i32::try_from(i + 1).unwrap_or(i32::MAX);
                        rows.push((schema.clone(), table.clone(), f.name().clone(), position, f.is_nullable(), f.data_type().clone()));
                    }
                }
                let (precision, scale): (Vec<Option<i32>>, Vec<Option<i32>>) = rows.iter().map(|r| numeric(&r.5)).unzip();
                let mut fields: Vec<Field> = ["table_catalog", "table_schema", "table_name", "column_name"].map(text_field).to_vec();
                fields.push(Field::new("ordinal_position", DataType::Int32, false));
                fields.extend(["column_default", "is_nullable", "data_type", "udt_name"].map(text_field));
                fields.push(Field::new("character_maximum_length", DataType::Int32, true));
                fields.push(Field::new("numeric_precision", DataType::Int32, true));
                fields.push(Field::new("numeric_scale", DataType::Int32, true));
                RecordBatch::try_new(
                    Arc::new(Schema::new(fields)),
                    vec![
                        text(rows.iter().map(|_| catalog()).collect()),
                        text(rows.iter().map(|r| Some(r.0.clone())).collect()),
                        text(rows.iter().map(|r| Some(r.1.clone())).collect()),
                        text(rows.iter().map(|r| Some(r.2.clone())).collect()),
                        Arc::new(Int32Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
                        text(rows.iter().map(|_| None).collect()),
                        text(rows.iter().map(|r| Some(if r.4 { "YES" } else { "NO" }.to_owned())).collect()),
                        text(rows.iter().map(|r| Some(pg_type(&r.5).0.to_owned())).collect()),
                        text(rows.iter().map(|r| Some(pg_type(&r.5).1.to_owned())).collect()),
                        Arc::new(Int32Array::from(vec![None; rows.len()])),
                        Arc::new(Int32Array::from(precision)),
                        Arc::new(Int32Array::from(scale)),
                    ],
                )?
            }
            "schemata" => {
                let schemas = self.catalog.upgrade().map(|c| c.schema_names()).unwrap_or_default();
                let schema = Schema::new(["catalog_name", "schema_name", "schema_owner"].map(text_field).to_vec());
                RecordBatch::try_new(
                    Arc::new(schema),
                    vec![
                        text(schemas.iter().map(|_| catalog()).collect()),
                        text(schemas.iter().map(|s| Some(s.clone())).collect()),
                        text(schemas.iter().map(|_| Some(OWNER.to_owned())).collect()),
                    ],
                )?
            }
            _ => return Ok(None),
        }))
    }
}

/// PostgreSQL's `data_type` and `udt_name` for an Arrow type.
fn pg_type(t: &DataType) -> (&'static str, &'static str) {
    match t {
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", "timestamptz"),
        DataType::Timestamp(_, None) => ("timestamp without time zone", "timestamp"),
        DataType::Float64 => ("double precision", "float8"),
        DataType::Float32 | DataType::Float16 => ("real", "float4"),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("bigint", "int8"),
        DataType::Int32 | DataType::UInt16 => ("integer", "int4"),
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => ("smallint", "int2"),
        DataType::Boolean => ("boolean", "bool"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("text", "text"),
        DataType::Date32 | DataType::Date64 => ("date", "date"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ("bytea", "bytea"),
        DataType::Decimal128(..) | DataType::Decimal256(..) => ("numeric", "numeric"),
        DataType::List(_) | DataType::LargeList(_) => ("ARRAY", "_text"),
        _ => ("USER-DEFINED", "unknown"),
    }
}

/// `numeric_precision` and `numeric_scale` (binary precision for floats, as PostgreSQL).
fn numeric(t: &DataType) -> (Option<i32>, Option<i32>) {
    match t {
        DataType::Float64 => (Some(53), None),
        DataType::Float32 => (Some(24), None),
        DataType::Int64 => (Some(64), Some(0)),
        DataType::Int32 => (Some(32), Some(0)),
        DataType::Int16 => (Some(16), Some(0)),
        _ => (None, None),
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(batch) = self.build(name).await? else { return Ok(None) };
        Ok(Some(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
