//! Rows given value by value (COPY's text or binary fields, the literals of a multi-row
//! `INSERT`) gathered into storage's [`Columns`] for one table, with no Arrow arrays, plan or
//! per-row point in between: each value is converted to its column's type as a cast would,
//! each distinct tag set is kept once per batch.
//!
//! A row that cannot be converted (a bad number, a null `time`, no field value) is refused
//! whole with a reason naming the column and value; the rows before it stay in the batch.

use std::borrow::Cow;
use std::collections::HashMap;

use isobar_storage::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use isobar_storage::{ColumnKind, Columns, FieldType, FieldValue, TIME_COLUMN, TableSchema};

use crate::error::{Error, Result};

/// One value of a row, as a client spelled it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    /// Text to convert to the column's type (COPY's text and CSV formats, string literals).
    Text(&'a str),
    /// Nanoseconds since the Unix epoch.
    TimestampNs(i64),
    F64(f64),
    I64(i64),
    Bool(bool),
}

/// What one input column is in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Time,
    /// The `n`th tag named in the input.
    Tag(usize),
    /// Field column `index` of the batch's [`Columns`], of this type.
    Field(usize, FieldType),
}

/// Builds the [`Columns`] of one table from rows of values in a fixed column order.
#[derive(Debug)]
pub struct RowColumns {
    table: String,
    /// Per input column, in input order.
    targets: Vec<Target>,
    names: Vec<String>,
    /// The tag names, in the order `Target::Tag` numbers them.
    tag_names: Vec<String>,
    /// Field names in the order `Target::Field` numbers them.
    field_names: Vec<String>,
    columns: Columns,
    /// Tag sets of this batch by their key (see `push_key`). The keys are the client's
    /// values, so the map keeps std's keyed hasher: no crafted values make it slow.
    tag_sets: HashMap<Vec<u8>, u32>,
    /// The last time given as text and its value: rows of one reading often share it.
    last_time: (String, i64),
    /// Scratch: the current row's tag set key and field values.
    key: Vec<u8>,
    field_values: Vec<(usize, FieldValue)>,
}

impl RowColumns {
    /// Rows of `columns` (names as the client gave them) of `table`; `time` must be one of
    /// them, each at most once.
    pub fn new(table: &TableSchema, columns: &[String]) -> Result<Self> {
        let mut targets = Vec::with_capacity(columns.len());
        let (mut tag_names, mut field_names) = (Vec::new(), Vec::new());
        for (i, name) in columns.iter().enumerate() {
            if columns[..i].contains(name) {
                return Err(Error::InvalidRows(format!("column {name} is named twice")));
            }
            let target = if name == TIME_COLUMN {
                Target::Time
            } else {
                match table.column(name).map(|c| c.kind) {
                    None => return Err(Error::InvalidRows(format!("column {name} of table {} does not exist", table.name))),
                    Some(ColumnKind::Tag) => {
                        tag_names.push(name.clone());
                        Target::Tag(tag_names.len() - 1)
                    }
                    Some(ColumnKind::Field(ty)) => {
                        field_names.push(name.clone());
                        Target::Field(field_names.len() - 1, ty)
                    }
                }
            };
            targets.push(target);
        }
        if !targets.contains(&Target::Time) {
            return Err(Error::InvalidRows(format!("rows of {} need a {TIME_COLUMN} column", table.name)));
        }
        let mut builder = Self {
            table: table.name.clone(),
            targets,
            names: columns.to_vec(),
            tag_names,
            field_names,
            columns: Columns::new(),
            tag_sets: HashMap::new(),
            last_time: (String::new(), 0),
            key: Vec::new(),
            field_values: Vec::new(),
        };
        builder.columns = builder.empty();
        Ok(builder)
    }

