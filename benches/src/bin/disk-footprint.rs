//! `disk-footprint [--series N] [--seconds S]`: bytes per row on disk for seed-shaped rows.
//!
//! Writes S seconds of readings from N sensors through the storage engine, persists and
//! compacts, and prints the chunk bytes per row and the whole data directory's bytes per row.

use std::path::Path;

use anyhow::{Context, Result};
use isobar_ingest::simulator::SeedFleet;
use isobar_storage::{Storage, StorageConfig, WriteBatch};

fn arg(name: &str, default: u64) -> Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).context("missing value")?.parse().with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        total += if path.is_dir() { dir_bytes(&path)? } else { std::fs::metadata(&path)?.len() };
    }
    Ok(total)
}

fn main() -> Result<()> {
    let series = arg("--series", 1000)? as usize;
    let seconds = arg("--seconds", 3600)?;
    let dir = tempfile::tempdir()?;
    let storage = Storage::open(StorageConfig::new(dir.path()))?;
    let mut fleet = SeedFleet::new(series, 1_700_000_000_000_000_000, 42);
    let mut rows = 0u64;
    for _ in 0..seconds.div_ceil(10) {
        let mut batch = WriteBatch::new();
        for _ in 0..10 {
            fleet.tick("weather", &mut batch);
        }
        rows += storage.write(&batch)?.rows_written;
    }
    storage.persist()?;
    storage.compact()?;
    storage.clone().close(false)?;
    let chunk_bytes = dir_bytes(&dir.path().join("chunks"))?;
    let all_bytes = dir_bytes(dir.path())?;
    println!(
        "series={series} rows={rows} chunk_bytes={chunk_bytes} bytes_per_row={:.3} data_dir_bytes_per_row={:.3}",
        chunk_bytes as f64 / rows as f64,
        all_bytes as f64 / rows as f64
    );
    Ok(())
}
