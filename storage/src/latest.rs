//! Last values: the newest row of every series, kept as rows are committed, so that "the latest
//! reading of each sensor" reads one row per series instead of every row of the table.
//!
//! The committer offers each committed row in sequence order; a row at its series' newest time
//! or later replaces the kept one, so an overwrite of the newest time replaces it whole, as
//! last-write-wins does in scans. Persist and compaction store each new chunk's newest row of
//! each series in the catalog (family `latest`, put with the chunk's entry and deleted with
//! it). Open rebuilds the rows from the chunks that hold each series' newest time (their stored
//! rows; a chunk written before isobar kept them is decoded), then the WAL replay offers the
//! buffered rows. Rows past a table's retention are left out when read, as scans leave them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::CatalogStore;
use crate::engine::{ChunkHandle, Shared, Storage};
use crate::error::Result;
use crate::fxhash::FxHashMap;
use crate::model::{ChunkId, SeriesId, TableId};
use crate::rowset::{RowSet, Selection};
use crate::scan::{RollupView, Scan, ScanRequest, SeriesFilter, Target, scan_view};
use crate::wal::{self, Row, TableRows};

/// The newest row of every series, by table.
#[derive(Debug, Default)]
pub(crate) struct Latest {
    tables: FxHashMap<TableId, FxHashMap<SeriesId, Row>>,
}

impl Latest {
    /// Takes committed rows, in sequence order.
    pub(crate) fn note(&mut self, tables: &[TableRows]) {
        for t in tables {
            let newest = self.tables.entry(t.table).or_default();
            for row in &t.rows {
                offer(newest, row);
            }
        }
    }

    /// The newest rows of the series in chunks, from what the catalog stored with each chunk.
    pub(crate) fn rebuild(store: &CatalogStore, chunks: &BTreeMap<ChunkId, Arc<ChunkHandle>>) -> Result<Self> {
        let mut by_age: Vec<&Arc<ChunkHandle>> = chunks.values().collect();
        by_age.sort_by_key(|c| c.age_key());
        // Each series' newest time and the chunks with a row at it, oldest first.
        let mut newest: FxHashMap<(TableId, SeriesId), (i64, Vec<usize>)> = FxHashMap::default();
        for (i, chunk) in by_age.iter().enumerate() {
            for s in &chunk.reader.footer.series {
                let entry = newest.entry((chunk.table(), s.series)).or_insert((i64::MIN, Vec::new()));
                if s.time_max > entry.0 {
                    *entry = (s.time_max, vec![i]);
                } else if s.time_max == entry.0 {
                    entry.1.push(i);
                }
            }
        }
        let mut wanted: Vec<Vec<SeriesId>> = vec![Vec::new(); by_age.len()];
        for ((_, series), (_, holders)) in &newest {
            for &i in holders {
                wanted[i].push(*series);
            }
        }
        let mut latest = Self::default();
        for (chunk, mut series) in by_age.into_iter().zip(wanted) {
            if series.is_empty() {
                continue;
            }
            series.sort_unstable();
            let table = chunk.table();
            let rows = match store.chunk_latest(chunk.id)? {
                Some(stored) => stored.into_iter().flat_map(|t| t.rows).filter(|r| series.binary_search(&r.series).is_ok()).collect(),
                None => {
                    let time_min = series.iter().map(|s| newest[&(table, *s)].0).min().unwrap_or(i64::MIN);
                    let selection = Selection { series: Some(&series), time_min, time_max: i64::MAX, columns: None };
                    chunk.reader.read(&selection)?.last_rows()
                }
            };
            let kept = latest.tables.entry(table).or_default();
            // Chunks come oldest first, so a newer chunk's row at the same time wins.
            for row in &rows {
                offer(kept, row);
            }
        }
        Ok(latest)
    }
}

/// Keeps `row` if it is at its series' newest time or later.
fn offer(newest: &mut FxHashMap<SeriesId, Row>, row: &Row) {
    match newest.get_mut(&row.series) {
        Some(kept) if kept.time > row.time => {}
        Some(kept) => *kept = row.clone(),
        None => {
            newest.insert(row.series, row.clone());
        }
    }
}

/// What the catalog keeps with a new chunk of `rows`: its newest row of each series.
pub(crate) fn chunk_latest(table: TableId, rows: &RowSet) -> Vec<u8> {
    wal::encode(&[TableRows { table, rows: rows.last_rows() }])
}

impl Storage {
    /// Whether [`Self::latest`] answers for `table`: it exists and is not a rollup table.
    pub fn keeps_latest(&self, table: &str) -> bool {
        let registry = self.shared.registry.lock();
        registry.table(table).is_some_and(|t| !registry.rollup_sources.contains_key(&t.id))
    }