    /// What each input column is, in input order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The input column names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Rows gathered and not yet taken.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether no rows are gathered.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Adds a row of one value per input column, or refuses it whole with the reason: a value
    /// the caller could not read (an `Err` naming the problem) or could not convert.
    pub fn push_row<'a>(
        &mut self,
        values: impl IntoIterator<Item = std::result::Result<Value<'a>, String>>,
    ) -> std::result::Result<(), String> {
        let mut time = None;
        let mut count = 0;
        self.key.clear();
        self.field_values.clear();
        for (i, value) in values.into_iter().enumerate() {
            count += 1;
            let Some(&target) = self.targets.get(i) else { continue };
            let value = value.map_err(|e| self.reason(i, e))?;
            match target {
                Target::Time => time = self.timestamp(value).map_err(|e| self.reason(i, e))?,
                // Tags come in `Target::Tag` order: the key holds their values in turn.
                Target::Tag(_) => push_key(&mut self.key, tag(value).as_deref()),
                Target::Field(n, ty) => {
                    if let Some(v) = field(value, ty).map_err(|e| self.reason(i, e))? {
                        self.field_values.push((n, v));
                    }
                }
            }
        }
        if count != self.targets.len() {
            return Err(format!("{count} values for {} columns", self.targets.len()));
        }
        let time = time.ok_or_else(|| format!("{TIME_COLUMN} is null"))?;
        if self.field_values.is_empty() {
            return Err(format!("every field is null; a row of {} needs at least one field value", self.table));
        }
        let tag_set = self.tag_set();
        let row = self.columns.push_row(tag_set, time);
        for (n, v) in self.field_values.drain(..) {
            self.columns.set(row, n, v);
        }
        Ok(())
    }

    /// The rows gathered so far; the builder starts a new batch, with room for as many.
    pub fn take(&mut self) -> Columns {
        self.tag_sets.clear();
        let mut empty = self.empty();
        empty.reserve(self.columns.len());
        std::mem::replace(&mut self.columns, empty)
    }

    /// `value` as a time, the text of the last one remembered.
    fn timestamp(&mut self, value: Value<'_>) -> std::result::Result<Option<i64>, String> {
        if let Value::Text(s) = value {
            if !s.is_empty() && s == self.last_time.0 {
                return Ok(Some(self.last_time.1));
            }
            let ns = timestamp(value)?;
            if let Some(ns) = ns {
                self.last_time.0.clear();
                self.last_time.0.push_str(s);
                self.last_time.1 = ns;
            }
            return Ok(ns);
        }
        timestamp(value)
    }

    /// Columns with this input's fields, in `Target::Field` order, and no rows.
    fn empty(&self) -> Columns {
        let mut columns = Columns::new();
        for name in &self.field_names {
            columns.field(name);
        }
        columns
    }

    /// The batch's index of the tag set in `key`, added if new.
    fn tag_set(&mut self) -> u32 {
        if let Some(&set) = self.tag_sets.get(self.key.as_slice()) {
            return set;
        }
        let tags: Vec<(String, String)> =
            self.tag_names.iter().zip(key_values(&self.key)).filter_map(|(n, v)| Some((n.clone(), v?.to_owned()))).collect();
        let set = self.columns.add_tag_set(tags);
        self.tag_sets.insert(self.key.clone(), set);
        set
    }

    fn reason(&self, column: usize, problem: String) -> String {
        format!("column {}: {problem}", self.names[column])
    }
}

/// Appends a tag value to a tag set key: its length then its bytes, `u32::MAX` for NULL, so
/// keys of different values never meet.
fn push_key(key: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            key.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
            key.extend_from_slice(v.as_bytes());
        }
        None => key.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

/// The tag values a key holds, in order.
fn key_values(mut key: &[u8]) -> impl Iterator<Item = Option<&str>> {
    std::iter::from_fn(move || {
        let (len, rest) = key.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len);
        if len == u32::MAX {
            key = rest;
            return Some(None);
        }
        let (value, rest) = rest.split_at(len as usize);
        key = rest;
        // The key was made from `&str`s, cut at their ends.
        Some(Some(std::str::from_utf8(value).unwrap_or_default()))
    })
}

fn timestamp(value: Value<'_>) -> std::result::Result<Option<i64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::TimestampNs(ns) => Ok(Some(ns)),
        Value::Text(s) => string_to_timestamp_nanos(s.trim()).map(Some).map_err(|_| format!("invalid timestamp {s:?}")),
        other => Err(format!("{} is not a timestamp", describe(other))),
    }
}

fn tag(value: Value<'_>) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::Text(s) => Some(Cow::Borrowed(s)),
        Value::I64(v) => Some(v.to_string().into()),
        Value::F64(v) => Some(v.to_string().into()),
        Value::Bool(v) => Some(v.to_string().into()),
        Value::TimestampNs(ns) => Some(ns.to_string().into()),
    }
}

