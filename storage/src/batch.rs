//! The rows of a write as its writer prepares them: laid out flat ([`RowBatch`]), with an
//! index of where each series' rows are ([`SeriesIndex`]). The WAL logs them
//! ([`crate::wal`]), the write buffer keeps them whole ([`crate::buffer`]), and the rollups and
//! the newest-row cache read them row by row ([`RowRef`]).

use crate::model::{ColumnId, FieldValue, SeriesId, TableId};

/// One row on its own (the series resolved, columns as ids): what rollups build a window's row
/// as. Written rows travel and are buffered in a [`RowBatch`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) series: SeriesId,
    pub(crate) time: i64,
    /// Sorted by column id, each id once.
    pub(crate) fields: Box<[(ColumnId, FieldValue)]>,
}

impl Row {
    pub(crate) fn as_row_ref(&self) -> RowRef<'_> {
        RowRef { series: self.series, time: self.time, fields: &self.fields }
    }

    #[cfg(test)]
    pub(crate) fn same(&self, other: &Self) -> bool {
        self.series == other.series
            && self.time == other.time
            && self.fields.len() == other.fields.len()
            && self.fields.iter().zip(other.fields.iter()).all(|(a, b)| a.0 == b.0 && a.1.same(&b.1))
    }
}

/// One row of a [`RowBatch`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowRef<'a> {
    pub(crate) series: SeriesId,
    pub(crate) time: i64,
    /// Sorted by column id, each id once.
    pub(crate) fields: &'a [(ColumnId, FieldValue)],
}

impl RowRef<'_> {
    #[cfg(test)]
    pub(crate) fn to_row(self) -> Row {
        Row { series: self.series, time: self.time, fields: self.fields.into() }
    }
}

impl<'a> From<&'a Row> for RowRef<'a> {
    fn from(row: &'a Row) -> Self {
        row.as_row_ref()
    }
}

/// Rows laid out flat, in the order they were pushed: a batch of any size costs two
/// allocations, not one per row, and is freed as cheaply.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RowBatch {
    rows: Vec<RowEntry>,
    values: Vec<(ColumnId, FieldValue)>,
}

/// A row of a [`RowBatch`] but for its fields: kept together, so that finding a row costs one
/// cache miss and not one per array (a persist reads the rows of a series in every write).
#[derive(Debug, Clone, Copy, PartialEq)]
struct RowEntry {
    series: SeriesId,
    time: i64,
    /// Where its fields are in `values`.
    start: u32,
    end: u32,
}

impl RowBatch {
    pub(crate) fn with_capacity(rows: usize, values: usize) -> Self {
        Self { rows: Vec::with_capacity(rows), values: Vec::with_capacity(values) }
    }

