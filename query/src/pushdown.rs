//! Turns the filters DataFusion offers a table into a storage scan's time range and series
//! filter.
//!
//! Understood: comparisons and `BETWEEN` of `time` with timestamp literals, and equality of a
//! tag with a string literal. Storage applies these exactly, so a filter made only of them is
//! left to storage (`Exact`); in a filter that also holds others, they only narrow what storage
//! decodes, and DataFusion applies the whole filter above the scan (`Inexact`).

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use isobar_storage::{SeriesFilter, TIME_COLUMN};

/// The part of a scan the filters decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pushdown {
    /// Inclusive.
    pub(crate) time_min_ns: i64,
    /// Inclusive.
    pub(crate) time_max_ns: i64,
    pub(crate) series: SeriesFilter,
}

impl Pushdown {
    /// What `filters` (all of which must hold) allow; `is_tag` tells tags from other columns.
    pub(crate) fn from_filters(filters: &[Expr], is_tag: impl Fn(&str) -> bool) -> Self {
        let mut p = Self { time_min_ns: i64::MIN, time_max_ns: i64::MAX, series: SeriesFilter::All };
        let mut tags: Vec<(String, String)> = Vec::new();
        for filter in filters {
            for conjunct in split_and(filter) {
                p.apply(conjunct, &is_tag, &mut tags);
            }
        }
        if !tags.is_empty() {
            p.series = SeriesFilter::TagsEqual(tags);
        }
        p
    }

    /// Whether a filter narrows the scan (DataFusion still applies it).
    pub(crate) fn understands(filter: &Expr, is_tag: impl Fn(&str) -> bool) -> bool {
        let mut p = Self { time_min_ns: i64::MIN, time_max_ns: i64::MAX, series: SeriesFilter::All };
        let mut tags = Vec::new();
        split_and(filter).into_iter().any(|c| p.apply(c, &is_tag, &mut tags))
    }

    /// Whether storage applies a filter exactly (every conjunct a bound on `time` or a tag
    /// equality), so that DataFusion need not apply it again.
    pub(crate) fn applies_exactly(filter: &Expr, is_tag: impl Fn(&str) -> bool) -> bool {
        let mut p = Self { time_min_ns: i64::MIN, time_max_ns: i64::MAX, series: SeriesFilter::All };
        let mut tags = Vec::new();
        split_and(filter).into_iter().all(|c| p.apply(c, &is_tag, &mut tags))
    }

    fn apply(&mut self, e: &Expr, is_tag: &impl Fn(&str) -> bool, tags: &mut Vec<(String, String)>) -> bool {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, value) = match (column_name(left), literal(right), column_name(right), literal(left)) {
                    (Some(c), Some(v), _, _) => (c, *op, v),
                    (_, _, Some(c), Some(v)) => match op.swap() {
                        Some(swapped) => (c, swapped, v),
                        None => return false,
                    },
                    _ => return false,
                };
                if column == TIME_COLUMN {
                    let Some(t) = timestamp_ns(value) else { return false };
                    match op {
                        Operator::Eq => self.narrow(t, t),
                        Operator::Gt => self.narrow(t.saturating_add(1), i64::MAX),
                        Operator::GtEq => self.narrow(t, i64::MAX),
                        Operator::Lt => self.narrow(i64::MIN, t.saturating_sub(1)),
                        Operator::LtEq => self.narrow(i64::MIN, t),
                        _ => return false,
                    }
                    true
                } else if op == Operator::Eq && is_tag(column) {
                    let Some(v) = string(value) else { return false };
                    tags.push((column.to_owned(), v.to_owned()));
                    true
                } else {
                    false
                }
            }
            Expr::Between(Between { expr, negated: false, low, high }) if column_name(expr) == Some(TIME_COLUMN) => {
                match (literal(low).and_then(timestamp_ns), literal(high).and_then(timestamp_ns)) {
                    (Some(lo), Some(hi)) => {
                        self.narrow(lo, hi);
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// Narrows the time range to `min..=max` as well.
    pub(crate) fn narrow(&mut self, min: i64, max: i64) {
        self.time_min_ns = self.time_min_ns.max(min);
        self.time_max_ns = self.time_max_ns.min(max);
    }

    /// Whether no row can match (an empty time range).
    pub(crate) fn is_empty(&self) -> bool {
        self.time_min_ns > self.time_max_ns
    }
}

fn split_and(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            let mut v = split_and(left);
            v.extend(split_and(right));
            v
        }
        other => vec![other],
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// A timestamp literal's nanoseconds since the epoch.
pub(crate) fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// A string literal's text.
pub(crate) fn string(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn ts(ns: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())))
    }

    fn pushdown(filters: &[Expr]) -> Pushdown {
        Pushdown::from_filters(filters, |c| c == "station")
    }

    #[test]
    fn time_comparisons_narrow_the_range_from_either_side() {
        let p = pushdown(&[col("time").gt_eq(ts(10)), ts(20).gt(col("time"))]);
        assert_eq!((p.time_min_ns, p.time_max_ns), (10, 19));
        let p = pushdown(&[col("time").between(ts(5), ts(7)).and(col("time").gt(ts(5)))]);
        assert_eq!((p.time_min_ns, p.time_max_ns), (6, 7));
        let seconds = lit(ScalarValue::TimestampSecond(Some(2), None));
        assert_eq!(pushdown(&[col("time").eq(seconds)]).time_min_ns, 2_000_000_000);
        assert!(pushdown(&[col("time").gt(ts(9)), col("time").lt(ts(3))]).is_empty());
    }

    #[test]
    fn tag_equalities_become_a_series_filter_and_others_are_left_to_datafusion() {
        let p = pushdown(&[col("station").eq(lit("a")), col("value").eq(lit("b")), col("station").gt(lit("c"))]);
        assert_eq!(p.series, SeriesFilter::TagsEqual(vec![("station".into(), "a".into())]));
        assert_eq!((p.time_min_ns, p.time_max_ns), (i64::MIN, i64::MAX));
        let either = col("time").gt(ts(1)).or(col("time").lt(ts(0)));
        assert_eq!(pushdown(std::slice::from_ref(&either)).time_min_ns, i64::MIN, "an OR is not a range");
        assert!(!Pushdown::understands(&either, |_| false));
        assert!(Pushdown::understands(&col("station").eq(lit("a")), |c| c == "station"));
    }
}
