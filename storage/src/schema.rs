//! Table schemas: schema on write, type checks, and the canonical series key.
//!
//! Tags and fields are added to a table as points bring them. A field whose type differs from
//! its column's rejects that one point, with a reason naming table, column, expected and found
//! types; the rest of the batch is written.

use crate::bytes::{Reader, Writer};
use crate::error::DecodeError;
use crate::fxhash::FxHashMap;
use crate::model::{ColumnId, FieldType, FieldValue, Point, TableId};

/// The name of every table's time column.
/// Tables whose names start with this belong to isobar itself (`system.ingest_errors`); SQL
/// sees them in schema `system`.
pub const SYSTEM_TABLE_PREFIX: &str = "system.";

pub const TIME_COLUMN: &str = "time";

/// Whether a column is a tag (part of the series identity) or a field of a given type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Tag,
    Field(FieldType),
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub id: ColumnId,
    pub name: String,
    pub kind: ColumnKind,
}

/// Limits on what a point may carry; see `StorageConfig`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PointLimits {
    pub(crate) tags_per_series_max: usize,
    pub(crate) columns_per_table_max: usize,
    pub(crate) name_bytes_max: usize,
    pub(crate) string_bytes_max: usize,
}

/// A table's columns in creation order (ids are dense from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column names are few (`columns_per_table_max`), so a fast hash cannot be made slow.
    by_name: FxHashMap<String, usize>,
}

/// A point checked against a schema, with column ids resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResolvedPoint<'a> {
    pub(crate) time: i64,
    /// Canonical series key: tags sorted by column id.
    pub(crate) tags: Vec<(ColumnId, &'a str)>,
    pub(crate) fields: Vec<(ColumnId, FieldValue)>,
}

impl TableSchema {
    pub(crate) fn new(id: TableId, name: &str) -> Self {
        Self { id, name: name.to_owned(), columns: Vec::new(), by_name: FxHashMap::default() }
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.by_name.get(name).map(|&i| &self.columns[i])
    }

    /// The column with id `id`.
    pub fn column_by_id(&self, id: ColumnId) -> Option<&ColumnDef> {
        self.columns.get(id.0 as usize).filter(|c| c.id == id)
    }

    /// Tag columns in id order.
    pub fn tags(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| c.kind == ColumnKind::Tag)
    }

    /// Field columns in id order.
    pub fn fields(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| matches!(c.kind, ColumnKind::Field(_)))
    }

    pub(crate) fn add_column(&mut self, name: &str, kind: ColumnKind) -> ColumnId {
        let id = ColumnId(u16::try_from(self.columns.len()).expect("column count is limited below u16::MAX"));
        self.by_name.insert(name.to_owned(), self.columns.len());
        self.columns.push(ColumnDef { id, name: name.to_owned(), kind });
        id
    }

    /// Checks `point` and resolves its columns, adding new ones. On error nothing is added.
    pub(crate) fn resolve<'a>(&mut self, point: &'a Point, limits: &PointLimits) -> Result<(ResolvedPoint<'a>, bool), String> {
        self.check_point(point, limits)?;
        let mut changed = false;
        let mut tags = Vec::with_capacity(point.tags.len());
        for (name, value) in &point.tags {
            let id = match self.column(name) {
                Some(c) => c.id,
                None => {
                    changed = true;
                    self.add_column(name, ColumnKind::Tag)
                }
            };
            tags.push((id, value.as_str()));
        }
        tags.sort_by_key(|(id, _)| *id);
        let mut fields = Vec::with_capacity(point.fields.len());
        for (name, value) in &point.fields {
            let id = match self.column(name) {
                Some(c) => c.id,
                None => {
                    changed = true;
                    self.add_column(name, ColumnKind::Field(value.field_type()))
                }
            };
            fields.push((id, value.clone()));
        }
        fields.sort_by_key(|(id, _)| *id);
        Ok((ResolvedPoint { time: point.time.0, tags, fields }, changed))
    }

    /// Every reason `point` cannot be written to this table, as the first one found.
    fn check_point(&self, point: &Point, limits: &PointLimits) -> Result<(), String> {
        let table = &self.name;
        if point.fields.is_empty() {
            return Err(format!("table {table}: a point needs at least one field"));
        }
        if point.tags.len() > limits.tags_per_series_max {
            return Err(format!("table {table}: {} tags, more than the limit of {}", point.tags.len(), limits.tags_per_series_max));
        }
        let mut new_columns = 0;
        for (name, value) in &point.tags {
            check_name(table, name, limits)?;
            if value.len() > limits.string_bytes_max {
                return Err(format!("table {table}, tag {name}: value of {} bytes exceeds {}", value.len(), limits.string_bytes_max));
            }
            match self.column(name).map(|c| c.kind) {
                Some(ColumnKind::Field(t)) => {
                    return Err(format!("table {table}, column {name}: expected {t} field, found tag"));
                }
                Some(ColumnKind::Tag) => {}
                None => new_columns += 1,
            }
        }
        for (name, value) in &point.fields {
            check_name(table, name, limits)?;
            let found = value.field_type();
            match self.column(name).map(|c| c.kind) {
                Some(ColumnKind::Tag) => {
                    return Err(format!("table {table}, column {name}: expected tag, found {found} field"));
                }
                Some(ColumnKind::Field(expected)) if expected != found => {
                    return Err(format!("table {table}, column {name}: expected {expected}, found {found}"));
                }
                Some(_) => {}
                None => new_columns += 1,
            }
            if let FieldValue::String(s) = value
                && s.len() > limits.string_bytes_max
            {
                return Err(format!("table {table}, field {name}: value of {} bytes exceeds {}", s.len(), limits.string_bytes_max));
            }
        }
        if let Some(twice) = repeated_name(point) {
            return Err(format!("table {table}: column {twice} given twice"));
        }
        if self.columns.len() + new_columns > limits.columns_per_table_max {
            return Err(format!("table {table}: more than {} columns", limits.columns_per_table_max));
        }
        Ok(())
    }

    /// Adds declared columns (from `CREATE TABLE`), checking names, repeats and the column limit.
    pub(crate) fn define(&mut self, columns: &[(String, ColumnKind)], limits: &PointLimits) -> Result<(), String> {
        let table = self.name.clone();
        if self.columns.len() + columns.len() > limits.columns_per_table_max {
            return Err(format!("table {table}: more than {} columns", limits.columns_per_table_max));
        }
        for (name, kind) in columns {
            check_name(&table, name, limits)?;
            if self.column(name).is_some() {
                return Err(format!("table {table}: column {name} given twice"));
            }
            self.add_column(name, *kind);
        }
        Ok(())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SCHEMA_VERSION);
        w.u32(self.id.0);
        w.str(&self.name);
        w.u16(u16::try_from(self.columns.len()).expect("column count is limited below u16::MAX"));
        for c in &self.columns {
            w.str(&c.name);
            w.u8(match c.kind {
                ColumnKind::Tag => 0,
                ColumnKind::Field(t) => t.code(),
            });
        }
        w.into_inner()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SCHEMA_VERSION {
            return Err(r.err(format!("unknown schema version {version}")));
        }
        let id = TableId(r.u32()?);
        let name = r.str()?;
        let mut schema = Self::new(id, name);
        let n = r.u16()?;
        for _ in 0..n {
            let name = r.str()?.to_owned();
            let code = r.u8()?;
            let kind = match code {
                0 => ColumnKind::Tag,
                c => ColumnKind::Field(FieldType::from_code(c).ok_or_else(|| r.err(format!("unknown column type {c}")))?),
            };
            if schema.by_name.contains_key(&name) || name == TIME_COLUMN {
                return Err(r.err(format!("duplicate column {name}")));
            }
            schema.add_column(&name, kind);
        }
        r.finish()?;
        Ok(schema)
    }
}

