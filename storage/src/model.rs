//! The data model: timestamps, ids, values, points and write batches.
//!
//! A table has a `time` column (nanoseconds since the Unix epoch, UTC), tag columns (strings that
//! together identify a series) and field columns (f64, i64, bool or string). One row exists per
//! (series, time): a later write of the same key replaces the earlier row as a whole.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimestampNs(pub i64);

/// Identifies a series (a table and one set of tag values). Stable for the life of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(pub u64);

/// Identifies a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId(pub u32);

/// Identifies a column within its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ColumnId(pub u16);

/// Position of a record in the write-ahead log; strictly increasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalSequence(pub u64);

/// Identifies a chunk file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkId(pub u64);

macro_rules! checked_next {
    ($($t:ident),*) => {$(
        impl $t {
            /// The next id, or `None` when the id space is exhausted.
            pub fn checked_next(self) -> Option<Self> {
                self.0.checked_add(1).map(Self)
            }
        }
    )*};
}
checked_next!(SeriesId, TableId, ColumnId, WalSequence, ChunkId);

/// The type of a field column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    F64,
    I64,
    Bool,
    String,
}

impl FieldType {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::F64 => 1,
            Self::I64 => 2,
            Self::Bool => 3,
            Self::String => 4,
        }
    }
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::F64,
            2 => Self::I64,
            3 => Self::Bool,
            4 => Self::String,
            _ => return None,
        })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F64 => "f64",
            Self::I64 => "i64",
            Self::Bool => "bool",
            Self::String => "string",
        })
    }
}

/// One field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    F64(f64),
    I64(i64),
    Bool(bool),
    String(Arc<str>),
}

impl FieldValue {
    /// The type of this value.
    pub fn field_type(&self) -> FieldType {
        match self {
            Self::F64(_) => FieldType::F64,
            Self::I64(_) => FieldType::I64,
            Self::Bool(_) => FieldType::Bool,
            Self::String(_) => FieldType::String,
        }
    }
    /// Bytes this value occupies in the write buffer, for memory accounting.
    pub(crate) fn buffered_bytes(&self) -> usize {
        match self {
            Self::String(s) => 16 + s.len(),
            _ => 16,
        }
    }
    /// Equality that treats NaN as equal to the same NaN bits (what a round trip must keep).
    pub fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::F64(a), Self::F64(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }
}

/// One row to write: a time, its tag set and its field values.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub time: TimestampNs,
    /// Tag names and values. Names are unique; order does not matter.
    pub tags: Vec<(String, String)>,
    /// Field names and values. Names are unique; at least one field is required.
    pub fields: Vec<(String, FieldValue)>,
}

impl Point {
    /// A point at `time_ns` with no tags or fields yet.
    pub fn new(time_ns: i64) -> Self {
        Self { time: TimestampNs(time_ns), tags: Vec::new(), fields: Vec::new() }
    }
    /// Adds a tag.
    pub fn tag(mut self, name: &str, value: &str) -> Self {
        self.tags.push((name.to_owned(), value.to_owned()));
        self
    }
    /// Adds a field.
    pub fn field(mut self, name: &str, value: FieldValue) -> Self {
        self.fields.push((name.to_owned(), value));
        self
    }
}

/// Rows of one table in columns, each tag set once: what bulk writers (line protocol, COPY,
/// multi-row INSERT) hand storage, which then checks names, types and series once per tag set
/// and field shape rather than once per row. Row `i` is the point at `times[i]` with the tags
/// of `tag_sets[row_tag_sets[i]]` and, of each field column, its value in row `i` if it has one;
/// written, or refused for the same reason, as that point with its fields in column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Columns {
    tag_sets: Vec<Arc<[(String, String)]>>,
    row_tag_sets: Vec<u32>,
    times: Vec<i64>,
    fields: Vec<(String, Vec<Option<FieldValue>>)>,
}

