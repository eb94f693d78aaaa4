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

/// A table's columns in creation order. Ids are given in sequence from 0 and never again once
/// a column is dropped (`ALTER TABLE ... DROP COLUMN`), so values stored under a dropped
/// column's id are never read as another column's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub id: TableId,
    pub name: String,
    /// The live columns, in id order.
    pub columns: Vec<ColumnDef>,
    /// Column names are few (`columns_per_table_max`), so a fast hash cannot be made slow.
    by_name: FxHashMap<String, usize>,
    /// The id the next column gets: ids below it that no column has were dropped.
    next_column: u16,
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
        Self { id, name: name.to_owned(), columns: Vec::new(), by_name: FxHashMap::default(), next_column: 0 }
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.by_name.get(name).map(|&i| &self.columns[i])
    }

    /// The column with id `id`.
    pub fn column_by_id(&self, id: ColumnId) -> Option<&ColumnDef> {
        match self.columns.get(usize::from(id.0)) {
            Some(c) if c.id == id => Some(c),
            // Columns were dropped before it: ids and places differ.
            _ => self.columns.binary_search_by_key(&id, |c| c.id).ok().map(|i| &self.columns[i]),
        }
    }

    /// Whether `id` was a column of the table that is dropped: values under it are ignored.
    pub fn is_dropped_column(&self, id: ColumnId) -> bool {
        id.0 < self.next_column && self.column_by_id(id).is_none()
    }

    /// How many more columns the table can ever get (ids are never given twice).
    fn column_ids_left(&self) -> usize {
        usize::from(u16::MAX - self.next_column)
    }

    /// Renames column `from` to `to`; false when `from` is missing or `to` is taken.
    pub(crate) fn rename_column(&mut self, from: &str, to: &str) -> bool {
        if self.by_name.contains_key(to) || to == TIME_COLUMN {
            return false;
        }
        let Some(i) = self.by_name.remove(from) else { return false };
        self.columns[i].name = to.to_owned();
        self.by_name.insert(to.to_owned(), i);
        true
    }

    /// Drops column `name`; its id is never given again.
    pub(crate) fn drop_column(&mut self, name: &str) -> Option<ColumnDef> {
        let i = self.by_name.remove(name)?;
        let dropped = self.columns.remove(i);
        self.by_name = self.columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
        Some(dropped)
    }

    /// Tag columns in id order.
    pub fn tags(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| c.kind == ColumnKind::Tag)
    }

    /// Field columns in id order.
    pub fn fields(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| matches!(c.kind, ColumnKind::Field(_)))
    }

    /// Adds a column; callers check [`Self::column_ids_left`] (through the column limit checks).
    pub(crate) fn add_column(&mut self, name: &str, kind: ColumnKind) -> ColumnId {
        let id = ColumnId(self.next_column);
        self.next_column = self.next_column.checked_add(1).expect("column ids are checked before a column is added");
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
        self.check_column_count(new_columns, limits)
    }

    /// Whether `new_columns` more columns fit: the limit, and the ids left.
    pub(crate) fn check_column_count(&self, new_columns: usize, limits: &PointLimits) -> Result<(), String> {
        if self.columns.len() + new_columns > limits.columns_per_table_max {
            return Err(format!("table {}: more than {} columns", self.name, limits.columns_per_table_max));
        }
        if new_columns > self.column_ids_left() {
            return Err(format!("table {}: every column id was used (columns were added and dropped 65,535 times)", self.name));
        }
        Ok(())
    }

    /// Adds declared columns (from `CREATE TABLE`), checking names, repeats and the column limit.
    pub(crate) fn define(&mut self, columns: &[(String, ColumnKind)], limits: &PointLimits) -> Result<(), String> {
        let table = self.name.clone();
        self.check_column_count(columns.len(), limits)?;
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
        w.u16(self.next_column);
        w.u16(u16::try_from(self.columns.len()).expect("column count is limited below u16::MAX"));
        for c in &self.columns {
            w.u16(c.id.0);
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
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(r.err(format!("unknown schema version {version}")));
        }
        let id = TableId(r.u32()?);
        let name = r.str()?;
        let mut schema = Self::new(id, name);
        // Version 1 had no dropped columns: ids were places.
        let next_column = if version >= 2 { Some(r.u16()?) } else { None };
        let n = r.u16()?;
        for i in 0..n {
            let column_id = if version >= 2 { r.u16()? } else { i };
            if column_id < schema.next_column || next_column.is_some_and(|next| column_id >= next) {
                return Err(r.err(format!("column id {column_id} out of order")));
            }
            schema.next_column = column_id;
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
        schema.next_column = next_column.unwrap_or(n);
        r.finish()?;
        Ok(schema)
    }
}

/// 2: column ids and the next id are stored (columns can be dropped); 1: ids were places.
const SCHEMA_VERSION: u8 = 2;

pub(crate) fn check_name(table: &str, name: &str, limits: &PointLimits) -> Result<(), String> {
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
        assert_eq!(TableSchema::decode(&s.encode()), Ok(s.clone()));
        // Dropped and renamed columns: ids stay, and a new column gets a new one.
        assert_eq!(s.drop_column("temp").map(|c| c.id), Some(ColumnId(1)));
        assert!(s.rename_column("ok", "good") && !s.rename_column("good", "station") && !s.rename_column("nope", "x"));
        let p = Point::new(1).field("temp", FieldValue::I64(1));
        s.resolve(&p, &limits()).expect("a new column of the dropped one's name, of another type");
        assert_eq!(s.column("temp").map(|c| (c.id, c.kind)), Some((ColumnId(3), ColumnKind::Field(FieldType::I64))));
        assert_eq!(s.column_by_id(ColumnId(2)).map(|c| c.name.as_str()), Some("good"));
        assert!(s.is_dropped_column(ColumnId(1)) && !s.is_dropped_column(ColumnId(2)) && !s.is_dropped_column(ColumnId(4)));
        let decoded = TableSchema::decode(&s.encode()).expect("decodes");
        assert_eq!(decoded, s);
        assert!(decoded.is_dropped_column(ColumnId(1)));
    }

    /// A schema written before columns could be dropped (version 1: ids were places) still reads.
    #[test]
    fn version_1_schemas_read_with_dense_ids() {
        let mut w = Writer::new();
        w.u8(1);
        w.u32(3);
        w.str("old");
        w.u16(2);
        w.str("station");
        w.u8(0);
        w.str("temp");
        w.u8(FieldType::F64.code());
        let mut s = TableSchema::decode(&w.into_inner()).expect("decodes");
        assert_eq!(s.column("temp").map(|c| c.id), Some(ColumnId(1)));
        assert_eq!(s.add_column("x", ColumnKind::Tag), ColumnId(2));
    }
}
