//! Row counts from chunk footers: exact ones, what `count(*)` reads instead of decoding the
//! table, and estimates that size a scan's parallelism.
//!
//! A footer gives each series' rows and time range in its chunk. Those rows are all counted
//! when the range lies inside the request's time range and no other chunk holds rows of the
//! series in overlapping times (else last-write-wins could merge some of them away). Buffered
//! rows are copied and counted when no chunk holds rows of their series around their time
//! (new readings usually are newer than every chunk). When any of this does not hold, the
//! count is left to a scan.

use crate::engine::Storage;
use crate::error::Result;
use crate::fxhash::FxHashMap;
use crate::model::SeriesId;
use crate::rowset::{RowSet, Selection};
use crate::scan::{ScanRequest, Target, snapshot};

impl Storage {
    /// How many rows a scan of `req` would return, when chunk footers tell it without
    /// decoding (see the module doc); `None` when only a scan can tell, and for a rollup
    /// table, whose open windows are not in chunks.
    pub fn row_count(&self, req: &ScanRequest) -> Result<Option<u64>> {
        let shared = &self.shared;
        let Some(target) = Target::of_raw_table(shared, req)? else { return Ok(None) };
        let selection = target.selection();
        let (chunks, buffered) = snapshot(shared, &target.schema, &selection);
        let mut count = 0u64;
        // The time ranges of each series' counted rows in chunks.
        let mut ranges: FxHashMap<SeriesId, Vec<(i64, i64)>> = FxHashMap::default();
        for chunk in &chunks {
            for s in chunk.reader.selected_series(&selection) {
                if s.time_min < selection.time_min || s.time_max > selection.time_max {
                    return Ok(None);
                }
                count += u64::from(s.rows);
                ranges.entry(s.series).or_default().push((s.time_min, s.time_max));
            }
        }
        for spans in ranges.values_mut() {
            spans.sort_unstable();
            if spans.windows(2).any(|w| w[1].0 <= w[0].1) {
                return Ok(None);
            }
        }
        let no_fields = Selection { columns: Some(&[]), ..selection };
        let rows = RowSet::merge(buffered.iter().map(|view| view.select(&target.schema, &no_fields)).collect());
        for run in &rows.series {
            let spans = ranges.get(&run.series).map(Vec::as_slice).unwrap_or_default();
            for &time in &rows.times[run.row_start..run.row_start + run.rows] {
                // The first span ending at or after `time` is the only one that may hold it.
                let at = spans.partition_point(|&(_, end)| end < time);
                if spans.get(at).is_some_and(|&(start, _)| start <= time) {
                    return Ok(None);
                }
            }
            count += run.rows as u64;
        }
        Ok(Some(count))
    }

    /// How many threads could usefully share a scan of `req` ([`crate::Scan::split`]): one per
    /// group of series it reads, by the rows chunk footers and the write buffer list for its
    /// series in chunks and segments whose times overlap its own; between 1 and `most`.
    pub fn parallel_reads(&self, req: &ScanRequest, most: usize) -> Result<usize> {
        let shared = &self.shared;
        let target = Target::new(&shared.registry.lock(), &shared.config, req)?;
        let (table, selection) = (target.schema.id, target.selection());
        let group_rows = shared.config.scan_group_rows.max(1);
        let enough = (most as u64).saturating_mul(group_rows);
        let (chunks, mut rows) = {
            let state = shared.state.read();
            let chunks: Vec<_> = state.chunks.values().filter(|c| c.table() == table).cloned().collect();
            let frozen = state.frozen.as_ref().map_or(0, |f| f.rows_at_most(table, &selection));
            (chunks, state.active.rows_at_most(table, &selection) + frozen)
        };
        for chunk in chunks.iter().filter(|c| c.reader.may_match(&selection)) {
            if rows >= enough {
                break;
            }
            rows += chunk.reader.selected_series(&selection).map(|s| u64::from(s.rows)).sum::<u64>();
        }
        Ok(usize::try_from(rows.div_ceil(group_rows)).unwrap_or(usize::MAX).clamp(1, most.max(1)))
    }
}
