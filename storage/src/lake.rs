//! The Parquet lake: every closed day of the tables that ask for it (`lake_tables`, rollup
//! tables included) written as Parquet to the cold store, under
//! `<prefix>/lake/<table>/date=YYYY-MM-DD/part-0.parquet`, then an empty `_SUCCESS` beside it,
//! so that DuckDB, Athena, Trino and Spark read isobar's data with their own engines.
//!
//! A day is closed once its end is `lake_delay_ms` behind the table's clock (its newest event
//! time, never ahead of the wall clock) and the write buffer holds no row of it. Its file holds
//! the day's rows as a scan returns them (tags and fields as columns, sorted by series and
//! time), zstd-compressed, in row groups of at most a million rows. What was exported is kept
//! as a source position per table and day: a fingerprint of the chunks the day was read from.
//! When they change (late rows persisted, a `DELETE`, a compaction) the day is written again,
//! file then marker, so the marker always stands for a whole file. After each round, files no
//! exported day accounts for go: those of dropped or truncated tables, and days past their
//! table's retention.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::catalog::Op;
use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::model::TableId;
use crate::scan::{ScanRequest, SeriesFilter};

const DAY_NS: i64 = 86_400_000_000_000;
/// Rows per Parquet row group, at most.
const ROW_GROUP_ROWS_MAX: usize = 1 << 20;

/// Writes every closed day of the lake tables not written yet, or changed since; returns how
/// many days it wrote.
pub(crate) fn export(shared: &Shared) -> Result<usize> {
    let Some(cold) = &shared.cold else { return Ok(0) };
    let mut written = 0;
    for name in &shared.config.lake_tables {
        let Some((table, clock_ns)) = ({
            let registry = shared.registry.lock();
            registry.table(name).and_then(|t| Some((t.id, registry.clock_ns(t.id)?)))
        }) else {
            continue;
        };
        let delay_ns = i64::try_from(shared.config.lake_delay_ms).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000);
        let cutoff_ns = shared.registry.lock().retention_cutoff_ns(table, &shared.config).unwrap_or(i64::MIN);
        let days = closed_days(shared, table, name, clock_ns.saturating_sub(delay_ns));
        // A day past retention is gone from the lake too (see `reconcile`).
        for (day_ns, fingerprint) in days.into_iter().filter(|(day, _)| day.saturating_add(DAY_NS) > cutoff_ns) {
            let key = format!("lake/{}/{day_ns}", table.0);
            if shared.store.position(&key)?.as_deref() == Some(fingerprint.to_le_bytes().as_slice()) {
                continue;
            }
            let date = date_of(day_ns);
            let bytes = day_parquet(shared, name, day_ns)?;
            let part = cold.lake_key(name, &date, "part-0.parquet");
            let marker = cold.lake_key(name, &date, "_SUCCESS");
            match bytes {
                Some(bytes) => {
                    cold.put(&part, bytes)?;
                    cold.put(&marker, Vec::new())?;
                }
                // Every row of the day was deleted.
                None => {
                    cold.delete(&marker)?;
                    cold.delete(&part)?;
                }
            }
            shared.store.commit(&[Op::Position(key, fingerprint.to_le_bytes().to_vec())], true)?;
            written += 1;
        }
    }
    reconcile(shared, cold)?;
    Ok(written)
}

