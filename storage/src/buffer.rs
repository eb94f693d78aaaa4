//! The write buffer: rows that are durable in the WAL but not yet in chunks.
//!
//! Rows are kept per table and series in the order they were committed, so the last write of a
//! key is the last row with that time. Sorting and de-duplication happen when the rows are read
//! ([`crate::rowset::RowSet::from_rows`]), which keeps the committer's work per row small.
//!
//! Scans must not make writers wait while they copy rows. The committer appends to a tail
//! segment; a scan takes a [`BufferView`] under the state lock, which seals a tail of
//! [`SEAL_ROWS_MIN`] rows or more into a shared segment (no copy) and copies a smaller one, so
//! the work done under the lock does not grow with the buffer. The view is turned into rows
//! ([`BufferView::select`]) after the lock is let go.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::fxhash::FxHashMap;
use crate::model::{ColumnId, FieldType, SeriesId, TableId};
use crate::rowset::{RowSet, Selection};
use crate::schema::{ColumnKind, TableSchema};
use crate::wal::{Row, TableRows};

/// Estimated bytes a buffered row costs besides its values.
const ROW_OVERHEAD_BYTES: usize = 64;
/// What a selected row costs in a row set: its time, and a value and validity per column.
const ESTIMATED_TIME_BYTES: usize = 8;
const ESTIMATED_VALUE_BYTES: usize = 9;
/// A scan seals a tail of at least this many rows instead of copying it.
pub(crate) const SEAL_ROWS_MIN: u64 = 4096;
/// Rows in a piece of a series' rows (the first piece of each series holds fewer, see
/// [`first_piece_rows`]).
///
/// Rows never move once pushed: a commit never copies a series' rows into a larger array. And
/// as the first piece's size differs by series, the series of a fleet, written in step, ask for
/// new pieces at different times: memory the process has not touched yet costs page faults, and
/// every series growing in the same commit would stall all writers for them.
const SERIES_PIECE_ROWS: usize = 64;

/// Rows per table and series, in commit order.
type Rows = FxHashMap<TableId, TableSegment>;

/// One table's rows in a segment, per series, and the range of their times, which lets a scan
/// of recent rows pass over older segments without walking them.
#[derive(Debug)]
struct TableSegment {
    series: FxHashMap<SeriesId, SeriesRows>,
    rows: u64,
    time_min: i64,
    time_max: i64,
}

impl Default for TableSegment {
    fn default() -> Self {
        Self { series: FxHashMap::default(), rows: 0, time_min: i64::MAX, time_max: i64::MIN }
    }
}

impl TableSegment {
    /// The rows of the series `selection` wants when the segment's times overlap its times,
    /// without looking at each row's time.
    fn rows_at_most(&self, selection: &Selection<'_>) -> u64 {
        match selection.series {
            _ if !selection.overlaps(self.time_min, self.time_max) => 0,
            Some(ids) => ids.iter().filter_map(|id| self.series.get(id)).map(|rows| rows.len() as u64).sum(),
            None => self.rows,
        }
    }
}

/// One series' rows in a segment, in commit order, in pieces (see [`SERIES_PIECE_ROWS`]).
#[derive(Debug, Default)]
struct SeriesRows {
    pieces: Vec<Vec<Row>>,
    len: usize,
}

