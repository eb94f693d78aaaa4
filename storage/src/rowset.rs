//! [`RowSet`]: rows of one table in columnar form, sorted by (series, time), one row per key.
//!
//! Everything that reads or writes rows meets here: the write buffer is turned into row sets
//! when persisted or scanned, chunks decode into them, compaction and scans merge them with
//! last-write-wins, and scans turn them into Arrow record batches.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::batch::{Row, RowBatch, RowRef};
use crate::model::{ColumnId, FieldType, FieldValue, SeriesId};

/// Where one series' rows are within a [`RowSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeriesRun {
    pub(crate) series: SeriesId,
    pub(crate) row_start: usize,
    pub(crate) rows: usize,
}

/// Typed values of one column; positions without a value hold a default.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
    String(Vec<Arc<str>>),
}

impl Values {
    pub(crate) fn new(ty: FieldType, capacity: usize) -> Self {
        match ty {
            FieldType::F64 => Self::F64(Vec::with_capacity(capacity)),
            FieldType::I64 => Self::I64(Vec::with_capacity(capacity)),
            FieldType::Bool => Self::Bool(Vec::with_capacity(capacity)),
            FieldType::String => Self::String(Vec::with_capacity(capacity)),
        }
    }
    pub(crate) fn field_type(&self) -> FieldType {
        match self {
            Self::F64(_) => FieldType::F64,
            Self::I64(_) => FieldType::I64,
            Self::Bool(_) => FieldType::Bool,
            Self::String(_) => FieldType::String,
        }
    }
    /// Appends `value`, or a default when `None`. A value of another type is a broken invariant:
    /// schemas never change a column's type.
    fn push(&mut self, value: Option<&FieldValue>) {
        match (self, value) {
            (Self::F64(v), Some(FieldValue::F64(x))) => v.push(*x),
            (Self::I64(v), Some(FieldValue::I64(x))) => v.push(*x),
            (Self::Bool(v), Some(FieldValue::Bool(x))) => v.push(*x),
            (Self::String(v), Some(FieldValue::String(x))) => v.push(Arc::clone(x)),
            (Self::F64(v), None) => v.push(0.0),
            (Self::I64(v), None) => v.push(0),
            (Self::Bool(v), None) => v.push(false),
            (Self::String(v), None) => v.push(Arc::from("")),
            (values, Some(value)) => {
                panic!("column of {} given a {} value", values.field_type(), value.field_type())
            }
        }
    }
    /// Puts `value` at `i`, or a default when `None`; the same types as [`Self::push`].
    fn set(&mut self, i: usize, value: Option<&FieldValue>) {
        match (self, value) {
            (Self::F64(v), Some(FieldValue::F64(x))) => v[i] = *x,
            (Self::I64(v), Some(FieldValue::I64(x))) => v[i] = *x,
            (Self::Bool(v), Some(FieldValue::Bool(x))) => v[i] = *x,
            (Self::String(v), Some(FieldValue::String(x))) => v[i] = Arc::clone(x),
            (Self::F64(v), None) => v[i] = 0.0,
            (Self::I64(v), None) => v[i] = 0,
            (Self::Bool(v), None) => v[i] = false,
            (Self::String(v), None) => v[i] = Arc::from(""),
            (values, Some(value)) => {
                panic!("column of {} given a {} value", values.field_type(), value.field_type())
            }
        }
    }
    fn push_default(&mut self, n: usize) {
        match self {
            Self::F64(v) => v.resize(v.len() + n, 0.0),
            Self::I64(v) => v.resize(v.len() + n, 0),
            Self::Bool(v) => v.resize(v.len() + n, false),
            Self::String(v) => v.resize(v.len() + n, Arc::from("")),
        }
    }
    /// Appends `other[i]`; both must have the same type.
    fn push_from(&mut self, other: &Self, i: usize) {
        match (self, other) {
            (Self::F64(a), Self::F64(b)) => a.push(b[i]),
            (Self::I64(a), Self::I64(b)) => a.push(b[i]),
            (Self::Bool(a), Self::Bool(b)) => a.push(b[i]),
            (Self::String(a), Self::String(b)) => a.push(Arc::clone(&b[i])),
            (a, b) => panic!("merging a {} column into {}", b.field_type(), a.field_type()),
        }
    }
    fn reserve(&mut self, additional: usize) {
        match self {
            Self::F64(v) => v.reserve(additional),
            Self::I64(v) => v.reserve(additional),
            Self::Bool(v) => v.reserve(additional),
            Self::String(v) => v.reserve(additional),
        }
    }
    fn extend_from(&mut self, other: &Self, rows: std::ops::Range<usize>) {
        match (self, other) {
            (Self::F64(a), Self::F64(b)) => a.extend_from_slice(&b[rows]),
            (Self::I64(a), Self::I64(b)) => a.extend_from_slice(&b[rows]),
            (Self::Bool(a), Self::Bool(b)) => a.extend_from_slice(&b[rows]),
            (Self::String(a), Self::String(b)) => a.extend_from_slice(&b[rows]),
            (a, b) => panic!("merging a {} column into {}", b.field_type(), a.field_type()),
        }
    }
    /// The value at `i` of a numeric column, as a [`FieldValue`].
    pub(crate) fn number(&self, i: usize) -> Option<FieldValue> {
        match self {
            Self::F64(v) => v.get(i).map(|x| FieldValue::F64(*x)),
            Self::I64(v) => v.get(i).map(|x| FieldValue::I64(*x)),
            Self::Bool(_) | Self::String(_) => None,
        }
    }
    /// The value at `i` as a [`FieldValue`].
    pub(crate) fn get(&self, i: usize) -> FieldValue {
        match self {
            Self::F64(v) => FieldValue::F64(v[i]),
            Self::I64(v) => FieldValue::I64(v[i]),
            Self::Bool(v) => FieldValue::Bool(v[i]),
            Self::String(v) => FieldValue::String(Arc::clone(&v[i])),
        }
    }
}

