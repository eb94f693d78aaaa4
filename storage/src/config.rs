//! Storage configuration: every limit and interval of the engine, with units in the names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::chunk::ChunkOptions;
use crate::error::{Error, Result};
use crate::schema::PointLimits;

/// Configuration of one storage engine.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Root directory: `catalog/` (RocksDB: WAL and catalog) and `chunks/`.
    pub data_dir: PathBuf,
    /// How long the committer waits for writes being prepared to share one fsync (0: only
    /// those queued). It never waits when no write is being prepared.
    pub group_commit_window_us: u64,
    /// Writes waiting for the committer; a full queue makes writers wait.
    pub commit_queue_len_max: usize,
    /// Memory the write buffer may use; at the limit, writers wait for a persist.
    pub write_buffer_bytes_max: u64,
    /// Buffered bytes that start a persist.
    pub persist_buffer_bytes: u64,
    /// Oldest age of unpersisted data before a persist starts anyway.
    pub persist_interval_ms: u64,
    /// Width of a time partition; every chunk covers one.
    pub partition_duration_ms: u64,
    /// Chunks in one partition that start a background compaction of it.
    pub compaction_chunks_trigger: usize,
    /// The same for a partition still being written (the write buffer holds rows of its time
    /// range): waiting longer while a partition fills keeps a bulk load from rewriting the
    /// chunks it has just written, and a live partition from being rewritten at every few
    /// persists.
    pub compaction_busy_chunks_trigger: usize,
    /// Most rows one compaction merges in memory; a partition with more is compacted in runs of
    /// chunks adjacent in age.
    pub compaction_rows_max: u64,
    /// Whether background threads persist and compact on their own. Tests that want to decide
    /// when persists happen turn it off.
    pub background_persist: bool,
    pub chunk: ChunkOptions,
    /// Rows a scan reads at a time (its series grouped by the rows chunk footers list): what a
    /// scan holds in memory besides its snapshot, and the work one thread of a parallel scan
    /// takes at a time.
    pub scan_group_rows: u64,
    pub tags_per_series_max: usize,
    pub columns_per_table_max: usize,
    pub name_bytes_max: usize,
    pub string_bytes_max: usize,
    pub series_per_table_max: usize,
    /// Window of every raw table's rollup table (`weather_1m` for 60 s); 0 turns rollups off.
    pub rollup_interval_ms: u64,
    /// Coarser rollups of every raw table, each built from the one before it: `[3600000]`
    /// keeps `weather_1h` from `weather_1m`. Each is a multiple of the one before.
    pub rollup_coarser_intervals_ms: Vec<u64>,
    /// Per raw table, its own chain of rollup intervals in place of the two settings above,
    /// finest first (the first from raw rows, each next from the one before); empty for none.
    pub rollup_table_intervals_ms: BTreeMap<String, Vec<u64>>,
    /// How far behind the newest event time a rollup window may still take rows before it is
    /// final; later rows still update it, by recomputation, and are counted.
    pub rollup_lateness_ms: u64,
    /// How long raw tables keep rows, measured back from the retention clock: the newest event
    /// time of the table, never ahead of the wall clock. 0 keeps them forever.
    pub retention_ms: u64,
    /// The same for rollup tables, which usually keep their windows much longer.
    pub rollup_retention_ms: u64,
    /// Per table (raw or rollup, by name), its own retention in place of the two above.
    pub table_retention_ms: BTreeMap<String, u64>,
    /// How far ahead of the wall clock a point's time may be; points further ahead (a device
    /// with a wrong clock, seconds read as milliseconds) are refused with the reason. 0 turns
    /// the check off.
    pub future_tolerance_ms: u64,
    /// Writes are refused, and resume by themselves, while the file system under `data_dir` has
    /// less free space than this; a WAL write that hits a full disk would stop writes until a
    /// restart. 0 turns the check off.
    pub disk_free_min_bytes: u64,
    /// Where chunks go once cold: a local directory (by default `<data_dir>/cold`) or S3.
    pub cold_store: ColdStoreConfig,
    /// Age after which a raw table's chunks move to the cold store, measured from the newest
    /// row of the chunk to the table's clock (its newest event time, never ahead of the wall
    /// clock, as for retention). 0 keeps every chunk local.
    pub cold_after_ms: u64,
    /// The same for rollup tables.
    pub rollup_cold_after_ms: u64,
    /// Per table (raw or rollup, by name), its own age in place of the two above.
    pub table_cold_after_ms: BTreeMap<String, u64>,
    /// Local disk kept for the footers and blocks of cold chunks read recently, under
    /// `<data_dir>/cold-cache`; it survives restarts.
    pub cold_cache_bytes_max: u64,
    /// Tables (raw or rollup, by name) whose closed days are written as Parquet to the cold
    /// store's `lake/` prefix (see `docs/lake.md`).
    pub lake_tables: Vec<String>,
    /// How long after a day ends (by the table's clock) it is written to the lake.
    pub lake_delay_ms: u64,
}

