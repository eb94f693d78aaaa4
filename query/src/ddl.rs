//! `CREATE TABLE` for isobar tables.
//!
//! A table has a `time` column (`TIMESTAMPTZ` or `TIMESTAMP`, always stored as UTC
//! nanoseconds). The other columns of the `PRIMARY KEY` are tags (text; together they name a
//! series), and every other column is a field: `DOUBLE PRECISION`/`REAL`/`FLOAT` as f64, any
//! integer type as i64, `BOOLEAN`, and text. This is how TimescaleDB and QuestDB users
//! already declare a series key, and it maps one-to-one onto isobar's data model.

use datafusion::sql::sqlparser::ast::{ColumnOption, CreateTable, Expr, Ident, ObjectName, TableConstraint};
use isobar_storage::{ColumnKind, FieldType, TIME_COLUMN};

use crate::error::{Error, Result};

/// The schema every SQL name resolves in.
pub const DEFAULT_SCHEMA: &str = "public";

/// A table definition ready for storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    pub name: String,
    /// Tags and fields, in declaration order (`time` excluded).
    pub columns: Vec<(String, ColumnKind)>,
    pub if_not_exists: bool,
}

/// Reads an isobar table definition from a parsed `CREATE TABLE`.
pub fn table_definition(create: &CreateTable) -> Result<TableDefinition> {
    let unsupported = |what: &str| Err(Error::Unsupported(format!("CREATE TABLE: {what} is not supported by isobar")));
    if create.query.is_some() {
        return unsupported("AS SELECT");
    }
    if create.or_replace {
        return unsupported("OR REPLACE");
    }
    if create.external {
        return Err(Error::Refused("CREATE EXTERNAL TABLE is refused: SQL cannot reach the server's files".into()));
    }
    if create.like.is_some() || create.clone.is_some() {
        return unsupported("LIKE and CLONE");
    }
    let name = table_name(&create.name)?;
    let mut key: Vec<String> = Vec::new();
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                for c in &pk.columns {
                    match &c.column.expr {
                        Expr::Identifier(ident) => key.push(identifier_name(ident)),
                        other => return unsupported(&format!("the primary key expression {other}")),
                    }
                }
            }
            other => return unsupported(&format!("the constraint {other}")),
        }
    }
    for column in &create.columns {
        for option in &column.options {
            match &option.option {
                ColumnOption::PrimaryKey(_) => key.push(identifier_name(&column.name)),
                ColumnOption::NotNull | ColumnOption::Null => {}
                other => return unsupported(&format!("the column option {other}")),
            }
        }
    }
    let mut has_time = false;
    let mut columns = Vec::new();
    for column in &create.columns {
        let column_name = identifier_name(&column.name);
        let ty = type_name(&column.data_type.to_string());
        if column_name == TIME_COLUMN {
            if !matches!(ty.as_str(), "timestamptz" | "timestamp" | "timestamp with time zone" | "timestamp without time zone") {
                return Err(Error::Unsupported(format!("column time must be TIMESTAMPTZ, not {}", column.data_type)));
            }
            has_time = true;
            continue;
        }
        let kind = if key.contains(&column_name) {
            if field_type(&ty) != Some(FieldType::String) {
                return Err(Error::Unsupported(format!(
                    "column {column_name} is in the primary key, so it is a tag, and tags are text; it is declared {}",
                    column.data_type
                )));
            }
            ColumnKind::Tag
        } else {
            ColumnKind::Field(field_type(&ty).ok_or_else(|| {
                Error::Unsupported(format!(
                    "column {column_name}: type {} is not supported (use DOUBLE PRECISION, BIGINT, BOOLEAN or TEXT)",
                    column.data_type
                ))
            })?)
        };
        columns.push((column_name, kind));
    }
    if !has_time {
        return Err(Error::Unsupported(format!("table {name} needs a `time TIMESTAMPTZ` column")));
    }
    if let Some(unknown) = key.iter().find(|k| k.as_str() != TIME_COLUMN && !columns.iter().any(|(c, _)| c == *k)) {
        return Err(Error::Unsupported(format!("primary key column {unknown} is not a column of {name}")));
    }
    Ok(TableDefinition { name, columns, if_not_exists: create.if_not_exists })
}