/// One field column of a [`RowSet`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub(crate) id: ColumnId,
    pub(crate) values: Values,
    /// Whether each row has a value.
    pub(crate) valid: Vec<bool>,
}

impl Column {
    pub(crate) fn new(id: ColumnId, ty: FieldType, capacity: usize) -> Self {
        Self { id, values: Values::new(ty, capacity), valid: Vec::with_capacity(capacity) }
    }
    fn push(&mut self, value: Option<&FieldValue>) {
        self.values.push(value);
        self.valid.push(value.is_some());
    }
    /// A column of `rows` nulls.
    pub(crate) fn nulls(id: ColumnId, ty: FieldType, rows: usize) -> Self {
        let mut column = Self::new(id, ty, rows);
        column.push_null(rows);
        column
    }
    pub(crate) fn push_null(&mut self, n: usize) {
        self.values.push_default(n);
        self.valid.resize(self.valid.len() + n, false);
    }
    /// Puts `value` (none: null) at row `i`.
    pub(crate) fn set(&mut self, i: usize, value: Option<&FieldValue>) {
        self.values.set(i, value);
        self.valid[i] = value.is_some();
    }
    /// The values at `indexes`, in that order, copied by runs of consecutive rows.
    pub(crate) fn gather(&self, indexes: &[usize]) -> Column {
        let mut out = Column::new(self.id, self.values.field_type(), indexes.len());
        for rows in contiguous(indexes) {
            out.values.extend_from(&self.values, rows.clone());
            out.valid.extend_from_slice(&self.valid[rows]);
        }
        out
    }
    pub(crate) fn null_count(&self) -> usize {
        self.valid.iter().filter(|v| !**v).count()
    }
}

/// What a scan wants: series (sorted ids; `None` for all), an inclusive time range and field
/// columns (sorted ids; `None` for all).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Selection<'a> {
    pub(crate) series: Option<&'a [SeriesId]>,
    pub(crate) time_min: i64,
    pub(crate) time_max: i64,
    pub(crate) columns: Option<&'a [ColumnId]>,
}

impl Selection<'_> {
    pub(crate) fn wants_series(&self, series: SeriesId) -> bool {
        self.series.is_none_or(|s| s.binary_search(&series).is_ok())
    }
    pub(crate) fn wants_column(&self, column: ColumnId) -> bool {
        self.columns.is_none_or(|c| c.binary_search(&column).is_ok())
    }
    pub(crate) fn wants_time(&self, time: i64) -> bool {
        (self.time_min..=self.time_max).contains(&time)
    }
    pub(crate) fn overlaps(&self, time_min: i64, time_max: i64) -> bool {
        time_min <= self.time_max && time_max >= self.time_min
    }
}

/// Rows of one table, sorted by (series, time) with unique keys, in columnar form.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RowSet {
    pub(crate) series: Vec<SeriesRun>,
    pub(crate) times: Vec<i64>,
    /// Sorted by column id.
    pub(crate) columns: Vec<Column>,
}

