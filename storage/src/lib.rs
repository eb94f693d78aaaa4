//! isobar's storage engine.
//!
//! Every source writes through [`Storage::write`], which returns once the batch is durable in
//! the write-ahead log, and every query reads through [`Storage::scan`], which merges the write
//! buffer and the chunk files with last-write-wins on (series, time).
//!
//! ```no_run
//! use isobar_storage::{FieldValue, Point, ScanRequest, Storage, StorageConfig, WriteBatch};
//!
//! let storage = Storage::open(StorageConfig::new("./isobar-data"))?;
//! let mut batch = WriteBatch::new();
//! batch.push("weather", Point::new(1_700_000_000_000_000_000)
//!     .tag("station_id", "st-001")
//!     .field("temperature", FieldValue::F64(21.5)));
//! storage.write(&batch)?;
//! for batch in storage.scan(&ScanRequest::all("weather"))? {
//!     println!("{} rows", batch?.num_rows());
//! }
//! # Ok::<(), isobar_storage::Error>(())
//! ```

#![cfg_attr(not(feature = "engine"), allow(dead_code))]

mod batch;
mod bytes;
pub mod calendar;
mod chunk;
pub mod codec;
mod config;
mod error;
pub mod fxhash;
mod histogram;
mod model;
mod rowset;
mod schema;
mod wal;

#[cfg(feature = "engine")]
mod buffer;
#[cfg(feature = "engine")]
mod catalog;
#[cfg(feature = "engine")]
mod chunk_info;
#[cfg(feature = "engine")]
mod cold;
#[cfg(feature = "engine")]
mod commit;
#[cfg(feature = "engine")]
mod count;
#[cfg(feature = "engine")]
mod delete;
#[cfg(feature = "engine")]
mod disk;
#[cfg(feature = "engine")]
mod engine;
#[cfg(feature = "engine")]
mod lake;
#[cfg(feature = "engine")]
mod latest;
#[cfg(feature = "engine")]
mod persist;
#[cfg(feature = "engine")]
mod postings;
#[cfg(feature = "engine")]
mod registry;
#[cfg(feature = "engine")]
mod rollup;
#[cfg(feature = "engine")]
mod scan;
#[cfg(feature = "engine")]
mod table_changes;
#[cfg(feature = "engine")]
mod verify;
#[cfg(feature = "engine")]
mod windows;

pub use arrow;
pub use chunk::ChunkOptions;
pub use config::{ColdStoreConfig, S3Config, StorageConfig};
pub use error::{DecodeError, Error, Result};
pub use histogram::{LATENCY_BUCKETS_US, LatencyHistogram, LatencySnapshot};
pub use model::{
    ChunkId, ColumnId, Columns, FieldType, FieldValue, Point, RejectedPoint, SeriesId, SourcePosition, TableId, TimestampNs, WalSequence,
    WriteBatch, WriteReceipt,
};
pub use schema::{ColumnDef, ColumnKind, SYSTEM_TABLE_PREFIX, TIME_COLUMN, TableSchema};
#[cfg(feature = "engine")]
pub use {
    chunk_info::ChunkInfo,
    cold::ColdMetrics,
    engine::{Health, Metrics, Storage, Tags},
    persist::MaintenanceReport,
    postings::{TagPredicate, TagTest},
    registry::TableAlteration,
    rollup::maintain::{RollupOf, RollupStatus},
    rollup::{FINAL_COLUMN, FinalWindow, LATE_UPDATES_COLUMN},
    scan::{Charge, Scan, ScanRequest, SeriesFilter, arrow_type},
    verify::{VerifyReport, verify_data_dir},
    windows::{PARTIAL_AGGREGATES, Windows, partial_name},
};

#[cfg(feature = "engine")]
impl Storage {
    /// Moves the chunks old enough for the cold store there now (the background does it every
    /// few seconds); returns how many moved.
    pub fn tier(&self) -> Result<usize> {
        cold::tier::tier(&self.shared)
    }

    /// Deletes the cold store's objects that no cold chunk names (what interrupted moves left);
    /// the background does it before its first move. Returns how many it deleted.
    pub fn sweep_cold(&self) -> Result<usize> {
        cold::tier::sweep(&self.shared)
    }

    /// Writes the closed days of the lake tables not written yet, or changed since, as Parquet
    /// (the background does it after each round of moves); returns how many days it wrote.
    pub fn export_lake(&self) -> Result<usize> {
        lake::export(&self.shared)
    }

    /// Chunks old enough for the cold store and still local: the backlog of moves.
    pub fn cold_backlog_chunks(&self) -> usize {
        cold::tier::due(&self.shared).len()
    }

    /// Requests and bytes of the cold store, when there is one.
    pub fn cold_metrics(&self) -> Option<&ColdMetrics> {
        self.shared.cold.as_ref().map(|c| &c.metrics)
    }

    /// Persists the write buffer into chunk files and truncates the WAL. Returns once the
    /// chunks and the truncation are durable.
    pub fn persist(&self) -> Result<MaintenanceReport> {
        persist::persist(&self.shared)
    }

    /// Merges the chunks of every partition that has more than one.
    pub fn compact(&self) -> Result<MaintenanceReport> {
        persist::compact(&self.shared, 2, 2)
    }

    /// Deletes the chunks whose rows are all past their table's retention, as the background
    /// thread does every second; returns how many.
    pub fn expire(&self) -> Result<usize> {
        persist::expire(&self.shared)
    }
}

/// Decoders exposed for fuzzing: each must return an error, never panic, on any input.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a WAL record.
    pub fn decode_wal_record(bytes: &[u8]) -> bool {
        crate::wal::decode(bytes).is_ok()
    }

    /// Decodes a chunk footer as if it ended a file whose blocks end at `blocks_end`.
    pub fn decode_chunk_footer(bytes: &[u8], blocks_end: u64) -> bool {
        crate::chunk::Footer::decode(bytes, blocks_end).is_ok()
    }

    /// Decodes a column block of `rows` rows of each type.
    pub fn decode_column_block(bytes: &[u8], rows: usize) -> bool {
        use crate::model::FieldType;
        [FieldType::F64, FieldType::I64, FieldType::Bool, FieldType::String]
            .into_iter()
            .any(|ty| crate::chunk::read::decode_column(bytes, ty, rows).is_ok())
    }

    /// Opens a chunk file and reads all of it.
    pub fn read_chunk_file(path: &std::path::Path) -> bool {
        crate::chunk::ChunkReader::open(path).and_then(|r| r.verify()).is_ok()
    }
}