impl SeriesRows {
    fn push(&mut self, row: Row) {
        match self.pieces.last_mut() {
            Some(piece) if piece.len() < piece.capacity() => piece.push(row),
            last => {
                let capacity = if last.is_some() { SERIES_PIECE_ROWS } else { first_piece_rows(row.series) };
                let mut piece = Vec::with_capacity(capacity);
                piece.push(row);
                self.pieces.push(piece);
            }
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = &Row> {
        self.pieces.iter().flatten()
    }
}

/// Rows in the first piece of `series`' rows: 1 to [`SERIES_PIECE_ROWS`], spread by a hash of
/// the id.
fn first_piece_rows(series: SeriesId) -> usize {
    let spread = series.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    1 + spread as usize % SERIES_PIECE_ROWS
}

/// Rows of the buffer in commit order: sealed segments, oldest first, then the tail.
#[derive(Debug, Default)]
struct Segments {
    sealed: Vec<Arc<Rows>>,
    tail: Rows,
    tail_rows: u64,
}

/// The write buffer.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    /// Appended to by the committer (under the state's write lock) and sealed by scans (under
    /// its read lock), hence a lock of its own, held for neither copies nor sorts.
    segments: Mutex<Segments>,
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
    /// When the oldest row arrived.
    pub(crate) oldest: Option<Instant>,
}

/// The rows of one table a scan may need, taken from a buffer in time that does not grow with
/// the buffer.
#[derive(Debug)]
pub(crate) struct BufferView {
    table: TableId,
    sealed: Vec<Arc<Rows>>,
    /// The tail's rows of the table that the selection wants, copied.
    copied: Vec<Row>,
}

impl Buffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub(crate) fn apply(&mut self, tables: Vec<TableRows>) {
        let segments = self.segments.get_mut();
        for t in tables {
            let table = segments.tail.entry(t.table).or_default();
            for row in t.rows {
                self.bytes += row_bytes(&row);
                self.rows += 1;
                segments.tail_rows += 1;
                table.time_min = table.time_min.min(row.time);
                table.time_max = table.time_max.max(row.time);
                table.rows += 1;
                table.series.entry(row.series).or_default().push(row);
            }
        }
        if self.rows > 0 && self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// What a scan of `table` needs: the sealed segments, shared, and the tail's wanted rows,
    /// copied if there are fewer than [`SEAL_ROWS_MIN`] of them in the tail, else sealed.
    pub(crate) fn view(&self, table: TableId, selection: &Selection<'_>) -> BufferView {
        let mut segments = self.segments.lock();
        if segments.tail_rows >= SEAL_ROWS_MIN {
            let tail = std::mem::take(&mut segments.tail);
            segments.sealed.push(Arc::new(tail));
            segments.tail_rows = 0;
        }
        let copied = segments.tail.get(&table).map(|rows| wanted(rows, selection).cloned().collect()).unwrap_or_default();
        BufferView { table, sealed: segments.sealed.clone(), copied }
    }

    /// At most how many of `table`'s rows `selection` wants (a cheap upper bound).
    pub(crate) fn rows_at_most(&self, table: TableId, selection: &Selection<'_>) -> u64 {
        let segments = self.segments.lock();
        let tail = segments.tail.get(&table).map_or(0, |rows| rows.rows_at_most(selection));
        tail + rows_at_most(&segments.sealed, table, selection)
    }

    /// Whether some of `table`'s rows may lie in `time_min..=time_max` (from the time ranges of
    /// the segments, without walking rows).
    pub(crate) fn holds(&self, table: TableId, time_min: i64, time_max: i64) -> bool {
        let segments = self.segments.lock();
        segments.sealed.iter().map(Arc::as_ref).chain([&segments.tail]).any(|rows| overlaps(rows, table, time_min, time_max))
    }

    /// Hands the rows to a persist: scans keep reading them from the [`Frozen`] buffer.
    pub(crate) fn freeze(self) -> Frozen {
        let segments = self.segments.into_inner();
        let mut sealed = segments.sealed;
        sealed.push(Arc::new(segments.tail));
        Frozen { sealed, bytes: self.bytes }
    }
}

/// A buffer being persisted: no longer written to, so read without a lock.
#[derive(Debug)]
pub(crate) struct Frozen {
    sealed: Vec<Arc<Rows>>,
    pub(crate) bytes: u64,
}

impl Frozen {
    /// What a scan of `table` needs.
    pub(crate) fn view(&self, table: TableId) -> BufferView {
        BufferView { table, sealed: self.sealed.clone(), copied: Vec::new() }
    }

    /// At most how many of `table`'s rows `selection` wants (a cheap upper bound).
    pub(crate) fn rows_at_most(&self, table: TableId, selection: &Selection<'_>) -> u64 {
        rows_at_most(&self.sealed, table, selection)
    }

    /// See [`Buffer::holds`].
    pub(crate) fn holds(&self, table: TableId, time_min: i64, time_max: i64) -> bool {
        self.sealed.iter().any(|rows| overlaps(rows, table, time_min, time_max))
    }

