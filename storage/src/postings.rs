//! The series index: each table's series by tag column and value, so that a condition on tags
//! selects series without walking the table's other series. Values are kept sorted: `=`, `IN`
//! and a `LIKE` without wildcards look values up and a prefix (`LIKE 'p%'`) reads one range, at a cost that does not grow
//! with the table's series; `<>`, `NOT IN`, other patterns and regular expressions walk the
//! column's distinct values, never its rows. Patterns match as DataFusion's (Arrow's) kernels
//! match them, so that a condition resolved here selects what DataFusion's filter would. The registry rebuilds it at open from the
//! catalog's series and adds each new series as it is made.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::fxhash::FxHashMap;
use crate::model::{ColumnId, SeriesId, TableId};

/// A condition on one tag's value, as SQL applies it: a series without the tag meets none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPredicate {
    pub tag: String,
    pub test: TagTest,
}

/// What a tag's value must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagTest {
    /// One of these (`=`, `IN`).
    In(Vec<String>),
    /// None of these (`<>`, `NOT IN`).
    NotIn(Vec<String>),
    /// Matches a `LIKE` pattern (`%`, `_`, `\` escapes; `ILIKE` when `case_insensitive`), or
    /// with `negated` does not.
    Like { pattern: String, case_insensitive: bool, negated: bool },
    /// Holds a match of a regular expression (`~`, `~*`), or with `negated` does not (`!~`,
    /// `!~*`); the syntax of the `regex` crate, which DataFusion matches with.
    Regex { pattern: String, case_insensitive: bool, negated: bool },
}

impl TagPredicate {
    /// `tag = value`.
    pub fn equals(tag: &str, value: &str) -> Self {
        Self { tag: tag.to_owned(), test: TagTest::In(vec![value.to_owned()]) }
    }
}

impl TagTest {
    /// The regular-expression test, if `pattern` compiles.
    pub fn regex(pattern: &str, case_insensitive: bool, negated: bool) -> Option<Self> {
        compile(pattern, case_insensitive).ok()?;
        Some(Self::Regex { pattern: pattern.to_owned(), case_insensitive, negated })
    }
}

fn compile(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern).case_insensitive(case_insensitive).build().map_err(|e| format!("tag filter {pattern:?}: {e}"))
}

/// Whether a `LIKE` pattern has wildcards or escapes.
fn has_wildcards(pattern: &str) -> bool {
    pattern.contains(['%', '_', '\\'])
}

/// A `LIKE` pattern as the regular expression Arrow's `like` kernels match with: `%` any text,
/// `_` one character, `\` takes the next character as it is; anchored at the ends without `%`.
fn like_regex(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    match chars.peek() {
        Some('%') => drop(chars.next()),
        _ => out.push('^'),
    }
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => out.push_str(&regex::escape(next.encode_utf8(&mut [0; 4]))),
                None => out.push_str("\\\\"),
            },
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    match out.strip_suffix(".*") {
        Some(open) => out.truncate(open.len()),
        None => out.push('$'),
    }
    regex::RegexBuilder::new(&out)
        .case_insensitive(case_insensitive)
        .dot_matches_new_line(true)
        .build()
        .map_err(|e| format!("tag filter LIKE {pattern:?}: {e}"))
}

/// Series by table, tag column and value; each list in id order.
#[derive(Debug, Default)]
pub(crate) struct Postings {
    tables: FxHashMap<TableId, FxHashMap<ColumnId, BTreeMap<String, Vec<SeriesId>>>>,
}

impl Postings {
    pub(crate) fn remove_table(&mut self, table: TableId) {
        self.tables.remove(&table);
    }

    pub(crate) fn insert(&mut self, table: TableId, series: SeriesId, tags: &[(ColumnId, String)]) {
        let columns = self.tables.entry(table).or_default();
        for (column, value) in tags {
            let by_value = columns.entry(*column).or_default();
            match by_value.get_mut(value.as_str()) {
                Some(ids) => {
                    if let Err(at) = ids.binary_search(&series) {
                        ids.insert(at, series);
                    }
                }
                None => drop(by_value.insert(value.clone(), vec![series])),
            }
        }
    }

