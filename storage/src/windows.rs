//! A scan's rows as partial aggregates per series and time window: what an aggregate grouped by
//! tags and a time bucket needs of raw rows, computed where the rows are decoded.
//!
//! [`Scan::in_windows`] makes each batch hold, instead of rows, one row per series and window
//! of the rows read: the window's start (or, for [`Windows::PerSeries`], the series' first
//! time in the group), the series' tags, and for each numeric field the count of its values,
//! their sum (wrapping for integers, as SQL's `sum` over `bigint` does in DataFusion), minimum
//! and maximum (by IEEE total order, as DataFusion's `min` and `max` compare floats). Rows come
//! sorted by (series, time), so a window is a run of consecutive rows: the loop is a pass over
//! the decoded columns with no hashing and no tag strings per row. The query layer combines
//! the partials by the query's own groups (`rollup_rewrite.rs` in `isobar-query`), exactly,
//! since every window lies inside one bucket.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use crate::error::{Error, Result};
use crate::model::FieldType;
use crate::rowset::{RowSet, Values};
use crate::scan::{OutColumn, Scan};
use crate::schema::TIME_COLUMN;

/// How a windowed scan cuts each series' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// Windows `origin_ns + k * width_ns` wide `width_ns`.
    Every { width_ns: i64, origin_ns: i64 },
    /// One window per series in each group of series read: for aggregates with no time bucket.
    PerSeries,
}

/// The partial aggregates a windowed scan outputs for each field, in order.
pub const PARTIAL_AGGREGATES: [&str; 4] = ["count", "sum", "min", "max"];

/// The name of the partial aggregate `what` (one of [`PARTIAL_AGGREGATES`]) of field `field` in
/// a windowed scan's output.
pub fn partial_name(field: &str, what: &str) -> String {
    format!("isobar_{what}_of_{field}")
}

impl Windows {
    /// Start of the window holding `time`; within `i64` for any width and origin.
    fn start(self, time: i64) -> i64 {
        match self {
            Self::Every { width_ns, origin_ns } => {
                let (t, w, o) = (i128::from(time), i128::from(width_ns), i128::from(origin_ns));
                let start = o + (t - o).div_euclid(w) * w;
                i64::try_from(start).unwrap_or(if start < 0 { i64::MIN } else { i64::MAX })
            }
            Self::PerSeries => i64::MIN,
        }
    }
}

impl Scan {
    /// Batches of partial aggregates per series and window instead of rows (see the module
    /// doc). Every field the scan reads must be numeric.
    pub fn in_windows(mut self, windows: Windows) -> Result<Self> {
        if let Windows::Every { width_ns, .. } = windows
            && width_ns <= 0
        {
            return Err(Error::InvalidRequest(format!("window width {width_ns} ns is not positive")));
        }
        let mut fields = vec![Field::new(TIME_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false)];
        for (column, field) in self.out.iter().zip(self.schema.fields()) {
            match column {
                OutColumn::Time => {}
                OutColumn::Tag(_) => fields.push(field.as_ref().clone()),
                OutColumn::Field(_, ty @ (FieldType::F64 | FieldType::I64)) => {
                    let ty = crate::scan::arrow_type(*ty);
                    fields.push(Field::new(partial_name(field.name(), PARTIAL_AGGREGATES[0]), DataType::Int64, false));
                    for what in &PARTIAL_AGGREGATES[1..] {
                        fields.push(Field::new(partial_name(field.name(), what), ty.clone(), true));
                    }
                }
                OutColumn::Field(_, ty) => {
                    return Err(Error::InvalidRequest(format!("{} is a {ty} field: only numbers are aggregated in windows", field.name())));
                }
            }
        }
        self.schema = Arc::new(Schema::new(fields));
        self.windows = Some(windows);
        Ok(self)
    }

