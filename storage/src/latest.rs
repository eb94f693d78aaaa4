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
use std::collections::hash_map::Entry;
use std::sync::Arc;

use crate::batch::{RowRef, TableRows};
use crate::catalog::CatalogStore;
use crate::engine::{ChunkHandle, Shared, Storage};
use crate::error::Result;
use crate::fxhash::FxHashMap;
use crate::model::{ChunkId, ColumnId, FieldType, SeriesId, TableId};
use crate::rowset::{Column, RowSet, Selection, SeriesRun};
use crate::scan::{RollupView, Scan, ScanRequest, SeriesFilter, Target, scan_view};
use crate::wal;

/// The newest row of every series, by table.
#[derive(Debug, Default)]
pub(crate) struct Latest {
    tables: FxHashMap<TableId, Newest>,
}

/// The newest row of each series of one table, in columns: a series takes the next slot when
/// its first row comes, so that reading every series copies whole columns, and keeping a row
/// sets values in place.
#[derive(Debug, Default)]
struct Newest {
    slot_of: FxHashMap<SeriesId, usize>,
    /// The series of each slot.
    series: Vec<SeriesId>,
    times: Vec<i64>,
    /// Sorted by column id, each with one value per slot.
    columns: Vec<Column>,
}

impl Latest {
    /// Forgets the rows of a dropped table.
    pub(crate) fn remove_table(&mut self, table: TableId) {
        self.tables.remove(&table);
    }

    /// Takes committed rows, in sequence order.
    pub(crate) fn note(&mut self, tables: &[TableRows]) {
        for t in tables {
            let newest = self.tables.entry(t.table).or_default();
            // Of a series' rows in a write, the last at its newest time is the one kept.
            for (_, numbers) in t.index.runs() {
                if let Some(i) = numbers.iter().max_by_key(|i| t.rows.time(**i as usize)) {
                    newest.offer(t.rows.get(*i as usize));
                }
            }
        }
    }

    /// The newest rows of the series in chunks, from what the catalog stored with each chunk.
    pub(crate) fn rebuild(store: &CatalogStore, chunks: &BTreeMap<ChunkId, Arc<ChunkHandle>>) -> Result<Self> {
        Self::of_chunks(Some(store), chunks.values(), |_| true)
    }

    /// The newest rows of the series `wanted` accepts in `chunks` (of any tables), from what
    /// the catalog (`store`) stored with each chunk or, without it, read from the chunks.
    pub(crate) fn of_chunks<'a>(
        store: Option<&CatalogStore>,
        chunks: impl IntoIterator<Item = &'a Arc<ChunkHandle>>,
        wanted: impl Fn(SeriesId) -> bool,
    ) -> Result<Self> {
        let mut by_age: Vec<&Arc<ChunkHandle>> = chunks.into_iter().collect();
        by_age.sort_by_key(|c| c.age_key());
        // Each series' newest time and the chunks with a row at it, oldest first.
        let mut newest: FxHashMap<(TableId, SeriesId), (i64, Vec<usize>)> = FxHashMap::default();
        for (i, chunk) in by_age.iter().enumerate() {
            for s in chunk.reader.footer.series.iter().filter(|s| wanted(s.series)) {
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
            let stored = match store.map(|store| store.chunk_latest(chunk.id)).transpose()?.flatten() {
                Some(stored) => stored,
                None => {
                    let time_min = series.iter().map(|s| newest[&(table, *s)].0).min().unwrap_or(i64::MIN);
                    let selection = Selection { series: Some(&series), time_min, time_max: i64::MAX, columns: None };
                    vec![TableRows::new(table, chunk.reader.read(&selection)?.last_rows())]
                }
            };
            let kept = latest.tables.entry(table).or_default();
            // Chunks come oldest first, so a newer chunk's row at the same time wins.
            for row in stored.iter().flat_map(|t| t.rows.iter()).filter(|r| series.binary_search(&r.series).is_ok()) {
                kept.offer(row);
            }
        }
        Ok(latest)
    }

    /// Takes the newest rows of `series` (sorted) of `table` from `fresh` (see
    /// [`Self::of_chunks`]) and then `buffered`, in place of those kept: after a delete.
    pub(crate) fn replace_series(&mut self, table: TableId, series: &[SeriesId], mut fresh: Latest, buffered: &RowSet) {
        let newest = self.tables.entry(table).or_default();
        newest.forget(series);
        if let Some(fresh) = fresh.tables.remove(&table) {
            for slot in 0..fresh.series.len() {
                newest.offer_slot(&fresh, slot);
            }
        }
        for row in buffered.last_rows().iter() {
            newest.offer(row);
        }
    }

    /// Puts each table's slots in series order, the order new series mostly come in, so that
    /// reads need not sort. Open calls it once the chunks' and the WAL's rows are in.
    pub(crate) fn sort(&mut self) {
        for newest in self.tables.values_mut() {
            newest.sort();
        }
    }
}

