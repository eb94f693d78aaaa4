//! The write buffer: rows that are durable in the WAL but not yet in chunks.
//!
//! The buffer keeps each write's rows of a table whole, as the writer prepared them (a
//! [`crate::batch::RowBatch`] and its [`crate::batch::SeriesIndex`]), in commit order: the
//! committer's work per write does not grow with its rows, and no row is copied or moves once
//! written. Sorting by series and time and de-duplication happen when the rows are read
//! ([`build_row_set`], with [`RowSet::push_series`]).
//!
//! Scans must not make writers wait while they read rows. The committer appends to a tail
//! segment; a scan takes a [`BufferView`] under the state lock, which seals a tail of
//! [`SEAL_ROWS_MIN`] rows or more into a shared segment and otherwise takes the tail's writes of
//! its table, shared, so the work done under the lock does not grow with the buffer. The view is
//! turned into rows ([`BufferView::select`]) after the lock is let go.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::batch::{RowRef, TableRows};
use crate::fxhash::FxHashMap;
use crate::model::{ColumnId, FieldType, SeriesId, TableId};
use crate::rowset::{RowSet, Selection};
use crate::schema::{ColumnKind, TableSchema};

/// What a selected row costs in a row set: its time, and a value and validity per column.
const ESTIMATED_TIME_BYTES: usize = 8;
const ESTIMATED_VALUE_BYTES: usize = 9;
/// A scan seals a tail of at least this many rows instead of taking its writes one by one.
pub(crate) const SEAL_ROWS_MIN: u64 = 4096;

/// One write's rows of one table.
type Write = Arc<TableRows>;

/// Writes per table, in commit order.
type Rows = FxHashMap<TableId, TableSegment>;

/// One table's writes in a segment, and the range of their times, which lets a scan of recent
/// rows pass over older segments without looking at their writes.
#[derive(Debug)]
struct TableSegment {
    writes: Vec<Write>,
    rows: u64,
    time_min: i64,
    time_max: i64,
}

impl Default for TableSegment {
    fn default() -> Self {
        Self { writes: Vec::new(), rows: 0, time_min: i64::MAX, time_max: i64::MIN }
    }
}

impl TableSegment {
    fn push(&mut self, write: Write) {
        self.rows += write.rows.len() as u64;
        self.time_min = self.time_min.min(write.index.time_min);
        self.time_max = self.time_max.max(write.index.time_max);
        self.writes.push(write);
    }

    /// The rows of the series `selection` wants when the segment's times overlap its times,
    /// without looking at each row's time.
    fn rows_at_most(&self, selection: &Selection<'_>) -> u64 {
        match selection.series {
            _ if !selection.overlaps(self.time_min, self.time_max) => 0,
            Some(ids) => self.writes.iter().map(|w| rows_of_series(w, ids) as u64).sum(),
            None => self.rows,
        }
    }

    fn overlaps(&self, time_min: i64, time_max: i64) -> bool {
        self.rows > 0 && self.time_min <= time_max && self.time_max >= time_min
    }
}