    /// `set`'s rows as one row per series and window.
    pub(crate) fn to_windows(&self, set: &RowSet, windows: Windows) -> Result<RecordBatch> {
        // (series run, first row, end row, window start) of each window, in row order.
        let mut cuts: Vec<(usize, usize, usize, i64)> = Vec::new();
        for (k, run) in set.series.iter().enumerate() {
            let (mut i, end) = (run.row_start, run.row_start + run.rows);
            while i < end {
                let (start, j) = match windows {
                    Windows::PerSeries => (set.times[i], end),
                    Windows::Every { width_ns, .. } => {
                        let start = windows.start(set.times[i]);
                        let next = start.saturating_add(width_ns);
                        (start, i + set.times[i..end].partition_point(|t| *t < next))
                    }
                };
                cuts.push((k, i, j, start));
                i = j;
            }
        }
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(TimestampNanosecondArray::from(cuts.iter().map(|c| c.3).collect::<Vec<_>>()).with_timezone("UTC"))];
        let registry = self.tags();
        for column in &self.out {
            match *column {
                OutColumn::Time => {}
                OutColumn::Tag(id) => {
                    // (series run, tag, windows) for each run of windows of one series.
                    let mut runs: Vec<(usize, Option<&str>, usize)> = Vec::new();
                    for &(k, ..) in &cuts {
                        match runs.last_mut() {
                            Some((last, _, n)) if *last == k => *n += 1,
                            _ => runs.push((k, crate::scan::tag(registry.as_deref(), set.series[k].series, id), 1)),
                        }
                    }
                    let runs: Vec<(Option<&str>, usize)> = runs.into_iter().map(|(_, tag, n)| (tag, n)).collect();
                    columns.push(Arc::new(crate::scan::repeated_strings(&runs, cuts.len())));
                }
                OutColumn::Field(id, ty) => {
                    let column = set.columns.iter().find(|c| c.id == id);
                    let valid = column.map(|c| c.valid.as_slice());
                    match column.map(|c| &c.values) {
                        Some(Values::I64(values)) => push_i64(&mut columns, &cuts, values, valid.unwrap_or_default()),
                        Some(Values::F64(values)) => push_f64(&mut columns, &cuts, values, valid.unwrap_or_default()),
                        // Not in these rows: no values in any window.
                        _ => {
                            columns.push(Arc::new(Int64Array::from(vec![0; cuts.len()])));
                            for _ in 0..3 {
                                columns.push(arrow::array::new_null_array(&crate::scan::arrow_type(ty), cuts.len()));
                            }
                        }
                    }
                }
            }
        }
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

/// Count, sum, min and max of `values` (where `valid`) over each window of `cuts`.
fn aggregate<T: Copy>(
    cuts: &[(usize, usize, usize, i64)],
    values: &[T],
    valid: &[bool],
    zero: T,
    add: impl Fn(T, T) -> T,
    less: impl Fn(T, T) -> bool,
) -> (Vec<i64>, [Vec<T>; 3], Vec<bool>) {
    let mut counts = Vec::with_capacity(cuts.len());
    let [mut sums, mut mins, mut maxs] = [(); 3].map(|()| Vec::with_capacity(cuts.len()));
    let mut some = Vec::with_capacity(cuts.len());
    for &(_, start, end, _) in cuts {
        let (mut count, mut sum, mut min, mut max) = (0i64, zero, zero, zero);
        for (&v, _) in values[start..end].iter().zip(&valid[start..end]).filter(|(_, ok)| **ok) {
            if count == 0 {
                (sum, min, max) = (v, v, v);
            } else {
                sum = add(sum, v);
                if less(v, min) {
                    min = v;
                }
                if less(max, v) {
                    max = v;
                }
            }
            count += 1;
        }
        counts.push(count);
        sums.push(sum);
        mins.push(min);
        maxs.push(max);
        some.push(count > 0);
    }
    (counts, [sums, mins, maxs], some)
}

fn push_i64(columns: &mut Vec<ArrayRef>, cuts: &[(usize, usize, usize, i64)], values: &[i64], valid: &[bool]) {
    let (counts, results, some) = aggregate(cuts, values, valid, 0, i64::wrapping_add, |a, b| a < b);
    columns.push(Arc::new(Int64Array::from(counts)));
    let nulls = NullBuffer::from(some);
    for values in results {
        columns.push(Arc::new(Int64Array::new(values.into(), Some(nulls.clone()))));
    }
}

fn push_f64(columns: &mut Vec<ArrayRef>, cuts: &[(usize, usize, usize, i64)], values: &[f64], valid: &[bool]) {
    let (counts, results, some) = aggregate(cuts, values, valid, 0.0, |a, b| a + b, |a, b| a.total_cmp(&b).is_lt());
    columns.push(Arc::new(Int64Array::from(counts)));
    let nulls = NullBuffer::from(some);
    for values in results {
        columns.push(Arc::new(Float64Array::new(values.into(), Some(nulls.clone()))));
    }
}