impl Newest {
    /// Keeps `row` if it is at its series' newest time or later.
    fn offer(&mut self, row: RowRef<'_>) {
        let slot = match self.slot_of.entry(row.series) {
            Entry::Occupied(e) if self.times[*e.get()] > row.time => return,
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let slot = self.series.len();
                e.insert(slot);
                self.series.push(row.series);
                self.times.push(row.time);
                for column in &mut self.columns {
                    column.push_null(1);
                }
                slot
            }
        };
        self.times[slot] = row.time;
        for (id, value) in row.fields {
            if let Err(i) = self.columns.binary_search_by_key(id, |c| c.id) {
                self.columns.insert(i, Column::nulls(*id, value.field_type(), self.series.len()));
            }
        }
        // The row replaces the kept one whole: a field it lacks is null.
        for column in &mut self.columns {
            let value = row.fields.binary_search_by_key(&column.id, |(id, _)| *id).ok().map(|j| &row.fields[j].1);
            column.set(slot, value);
        }
    }

    /// Drops the kept rows of `series` (sorted).
    fn forget(&mut self, series: &[SeriesId]) {
        let keep: Vec<usize> = (0..self.series.len()).filter(|&slot| series.binary_search(&self.series[slot]).is_err()).collect();
        if keep.len() == self.series.len() {
            return;
        }
        self.series = keep.iter().map(|&slot| self.series[slot]).collect();
        self.times = keep.iter().map(|&slot| self.times[slot]).collect();
        self.columns = self.columns.iter().map(|c| c.gather(&keep)).collect();
        self.slot_of = self.series.iter().enumerate().map(|(slot, series)| (*series, slot)).collect();
    }

    /// Offers the row kept in `other`'s `slot`.
    fn offer_slot(&mut self, other: &Newest, slot: usize) {
        let fields: Vec<(ColumnId, crate::model::FieldValue)> =
            other.columns.iter().filter(|c| c.valid[slot]).map(|c| (c.id, c.values.get(slot))).collect();
        self.offer(RowRef { series: other.series[slot], time: other.times[slot], fields: &fields });
    }

    fn sort(&mut self) {
        let mut order: Vec<usize> = (0..self.series.len()).collect();
        order.sort_unstable_by_key(|&slot| self.series[slot]);
        self.series = order.iter().map(|&slot| self.series[slot]).collect();
        self.times = order.iter().map(|&slot| self.times[slot]).collect();
        self.columns = self.columns.iter().map(|c| c.gather(&order)).collect();
        self.slot_of = self.series.iter().enumerate().map(|(slot, series)| (*series, slot)).collect();
    }

    /// The kept rows of `series` (sorted; `None`: every series) that are within the time range,
    /// with the columns of `column_types`, and the series whose kept row is after the range.
    fn read(
        &self,
        series: Option<&[SeriesId]>,
        time_min: i64,
        time_max: i64,
        column_types: &BTreeMap<ColumnId, FieldType>,
    ) -> (RowSet, Vec<SeriesId>) {
        let mut after = Vec::new();
        let mut within = |slot: &usize| match self.times[*slot] {
            time if time < time_min => false,
            time if time > time_max => {
                after.push(self.series[*slot]);
                false
            }
            _ => true,
        };
        let mut slots: Vec<usize> = match series {
            None => (0..self.series.len()).filter(&mut within).collect(),
            Some(ids) => ids.iter().filter_map(|id| self.slot_of.get(id).copied()).filter(&mut within).collect(),
        };
        if !slots.is_sorted_by_key(|&slot| self.series[slot]) {
            slots.sort_unstable_by_key(|&slot| self.series[slot]);
        }
        let columns = column_types
            .iter()
            .map(|(id, ty)| match self.columns.binary_search_by_key(id, |c| c.id) {
                Ok(i) => self.columns[i].gather(&slots),
                Err(_) => Column::nulls(*id, *ty, slots.len()),
            })
            .collect();
        let set = RowSet {
            series: slots.iter().enumerate().map(|(row, &slot)| SeriesRun { series: self.series[slot], row_start: row, rows: 1 }).collect(),
            times: slots.iter().map(|&slot| self.times[slot]).collect(),
            columns,
        };
        (set, after)
    }

    /// Of `series` (sorted; `None`: every series), those whose kept row is within the time
    /// range, with its time, and those whose kept row is after it.
    fn within(&self, series: Option<&[SeriesId]>, time_min: i64, time_max: i64) -> (Vec<(SeriesId, i64)>, Vec<SeriesId>) {
        let (mut within, mut after) = (Vec::new(), Vec::new());
        let mut offer = |slot: usize| match self.times[slot] {
            time if time < time_min => {}
            time if time > time_max => after.push(self.series[slot]),
            time => within.push((self.series[slot], time)),
        };
        match series {
            None => (0..self.series.len()).for_each(&mut offer),
            Some(ids) => ids.iter().filter_map(|id| self.slot_of.get(id).copied()).for_each(&mut offer),
        }
        (within, after)
    }
}