impl RowSet {
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Builds a row set from rows in write order (later rows of a key win), with the columns
    /// of `column_types`.
    pub(crate) fn from_rows<'a, R: Into<RowRef<'a>>>(
        rows: impl IntoIterator<Item = R>,
        column_types: &BTreeMap<ColumnId, FieldType>,
    ) -> Self {
        let mut by_series: BTreeMap<SeriesId, Vec<RowRef<'a>>> = BTreeMap::new();
        for row in rows.into_iter().map(Into::into) {
            by_series.entry(row.series).or_default().push(row);
        }
        let total: usize = by_series.values().map(Vec::len).sum();
        let mut out = Self::with_columns(column_types, total);
        for (series, mut rows) in by_series {
            out.push_series(series, &mut rows);
        }
        out
    }

    /// No rows yet, the columns of `column_types`, room for `rows`.
    pub(crate) fn with_columns(column_types: &BTreeMap<ColumnId, FieldType>, rows: usize) -> Self {
        Self {
            series: Vec::new(),
            times: Vec::with_capacity(rows),
            columns: column_types.iter().map(|(id, ty)| Column::new(*id, *ty, rows)).collect(),
        }
    }

    /// Appends `rows` of `series` (which sorts after the series already here), given in write
    /// order: sorted by time, of rows with the same time the last written. Rows mostly come in
    /// time order, and then there is nothing to sort.
    pub(crate) fn push_series(&mut self, series: SeriesId, rows: &mut [RowRef<'_>]) {
        // A stable sort keeps write order within a time.
        if !rows.is_sorted_by_key(|r| r.time) {
            rows.sort_by_key(|r| r.time);
        }
        let row_start = self.times.len();
        for (i, row) in rows.iter().enumerate() {
            if rows.get(i + 1).is_some_and(|next| next.time == row.time) {
                continue;
            }
            self.times.push(row.time);
            push_fields(&mut self.columns, row.fields);
        }
        if self.times.len() > row_start {
            self.series.push(SeriesRun { series, row_start, rows: self.times.len() - row_start });
        }
    }

    /// Merges row sets given oldest first: for a key present in several, the newest row wins
    /// whole. Columns are the union of the inputs' columns.
    pub(crate) fn merge(sets: Vec<RowSet>) -> RowSet {
        let mut sets: Vec<RowSet> = sets.into_iter().filter(|s| !s.is_empty()).collect();
        if sets.len() <= 1 {
            return sets.pop().unwrap_or_default();
        }
        let mut column_types: BTreeMap<ColumnId, FieldType> = BTreeMap::new();
        for set in &sets {
            for c in &set.columns {
                column_types.entry(c.id).or_insert(c.values.field_type());
            }
        }
        let total: usize = sets.iter().map(RowSet::len).sum();
        let mut out = RowSet {
            series: Vec::new(),
            times: Vec::with_capacity(total),
            columns: column_types.iter().map(|(id, ty)| Column::new(*id, *ty, total)).collect(),
        };
        // For each set, the index of each output column in it.
        let maps: Vec<Vec<Option<usize>>> =
            sets.iter().map(|s| out.columns.iter().map(|c| s.columns.iter().position(|sc| sc.id == c.id)).collect()).collect();
        let mut cursors = vec![0usize; sets.len()];
        let mut picks: Vec<(i64, usize, usize)> = Vec::new();
        let mut spans: Vec<(i64, i64, usize)> = Vec::new();
        loop {
            let next = sets.iter().zip(&cursors).filter_map(|(s, &c)| s.series.get(c).map(|r| r.series)).min();
            let Some(series) = next else { break };
            let holders: Vec<usize> =
                (0..sets.len()).filter(|&k| sets[k].series.get(cursors[k]).is_some_and(|r| r.series == series)).collect();
            // The series' rows in each holder as (first time, last time, holder), by first time:
            // when only one set holds the series, or each run ends before the next begins
            // (chunks of successive times, the common case), they are copied whole in turn.
            spans.clear();
            spans.extend(holders.iter().filter_map(|&k| {
                let run = sets[k].series[cursors[k]];
                let times = &sets[k].times[run.row_start..run.row_start + run.rows];
                Some((*times.first()?, *times.last()?, k))
            }));
            spans.sort_unstable();
            if spans.windows(2).all(|pair| pair[0].1 < pair[1].0) {
                let row_start = out.times.len();
                for &(_, _, k) in &spans {
                    out.copy_run(&sets[k], sets[k].series[cursors[k]], &maps[k]);
                }
                for k in holders {
                    cursors[k] += 1;
                }
                out.series.push(SeriesRun { series, row_start, rows: out.times.len() - row_start });
                continue;
            }
            picks.clear();
            for (k, set) in sets.iter().enumerate() {
                if let Some(run) = set.series.get(cursors[k]).filter(|r| r.series == series) {
                    picks.extend((run.row_start..run.row_start + run.rows).map(|i| (set.times[i], k, i)));
                    cursors[k] += 1;
                }
            }
            // Sorted by time, then by set age: the last of equal times is the newest.
            picks.sort_unstable_by_key(|(t, k, _)| (*t, *k));
            let row_start = out.times.len();
            for (j, &(time, k, i)) in picks.iter().enumerate() {
                if picks.get(j + 1).is_some_and(|next| next.0 == time) {
                    continue;
                }
                out.times.push(time);
                for (col, map) in out.columns.iter_mut().zip(&maps[k]) {
                    match map {
                        Some(m) => {
                            let src = &sets[k].columns[*m];
                            col.values.push_from(&src.values, i);
                            col.valid.push(src.valid[i]);
                        }
                        None => col.push_null(1),
                    }
                }
            }
            out.series.push(SeriesRun { series, row_start, rows: out.times.len() - row_start });
        }
        out
    }

    /// Appends the rows of `run` of `set`, whose columns are at `map` in this set's (`None`:
    /// absent from `set`, appended as nulls); the caller records the series run.
    fn copy_run(&mut self, set: &RowSet, run: SeriesRun, map: &[Option<usize>]) {
        let rows = run.row_start..run.row_start + run.rows;
        self.times.extend_from_slice(&set.times[rows.clone()]);
        for (col, map) in self.columns.iter_mut().zip(map) {
            match map {
                Some(m) => {
                    let src = &set.columns[*m];
                    col.values.extend_from(&src.values, rows.clone());
                    col.valid.extend_from_slice(&src.valid[rows.clone()]);
                }
                None => col.push_null(run.rows),
            }
        }
    }

    /// The rows of the series in `series` (sorted).
    pub(crate) fn of_series(&self, series: &[SeriesId]) -> RowSet {
        let indexes: Vec<usize> = self
            .series
            .iter()
            .filter(|run| series.binary_search(&run.series).is_ok())
            .flat_map(|run| run.row_start..run.row_start + run.rows)
            .collect();
        self.take(&indexes)
    }

    /// The rows at `indexes` (ascending).
    pub(crate) fn take(&self, indexes: &[usize]) -> RowSet {
        let mut out = RowSet {
            series: Vec::new(),
            times: indexes.iter().map(|&i| self.times[i]).collect(),
            columns: self.columns.iter().map(|c| c.gather(indexes)).collect(),
        };
        let mut k = 0;
        for run in &self.series {
            let start = k;
            while k < indexes.len() && indexes[k] < run.row_start + run.rows {
                k += 1;
            }
            if k > start {
                out.series.push(SeriesRun { series: run.series, row_start: start, rows: k - start });
            }
        }
        out
    }

    /// Appends `other`, whose rows sort after this set's (a series may continue across the
    /// boundary) and whose columns are the same.
    pub(crate) fn append(&mut self, other: RowSet) {
        if self.is_empty() {
            *self = other;
            return;
        }
        let base = self.times.len();
        for run in other.series {
            match self.series.last_mut() {
                Some(last) if last.series == run.series => last.rows += run.rows,
                _ => self.series.push(SeriesRun { row_start: base + run.row_start, ..run }),
            }
        }
        self.times.extend(other.times);
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            assert_eq!(mine.id, theirs.id, "appended row sets have the same columns");
            mine.values.extend_from(&theirs.values, 0..theirs.valid.len());
            mine.valid.extend(theirs.valid);
        }
    }

