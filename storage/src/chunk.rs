//! Chunk files: immutable, columnar, one table and time partition each.
//!
//! A chunk holds rows sorted by (series, time). Rows are cut into row groups of at most
//! `row_group_rows_max`; each row group stores the time column and every field column as a
//! separate block with its own CRC-32C, so a scan reads and decodes only the columns and row
//! groups it needs. Tags are not stored per row: the footer lists each series' row range and
//! time range, and the catalog maps series ids to tag values. `docs/file-format.md` gives every
//! byte; [`format`] encodes and decodes the footer, [`write`] builds files, [`read`] scans them.

pub(crate) mod format;
pub(crate) mod read;
pub(crate) mod write;

pub(crate) use format::Footer;
pub(crate) use read::ChunkReader;
pub use write::ChunkOptions;
#[cfg(feature = "engine")]
pub(crate) use write::write_chunk;

#[cfg(test)]
mod tests;
