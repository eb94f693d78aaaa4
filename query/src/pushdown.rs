//! Turns the filters DataFusion offers a table into a storage scan's time range and series
//! filter.
//!
//! Understood: comparisons and `BETWEEN` of `time` with timestamp literals, and conditions on a
//! tag against string literals that storage's series index resolves (`=`, `<>`, `IN`, `NOT IN`,
//! `LIKE`, `ILIKE` and their `NOT`, `~`, `~*`, `!~`, `!~*`). Storage applies these
//! exactly, so a filter made only of them is left to storage (`Exact`); in a filter that also
//! holds others, they only narrow what storage decodes, and DataFusion applies the whole filter
//! above the scan (`Inexact`).

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{InList, Like};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use isobar_storage::{SeriesFilter, TIME_COLUMN, TagPredicate, TagTest};

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
        let mut tags: Vec<TagPredicate> = Vec::new();
        for filter in filters {
            for conjunct in split_and(filter) {
                p.apply(conjunct, &is_tag, &mut tags);
            }
        }
        if !tags.is_empty() {
            p.series = SeriesFilter::Tags(tags);
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

    fn apply(&mut self, e: &Expr, is_tag: &impl Fn(&str) -> bool, tags: &mut Vec<TagPredicate>) -> bool {
        match e {
            // DataFusion writes a short `IN` list as equalities joined by OR.
            Expr::BinaryExpr(BinaryExpr { op: Operator::Or, .. }) => match equalities_of_one_tag(e) {
                Some((column, values)) if is_tag(column) => push_tag(tags, column, Some(TagTest::In(values))),
                _ => false,
            },
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
                } else if is_tag(column) {
                    let Some(v) = string(value) else { return false };
                    let test = match op {
                        Operator::Eq => Some(TagTest::In(vec![v.to_owned()])),
                        Operator::NotEq => Some(TagTest::NotIn(vec![v.to_owned()])),
                        Operator::RegexMatch => TagTest::regex(v, false, false),
                        Operator::RegexIMatch => TagTest::regex(v, true, false),
                        Operator::RegexNotMatch => TagTest::regex(v, false, true),
                        Operator::RegexNotIMatch => TagTest::regex(v, true, true),
                        _ => None,
                    };
                    push_tag(tags, column, test)
                } else {
                    false
                }
            }
            Expr::InList(InList { expr, list, negated }) => match column_name(expr) {
                Some(column) if is_tag(column) => {
                    // A NULL in the list makes `NOT IN` unknown for every row: left to DataFusion.
                    let values: Option<Vec<String>> = list.iter().map(|v| Some(string(literal(v)?)?.to_owned())).collect();
                    push_tag(tags, column, values.map(|v| if *negated { TagTest::NotIn(v) } else { TagTest::In(v) }))
                }
                _ => false,
            },
            Expr::Like(Like { negated, expr, pattern, escape_char: None, case_insensitive }) => {
                match (column_name(expr), literal(pattern).and_then(string)) {
                    (Some(column), Some(pattern)) if is_tag(column) => {
                        let test = TagTest::Like { pattern: pattern.to_owned(), case_insensitive: *case_insensitive, negated: *negated };
                        push_tag(tags, column, Some(test))
                    }
                    _ => false,
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

/// Adds `test` of tag `column`, if there is one; whether it was added.
fn push_tag(tags: &mut Vec<TagPredicate>, column: &str, test: Option<TagTest>) -> bool {
    match test {
        Some(test) => {
            tags.push(TagPredicate { tag: column.to_owned(), test });
            true
        }
        None => false,
    }
}

/// `tag = 'a' OR tag = 'b' ...` as the tag and its values.
fn equalities_of_one_tag(e: &Expr) -> Option<(&str, Vec<String>)> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let (column, mut values) = equalities_of_one_tag(left)?;
            let (other, more) = equalities_of_one_tag(right)?;
            values.extend(more);
            (column == other).then_some((column, values))
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let (column, value) = match (column_name(left), column_name(right)) {
                (Some(column), None) => (column, right),
                (None, Some(column)) => (column, left),
                _ => return None,
            };
            Some((column, vec![string(literal(value)?)?.to_owned()]))
        }
        _ => None,
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
        assert_eq!(p.series, SeriesFilter::Tags(vec![TagPredicate::equals("station", "a")]));
        assert_eq!((p.time_min_ns, p.time_max_ns), (i64::MIN, i64::MAX));
        let either = col("time").gt(ts(1)).or(col("time").lt(ts(0)));
        assert_eq!(pushdown(std::slice::from_ref(&either)).time_min_ns, i64::MIN, "an OR is not a range");
        assert!(!Pushdown::understands(&either, |_| false));
        assert!(Pushdown::understands(&col("station").eq(lit("a")), |c| c == "station"));
    }

    #[test]
    fn tag_conditions_become_tests_storage_resolves() {
        let tests = |filter: Expr| match pushdown(&[filter]).series {
            SeriesFilter::Tags(tags) => tags.into_iter().map(|t| t.test).collect(),
            _ => Vec::new(),
        };
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let either = col("station").eq(lit("a")).or(lit("b").eq(col("station"))).or(col("station").eq(lit("c")));
        assert_eq!(tests(either), [TagTest::In(strings(&["a", "b", "c"]))]);
        assert!(tests(col("station").eq(lit("a")).or(col("other").eq(lit("b")))).is_empty(), "an OR over two columns");
        assert_eq!(tests(col("station").not_eq(lit("a"))), [TagTest::NotIn(strings(&["a"]))]);
        assert_eq!(tests(col("station").in_list(vec![lit("a"), lit("b")], true)), [TagTest::NotIn(strings(&["a", "b"]))]);
        assert!(tests(col("station").in_list(vec![lit("a"), lit(ScalarValue::Utf8(None))], true)).is_empty(), "NOT IN with a NULL");
        let like = TagTest::Like { pattern: "a_%".into(), case_insensitive: true, negated: false };
        assert_eq!(tests(col("station").ilike(lit("a_%"))), [like]);
        let escaped = Expr::Like(Like::new(false, Box::new(col("station")), Box::new(lit("a!%")), Some('!'), false));
        assert!(tests(escaped).is_empty(), "an ESCAPE character of its own");
        assert!(tests(Expr::BinaryExpr(BinaryExpr::new(Box::new(col("station")), Operator::RegexMatch, Box::new(lit("("))))).is_empty());
        assert!(tests(col("value").not_eq(lit("a"))).is_empty(), "not a tag");
    }
}