fn field(value: Value<'_>, ty: FieldType) -> std::result::Result<Option<FieldValue>, String> {
    let bad = |what: &str| format!("invalid {what} {}", describe(value));
    let v = match (value, ty) {
        (Value::Null, _) => return Ok(None),
        (Value::F64(v), FieldType::F64) => FieldValue::F64(v),
        (Value::I64(v), FieldType::F64) => FieldValue::F64(v as f64),
        (Value::Text(s), FieldType::F64) => FieldValue::F64(s.trim().parse().map_err(|_| bad("double precision"))?),
        (Value::I64(v), FieldType::I64) => FieldValue::I64(v),
        (Value::Text(s), FieldType::I64) => FieldValue::I64(s.trim().parse().map_err(|_| bad("bigint"))?),
        (Value::Bool(v), FieldType::Bool) => FieldValue::Bool(v),
        (Value::Text(s), FieldType::Bool) => FieldValue::Bool(boolean(s).ok_or_else(|| bad("boolean"))?),
        (Value::Text(s), FieldType::String) => FieldValue::String(s.into()),
        (Value::I64(v), FieldType::String) => FieldValue::String(v.to_string().into()),
        (Value::F64(v), FieldType::String) => FieldValue::String(v.to_string().into()),
        (Value::Bool(v), FieldType::String) => FieldValue::String(v.to_string().into()),
        (other, ty) => return Err(format!("{} for a {ty} column", describe(other))),
    };
    Ok(Some(v))
}