/// What the catalog keeps with a new chunk of `rows`: its newest row of each series.
pub(crate) fn chunk_latest(table: TableId, rows: &RowSet) -> Vec<u8> {
    wal::encode(&[(table, rows.last_rows())])
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
        let selection = target.selection();
        let column_types = crate::buffer::field_types(&target.schema, |id| selection.wants_column(id));
        let (mut set, after) = match shared.state.read().latest.tables.get(&target.schema.id) {
            Some(newest) => newest.read(selection.series, target.time_min, target.time_max, &column_types),
            None => (RowSet::default(), Vec::new()),
        };
        if !after.is_empty() {
            let rest = newest_in_range(shared, &ScanRequest { series: SeriesFilter::Ids(after), ..req.clone() }, &column_types)?;
            set = RowSet::merge(vec![set, rest]);
        }
        let mut scan = target.into_scan(shared);
        scan.add_ready(set);
        Ok(Some(scan))
    }

    /// One row for each distinct value of tag `tag` among the series `req` selects that have a
    /// row within its time range, `NULL` once when such a series lacks the tag: what `SELECT
    /// DISTINCT tag` reads, from the series index and each series' newest row instead of rows.
    /// Each row is a row of a series with that value (at a time within the range), read as a
    /// scan reads rows, with the request's columns; fields read as `NULL`. Only a series whose
    /// newest row is after the range is scanned, for the range. `None` for a rollup table.
    pub fn distinct_tag(&self, req: &ScanRequest, tag: &str) -> Result<Option<Scan>> {
        let shared = &self.shared;
        let Some(target) = Target::of_raw_table(shared, req)? else { return Ok(None) };
        let column = match target.schema.column(tag) {
            Some(c) if c.kind == crate::schema::ColumnKind::Tag => c.id,
            _ => return Err(crate::error::Error::InvalidRequest(format!("{tag} is not a tag of {}", target.schema.name))),
        };
        shared.metrics.latest_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let selection = target.selection();
        let (mut within, after) = match shared.state.read().latest.tables.get(&target.schema.id) {
            Some(newest) => newest.within(selection.series, target.time_min, target.time_max),
            None => (Vec::new(), Vec::new()),
        };
        if !after.is_empty() {
            let req = ScanRequest { series: SeriesFilter::Ids(after), columns: Some(Vec::new()), ..req.clone() };
            let rows = newest_in_range(shared, &req, &BTreeMap::new())?;
            within.extend(rows.series.iter().map(|run| (run.series, rows.times[run.row_start])));
        }
        let within = TimeById::new(within);
        let mut rows: Vec<(SeriesId, i64)> = {
            let registry = shared.registry.lock();
            registry.one_series_per_value(target.schema.id, column, |id| within.get(id))
        };
        rows.sort_unstable();
        let set = RowSet {
            series: rows.iter().enumerate().map(|(row, (series, _))| SeriesRun { series: *series, row_start: row, rows: 1 }).collect(),
            times: rows.iter().map(|(_, time)| *time).collect(),
            columns: crate::buffer::field_types(&target.schema, |id| selection.wants_column(id))
                .into_iter()
                .map(|(id, ty)| Column::nulls(id, ty, rows.len()))
                .collect(),
        };
        let mut scan = target.into_scan(shared);
        scan.add_ready(set);
        Ok(Some(scan))
    }
}