    /// Row sets with the same columns, each after the one before in (series, time) order, as
    /// one, allocated once.
    pub(crate) fn concat(sets: Vec<RowSet>) -> RowSet {
        let total: usize = sets.iter().map(RowSet::len).sum();
        let mut sets = sets.into_iter();
        let Some(mut out) = sets.next() else { return RowSet::default() };
        out.times.reserve(total - out.len());
        for column in &mut out.columns {
            column.values.reserve(total - column.valid.len());
            column.valid.reserve(total - column.valid.len());
        }
        for set in sets {
            out.append(set);
        }
        out
    }

    /// The rows `selection` wants, by series and time (columns are chosen when building).
    pub(crate) fn select(self, selection: &Selection<'_>) -> RowSet {
        let all = self.series.iter().all(|r| selection.wants_series(r.series)) && self.times.iter().all(|t| selection.wants_time(*t));
        if all {
            return self;
        }
        let keep: Vec<usize> = self
            .series
            .iter()
            .filter(|r| selection.wants_series(r.series))
            .flat_map(|r| r.row_start..r.row_start + r.rows)
            .filter(|&i| selection.wants_time(self.times[i]))
            .collect();
        self.take(&keep)
    }

    /// Rows as (series, time, fields) in order, for tests.
    #[cfg(test)]
    pub(crate) fn to_rows(&self) -> Vec<Row> {
        self.series.iter().flat_map(|run| run.row_start..run.row_start + run.rows).map(|i| self.row(i)).collect()
    }