    /// The series of `table` whose tags meet every test, in id order; `tests` must not be
    /// empty. Fails when a regular expression does not compile.
    pub(crate) fn select(&self, table: TableId, tests: &[(ColumnId, &TagTest)]) -> Result<Vec<SeriesId>, String> {
        let mut lists = Vec::with_capacity(tests.len());
        for (column, test) in tests {
            let values = self.tables.get(&table).and_then(|columns| columns.get(column));
            lists.push(values.map_or(Ok(Vec::new()), |values| matching(values, test))?);
        }
        lists.sort_by_key(Vec::len);
        let Some((shortest, others)) = lists.split_first() else { return Ok(Vec::new()) };
        Ok(shortest.iter().copied().filter(|id| others.iter().all(|l| l.binary_search(id).is_ok())).collect())
    }

    /// For each value of tag `column` in `table`, in order, what `pick` gives for the first
    /// of its series it gives something for; and how many series have the tag.
    pub(crate) fn first_of_each_value<T>(&self, table: TableId, column: ColumnId, pick: impl Fn(SeriesId) -> Option<T>) -> (Vec<T>, usize) {
        let Some(by_value) = self.tables.get(&table).and_then(|columns| columns.get(&column)) else { return (Vec::new(), 0) };
        let mut listed = 0;
        let picked = by_value
            .values()
            .filter_map(|ids| {
                listed += ids.len();
                ids.iter().find_map(|id| pick(*id))
            })
            .collect();
        (picked, listed)
    }

    /// Whether tag `column` tells the `series` series of `table` apart: every series has it,
    /// each with a value of its own.
    pub(crate) fn is_key(&self, table: TableId, column: ColumnId, series: usize) -> bool {
        match self.tables.get(&table).and_then(|columns| columns.get(&column)) {
            // A series is in one list per tag at most: as many single-series lists as series.
            Some(by_value) => by_value.len() == series && by_value.values().all(|ids| ids.len() == 1),
            None => series == 0,
        }
    }
}

