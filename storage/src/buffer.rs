//! The write buffer: rows that are durable in the WAL but not yet in chunks.
//!
//! Rows are kept per table and series in the order they were committed, so the last write of a
//! key is the last row with that time. Sorting and de-duplication happen when the rows are read
//! ([`crate::rowset::RowSet::from_rows`]), which keeps the committer's work per row small.

use std::collections::{BTreeMap, BTreeSet};

use crate::fxhash::FxHashMap;
use std::time::Instant;

use crate::model::{ColumnId, FieldType, SeriesId, TableId};
use crate::rowset::{RowSet, Selection};
use crate::schema::{ColumnKind, TableSchema};
use crate::wal::{Row, TableRows};

/// Estimated bytes a buffered row costs besides its values.
const ROW_OVERHEAD_BYTES: usize = 64;

/// Rows per table and series, in commit order.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    tables: FxHashMap<TableId, FxHashMap<SeriesId, Vec<Row>>>,
    pub(crate) bytes: u64,
    pub(crate) rows: u64,
    /// When the oldest row arrived.
    pub(crate) oldest: Option<Instant>,
}

impl Buffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub(crate) fn apply(&mut self, tables: Vec<TableRows>) {
        for t in tables {
            let series = self.tables.entry(t.table).or_default();
            for row in t.rows {
                self.bytes += row_bytes(&row);
                self.rows += 1;
                series.entry(row.series).or_default().push(row);
            }
        }
        if self.rows > 0 && self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
    }

    /// Copies the rows of `table` that `selection` wants, as a row set with the wanted columns.
    pub(crate) fn select(&self, table: TableId, schema: &TableSchema, selection: &Selection<'_>) -> RowSet {
        let Some(series) = self.tables.get(&table) else { return RowSet::default() };
        let rows: Vec<&Row> = match selection.series {
            Some(ids) => ids.iter().filter_map(|id| series.get(id)).flatten().collect(),
            None => series.values().flatten().collect(),
        };
        let types = field_types(schema, |id| selection.wants_column(id));
        RowSet::from_rows(rows.into_iter().filter(|r| selection.wants_time(r.time)), &types).select(selection)
    }

    /// Every table's rows split by time partition, for persisting.
    pub(crate) fn partitions(&self, partition_ns: i64) -> BTreeMap<(TableId, i64), Vec<&Row>> {
        let mut out: BTreeMap<(TableId, i64), Vec<&Row>> = BTreeMap::new();
        for (table, series) in &self.tables {
            for row in series.values().flatten() {
                out.entry((*table, partition_start(row.time, partition_ns))).or_default().push(row);
            }
        }
        out
    }
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