    /// Every table's rows split by time partition, in commit order, for persisting.
    pub(crate) fn partitions(&self, partition_ns: i64) -> BTreeMap<(TableId, i64), Vec<&Row>> {
        let mut out: BTreeMap<(TableId, i64), Vec<&Row>> = BTreeMap::new();
        for (table, rows) in self.sealed.iter().flat_map(|rows| rows.iter()) {
            for row in rows.series.values().flat_map(SeriesRows::iter) {
                out.entry((*table, partition_start(row.time, partition_ns))).or_default().push(row);
            }
        }
        out
    }
}

impl BufferView {
    /// The wanted rows as a row set with the wanted columns; later writes of a key win.
    pub(crate) fn select(&self, schema: &TableSchema, selection: &Selection<'_>) -> RowSet {
        let sealed = self.sealed.iter().filter_map(|s| s.get(&self.table)).flat_map(|rows| wanted(rows, selection));
        let types = field_types(schema, |id| selection.wants_column(id));
        RowSet::from_rows(sealed.chain(&self.copied), &types).select(selection)
    }

    /// About what [`Self::select`] will allocate, counted without copying.
    pub(crate) fn estimated_bytes(&self, selection: &Selection<'_>) -> usize {
        let sealed = self.sealed.iter().filter_map(|s| s.get(&self.table)).map(|rows| wanted(rows, selection).count()).sum::<usize>();
        let columns = selection.columns.map_or(1, <[ColumnId]>::len);
        (sealed + self.copied.len()) * (ESTIMATED_TIME_BYTES + columns * ESTIMATED_VALUE_BYTES)
    }

    /// Rows copied under the lock.
    #[cfg(test)]
    fn copied_rows(&self) -> usize {
        self.copied.len()
    }
}

fn overlaps(rows: &Rows, table: TableId, time_min: i64, time_max: i64) -> bool {
    rows.get(&table).is_some_and(|t| t.rows > 0 && t.time_min <= time_max && t.time_max >= time_min)
}

fn rows_at_most(sealed: &[Arc<Rows>], table: TableId, selection: &Selection<'_>) -> u64 {
    sealed.iter().filter_map(|rows| rows.get(&table)).map(|rows| rows.rows_at_most(selection)).sum()
}

/// The rows of one table's segment that `selection` wants, in commit order per series.
fn wanted<'a>(table: &'a TableSegment, selection: &Selection<'a>) -> impl Iterator<Item = &'a Row> + 'a {
    let series = &table.series;
    let rows: Box<dyn Iterator<Item = &'a SeriesRows> + 'a> = match selection.series {
        _ if table.time_max < selection.time_min || table.time_min > selection.time_max => Box::new(std::iter::empty()),
        Some(ids) => Box::new(ids.iter().filter_map(move |id| series.get(id))),
        None => Box::new(series.values()),
    };
    let (time_min, time_max) = (selection.time_min, selection.time_max);
    rows.flat_map(SeriesRows::iter).filter(move |r| (time_min..=time_max).contains(&r.time))
}

/// Start of the partition holding `time`.
pub(crate) fn partition_start(time: i64, partition_ns: i64) -> i64 {
    time.div_euclid(partition_ns).saturating_mul(partition_ns)
}

/// Types of the field columns of `schema` that `keep` accepts.
pub(crate) fn field_types(schema: &TableSchema, keep: impl Fn(ColumnId) -> bool) -> BTreeMap<ColumnId, FieldType> {
    schema
        .columns
        .iter()
        .filter_map(|c| match c.kind {
            ColumnKind::Field(t) if keep(c.id) => Some((c.id, t)),
            _ => None,
        })
        .collect()
}

/// Field columns that occur in `rows`.
pub(crate) fn columns_present(rows: &[&Row]) -> BTreeSet<ColumnId> {
    rows.iter().flat_map(|r| r.fields.iter().map(|(id, _)| *id)).collect()
}

