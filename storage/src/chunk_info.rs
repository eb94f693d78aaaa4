//! What `system.chunks` shows of each chunk: its table, partition, time range, rows and bytes,
//! the bytes of each column, and where it is: `local`, `moving` (to the cold store) or `cold`.

use crate::engine::Storage;

/// One chunk as [`Storage::chunks`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub id: u64,
    pub table: String,
    pub partition_start_ns: i64,
    pub time_min_ns: i64,
    pub time_max_ns: i64,
    pub rows: u64,
    pub series: u64,
    /// The file's size.
    pub bytes: u64,
    /// Encoded bytes of `time` and of each column, by name, in the table's column order.
    pub column_bytes: Vec<(String, u64)>,
    /// `local`, `moving` or `cold`.
    pub location: &'static str,
    /// When it moved to where it is; `None` for a chunk that never moved.
    pub moved_at_ns: Option<i64>,
    /// Local, and old enough for the cold store: the backlog of moves.
    pub cold_due: bool,
}

impl Storage {
    /// Every chunk of every table, by table name, then partition, then age.
    pub fn chunks(&self) -> Vec<ChunkInfo> {
        let chunks: Vec<_> = self.shared.state.read().chunks.values().cloned().collect();
        let moving = self.shared.moving.lock().clone();
        let registry = self.shared.registry.lock();
        let cutoff = |table| registry.cold_cutoff_ns(table, &self.shared.config);
        let mut out: Vec<ChunkInfo> = chunks
            .iter()
            .filter_map(|chunk| {
                let footer = &chunk.reader.footer;
                let schema = registry.table_by_id(chunk.table())?;
                let time_bytes: u64 = footer.row_groups.iter().map(|g| u64::from(g.time_block.len)).sum();
                let mut column_bytes = vec![(crate::TIME_COLUMN.to_owned(), time_bytes)];
                for (i, meta) in footer.columns.iter().enumerate() {
                    // A dropped column's values are in the file but belong to no column.
                    let Some(column) = schema.column_by_id(meta.id) else { continue };
                    let bytes = footer.row_groups.iter().filter_map(|g| g.column_blocks.get(i)).map(|b| u64::from(b.len)).sum();
                    column_bytes.push((column.name.clone(), bytes));
                }
                Some(ChunkInfo {
                    id: chunk.id.0,
                    table: schema.name.clone(),
                    partition_start_ns: footer.partition_start_ns,
                    time_min_ns: footer.time_min,
                    time_max_ns: footer.time_max,
                    rows: footer.row_count,
                    series: footer.series.len() as u64,
                    bytes: chunk.reader.size_bytes,
                    column_bytes,
                    location: match (chunk.reader.is_cold(), moving.contains(&chunk.id)) {
                        (true, _) => "cold",
                        (false, true) => "moving",
                        (false, false) => "local",
                    },
                    moved_at_ns: chunk.moved_at_ns,
                    cold_due: !chunk.reader.is_cold() && cutoff(chunk.table()).is_some_and(|c| footer.time_max < c),
                })
            })
            .collect();
        drop(registry);
        out.sort_by(|a, b| (&a.table, a.partition_start_ns, a.id).cmp(&(&b.table, b.partition_start_ns, b.id)));
        out
    }
}
