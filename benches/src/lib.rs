//! Benchmarks, reports and load generators for isobar.
//!
//! - [`codec_report`]: the codec report over sensor files (`--bin codec-report`).
//! - `input`: reading numeric columns from number-per-line and CSV files.

pub mod codec_report;
pub mod input;