const SCHEMA_VERSION: u8 = 1;

fn check_name(table: &str, name: &str, limits: &PointLimits) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("table {table}: empty column name"));
    }
    if name == TIME_COLUMN {
        return Err(format!("table {table}: `{TIME_COLUMN}` is the time column, not a tag or field"));
    }
    if name.len() > limits.name_bytes_max {
        return Err(format!("table {table}: column name of {} bytes exceeds {}", name.len(), limits.name_bytes_max));
    }
    Ok(())
}

/// A tag or field name the point gives twice. Points are small: pairwise comparison, which
/// allocates nothing, unless there are many names.
fn repeated_name(point: &Point) -> Option<&str> {
    let names = || point.tags.iter().map(|(n, _)| n.as_str()).chain(point.fields.iter().map(|(n, _)| n.as_str()));
    if point.tags.len() + point.fields.len() <= 32 {
        return names().enumerate().find(|(i, n)| names().skip(i + 1).any(|m| m == *n)).map(|(_, n)| n);
    }
    let mut sorted: Vec<&str> = names().collect();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Checks a table name.
pub(crate) fn check_table_name(name: &str, limits: &PointLimits) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty table name".into());
    }
    if name.len() > limits.name_bytes_max {
        return Err(format!("table name of {} bytes exceeds {}", name.len(), limits.name_bytes_max));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("table name {name:?} contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> PointLimits {
        PointLimits { tags_per_series_max: 4, columns_per_table_max: 8, name_bytes_max: 16, string_bytes_max: 32 }
    }

    fn check(schema: &mut TableSchema, point: Point, expected: Result<(), &str>) {
        let got = schema.resolve(&point, &limits()).map(|_| ());
        assert_eq!(got, expected.map_err(str::to_owned), "{point:?}");
    }

    #[test]
    fn type_conflicts_name_table_column_and_types() {
        let mut s = TableSchema::new(TableId(0), "weather");
        check(&mut s, Point::new(1).tag("station", "a").field("temp", FieldValue::F64(1.0)), Ok(()));
        check(
            &mut s,
            Point::new(2).tag("station", "a").field("temp", FieldValue::I64(1)),
            Err("table weather, column temp: expected f64, found i64"),
        );
        check(
            &mut s,
            Point::new(2).field("station", FieldValue::Bool(true)),
            Err("table weather, column station: expected tag, found bool field"),
        );
        check(&mut s, Point::new(2).tag("x", "a"), Err("table weather: a point needs at least one field"));
        check(
            &mut s,
            Point::new(2).field("v", FieldValue::F64(1.0)).field("v", FieldValue::F64(2.0)),
            Err("table weather: column v given twice"),
        );
        check(
            &mut s,
            Point::new(2).field("time", FieldValue::F64(1.0)),
            Err("table weather: `time` is the time column, not a tag or field"),
        );
        // A rejected point adds no columns.
        assert_eq!(s.columns.len(), 2);
    }

    #[test]
    fn schema_round_trips() {
        let mut s = TableSchema::new(TableId(7), "weather");
        let p = Point::new(1).tag("station", "a").field("temp", FieldValue::F64(1.0)).field("ok", FieldValue::Bool(true));
        s.resolve(&p, &limits()).expect("valid point");
        assert_eq!(TableSchema::decode(&s.encode()), Ok(s));
    }
}
