//! Reading numeric columns from the files the reports take.
//!
//! A file is either one number per line (empty lines and `""` skipped), or a CSV with a header
//! row and `,` or `;` separators. In a CSV, every column whose values all parse as numbers is a
//! numeric column; a column named `time`, `timestamp` or `datetime` holding RFC 3339 or
//! `YYYY-MM-DD HH:MM:SS` values is a timestamp column in nanoseconds.

use anyhow::{Context, Result, bail};

/// One column read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    F64(Vec<f64>),
    /// Nanoseconds since the Unix epoch, UTC.
    TimestampNs(Vec<i64>),
}

impl ColumnData {
    pub fn len(&self) -> usize {
        match self {
            Self::F64(v) => v.len(),
            Self::TimestampNs(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Named columns of a file.
pub fn read_columns(text: &str) -> Result<Vec<(String, ColumnData)>> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "\"\"").collect();
    let Some(first) = lines.first() else { return Ok(Vec::new()) };
    if parse_number(first).is_some() {
        let values = lines.iter().map(|l| parse_number(l).with_context(|| format!("not a number: {l:?}"))).collect::<Result<_>>()?;
        return Ok(vec![("value".to_owned(), ColumnData::F64(values))]);
    }
    let sep = if first.contains(';') { ';' } else { ',' };
    let header: Vec<&str> = first.split(sep).map(|h| h.trim().trim_matches('"')).collect();
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(sep).map(|c| c.trim().trim_matches('"')).collect()).collect();
    let mut out = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let cells: Vec<&str> = rows.iter().filter_map(|r| r.get(i).copied()).filter(|c| !c.is_empty()).collect();
        if cells.is_empty() {
            continue;
        }
        let is_time = ["time", "timestamp", "datetime"].contains(&name.to_ascii_lowercase().as_str());
        if is_time {
            let times: Option<Vec<i64>> = cells.iter().map(|c| parse_timestamp_ns(c)).collect();
            match times {
                Some(t) => out.push((name.to_string(), ColumnData::TimestampNs(t))),
                None => bail!("column {name}: not RFC 3339 or YYYY-MM-DD HH:MM:SS timestamps"),
            }
        } else if let Some(values) = cells.iter().map(|c| parse_number(c)).collect::<Option<Vec<f64>>>() {
            out.push((name.to_string(), ColumnData::F64(values)));
        }
    }
    Ok(out)
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim_matches('"').parse::<f64>().ok()
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|±HH:MM]` into nanoseconds since the epoch.
pub fn parse_timestamp_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = frac[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp_ns("1970-01-01 00:00:01"), Some(1_000_000_000));
        assert_eq!(parse_timestamp_ns("2016-08-31T02:40:26.005Z"), Some(1_472_611_226_005_000_000));
        assert_eq!(parse_timestamp_ns("2016-08-31T04:40:26.005+02:00"), Some(1_472_611_226_005_000_000));
        assert_eq!(parse_timestamp_ns("2016-13-31 00:00:00"), None);
        assert_eq!(parse_timestamp_ns("yesterday"), None);
    }

    #[test]
    fn files_of_numbers_and_csv_read() {
        let cols = read_columns("1.5\n\n\"\"\n2\n").expect("reads");
        assert_eq!(cols, vec![("value".into(), ColumnData::F64(vec![1.5, 2.0]))]);
        let cols = read_columns("time;temp;name\n2020-01-01 00:00:00;1.5;a\n2020-01-01 00:00:01;2;b\n").expect("reads");
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0].1, ColumnData::TimestampNs(vec![1_577_836_800_000_000_000, 1_577_836_801_000_000_000]));
        assert_eq!(cols[1], ("temp".into(), ColumnData::F64(vec![1.5, 2.0])));
    }
}