/// The table a possibly schema-qualified name refers to.
pub fn table_name(name: &ObjectName) -> Result<String> {
    crate::policy::check_table_name(name)?;
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(identifier_name).collect();
    match parts.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] if schema == DEFAULT_SCHEMA => Ok(table.clone()),
        _ => Err(Error::Unsupported(format!("tables live in schema {DEFAULT_SCHEMA}; {name} is not there"))),
    }
}

/// The name an identifier stands for: unquoted ones fold to lower case, as in PostgreSQL.
pub fn identifier_name(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// A type's name without its length or precision, lower case.
fn type_name(ty: &str) -> String {
    let lower = ty.to_lowercase();
    let base = lower.split('(').next().unwrap_or_default().trim();
    // `timestamp(3) with time zone` keeps its suffix.
    match lower.split_once(')') {
        Some((_, rest)) if !rest.trim().is_empty() => format!("{base} {}", rest.trim()),
        _ => base.to_owned(),
    }
}

/// The field type a column of SQL type `ty` stores, if isobar has one for it.
pub(crate) fn sql_field_type(ty: &datafusion::sql::sqlparser::ast::DataType) -> Option<FieldType> {
    field_type(&type_name(&ty.to_string()))
}

fn field_type(ty: &str) -> Option<FieldType> {
    Some(match ty {
        "double precision" | "double" | "float" | "float8" | "float64" | "real" | "float4" | "float32" => FieldType::F64,
        "bigint" | "int" | "integer" | "smallint" | "tinyint" | "int2" | "int4" | "int8" | "int64" => FieldType::I64,
        "boolean" | "bool" => FieldType::Bool,
        "text" | "varchar" | "character varying" | "char" | "character" | "string" => FieldType::String,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn define(sql: &str) -> Result<TableDefinition> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        let Some(Statement::CreateTable(create)) = statements.first() else { panic!("not a CREATE TABLE: {sql}") };
        table_definition(create)
    }

    #[test]
    fn the_primary_key_names_the_tags() {
        let d = define(
            "CREATE TABLE IF NOT EXISTS public.Weather (time TIMESTAMPTZ NOT NULL, station_id TEXT, \"Sensor\" VARCHAR(20), \
             value DOUBLE PRECISION, n BIGINT, ok BOOLEAN, note TEXT, PRIMARY KEY (station_id, \"Sensor\", time))",
        )
        .expect("valid");
        assert_eq!(d.name, "weather");
        assert!(d.if_not_exists);
        let kinds: Vec<(&str, ColumnKind)> = d.columns.iter().map(|(n, k)| (n.as_str(), *k)).collect();
        assert_eq!(
            kinds,
            [
                ("station_id", ColumnKind::Tag),
                ("Sensor", ColumnKind::Tag),
                ("value", ColumnKind::Field(FieldType::F64)),
                ("n", ColumnKind::Field(FieldType::I64)),
                ("ok", ColumnKind::Field(FieldType::Bool)),
                ("note", ColumnKind::Field(FieldType::String)),
            ]
        );
        let inline = define("CREATE TABLE m (time TIMESTAMP(3) WITH TIME ZONE, s TEXT PRIMARY KEY, v REAL)").expect("valid");
        assert_eq!(inline.columns[0], ("s".to_owned(), ColumnKind::Tag));
    }

    #[test]
    fn definitions_isobar_cannot_keep_are_errors_that_say_why() {
        let reason = |sql: &str| define(sql).expect_err(sql).to_string();
        assert!(reason("CREATE TABLE m (v DOUBLE PRECISION)").contains("needs a `time TIMESTAMPTZ` column"));
        assert!(reason("CREATE TABLE m (time BIGINT, v REAL)").contains("column time must be TIMESTAMPTZ"));
        assert!(reason("CREATE TABLE m (time TIMESTAMPTZ, s INT, v REAL, PRIMARY KEY (s))").contains("tags are text"));
        assert!(reason("CREATE TABLE m (time TIMESTAMPTZ, v NUMERIC(10, 2))").contains("type NUMERIC(10,2) is not supported"));
        assert!(reason("CREATE TABLE m (time TIMESTAMPTZ, v REAL, PRIMARY KEY (x))").contains("primary key column x"));
        assert!(reason("CREATE TABLE m (time TIMESTAMPTZ, v REAL DEFAULT 1)").contains("DEFAULT 1 is not supported"));
        assert!(reason("CREATE TABLE other.m (time TIMESTAMPTZ, v REAL)").contains("schema public"));
    }
}