    /// Whether tag `column` tells the series of `table` apart (every series has it, each with
    /// a value of its own), so that grouping by it puts one series in each group. A new series
    /// can end that; it changes [`Storage::plan_generation`].
    pub fn tag_is_key(&self, table: &str, column: &str) -> bool {
        let registry = self.shared.registry.lock();
        let Some(schema) = registry.table(table) else { return false };
        schema.column(column).is_some_and(|c| c.kind == crate::schema::ColumnKind::Tag && registry.tag_is_key(schema.id, c.id))
    }

    /// The newest row, within the request's time range, of each series the request selects,
    /// as a scan returns rows: what `last_value(x ORDER BY time)` per series reads. Reads one
    /// kept row per series; only a series whose newest row is after the range is scanned, for
    /// the range. `None` for a rollup table, whose open windows are not rows.
    pub fn latest(&self, req: &ScanRequest) -> Result<Option<Scan>> {
        let shared = &self.shared;
        let Some(target) = Target::of_raw_table(shared, req)? else { return Ok(None) };
        shared.metrics.latest_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mut rows, mut after) = (Vec::new(), Vec::new());
        if let Some(newest) = shared.state.read().latest.tables.get(&target.schema.id) {
            for series in target.tags.keys() {
                match newest.get(series) {
                    Some(row) if row.time < target.time_min => {}
                    Some(row) if row.time <= target.time_max => rows.push(row.clone()),
                    Some(_) => after.push(*series),
                    None => {}
                }
            }
        }
        if !after.is_empty() {
            after.sort_unstable();
            rows.extend(newest_in_range(shared, &ScanRequest { series: SeriesFilter::Ids(after), ..req.clone() })?);
        }
        let selection = target.selection();
        let set = RowSet::from_one_row_per_series(rows, &crate::buffer::field_types(&target.schema, |id| selection.wants_column(id)));
        let mut scan = target.into_scan(&shared.config);
        scan.add_rows(set);
        Ok(Some(scan))
    }
}

/// The newest row of each series `req` selects within its time range, by scanning it.
fn newest_in_range(shared: &Shared, req: &ScanRequest) -> Result<Vec<Row>> {
    let mut scan = scan_view(shared, req, RollupView::Exact)?;
    let mut newest: FxHashMap<SeriesId, Row> = FxHashMap::default();
    while let Some(set) = scan.next_rows()? {
        for row in set.last_rows() {
            offer(&mut newest, &row);
        }
    }
    Ok(newest.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StorageConfig;
    use crate::model::{FieldValue, Point, WriteBatch};

    fn write(storage: &Storage, rows: &[(&str, i64, f64)]) {
        let mut batch = WriteBatch::new();
        for (station, time, v) in rows {
            batch.push("m", Point::new(*time).tag("station", station).field("v", FieldValue::F64(*v)));
        }
        storage.write(&batch).expect("write");
    }

    fn kept(latest: &Latest) -> Vec<(i64, Vec<u64>)> {
        let mut rows: Vec<_> = latest.tables.values().flat_map(|t| t.values()).map(|r| (r.time, bits(r))).collect();
        rows.sort_unstable();
        rows
    }

    fn bits(row: &Row) -> Vec<u64> {
        row.fields.iter().map(|(_, v)| if let FieldValue::F64(v) = v { v.to_bits() } else { 0 }).collect()
    }

    #[test]
    fn chunks_without_stored_rows_are_decoded_to_the_same_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = StorageConfig::test_config(dir.path());
        config.partition_duration_ms = 1;
        let storage = Storage::open(config).expect("open");
        // Newest times in different chunks and partitions; an overwrite of a newest time in a
        // later chunk; a late row that is not the newest.
        write(&storage, &[("a", 1_000_000, 1.0), ("a", 3_000_000, 2.0), ("b", 2_000_000, 3.0)]);
        storage.persist().expect("persist");
        write(&storage, &[("a", 3_000_000, 4.0), ("b", 1_000_000, 5.0), ("c", 4_500_000, 6.0)]);
        storage.persist().expect("persist");
        let shared = &storage.shared;
        let chunks = shared.state.read().chunks.clone();
        assert!(chunks.len() >= 4, "rows of several partitions in two persists: {} chunks", chunks.len());
        let stored = Latest::rebuild(&shared.store, &chunks).expect("rebuild from stored rows");
        let empty_dir = tempfile::tempdir().expect("tempdir");
        let without = CatalogStore::open(empty_dir.path()).expect("a catalog without stored rows");
        let decoded = Latest::rebuild(&without, &chunks).expect("rebuild by decoding");
        let expected = vec![(2_000_000, vec![3f64.to_bits()]), (3_000_000, vec![4f64.to_bits()]), (4_500_000, vec![6f64.to_bits()])];
        assert_eq!(kept(&stored), expected);
        assert_eq!(kept(&decoded), expected);
        assert_eq!(kept(&shared.state.read().latest), expected);
    }
}