    /// Adds a row whose fields come sorted by column id, each id once.
    pub(crate) fn push(&mut self, series: SeriesId, time: i64, fields: impl IntoIterator<Item = (ColumnId, FieldValue)>) {
        let start = self.values.len();
        self.values.extend(fields);
        let offset = |n: usize| u32::try_from(n).expect("a batch holds fewer than 2^32 values");
        self.rows.push(RowEntry { series, time, start: offset(start), end: offset(self.values.len()) });
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`; panics when out of range.
    pub(crate) fn get(&self, i: usize) -> RowRef<'_> {
        let row = self.rows[i];
        RowRef { series: row.series, time: row.time, fields: &self.values[row.start as usize..row.end as usize] }
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = RowRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Field values in all rows.
    pub(crate) fn value_count(&self) -> usize {
        self.values.len()
    }

    /// The time of row `i`; panics when out of range.
    pub(crate) fn time(&self, i: usize) -> i64 {
        self.rows[i].time
    }

    /// The rows' times, in push order.
    pub(crate) fn times(&self) -> impl ExactSizeIterator<Item = i64> + '_ {
        self.rows.iter().map(|row| row.time)
    }
}

impl From<Vec<Row>> for RowBatch {
    fn from(rows: Vec<Row>) -> Self {
        let mut batch = Self::with_capacity(rows.len(), rows.iter().map(|r| r.fields.len()).sum());
        for row in rows {
            batch.push(row.series, row.time, row.fields.into_vec());
        }
        batch
    }
}

/// The rows of one table within a record, with their series index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableRows {
    pub(crate) table: TableId,
    pub(crate) rows: RowBatch,
    pub(crate) index: SeriesIndex,
    /// What the rows cost in the write buffer, for memory accounting.
    pub(crate) buffered_bytes: u64,
}

/// Estimated bytes a buffered row costs besides its values: its series, time, end of fields
/// and place in the series index.
const ROW_OVERHEAD_BYTES: usize = 24;

impl TableRows {
    /// Indexes `rows` by series and counts their bytes: the writer does it, so that the
    /// committer need not.
    pub(crate) fn new(table: TableId, rows: RowBatch) -> Self {
        let index = SeriesIndex::of(&rows);
        let values: usize = rows.values.iter().map(|(_, v)| 8 + v.buffered_bytes()).sum();
        let buffered_bytes = (rows.len() * ROW_OVERHEAD_BYTES + values) as u64;
        Self { table, rows, index, buffered_bytes }
    }
}

/// Where each series' rows are in a [`RowBatch`], and what the rows span: how the write
/// buffer finds a series' rows in the batches it keeps whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SeriesIndex {
    /// Row numbers by series (ascending ids), in push order within a series.
    order: Vec<u32>,
    /// Each series and where its row numbers end in `order`.
    runs: Vec<(SeriesId, u32)>,
    pub(crate) time_min: i64,
    pub(crate) time_max: i64,
    /// The field columns the rows have values in, ascending.
    pub(crate) columns: Vec<ColumnId>,
}

impl SeriesIndex {
    fn of(rows: &RowBatch) -> Self {
        let mut keyed: Vec<(SeriesId, u32)> = rows.rows.iter().zip(0u32..).map(|(row, i)| (row.series, i)).collect();
        // Row numbers break ties, so the order within a series stays the push order.
        keyed.sort_unstable();
        let mut runs: Vec<(SeriesId, u32)> = Vec::new();
        for (end, (series, _)) in (1u32..).zip(&keyed) {
            match runs.last_mut() {
                Some(last) if last.0 == *series => last.1 = end,
                _ => runs.push((*series, end)),
            }
        }
        // Looked up in the few distinct columns rather than sorting every value's column.
        let mut columns: Vec<ColumnId> = Vec::new();
        for (id, _) in &rows.values {
            if let Err(at) = columns.binary_search(id) {
                columns.insert(at, *id);
            }
        }
        Self {
            order: keyed.into_iter().map(|(_, i)| i).collect(),
            runs,
            time_min: rows.times().min().unwrap_or(i64::MAX),
            time_max: rows.times().max().unwrap_or(i64::MIN),
            columns,
        }
    }

    /// The series with rows, ascending, and their row numbers in push order.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (SeriesId, &[u32])> + '_ {
        let starts = std::iter::once(0).chain(self.runs.iter().map(|(_, end)| *end));
        self.runs.iter().zip(starts).map(|((series, end), start)| (*series, &self.order[start as usize..*end as usize]))
    }

    /// The row numbers of `series`, in push order.
    pub(crate) fn rows_of(&self, series: SeriesId) -> &[u32] {
        match self.runs.binary_search_by_key(&series, |(s, _)| *s) {
            Ok(k) => {
                let start = if k == 0 { 0 } else { self.runs[k - 1].1 as usize };
                &self.order[start..self.runs[k].1 as usize]
            }
            Err(_) => &[],
        }
    }

    /// Number of series.
    pub(crate) fn series_count(&self) -> usize {
        self.runs.len()
    }
}