    /// The newest row of each series.
    pub(crate) fn last_rows(&self) -> RowBatch {
        self.series.iter().filter(|run| run.rows > 0).map(|run| self.row(run.row_start + run.rows - 1)).collect::<Vec<_>>().into()
    }

    /// Row `i` with its series.
    fn row(&self, i: usize) -> Row {
        let run = self.series.partition_point(|run| run.row_start + run.rows <= i);
        let fields = self.columns.iter().filter(|c| c.valid[i]).map(|c| (c.id, c.values.get(i))).collect();
        Row { series: self.series[run].series, time: self.times[i], fields }
    }
}

/// Appends one row's `fields` (sorted by column id) to `columns` (sorted by id), a null where
/// it has no value.
fn push_fields(columns: &mut [Column], fields: &[(ColumnId, FieldValue)]) {
    let mut j = 0;
    for col in columns {
        while j < fields.len() && fields[j].0 < col.id {
            j += 1;
        }
        col.push(fields.get(j).filter(|(id, _)| *id == col.id).map(|(_, v)| v));
    }
}

/// `indexes` as runs of consecutive rows, for copying by slices.
fn contiguous(indexes: &[usize]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut k = 0;
    std::iter::from_fn(move || {
        let start = *indexes.get(k)?;
        let mut end = start + 1;
        k += 1;
        while indexes.get(k) == Some(&end) {
            end += 1;
            k += 1;
        }
        Some(start..end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(series: u64, time: i64, v: f64) -> Row {
        Row { series: SeriesId(series), time, fields: Box::new([(ColumnId(0), FieldValue::F64(v))]) }
    }

    fn types() -> BTreeMap<ColumnId, FieldType> {
        BTreeMap::from([(ColumnId(0), FieldType::F64)])
    }

    #[test]
    fn later_writes_win_within_and_across_sets() {
        let old = RowSet::from_rows(&[row(2, 10, 1.0), row(1, 10, 2.0), row(2, 10, 3.0), row(2, 5, 4.0)], &types());
        assert_eq!(old.to_rows(), vec![row(1, 10, 2.0), row(2, 5, 4.0), row(2, 10, 3.0)]);
        let new = RowSet::from_rows(&[row(2, 5, 9.0), row(3, 1, 1.0)], &types());
        let merged = RowSet::merge(vec![old, new]);
        assert_eq!(merged.to_rows(), vec![row(1, 10, 2.0), row(2, 5, 9.0), row(2, 10, 3.0), row(3, 1, 1.0)]);
        let selection = Selection { series: None, time_min: 6, time_max: 10, columns: None };
        let filtered = merged.select(&selection);
        assert_eq!(filtered.to_rows(), vec![row(1, 10, 2.0), row(2, 10, 3.0)]);
    }

    /// Sets of rows over random series and times, each set's times within its own window, so
    /// that sets with windows apart take the whole-run copy and overlapping ones the row merge.
    fn sets() -> impl proptest::strategy::Strategy<Value = Vec<Vec<Row>>> {
        use proptest::prelude::*;
        let set = (0i64..4, prop::collection::vec((0u64..5, 0i64..20, -100i32..100), 0..30))
            .prop_map(|(window, rows)| rows.into_iter().map(|(s, t, v)| row(s, window * 15 + t, f64::from(v))).collect());
        prop::collection::vec(set, 0..6)
    }

    proptest::proptest! {
        #[test]
        fn merge_keeps_the_newest_row_of_each_key(sets in sets()) {
            let merged = RowSet::merge(sets.iter().map(|rows| RowSet::from_rows(rows, &types())).collect());
            let mut newest: BTreeMap<(SeriesId, i64), Row> = BTreeMap::new();
            for row in sets.iter().flatten() {
                newest.insert((row.series, row.time), row.clone());
            }
            proptest::prop_assert_eq!(merged.to_rows(), newest.into_values().collect::<Vec<_>>());
        }
    }
}