/// The series, in id order, whose value in `values` meets `test`.
fn matching(values: &BTreeMap<String, Vec<SeriesId>>, test: &TagTest) -> Result<Vec<SeriesId>, String> {
    let lists: Vec<&Vec<SeriesId>> = match test {
        TagTest::In(wanted) => {
            let mut wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
            wanted.sort_unstable();
            wanted.dedup();
            wanted.iter().filter_map(|v| values.get(*v)).collect()
        }
        TagTest::NotIn(unwanted) => {
            let mut unwanted: Vec<&str> = unwanted.iter().map(String::as_str).collect();
            unwanted.sort_unstable();
            values.iter().filter(|(v, _)| unwanted.binary_search(&v.as_str()).is_err()).map(|(_, ids)| ids).collect()
        }
        // A pattern without wildcards or escapes is an equality.
        TagTest::Like { pattern, case_insensitive: false, negated } if !has_wildcards(pattern) => {
            let value = vec![pattern.clone()];
            return matching(values, &if *negated { TagTest::NotIn(value) } else { TagTest::In(value) });
        }
        TagTest::Like { pattern, case_insensitive: false, negated: false }
            if pattern.strip_suffix('%').is_some_and(|prefix| !has_wildcards(prefix)) =>
        {
            let prefix = &pattern[..pattern.len() - 1];
            values
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(v, _)| v.starts_with(prefix))
                .map(|(_, ids)| ids)
                .collect()
        }
        TagTest::Like { pattern, case_insensitive, negated } => {
            let regex = like_regex(pattern, *case_insensitive)?;
            values.iter().filter(|(v, _)| regex.is_match(v) != *negated).map(|(_, ids)| ids).collect()
        }
        TagTest::Regex { pattern, case_insensitive, negated } => {
            let regex = compile(pattern, *case_insensitive)?;
            values.iter().filter(|(v, _)| regex.is_match(v) != *negated).map(|(_, ids)| ids).collect()
        }
    };
    // A series has one value per tag, so the lists share no series.
    let mut ids: Vec<SeriesId> = lists.into_iter().flatten().copied().collect();
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tags over 60 series; the sensor tag is missing from every fifth series.
    fn postings() -> (Postings, Vec<(SeriesId, String, Option<String>)>) {
        let mut postings = Postings::default();
        let mut series = Vec::new();
        for i in 0..60u64 {
            let station = format!("st{}", i % 12);
            let sensor = (i % 5 != 0).then(|| ["temp", "Temp2", "hum", "wind"][(i % 4) as usize].to_owned());
            let mut tags = vec![(ColumnId(1), station.clone())];
            tags.extend(sensor.clone().map(|s| (ColumnId(2), s)));
            // Inserted out of id order, and the first twice.
            postings.insert(TableId(1), SeriesId(100 - i), &tags);
            series.push((SeriesId(100 - i), station, sensor));
        }
        postings.insert(TableId(1), SeriesId(100), &[(ColumnId(1), "st0".to_owned())]);
        (postings, series)
    }

    fn like(pattern: &str, case_insensitive: bool, negated: bool) -> TagTest {
        TagTest::Like { pattern: pattern.to_owned(), case_insensitive, negated }
    }

    /// A test of a tag column, with what it asks of a value.
    type Case = (ColumnId, TagTest, fn(&str) -> bool);

    fn tests() -> Vec<Case> {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        vec![
            (ColumnId(1), TagTest::In(strings(&["st3", "st11", "st3", "none"])), |v| v == "st3" || v == "st11"),
            (ColumnId(1), TagTest::NotIn(strings(&["st3"])), |v| v != "st3"),
            (ColumnId(1), like("st1%", false, false), |v| v.starts_with("st1")),
            (ColumnId(1), like("st1%", false, true), |v| !v.starts_with("st1")),
            (ColumnId(2), like("%", false, false), |_| true),
            (ColumnId(1), like("ST_1", true, false), |v| v.len() == 4 && v.to_lowercase().starts_with("st") && v.ends_with('1')),
            (ColumnId(2), like("%m%", false, true), |v| !v.contains('m')),
            (ColumnId(2), like("t\\e%", false, false), |v| v.starts_with("te")),
            (ColumnId(1), like("st3", false, false), |v| v == "st3"),
            (ColumnId(1), like("st3", false, true), |v| v != "st3"),
            (ColumnId(2), TagTest::regex("^t", true, false).expect("compiles"), |v| v.to_lowercase().starts_with('t')),
            (ColumnId(2), TagTest::regex("m", false, true).expect("compiles"), |v| !v.contains('m')),
            (ColumnId(3), TagTest::NotIn(Vec::new()), |_| false),
        ]
    }

    #[test]
    fn each_test_selects_the_series_whose_tag_meets_it() {
        let (postings, series) = postings();
        for (column, test, meets) in tests() {
            let got = postings.select(TableId(1), &[(column, &test)]).expect("select");
            let mut expected: Vec<SeriesId> = series
                .iter()
                .filter(|(_, station, sensor)| match column {
                    ColumnId(1) => meets(station),
                    ColumnId(2) => sensor.as_deref().is_some_and(meets),
                    _ => false,
                })
                .map(|(id, ..)| *id)
                .collect();
            expected.sort_unstable();
            assert_eq!(got, expected, "{test:?}");
        }
    }

    #[test]
    fn tests_on_several_tags_select_the_series_meeting_all() {
        let (postings, series) = postings();
        let all = tests();
        for (a, b) in [(0, 5), (2, 6), (1, 4), (3, 7)] {
            let got = postings.select(TableId(1), &[(all[a].0, &all[a].1), (all[b].0, &all[b].1)]).expect("select");
            let meets = |(column, _, f): &Case, station: &str, sensor: Option<&str>| match column {
                ColumnId(1) => f(station),
                ColumnId(2) => sensor.is_some_and(f),
                _ => false,
            };
            let mut expected: Vec<SeriesId> = series
                .iter()
                .filter(|(_, st, se)| meets(&all[a], st, se.as_deref()) && meets(&all[b], st, se.as_deref()))
                .map(|(id, ..)| *id)
                .collect();
            expected.sort_unstable();
            assert_eq!(got, expected, "{:?} and {:?}", all[a].1, all[b].1);
        }
        assert!(TagTest::regex("(", false, false).is_none());
        let broken = TagTest::Regex { pattern: "(".into(), case_insensitive: false, negated: false };
        assert!(postings.select(TableId(1), &[(ColumnId(1), &broken)]).is_err());
        assert_eq!(postings.select(TableId(9), &[(ColumnId(1), &all[1].1)]), Ok(Vec::new()));
    }
}