impl Columns {
    /// No rows yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a tag set (names unique; order does not matter) for rows to name by the index
    /// returned. Writers add each tag set once; one that keeps its tag sets between batches
    /// shares them.
    pub fn add_tag_set(&mut self, tags: impl Into<Arc<[(String, String)]>>) -> u32 {
        self.tag_sets.push(tags.into());
        u32::try_from(self.tag_sets.len() - 1).expect("fewer than 2^32 tag sets in a batch")
    }
    /// The field column called `name`, added (no value in any row so far) if it is new.
    pub fn field(&mut self, name: &str) -> usize {
        if let Some(i) = self.fields.iter().position(|(n, _)| n == name) {
            return i;
        }
        let mut values = Vec::with_capacity(self.times.capacity());
        values.resize(self.times.len(), None);
        self.fields.push((name.to_owned(), values));
        self.fields.len() - 1
    }
    /// The field column called `name`, if there is one.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|(n, _)| n == name)
    }
    /// Adds a row at `time_ns` with the tags of tag set `tag_set`, no field values yet; its index.
    pub fn push_row(&mut self, tag_set: u32, time_ns: i64) -> usize {
        assert!((tag_set as usize) < self.tag_sets.len(), "a row names a tag set that was added");
        self.row_tag_sets.push(tag_set);
        self.times.push(time_ns);
        for (_, values) in &mut self.fields {
            values.push(None);
        }
        self.times.len() - 1
    }
    /// Sets row `row`'s value of field column `field`.
    pub fn set(&mut self, row: usize, field: usize, value: FieldValue) {
        self.fields[field].1[row] = Some(value);
    }
    /// Makes room for `rows` more rows without reallocating.
    pub fn reserve(&mut self, rows: usize) {
        self.row_tag_sets.reserve(rows);
        self.times.reserve(rows);
        for (_, values) in &mut self.fields {
            values.reserve(rows);
        }
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.times.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
    /// Row `row` as a point.
    pub fn point(&self, row: usize) -> Point {
        let tags = self.tag_sets[self.row_tag_sets[row] as usize].to_vec();
        let fields = self.fields.iter().filter_map(|(name, values)| Some((name.clone(), values[row].clone()?))).collect();
        Point { time: TimestampNs(self.times[row]), tags, fields }
    }
    pub(crate) fn tag_sets(&self) -> &[Arc<[(String, String)]>] {
        &self.tag_sets
    }
    pub(crate) fn row_tag_set(&self, row: usize) -> usize {
        self.row_tag_sets[row] as usize
    }
    pub(crate) fn time(&self, row: usize) -> i64 {
        self.times[row]
    }
    pub(crate) fn fields(&self) -> &[(String, Vec<Option<FieldValue>>)] {
        &self.fields
    }
}

/// A source's position (a Kinesis sequence number, an MQTT session's state) committed
/// atomically with the rows of the batch that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// Names the source and its partition, e.g. `kinesis/weather/shardId-000000000001`.
    pub source: String,
    /// Opaque to storage.
    pub position: Vec<u8>,
}

/// Rows for one or more tables, plus source positions, written durably as one unit.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) tables: BTreeMap<String, Vec<Point>>,
    pub(crate) columns: BTreeMap<String, Columns>,
    pub(crate) positions: Vec<SourcePosition>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a point to `table`.
    pub fn push(&mut self, table: &str, point: Point) {
        self.tables.entry(table.to_owned()).or_default().push(point);
    }
    /// Adds many points to `table`.
    pub fn extend(&mut self, table: &str, points: impl IntoIterator<Item = Point>) {
        self.tables.entry(table.to_owned()).or_default().extend(points);
    }
    /// Adds the rows of `columns` to `table`. A batch gives a table its rows either as points
    /// or in columns; rows added in columns twice are appended.
    pub fn push_columns(&mut self, table: &str, columns: Columns) {
        match self.columns.get_mut(table) {
            Some(existing) => existing.append(columns),
            None => {
                self.columns.insert(table.to_owned(), columns);
            }
        }
    }
    /// The points for `table`, in the order they were added.
    pub fn points(&self, table: &str) -> &[Point] {
        self.tables.get(table).map_or(&[], Vec::as_slice)
    }
    /// Commits `position` for `source` together with this batch's rows.
    pub fn set_position(&mut self, source: &str, position: Vec<u8>) {
        self.positions.push(SourcePosition { source: source.to_owned(), position });
    }
    /// Number of points in the batch.
    pub fn len(&self) -> usize {
        self.tables.values().map(Vec::len).sum::<usize>() + self.columns.values().map(Columns::len).sum::<usize>()
    }
    /// Whether the batch holds no points and no positions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.positions.is_empty()
    }
}

impl Columns {
    /// Appends `other`'s rows.
    fn append(&mut self, other: Columns) {
        let offset = u32::try_from(self.tag_sets.len()).expect("fewer than 2^32 tag sets in a batch");
        self.tag_sets.extend(other.tag_sets);
        let first = self.times.len();
        self.row_tag_sets.extend(other.row_tag_sets.iter().map(|t| t + offset));
        self.times.extend(other.times);
        for (name, values) in other.fields {
            let field = self.field(&name);
            self.fields[field].1.truncate(first);
            self.fields[field].1.extend(values);
        }
        for (_, values) in &mut self.fields {
            values.resize(self.times.len(), None);
        }
    }
}

/// A point that was not written, and why. Its neighbours in the batch are unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedPoint {
    pub table: String,
    /// Index of the point within its table's points in the batch, or of its row in the
    /// table's columns.
    pub index: usize,
    pub reason: String,
}

/// What a durable write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    /// Points written (durable on return).
    pub rows_written: u64,
    /// Points rejected, with reasons.
    pub rejected: Vec<RejectedPoint>,
    /// The WAL record holding the batch, if any row or position was written.
    pub sequence: Option<WalSequence>,
}
