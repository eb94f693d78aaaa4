//! isobar's query layer: DataFusion table providers over storage snapshots, time-series
//! functions, rollup and system tables, and the options that keep SQL away from the server's
//! files.
//!
//! It reads only through `isobar_storage::Storage::scan`. The DataFusion catalog arrives with
//! the SQL work; until then this crate holds the shared vocabulary.

pub use isobar_storage::{Scan, ScanRequest, SeriesFilter};