/// Deletes what the lake holds that no table's exported day accounts for: the days of tables
/// dropped or emptied (`TRUNCATE`, which gives the table a new id), of tables no longer in
/// `lake_tables`, and days past their table's retention (whose record it deletes first).
fn reconcile(shared: &Shared, cold: &crate::cold::ColdStore) -> Result<()> {
    let (tables, cutoffs): (std::collections::HashMap<u32, String>, std::collections::HashMap<u32, i64>) = {
        let registry = shared.registry.lock();
        let lake = shared.config.lake_tables.iter().filter_map(|name| registry.table(name));
        let tables: Vec<_> = lake.map(|t| (t.id, t.name.clone())).collect();
        let cutoffs = tables.iter().filter_map(|(id, _)| Some((id.0, registry.retention_cutoff_ns(*id, &shared.config)?))).collect();
        (tables.into_iter().map(|(id, name)| (id.0, name)).collect(), cutoffs)
    };
    let mut kept: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    let mut expired = Vec::new();
    for (key, _) in shared.store.positions()? {
        let Some((table, day)) = key.strip_prefix("lake/").and_then(|k| k.split_once('/')) else { continue };
        let (Ok(table), Ok(day)) = (table.parse::<u32>(), day.parse::<i64>()) else { continue };
        match (tables.get(&table), cutoffs.get(&table)) {
            (Some(_), Some(cutoff)) if day.saturating_add(DAY_NS) <= *cutoff => expired.push(Op::DeletePosition(key.clone())),
            (Some(name), _) => {
                kept.insert((name.clone(), date_of(day)));
            }
            (None, _) => expired.push(Op::DeletePosition(key.clone())),
        }
    }
    if !expired.is_empty() {
        shared.store.commit(&expired, true)?;
    }
    for (key, table, date) in cold.list_lake()? {
        if !kept.contains(&(table, date)) {
            cold.delete(&key)?;
        }
    }
    Ok(())
}

/// The days of `table` (named `name`) that end before `before_ns` and that the write buffer
/// holds no row of, with a fingerprint of the chunks holding their rows and of the name (a
/// renamed table's days are written again under its new name).
fn closed_days(shared: &Shared, table: TableId, name: &str, before_ns: i64) -> Vec<(i64, u64)> {
    let state = shared.state.read();
    let mut days: std::collections::BTreeMap<i64, Vec<u64>> = std::collections::BTreeMap::new();
    for chunk in state.chunks.values().filter(|c| c.table() == table) {
        let footer = &chunk.reader.footer;
        let mut day = footer.time_min.div_euclid(DAY_NS) * DAY_NS;
        while day <= footer.time_max {
            days.entry(day).or_default().push(chunk.id.0);
            day = day.saturating_add(DAY_NS);
        }
    }
    let buffered = |day: i64| {
        let end = day.saturating_add(DAY_NS - 1);
        state.active.holds(table, day, end) || state.frozen.as_ref().is_some_and(|f| f.holds(table, day, end))
    };
    days.into_iter()
        .filter(|(day, _)| day.saturating_add(DAY_NS) <= before_ns && !buffered(*day))
        .map(|(day, mut chunks)| {
            chunks.sort_unstable();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (name, chunks).hash(&mut hasher);
            (day, hasher.finish())
        })
        .collect()
}

/// The rows of table `name` on the day starting at `day_ns`, as a Parquet file; `None` when
/// there are none.
fn day_parquet(shared: &Shared, name: &str, day_ns: i64) -> Result<Option<Vec<u8>>> {
    let request = ScanRequest {
        table: name.to_owned(),
        time_min_ns: day_ns,
        time_max_ns: day_ns.saturating_add(DAY_NS - 1),
        series: SeriesFilter::All,
        columns: None,
    };
    let scan = crate::scan::scan(shared, &request)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(parquet_err)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS_MAX))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, Arc::clone(&scan.schema), Some(properties)).map_err(parquet_err)?;
    let mut rows = 0;
    for batch in scan {
        let batch = batch?;
        rows += batch.num_rows();
        writer.write(&batch).map_err(parquet_err)?;
    }
    writer.close().map_err(parquet_err)?;
    Ok((rows > 0).then_some(bytes))
}

fn parquet_err(e: parquet::errors::ParquetError) -> Error {
    Error::Internal(format!("writing Parquet: {e}"))
}

/// `YYYY-MM-DD` of the day starting at `day_ns` (UTC).
pub(crate) fn date_of(day_ns: i64) -> String {
    let (year, month, day) = crate::calendar::civil_from_days(day_ns.div_euclid(DAY_NS));
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_709_251_200 * 1_000_000_000), "2024-03-01");
        assert_eq!(date_of(1_709_164_800 * 1_000_000_000), "2024-02-29");
        assert_eq!(date_of(-DAY_NS), "1969-12-31");
        assert_eq!(date_of(951_782_400 * 1_000_000_000), "2000-02-29");
    }
}