/// Rows of `write` in the series `ids` (sorted), counted from its index.
fn rows_of_series(write: &TableRows, ids: &[SeriesId]) -> usize {
    if ids.len() >= write.index.series_count() {
        return write.rows.len();
    }
    ids.iter().map(|id| write.index.rows_of(*id).len()).sum()
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

/// The writes of one table a scan may need, taken from a buffer in time that does not grow
/// with the buffer.
#[derive(Debug)]
pub(crate) struct BufferView {
    table: TableId,
    sealed: Vec<Arc<Rows>>,
    /// The tail's writes of the table.
    tail: Vec<Write>,
}

impl Buffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub(crate) fn apply(&mut self, tables: Vec<TableRows>) {
        let segments = self.segments.get_mut();
        for t in tables {
            if t.rows.is_empty() {
                continue;
            }
            let rows = t.rows.len() as u64;
            self.bytes += t.buffered_bytes;
            self.rows += rows;
            segments.tail_rows += rows;
            segments.tail.entry(t.table).or_default().push(Arc::new(t));
        }
        if self.rows > 0 && self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// What a scan of `table` needs: the sealed segments and the tail's writes of the table,
    /// shared; a tail of [`SEAL_ROWS_MIN`] rows or more is sealed first.
    pub(crate) fn view(&self, table: TableId) -> BufferView {
        let mut segments = self.segments.lock();
        if segments.tail_rows >= SEAL_ROWS_MIN {
            let tail = std::mem::take(&mut segments.tail);
            segments.sealed.push(Arc::new(tail));
            segments.tail_rows = 0;
        }
        let tail = segments.tail.get(&table).map(|t| t.writes.clone()).unwrap_or_default();
        BufferView { table, sealed: segments.sealed.clone(), tail }
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
        BufferView { table, sealed: self.sealed.clone(), tail: Vec::new() }
    }

    /// At most how many of `table`'s rows `selection` wants (a cheap upper bound).
    pub(crate) fn rows_at_most(&self, table: TableId, selection: &Selection<'_>) -> u64 {
        rows_at_most(&self.sealed, table, selection)
    }

    /// See [`Buffer::holds`].
    pub(crate) fn holds(&self, table: TableId, time_min: i64, time_max: i64) -> bool {
        self.sealed.iter().any(|rows| overlaps(rows, table, time_min, time_max))
    }

    /// Every table's writes in commit order, with the start of each time partition they have
    /// rows in, for persisting.
    pub(crate) fn partitions(&self, partition_ns: i64) -> BTreeMap<TableId, (Vec<&TableRows>, Vec<i64>)> {
        let mut out: BTreeMap<TableId, (Vec<&TableRows>, Vec<i64>)> = BTreeMap::new();
        for (table, segment) in self.sealed.iter().flat_map(|rows| rows.iter()) {
            let (writes, starts) = out.entry(*table).or_default();
            for write in &segment.writes {
                writes.push(write);
                let (first, last) =
                    (partition_start(write.index.time_min, partition_ns), partition_start(write.index.time_max, partition_ns));
                if first == last {
                    starts.push(first);
                } else {
                    starts.extend(write.rows.times().map(|t| partition_start(t, partition_ns)));
                }
            }
            starts.sort_unstable();
            starts.dedup();
        }
        out
    }
}

impl BufferView {
    /// The wanted rows as a row set with the wanted columns; later writes of a key win.
    pub(crate) fn select(&self, schema: &TableSchema, selection: &Selection<'_>) -> RowSet {
        let types = field_types(schema, |id| selection.wants_column(id));
        build_row_set(&self.writes(selection), selection, &types)
    }

    /// About what [`Self::select`] will allocate, counted without copying.
    pub(crate) fn estimated_bytes(&self, selection: &Selection<'_>) -> usize {
        let rows: usize = self.writes(selection).iter().map(|w| selection.series.map_or(w.rows.len(), |ids| rows_of_series(w, ids))).sum();
        let columns = selection.columns.map_or(1, <[ColumnId]>::len);
        rows * (ESTIMATED_TIME_BYTES + columns * ESTIMATED_VALUE_BYTES)
    }

    /// The writes of the table whose times overlap the selection's, in commit order.
    fn writes(&self, selection: &Selection<'_>) -> Vec<&TableRows> {
        let sealed = self.sealed.iter().filter_map(|s| s.get(&self.table)).filter(|t| selection.overlaps(t.time_min, t.time_max));
        let writes = sealed.flat_map(|t| t.writes.iter()).chain(&self.tail);
        writes.filter(|w| selection.overlaps(w.index.time_min, w.index.time_max)).map(Arc::as_ref).collect()
    }
}

/// The rows of `writes` (one table's, in commit order) that `selection` wants, sorted by series
/// and time with the columns of `column_types`; of rows with the same series and time the
/// last written wins.
pub(crate) fn build_row_set(writes: &[&TableRows], selection: &Selection<'_>, column_types: &BTreeMap<ColumnId, FieldType>) -> RowSet {
    // Every write's run of each wanted series, by series, then in commit order.
    let runs_max = writes.iter().map(|w| selection.series.map_or(w.index.series_count(), |ids| ids.len().min(w.index.series_count())));
    let mut runs: Vec<(SeriesId, usize, &[u32])> = Vec::with_capacity(runs_max.sum());
    for (k, write) in writes.iter().enumerate() {
        match selection.series {
            Some(ids) if ids.len() < write.index.series_count() => {
                runs.extend(ids.iter().map(|id| (*id, k, write.index.rows_of(*id))).filter(|(_, _, rows)| !rows.is_empty()));
            }
            _ => runs.extend(write.index.runs().filter(|(s, _)| selection.wants_series(*s)).map(|(s, rows)| (s, k, rows))),
        }
    }
    runs.sort_unstable_by_key(|(series, k, _)| (*series, *k));
    let total: usize = runs.iter().map(|(_, _, rows)| rows.len()).sum();
    let mut out = RowSet::with_columns(column_types, total);
    let mut rows: Vec<RowRef<'_>> = Vec::new();
    for group in runs.chunk_by(|a, b| a.0 == b.0) {
        rows.clear();
        for (_, k, numbers) in group {
            rows.extend(numbers.iter().map(|i| writes[*k].rows.get(*i as usize)).filter(|r| selection.wants_time(r.time)));
        }
        out.push_series(group[0].0, &mut rows);
    }
    out
}

fn overlaps(rows: &Rows, table: TableId, time_min: i64, time_max: i64) -> bool {
    rows.get(&table).is_some_and(|t| t.overlaps(time_min, time_max))
}

fn rows_at_most(sealed: &[Arc<Rows>], table: TableId, selection: &Selection<'_>) -> u64 {
    sealed.iter().filter_map(|rows| rows.get(&table)).map(|rows| rows.rows_at_most(selection)).sum()
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::Row;
    use crate::model::FieldValue;

    const TABLE: TableId = TableId(1);

    fn schema() -> TableSchema {
        let mut schema = TableSchema::new(TABLE, "m");
        schema.add_column("v", ColumnKind::Field(FieldType::I64));
        schema
    }

    fn write(rows: Vec<Row>) -> TableRows {
        TableRows::new(TABLE, rows.into())
    }

    /// One commit of `rows` rows across 10 series, `v` = `value`.
    fn commit(buffer: &mut Buffer, start: i64, rows: i64, value: i64) {
        let rows = (start..start + rows)
            .map(|i| Row { series: SeriesId(i as u64 % 10), time: i / 10, fields: vec![(ColumnId(0), FieldValue::I64(value))].into() })
            .collect();
        buffer.apply(vec![write(rows)]);
    }

    fn all() -> Selection<'static> {
        Selection { series: None, time_min: i64::MIN, time_max: i64::MAX, columns: None }
    }

    fn rows() -> impl Strategy<Value = Vec<Row>> {
        let value = prop_oneof![Just(None), (0i64..5).prop_map(Some)];
        let row = (0u64..6, 0i64..40, value, any::<bool>()).prop_map(|(s, t, v, f)| {
            let mut fields = Vec::new();
            fields.extend(v.map(|v| (ColumnId(0), FieldValue::I64(v))));
            fields.extend(f.then_some((ColumnId(1), FieldValue::F64(t as f64))));
            Row { series: SeriesId(s), time: t, fields: fields.into() }
        });
        prop::collection::vec(row, 0..30)
    }

    proptest! {
        /// Rows read from writes kept whole are what sorting every row in commit order gives.
        #[test]
        fn row_sets_from_writes_match_rows_sorted_in_commit_order(
            writes in prop::collection::vec(rows(), 1..6),
            series in prop::option::of(prop::collection::btree_set(0u64..6, 0..4)),
            (time_min, time_max) in (0i64..40, 0i64..40),
        ) {
            let ids: Option<Vec<SeriesId>> = series.map(|s| s.into_iter().map(SeriesId).collect());
            let selection = Selection { series: ids.as_deref(), time_min, time_max, columns: None };
            let types = BTreeMap::from([(ColumnId(0), FieldType::I64), (ColumnId(1), FieldType::F64)]);
            let expected = RowSet::from_rows(writes.iter().flatten(), &types).select(&selection);
            let tables: Vec<TableRows> = writes.into_iter().map(write).collect();
            let built = build_row_set(&tables.iter().collect::<Vec<_>>(), &selection, &types);
            prop_assert_eq!(built, expected);
        }
    }

    #[test]
    fn a_view_takes_a_bounded_tail_whatever_the_buffer_holds() {
        let mut buffer = Buffer::default();
        for round in 0..25 {
            commit(&mut buffer, round * 4000, 4000, 1);
            let view = buffer.view(TABLE);
            let tail: usize = view.tail.iter().map(|w| w.rows.len()).sum();
            assert!(tail < SEAL_ROWS_MIN as usize, "{tail} rows in the tail taken under the lock");
            assert_eq!(view.select(&schema(), &all()).len(), (round as usize + 1) * 4000);
        }
        assert!(buffer.segments.get_mut().sealed.len() <= 25, "a segment per view at most");
    }

    #[test]
    fn a_time_range_finds_late_rows_in_segments_of_newer_times() {
        let mut buffer = Buffer::default();
        commit(&mut buffer, 0, 5000, 1); // times 0..=499
        let _sealing = buffer.view(TABLE);
        commit(&mut buffer, 10_000, 5000, 2); // times 1000..=1499
        let late = Row { series: SeriesId(3), time: 600, fields: vec![(ColumnId(0), FieldValue::I64(3))].into() };
        buffer.apply(vec![write(vec![late])]);
        let _sealing = buffer.view(TABLE);
        for (time_min, time_max, rows) in [(550, 650, 1), (0, 9, 100), (1490, 2000, 100), (500, 599, 0), (600, 1000, 11)] {
            let selection = Selection { series: None, time_min, time_max, columns: None };
            let set = buffer.view(TABLE).select(&schema(), &selection);
            assert_eq!(set.len(), rows, "times {time_min}..={time_max}");
        }
    }

    #[test]
    fn later_writes_win_across_segments_and_frozen_buffers_read_the_same() {
        let mut buffer = Buffer::default();
        commit(&mut buffer, 0, 5000, 1);
        let _sealing = buffer.view(TABLE);
        commit(&mut buffer, 0, 100, 2);
        let only_one = [SeriesId(3)];
        let selection = Selection { series: Some(&only_one), time_min: 0, time_max: 9, columns: None };
        let set = buffer.view(TABLE).select(&schema(), &selection);
        assert_eq!(set.len(), 10, "one row per time of series 3 in 0..=9");
        let values: Vec<FieldValue> = (0..set.len()).map(|i| set.columns[0].values.get(i)).collect();
        assert!(values.iter().all(|v| *v == FieldValue::I64(2)), "the later commit wins: {values:?}");
        let frozen = buffer.freeze();
        let again = frozen.view(TABLE).select(&schema(), &selection);
        assert_eq!((0..again.len()).map(|i| again.columns[0].values.get(i)).collect::<Vec<_>>(), values);
        let (writes, partitions) = &frozen.partitions(i64::MAX)[&TABLE];
        assert_eq!(writes.iter().map(|w| w.rows.len()).sum::<usize>(), 5100);
        assert_eq!(partitions, &[0]);
    }
}