/// PostgreSQL's spellings of a boolean: `t`, `true`, `yes`, `on`, `1` and their opposites,
/// any case, or a unique prefix of the words.
fn boolean(s: &str) -> Option<bool> {
    let s = s.trim().to_ascii_lowercase();
    let prefix_of = |word: &str, min_len: usize| s.len() >= min_len && word.starts_with(s.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || s == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || s == "0" {
        Some(false)
    } else {
        None
    }
}

fn describe(value: Value<'_>) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Text(s) => format!("{s:?}"),
        Value::TimestampNs(ns) => format!("timestamp {ns} ns"),
        Value::F64(v) => format!("double {v}"),
        Value::I64(v) => format!("integer {v}"),
        Value::Bool(v) => format!("boolean {v}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isobar_storage::{Storage, StorageConfig};

    fn table() -> (tempfile::TempDir, TableSchema) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(StorageConfig::test_config(dir.path())).expect("open");
        let columns = [
            ("station".to_owned(), ColumnKind::Tag),
            ("sensor".to_owned(), ColumnKind::Tag),
            ("v".to_owned(), ColumnKind::Field(FieldType::F64)),
            ("n".to_owned(), ColumnKind::Field(FieldType::I64)),
            ("ok".to_owned(), ColumnKind::Field(FieldType::Bool)),
            ("note".to_owned(), ColumnKind::Field(FieldType::String)),
        ];
        let schema = storage.create_table("t", &columns).expect("create");
        (dir, schema)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn text_values_convert_as_a_cast_would_and_tag_sets_are_kept_once() {
        let (_dir, schema) = table();
        let mut rows = RowColumns::new(&schema, &names(&["time", "station", "sensor", "v", "n", "ok", "note"])).expect("columns");
        let text = |s: &'static str| Value::Text(s);
        rows.push_values([text("2024-01-01 00:00:00.000Z"), text("a"), text("x"), text(" 1.5 "), text("7"), text("yes"), text("hi")])
            .expect("row");
        rows.push_values([text("2024-01-01T00:00:01+01:00"), text("a"), text("x"), Value::Null, text("-3"), text("F"), Value::Null])
            .expect("row");
        rows.push_values([text("2024-01-01 00:00:02"), text("a"), Value::Null, text("NaN"), Value::Null, Value::Null, Value::Null])
            .expect("row");
        let columns = rows.take();
        assert_eq!(columns.len(), 3);
        assert!(rows.is_empty(), "take starts a new batch");
        let p0 = columns.point(0);
        assert_eq!(p0.time.0, 1_704_067_200_000_000_000);
        assert_eq!(p0.fields[0], ("v".to_owned(), FieldValue::F64(1.5)));
        assert_eq!(p0.fields[1], ("n".to_owned(), FieldValue::I64(7)));
        assert_eq!(p0.fields[2], ("ok".to_owned(), FieldValue::Bool(true)));
        assert_eq!(p0.fields[3], ("note".to_owned(), FieldValue::String("hi".into())));
        let p1 = columns.point(1);
        assert_eq!(p1.time.0, 1_704_067_201_000_000_000 - 3_600_000_000_000, "the offset is honoured");
        assert_eq!(p1.tags, p0.tags, "the same tag set");
        assert_eq!(p1.fields, vec![("n".to_owned(), FieldValue::I64(-3)), ("ok".to_owned(), FieldValue::Bool(false))]);
        let p2 = columns.point(2);
        assert_eq!(p2.tags, vec![("station".to_owned(), "a".to_owned())], "a null tag is absent");
        assert!(matches!(p2.fields[0].1, FieldValue::F64(v) if v.is_nan()));
    }

    #[test]
    fn a_bad_row_is_refused_whole_with_its_column_and_value() {
        let (_dir, schema) = table();
        let mut rows = RowColumns::new(&schema, &names(&["v", "time", "station"])).expect("columns");
        rows.push_values([Value::Text("1"), Value::Text("2024-01-01T00:00:00Z"), Value::Text("a")]).expect("good");
        let err = rows.push_values([Value::Text("not-a-number"), Value::Text("2024-01-01T00:00:00Z"), Value::Text("a")]);
        assert_eq!(err.expect_err("bad number"), "column v: invalid double precision \"not-a-number\"");
        let err = rows.push_values([Value::Text("1"), Value::Text("yesterday"), Value::Text("a")]);
        assert_eq!(err.expect_err("bad time"), "column time: invalid timestamp \"yesterday\"");
        let err = rows.push_values([Value::Text("1"), Value::Null, Value::Text("a")]);
        assert_eq!(err.expect_err("null time"), "time is null");
        let err = rows.push_values([Value::Null, Value::Text("2024-01-01T00:00:00Z"), Value::Text("a")]);
        assert!(err.expect_err("no field").contains("at least one field value"));
        let err = rows.push_values([Value::Text("1"), Value::Text("2024-01-01T00:00:00Z")]);
        assert_eq!(err.expect_err("short"), "2 values for 3 columns");
        assert_eq!(rows.len(), 1, "refused rows leave nothing behind");
    }

    #[test]
    fn typed_values_convert_where_postgres_would() {
        let (_dir, schema) = table();
        let mut rows = RowColumns::new(&schema, &names(&["time", "v", "n", "station"])).expect("columns");
        rows.push_values([Value::TimestampNs(5), Value::I64(2), Value::I64(3), Value::I64(9)]).expect("ints widen");
        assert_eq!(columns_point(&mut rows).fields[0].1, FieldValue::F64(2.0));
        let err = rows.push_values([Value::TimestampNs(5), Value::F64(2.5), Value::F64(3.5), Value::Null]);
        assert_eq!(err.expect_err("double into bigint"), "column n: double 3.5 for a i64 column");
        let err = rows.push_values([Value::Bool(true), Value::F64(2.5), Value::Null, Value::Null]);
        assert_eq!(err.expect_err("bool as time"), "column time: boolean true is not a timestamp");
    }

    impl RowColumns {
        fn push_values<'a>(&mut self, values: impl IntoIterator<Item = Value<'a>>) -> std::result::Result<(), String> {
            self.push_row(values.into_iter().map(Ok))
        }
    }

    fn columns_point(rows: &mut RowColumns) -> isobar_storage::Point {
        rows.take().point(0)
    }

    #[test]
    fn columns_must_exist_once_and_include_time() {
        let (_dir, schema) = table();
        assert!(RowColumns::new(&schema, &names(&["v", "station"])).expect_err("no time").to_string().contains("time"));
        assert!(RowColumns::new(&schema, &names(&["time", "nope"])).expect_err("unknown").to_string().contains("nope"));
        assert!(RowColumns::new(&schema, &names(&["time", "v", "v"])).expect_err("twice").to_string().contains("twice"));
    }

    #[test]
    fn booleans_take_postgres_spellings() {
        for (s, b) in [("t", true), ("TRUE", true), ("y", true), ("on", true), ("1", true), ("f", false), ("no", false), ("of", false)] {
            assert_eq!(boolean(s), Some(b), "{s}");
        }
        for s in ["o", "2", "", "truth", "nope"] {
            assert_eq!(boolean(s), None, "{s}");
        }
    }
}
