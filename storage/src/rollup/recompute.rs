//! Recomputing rollup windows from raw rows: for the maintainer, which rewrites windows whose
//! values were replaced or that took late rows, and for scans, which must read such a window
//! exact while its stored row waits to be rewritten.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::batch::Row;
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::fxhash::FxHashMap;
use crate::model::{ColumnId, FieldType, FieldValue, SeriesId, TableId};
use crate::rollup::{Fix, Window, window_start};
use crate::rowset::{RowSet, Selection, Values};
use crate::scan::{RollupView, ScanRequest, SeriesFilter, scan_view};

/// Waits until every write prepared up to `sequence` is in the write buffer.
pub(crate) fn wait_applied(shared: &Shared, sequence: u64) -> Result<()> {
    while shared.state.read().applied_sequence.0 < sequence {
        if let Some(reason) = shared.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Every row of `rows` as (series, time, numeric fields).
pub(crate) fn for_each_row(rows: &RowSet, mut f: impl FnMut(SeriesId, i64, &[(ColumnId, FieldValue)])) {
    let mut fields = Vec::with_capacity(rows.columns.len());
    for run in &rows.series {
        for i in run.row_start..run.row_start + run.rows {
            fields.clear();
            fields.extend(rows.columns.iter().filter(|c| c.valid[i]).filter_map(|c| Some((c.id, c.values.number(i)?))));
            f(run.series, rows.times[i], &fields);
        }
    }
}

/// The windows (source series, start) of `wanted`, from the rows of `raw_table` (raw rows, or
/// a finer rollup's final rows) as they are now, in one scan. A window without rows comes back
/// empty.
pub(crate) fn recompute(
    shared: &Shared,
    raw_table: &str,
    interval_ns: i64,
    wanted: &[(SeriesId, i64)],
) -> Result<FxHashMap<(SeriesId, i64), Window>> {
    let mut windows: FxHashMap<(SeriesId, i64), Window> = wanted.iter().map(|&(raw, start)| ((raw, start), Window::new(raw))).collect();
    let (Some(first), Some(last)) = (wanted.iter().map(|w| w.1).min(), wanted.iter().map(|w| w.1).max()) else { return Ok(windows) };
    let mut series: Vec<SeriesId> = wanted.iter().map(|w| w.0).collect();
    series.sort_unstable();
    series.dedup();
    let request = ScanRequest {
        table: raw_table.to_owned(),
        time_min_ns: first,
        time_max_ns: last.saturating_add(interval_ns - 1),
        series: SeriesFilter::Ids(series),
        columns: None,
    };
    let mut rows = scan_view(shared, &request, RollupView::Final)?;
    while let Some(set) = rows.next_rows()? {
        for_each_row(&set, |raw, time, fields| {
            if let Some(window) = windows.get_mut(&(raw, window_start(time, interval_ns))) {
                window.add(time, fields);
            }
        });
    }
    Ok(windows)
}

/// The rows a scan of the rollup of raw table `source` puts over the stored ones for `fixes`,
/// windows being rewritten: recomputed from raw rows once every write prepared up to
/// `prepared_sequence` is applied, with the columns of `column_types` and the rows `selection`
/// wants. Their `late_updates` counts only the late rows the stored (or pending) row lacks:
/// [`correct`] adds the rest as the scan reads them.
pub(crate) fn corrections(
    shared: &Shared,
    source: TableId,
    fixes: &[Fix],
    prepared_sequence: u64,
    column_types: &BTreeMap<ColumnId, FieldType>,
    selection: &Selection<'_>,
) -> Result<RowSet> {
    if fixes.is_empty() {
        return Ok(RowSet::default());
    }
    wait_applied(shared, prepared_sequence)?;
    let (raw_table, interval_ns) = {
        let registry = shared.registry.lock();
        let interval_ns = registry.rollups.get(&source).map(|r| r.entry.interval_ns);
        (registry.table_by_id(source).map(|t| t.name.clone()), interval_ns)
    };
    let (Some(raw_table), Some(interval_ns)) = (raw_table, interval_ns) else { return Ok(RowSet::default()) };
    let wanted: Vec<(SeriesId, i64)> = fixes.iter().map(|f| (f.raw_series, f.start_ns)).collect();
    let windows = recompute(shared, &raw_table, interval_ns, &wanted)?;
    let registry = shared.registry.lock();
    let Some(rollup) = registry.rollups.get(&source) else { return Ok(RowSet::default()) };
    let rows: Vec<Row> = fixes
        .iter()
        .filter_map(|f| Some((f, windows.get(&(f.raw_series, f.start_ns)).filter(|w| !w.is_empty())?)))
        .map(|(f, window)| rollup.row(f.series, f.start_ns, window, true, f.late_rows))
        .collect();
    Ok(RowSet::from_rows(&rows, column_types).select(selection))
}

/// `merged` (rows a scan read) with the rows of `fixed` (from [`corrections`], of the same
/// series and times) in place of its own, each `late_updates` (column `late_column`) raised
/// by the count in `merged`'s row.
pub(crate) fn correct(merged: RowSet, mut fixed: RowSet, late_column: ColumnId) -> RowSet {
    if fixed.is_empty() {
        return merged;
    }
    let RowSet { series, times, columns } = &mut fixed;
    if let Some(Values::I64(late)) = columns.iter_mut().find(|c| c.id == late_column).map(|c| &mut c.values) {
        for run in series.iter() {
            for i in run.row_start..run.row_start + run.rows {
                late[i] = late[i].saturating_add(late_updates(&merged, run.series, times[i], late_column));
            }
        }
    }
    RowSet::merge(vec![merged, fixed])
}

/// The `late_updates` of the row of `series` at `time` in `set`; 0 without one.
fn late_updates(set: &RowSet, series: SeriesId, time: i64, late_column: ColumnId) -> i64 {
    let Ok(run) = set.series.binary_search_by_key(&series, |r| r.series).map(|i| &set.series[i]) else { return 0 };
    let times = &set.times[run.row_start..run.row_start + run.rows];
    let Ok(i) = times.binary_search(&time) else { return 0 };
    let Some(column) = set.columns.iter().find(|c| c.id == late_column) else { return 0 };
    match column.valid[run.row_start + i].then(|| column.values.number(run.row_start + i)) {
        Some(Some(FieldValue::I64(n))) => n,
        _ => 0,
    }
}