fn row_bytes(row: &Row) -> u64 {
    (ROW_OVERHEAD_BYTES + row.fields.iter().map(|(_, v)| v.buffered_bytes()).sum::<usize>()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    const TABLE: TableId = TableId(1);

    fn schema() -> TableSchema {
        let mut schema = TableSchema::new(TABLE, "m");
        schema.add_column("v", ColumnKind::Field(FieldType::I64));
        schema
    }

    /// One commit of `rows` rows across 10 series, `v` = `value`.
    fn commit(buffer: &mut Buffer, start: i64, rows: i64, value: i64) {
        let rows = (start..start + rows)
            .map(|i| Row { series: SeriesId(i as u64 % 10), time: i / 10, fields: vec![(ColumnId(0), FieldValue::I64(value))].into() })
            .collect();
        buffer.apply(vec![TableRows { table: TABLE, rows }]);
    }

    fn all() -> Selection<'static> {
        Selection { series: None, time_min: i64::MIN, time_max: i64::MAX, columns: None }
    }

    #[test]
    fn a_series_keeps_its_rows_in_commit_order_across_pieces_that_never_grow() {
        for series in 0..50 {
            let mut rows = SeriesRows::default();
            for time in 0..1000 {
                rows.push(Row { series: SeriesId(series), time, fields: Box::default() });
            }
            assert_eq!(rows.len(), 1000);
            assert!(rows.iter().map(|r| r.time).eq(0..1000), "series {series}: rows out of commit order");
            assert!(rows.pieces.iter().all(|p| p.len() <= SERIES_PIECE_ROWS), "series {series}: a piece grew");
        }
        // Series written in step take new pieces at different commits.
        let first_pieces: BTreeSet<usize> = (0..50).map(|s| first_piece_rows(SeriesId(s))).collect();
        assert!(first_pieces.len() > 20, "{first_pieces:?}");
    }

    #[test]
    fn a_view_copies_a_bounded_tail_whatever_the_buffer_holds() {
        let mut buffer = Buffer::default();
        for round in 0..25 {
            commit(&mut buffer, round * 4000, 4000, 1);
            let view = buffer.view(TABLE, &all());
            assert!(view.copied_rows() < SEAL_ROWS_MIN as usize, "{} rows copied under the lock", view.copied_rows());
            assert_eq!(view.select(&schema(), &all()).len(), (round as usize + 1) * 4000);
        }
        assert!(buffer.segments.get_mut().sealed.len() <= 25, "a segment per view at most");
    }

    #[test]
    fn a_time_range_finds_late_rows_in_segments_of_newer_times() {
        let mut buffer = Buffer::default();
        commit(&mut buffer, 0, 5000, 1); // times 0..=499
        let _sealing = buffer.view(TABLE, &all());
        commit(&mut buffer, 10_000, 5000, 2); // times 1000..=1499
        let late = Row { series: SeriesId(3), time: 600, fields: vec![(ColumnId(0), FieldValue::I64(3))].into() };
        buffer.apply(vec![TableRows { table: TABLE, rows: vec![late] }]);
        let _sealing = buffer.view(TABLE, &all());
        for (time_min, time_max, rows) in [(550, 650, 1), (0, 9, 100), (1490, 2000, 100), (500, 599, 0), (600, 1000, 11)] {
            let selection = Selection { series: None, time_min, time_max, columns: None };
            let set = buffer.view(TABLE, &selection).select(&schema(), &selection);
            assert_eq!(set.len(), rows, "times {time_min}..={time_max}");
        }
    }

    #[test]
    fn later_writes_win_across_segments_and_frozen_buffers_read_the_same() {
        let mut buffer = Buffer::default();
        commit(&mut buffer, 0, 5000, 1);
        let _sealing = buffer.view(TABLE, &all());
        commit(&mut buffer, 0, 100, 2);
        let only_one = [SeriesId(3)];
        let selection = Selection { series: Some(&only_one), time_min: 0, time_max: 9, columns: None };
        let set = buffer.view(TABLE, &selection).select(&schema(), &selection);
        assert_eq!(set.len(), 10, "one row per time of series 3 in 0..=9");
        let values: Vec<FieldValue> = (0..set.len()).map(|i| set.columns[0].values.get(i)).collect();
        assert!(values.iter().all(|v| *v == FieldValue::I64(2)), "the later commit wins: {values:?}");
        let frozen = buffer.freeze();
        let again = frozen.view(TABLE).select(&schema(), &selection);
        assert_eq!((0..again.len()).map(|i| again.columns[0].values.get(i)).collect::<Vec<_>>(), values);
        assert_eq!(frozen.partitions(i64::MAX).values().map(Vec::len).sum::<usize>(), 5100);
    }
}