/// (series, time) pairs found by series id: through a vector of positions over the ids' span
/// when they are dense (as ids handed out in sequence are), else a map.
struct TimeById {
    times: Vec<(SeriesId, i64)>,
    index: Index,
}

enum Index {
    Dense { first: u64, positions: Vec<u32> },
    Sparse(FxHashMap<SeriesId, usize>),
}

impl TimeById {
    fn new(times: Vec<(SeriesId, i64)>) -> Self {
        let first = times.iter().map(|(s, _)| s.0).min().unwrap_or(0);
        let span = times.iter().map(|(s, _)| (s.0 - first).saturating_add(1)).max().unwrap_or(0);
        let index = match u32::try_from(times.len()) {
            Ok(_) if span <= 4 * times.len() as u64 + 1024 => {
                let mut positions = vec![u32::MAX; span as usize];
                for (i, (series, _)) in times.iter().enumerate() {
                    positions[(series.0 - first) as usize] = i as u32;
                }
                Index::Dense { first, positions }
            }
            _ => Index::Sparse(times.iter().enumerate().map(|(i, (series, _))| (*series, i)).collect()),
        };
        Self { times, index }
    }

    fn get(&self, series: SeriesId) -> Option<(SeriesId, i64)> {
        let i = match &self.index {
            Index::Dense { first, positions } => {
                let at = *positions.get(usize::try_from(series.0.checked_sub(*first)?).ok()?)?;
                (at != u32::MAX).then_some(at as usize)?
            }
            Index::Sparse(map) => *map.get(&series)?,
        };
        Some(self.times[i])
    }
}