/// The object store cold chunks move to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColdStoreConfig {
    /// A directory; `None`: `<data_dir>/cold`.
    Local(Option<PathBuf>),
    S3(S3Config),
}

/// An S3 bucket (or a server that speaks S3). Credentials not given here come from the
/// environment as the AWS SDKs read it (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity and container credentials, then instance metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Keys start with it (`isobar/prod`); empty for the bucket's root.
    pub prefix: String,
    pub region: Option<String>,
    /// A server other than AWS's (MinIO, moto, a VPC endpoint), e.g. `http://127.0.0.1:5000`.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Plain HTTP to the endpoint (local test servers).
    pub allow_http: bool,
}

impl StorageConfig {
    /// Production defaults, with data under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            group_commit_window_us: 500,
            commit_queue_len_max: 1024,
            write_buffer_bytes_max: 1 << 30,
            persist_buffer_bytes: 256 << 20,
            persist_interval_ms: 10 * 60 * 1000,
            partition_duration_ms: 24 * 60 * 60 * 1000,
            compaction_chunks_trigger: 4,
            compaction_busy_chunks_trigger: 12,
            compaction_rows_max: 20_000_000,
            background_persist: true,
            chunk: ChunkOptions::default(),
            scan_group_rows: 256 * 1024,
            tags_per_series_max: 64,
            columns_per_table_max: 1024,
            name_bytes_max: 256,
            string_bytes_max: 64 * 1024,
            series_per_table_max: 10_000_000,
            rollup_interval_ms: 60_000,
            rollup_coarser_intervals_ms: Vec::new(),
            rollup_table_intervals_ms: BTreeMap::new(),
            rollup_lateness_ms: 5_000,
            retention_ms: 0,
            rollup_retention_ms: 0,
            table_retention_ms: BTreeMap::new(),
            future_tolerance_ms: 24 * 60 * 60 * 1000,
            disk_free_min_bytes: 100 << 20,
            cold_store: ColdStoreConfig::Local(None),
            cold_after_ms: 0,
            rollup_cold_after_ms: 0,
            table_cold_after_ms: BTreeMap::new(),
            cold_cache_bytes_max: 1 << 30,
            lake_tables: Vec::new(),
            lake_delay_ms: 60 * 60 * 1000,
        }
    }

    /// Small buffers, no background work and no rollups: tests decide when to persist and
    /// compact, and turn rollups on when they test them.
    pub fn test_config(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            group_commit_window_us: 0,
            write_buffer_bytes_max: 64 << 20,
            persist_buffer_bytes: 16 << 20,
            background_persist: false,
            rollup_interval_ms: 0,
            chunk: ChunkOptions { row_group_rows_max: 64, codec: crate::codec::CodecOptions { pco_level: 4, zstd_level: 1 } },
            // Scans of a few hundred rows split into groups, and parallel scans have work to share.
            scan_group_rows: 100,
            ..Self::new(data_dir)
        }
    }

    /// Checks the values against each other.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::InvalidRequest(format!("storage config: {msg}")));
        if self.partition_duration_ms == 0 {
            return bad("partition_duration_ms must be positive");
        }
        if self.persist_buffer_bytes > self.write_buffer_bytes_max {
            return bad("persist_buffer_bytes must not exceed write_buffer_bytes_max");
        }
        if self.commit_queue_len_max == 0 {
            return bad("commit_queue_len_max must be positive");
        }
        if self.scan_group_rows == 0 {
            return bad("scan_group_rows must be positive");
        }
        if self.chunk.row_group_rows_max == 0 {
            return bad("chunk.row_group_rows_max must be positive");
        }
        if self.chunk.codec.pco_level > crate::codec::PCO_LEVEL_MAX {
            return bad("chunk pco level is above pco's maximum");
        }
        let default_chain = (self.rollup_interval_ms > 0).then(|| (String::from("rollup_interval_ms"), self.default_rollup_chain_ms()));
        let tables =
            self.rollup_table_intervals_ms.iter().map(|(table, chain)| (format!("rollup_table_intervals_ms.{table}"), chain.clone()));
        for (name, chain) in default_chain.into_iter().chain(tables) {
            if let Some(i) = chain.iter().find(|i| **i == 0 || 86_400_000 % **i != 0) {
                return bad(&format!("{name}: {i} ms does not divide a day (e.g. 10000, 60000, 300000, 3600000)"));
            }
            if let Some(w) = chain.windows(2).find(|w| w[1] <= w[0] || w[1] % w[0] != 0) {
                return bad(&format!("{name}: {} ms is not a larger multiple of {} ms, the rollup it is built from", w[1], w[0]));
            }
        }
        if let ColdStoreConfig::S3(s3) = &self.cold_store
            && s3.bucket.is_empty()
        {
            return bad("cold store: an S3 bucket needs a name");
        }
        if self.columns_per_table_max >= usize::from(u16::MAX) {
            return bad("columns_per_table_max must be below 65535");
        }
        Ok(())
    }

    pub(crate) fn partition_ns(&self) -> i64 {
        ms_to_ns(self.partition_duration_ms)
    }

    fn default_rollup_chain_ms(&self) -> Vec<u64> {
        std::iter::once(self.rollup_interval_ms).chain(self.rollup_coarser_intervals_ms.iter().copied()).collect()
    }

    /// How long table `table` (a rollup table when `rollup`) keeps rows; `None`: forever.
    pub(crate) fn retention_ns(&self, table: &str, rollup: bool) -> Option<i64> {
        let ms = match self.table_retention_ms.get(table) {
            Some(ms) => *ms,
            None if rollup => self.rollup_retention_ms,
            None => self.retention_ms,
        };
        (ms > 0).then(|| ms_to_ns(ms))
    }

    /// How old table `table`'s chunks (a rollup table's when `rollup`) get before they move
    /// to the cold store; `None`: they stay local.
    pub(crate) fn cold_after_ns(&self, table: &str, rollup: bool) -> Option<i64> {
        let ms = match self.table_cold_after_ms.get(table) {
            Some(ms) => *ms,
            None if rollup => self.rollup_cold_after_ms,
            None => self.cold_after_ms,
        };
        (ms > 0).then(|| ms_to_ns(ms))
    }

    /// Whether the cold store is used: chunks move there, or the lake is written there.
    pub(crate) fn tiers(&self) -> bool {
        self.cold_after_ms > 0
            || self.rollup_cold_after_ms > 0
            || self.table_cold_after_ms.values().any(|ms| *ms > 0)
            || !self.lake_tables.is_empty()
    }

    /// Whether any table may have rollups.
    pub(crate) fn has_rollups(&self) -> bool {
        self.rollup_interval_ms > 0 || self.rollup_table_intervals_ms.values().any(|chain| !chain.is_empty())
    }

    /// The rollup intervals of raw table `table`, finest first; empty when it has none.
    pub(crate) fn rollup_chain_ns(&self, table: &str) -> Vec<i64> {
        let chain = match self.rollup_table_intervals_ms.get(table) {
            Some(chain) => chain.clone(),
            None if self.rollup_interval_ms == 0 => Vec::new(),
            None => self.default_rollup_chain_ms(),
        };
        chain.into_iter().map(ms_to_ns).collect()
    }

    /// The latest acceptable point time when the wall clock reads `now_ns`, if there is one.
    pub(crate) fn future_limit_ns(&self, now_ns: i64) -> Option<i64> {
        (self.future_tolerance_ms > 0).then(|| now_ns.saturating_add(ms_to_ns(self.future_tolerance_ms)))
    }

    pub(crate) fn rollup_lateness_ns(&self) -> i64 {
        ms_to_ns(self.rollup_lateness_ms)
    }

    pub(crate) fn point_limits(&self) -> PointLimits {
        PointLimits {
            tags_per_series_max: self.tags_per_series_max,
            columns_per_table_max: self.columns_per_table_max,
            name_bytes_max: self.name_bytes_max,
            string_bytes_max: self.string_bytes_max,
        }
    }
}

fn ms_to_ns(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000)
}
