//! `isobar verify`: checks the data folder of the configuration offline and prints what it
//! found; exits 1 when anything is damaged (`isobar_storage::verify_data_dir`).

use anyhow::{Result, bail};

use crate::config::Config;

/// Runs `isobar verify`.
pub(crate) fn command(config: &Config) -> Result<()> {
    let dir = &config.data_dir;
    let report = isobar_storage::verify_data_dir(dir).map_err(|e| anyhow::anyhow!("cannot check {}: {e}", dir.display()))?;
    println!(
        "checked {}: {} tables, {} series, {} WAL records, {} chunks",
        dir.display(),
        report.tables,
        report.series,
        report.wal_records,
        report.chunks
    );
    for file in &report.orphaned_files {
        println!("not in the catalog (left by an interrupted persist; removed at the next start): {}", file.display());
    }
    for problem in &report.problems {
        println!("damaged: {problem}");
    }
    if !report.is_clean() {
        bail!("{} problems in {}", report.problems.len(), dir.display());
    }
    println!("no damage found");
    Ok(())
}
