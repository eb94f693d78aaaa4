//! `codec-report FILE...`: bits per value of isobar's codecs against Parquet with zstd.

use anyhow::{Context, Result};
use isobar_benches::codec_report::{report_column, summary};
use isobar_benches::input::read_columns;

fn main() -> Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!files.is_empty(), "usage: codec-report FILE...");
    let mut reports = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
        for (column, data) in read_columns(&text).with_context(|| format!("parse {file}"))? {
            if data.is_empty() {
                continue;
            }
            let mut report = report_column(&column, &data, 5)?;
            report.name = format!("{file}:{column}");
            println!("{report}");
            reports.push(report);
        }
    }
    println!("{}", summary(&reports));
    Ok(())
}