/// The newest row of each series `req` selects within its time range, by scanning it.
fn newest_in_range(shared: &Shared, req: &ScanRequest, column_types: &BTreeMap<ColumnId, FieldType>) -> Result<RowSet> {
    let mut scan = scan_view(shared, req, RollupView::Exact)?;
    let mut newest = Newest::default();
    while let Some(set) = scan.next_rows()? {
        for row in set.last_rows().iter() {
            newest.offer(row);
        }
    }
    Ok(newest.read(None, i64::MIN, i64::MAX, column_types).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Row;
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
        let rows = latest.tables.values().flat_map(|newest| {
            let types = newest.columns.iter().map(|c| (c.id, c.values.field_type())).collect();
            newest.read(None, i64::MIN, i64::MAX, &types).0.to_rows()
        });
        let mut rows: Vec<_> = rows.map(|r| (r.time, bits(&r))).collect();
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
        let without = CatalogStore::open(empty_dir.path(), 0).expect("a catalog without stored rows");
        let decoded = Latest::rebuild(&without, &chunks).expect("rebuild by decoding");
        let expected = vec![(2_000_000, vec![3f64.to_bits()]), (3_000_000, vec![4f64.to_bits()]), (4_500_000, vec![6f64.to_bits()])];
        assert_eq!(kept(&stored), expected);
        assert_eq!(kept(&decoded), expected);
        assert_eq!(kept(&shared.state.read().latest), expected);
    }

    fn row(series: u64, time: i64, v: Option<f64>, w: Option<i64>) -> Row {
        let fields = [v.map(|v| (ColumnId(0), FieldValue::F64(v))), w.map(|w| (ColumnId(1), FieldValue::I64(w)))];
        Row { series: SeriesId(series), time, fields: fields.into_iter().flatten().collect() }
    }

    proptest::proptest! {
        /// Rows offered in any order of series and times, with overwrites, rows lacking a
        /// field and a column no row has, read back for some series and a time range.
        #[test]
        fn kept_columns_read_as_the_newest_rows(
            rows in proptest::collection::vec((0u64..12, 0i64..20, proptest::option::of(-9i32..9), proptest::option::of(-9i64..9)), 0..60),
            sorted: bool,
            series in proptest::option::of(proptest::collection::btree_set(0u64..14, 0..8)),
            (time_min, span) in (0i64..20, 0i64..20),
        ) {
            let time_max = time_min + span;
            let mut newest = Newest::default();
            let mut expected: BTreeMap<SeriesId, Row> = BTreeMap::new();
            for (s, t, v, w) in rows {
                let row = row(s, t, v.map(f64::from), w);
                newest.offer(row.as_row_ref());
                if expected.get(&row.series).is_none_or(|kept| kept.time <= t) {
                    expected.insert(row.series, row);
                }
            }
            if sorted {
                newest.sort();
            }
            let types = BTreeMap::from([(ColumnId(0), FieldType::F64), (ColumnId(1), FieldType::I64), (ColumnId(2), FieldType::String)]);
            let wanted: Option<Vec<SeriesId>> = series.map(|s| s.into_iter().map(SeriesId).collect());
            let (set, after) = newest.read(wanted.as_deref(), time_min, time_max, &types);
            let chosen: Vec<&Row> = expected.values().filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.series))).collect();
            let within = chosen.iter().copied().filter(|r| (time_min..=time_max).contains(&r.time));
            proptest::prop_assert_eq!(set.to_rows(), RowSet::from_rows(within, &types).to_rows());
            let mut after = after;
            after.sort_unstable();
            let later: Vec<SeriesId> = chosen.iter().filter(|r| r.time > time_max).map(|r| r.series).collect();
            proptest::prop_assert_eq!(after, later);
            proptest::prop_assert_eq!(set.columns.len(), 3);
        }
    }

    #[test]
    fn times_are_found_by_series_id_whether_ids_are_dense_or_far_apart() {
        let dense: Vec<(SeriesId, i64)> = (10..2_000u64).rev().map(|id| (SeriesId(id), id as i64 * 3)).collect();
        let far = vec![(SeriesId(5), 1), (SeriesId(u64::MAX), 2), (SeriesId(1 << 40), 3)];
        let widest = vec![(SeriesId(0), 1), (SeriesId(u64::MAX), 2)];
        for times in [dense, far, widest] {
            let by_id = TimeById::new(times.clone());
            for (series, time) in &times {
                assert_eq!(by_id.get(*series), Some((*series, *time)));
            }
            for missing in [4, 6, 2_000, 1 << 39, u64::MAX - 1] {
                assert_eq!(by_id.get(SeriesId(missing)), None, "{missing}");
            }
        }
    }
}
