//! Line protocol as InfluxDB documents it: escaping, every field type, precisions, missing
//! timestamps, duplicates and malformed lines; and any point written out with its escapes
//! parses back to itself.

use proptest::prelude::*;

use super::*;

const NOW_NS: i64 = 1_700_000_000_123_456_789;

fn one(line: &str) -> Result<Line, String> {
    parse_line(line, Precision::Nanoseconds, NOW_NS).map(|(table, point)| Line { line_number: 1, table, point })
}

fn tags(line: &Line) -> Vec<(&str, &str)> {
    line.point.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn fields(line: &Line) -> Vec<(&str, FieldValue)> {
    line.point.fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

fn string(s: &str) -> FieldValue {
    FieldValue::String(s.into())
}

#[test]
fn special_characters_are_escaped_as_influxdb_documents() {
    let line = one(r#"my\ measurement,tag\ key=tag\ value,tag\,k=v\=x field\ key="string with \"quotes\" and \\ backslash",f\=k=1i 1"#)
        .expect("parses");
    assert_eq!(line.table, "my measurement");
    assert_eq!(tags(&line), [("tag key", "tag value"), ("tag,k", "v=x")]);
    assert_eq!(fields(&line), [("field key", string(r#"string with "quotes" and \ backslash"#)), ("f=k", FieldValue::I64(1))]);
    assert_eq!(line.point.time.0, 1);
    // The example of InfluxDB's reference: quotes outside string values are plain characters,
    // and a backslash before anything but a special character stays.
    let line = one(concat!(
        r#""measurement\ with\ quo⚡️es\ and\ emoji",tag\ key\ with\ sp🚀ces=tag\,value\,with"commas" "#,
        r#"field_k\ey="string field value, only \" need be esc🍭ped""#
    ))
    .expect("parses");
    assert_eq!(line.table, r#""measurement with quo⚡️es and emoji""#);
    assert_eq!(tags(&line), [("tag key with sp🚀ces", r#"tag,value,with"commas""#)]);
    assert_eq!(fields(&line), [(r"field_k\ey", string(r#"string field value, only " need be esc🍭ped"#))]);
    // An equals sign needs no escape in a measurement; a backslash before a backslash keeps both
    // and takes the second out of the way of what follows.
    let line = one(r"a=b\\,t=v f=1").expect("parses");
    assert_eq!((line.table.as_str(), tags(&line)), (r"a=b\\", vec![("t", "v")]));
    // Commas, spaces and equals signs inside a string value need no escape.
    let line = one(r#"m s="a, b = c",n=2"#).expect("parses");
    assert_eq!(fields(&line), [("s", string("a, b = c")), ("n", FieldValue::F64(2.0))]);
}

#[test]
fn every_field_type_parses() {
    let line = one(r#"m i=-12i,u=34u,f=1.5,g=1,h=-1.5e-3,k=.5,l=5.,e=2E+2,s="x",empty="""#).expect("parses");
    assert_eq!(
        fields(&line),
        [
            ("i", FieldValue::I64(-12)),
            ("u", FieldValue::I64(34)),
            ("f", FieldValue::F64(1.5)),
            ("g", FieldValue::F64(1.0)),
            ("h", FieldValue::F64(-0.0015)),
            ("k", FieldValue::F64(0.5)),
            ("l", FieldValue::F64(5.0)),
            ("e", FieldValue::F64(200.0)),
            ("s", string("x")),
            ("empty", string("")),
        ]
    );
    for (text, value) in [("t", true), ("T", true), ("true", true), ("True", true), ("TRUE", true)].into_iter().chain([
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ]) {
        assert_eq!(fields(&one(&format!("m b={text}")).expect("parses")), [("b", FieldValue::Bool(value))], "{text}");
    }
    let extremes = one("m a=9223372036854775807i,b=-9223372036854775808i,c=9223372036854775807u").expect("parses");
    assert_eq!(fields(&extremes), [("a", FieldValue::I64(i64::MAX)), ("b", FieldValue::I64(i64::MIN)), ("c", FieldValue::I64(i64::MAX))]);
}

#[test]
fn timestamps_are_read_in_the_precision_of_the_write() {
    let cases = [
        ("n", 1),
        ("ns", 1),
        ("u", 1_000),
        ("us", 1_000),
        ("µ", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    for (name, ns) in cases {
        let precision = Precision::parse(name).unwrap_or_else(|| panic!("{name}"));
        let (_, point) = parse_line("m a=1 -3", precision, NOW_NS).expect("parses");
        assert_eq!(point.time.0, -3 * ns, "{name}");
        assert_eq!(parse_line("m a=1", precision, NOW_NS).expect("parses").1.time.0, NOW_NS, "no timestamp: the write's time");
    }
    assert_eq!(Precision::parse("d"), None);
    assert!(parse_line("m a=1 9223372036854775807", Precision::Milliseconds, NOW_NS).expect_err("overflows").contains("out of range"));
}

#[test]
fn a_field_named_twice_keeps_the_last_value_and_a_tag_named_twice_is_refused() {
    let line = one("m a=1,b=2i,a=3").expect("parses");
    assert_eq!(fields(&line), [("a", FieldValue::F64(3.0)), ("b", FieldValue::I64(2))]);
    assert!(one("m,t=1,t=2 a=1").expect_err("duplicate").contains("duplicate tags"));
}

#[test]
fn malformed_lines_say_what_is_wrong() {
    let cases = [
        ("m", "missing fields"),
        ("m ", "missing fields"),
        ("m,t=v", "missing fields"),
        (",t=v a=1", "missing measurement"),
        ("m,t a=1", "missing tag value"),
        ("m,t= a=1", "missing tag value"),
        ("m,=v a=1", "missing tag key"),
        ("m, a=1", "missing tag key"),
        ("m a", "missing field value"),
        ("m a=", "missing value"),
        ("m =1", "missing field key"),
        ("m a=1,", "missing field key"),
        ("m a=1 x", "invalid timestamp"),
        ("m a=1 1 2", "invalid timestamp"),
        ("m a=1 1.5", "invalid timestamp"),
        ("m a=1 99999999999999999999", "out of range"),
        ("m a=abc", "invalid field value"),
        ("m a=\"x", "unterminated string"),
        ("m a=\"x\"y", "after the closing quote"),
        ("m a=1i2", "invalid field value"),
        ("m a=1.2.3", "invalid field value"),
        ("m a=NaN", "invalid field value"),
        ("m a=inf", "invalid field value"),
        ("m a=+1", "invalid field value"),
        ("m a=1e", "invalid field value"),
        ("m a=-i", "invalid integer"),
        ("m a=-1u", "invalid unsigned"),
        ("m a=9223372036854775808i", "out of range"),
        ("m a=18446744073709551616u", "out of range"),
        ("m a=9223372036854775808u", "above isobar's integer maximum"),
        ("m time=1", "time is the timestamp's column"),
        ("m,time=x a=1", "time is the timestamp's column"),
    ];
    for (line, reason) in cases {
        let error = one(line).err().unwrap_or_else(|| panic!("{line:?} parses"));
        assert!(error.contains(reason), "{line:?}: {error}");
    }
}

#[test]
fn a_body_reports_bad_lines_by_number_and_keeps_their_neighbours() {
    let body = "# a comment\r\nm,t=a v=1 10\r\n\r\n   \nm,t=b v= 20\nm,t=c v=3\n  # indented comment\nm v=4 40\n";
    let parsed = parse(body, Precision::Nanoseconds, NOW_NS);
    assert_eq!(parsed.len(), 4);
    assert_eq!(parsed[0].as_ref().expect("line 2").point.time.0, 10);
    let error = parsed[1].as_ref().expect_err("line 5");
    assert_eq!((error.line_number, error.line.as_str()), (5, "m,t=b v= 20"));
    assert!(error.to_string().contains("unable to parse 'm,t=b v= 20' (line 5)"), "{error}");
    assert_eq!(parsed[2].as_ref().expect("line 6").point.time.0, NOW_NS);
    assert_eq!(parsed[2].as_ref().expect("line 6").line_number, 6);
    assert_eq!(line_text(body, 5), "m,t=b v= 20");
    assert_eq!(tags(parsed[3].as_ref().expect("line 8")), []);
    // A long bad line is shown cut, at a character boundary.
    let long = format!("m a={}", "é".repeat(300));
    let error = parse(&long, Precision::Nanoseconds, NOW_NS).remove(0).expect_err("bad");
    assert!(error.line.len() <= 200 && long.starts_with(&error.line), "{}", error.line.len());
}

/// A name of characters that need escapes, without a backslash (which no escaping can put
/// before a special character) and not `time`.
fn name() -> impl Strategy<Value = String> {
    "[a-z0-9 ,=\"_µ⚡]{1,8}".prop_filter("not time", |s| s != "time")
}

fn escape(s: &str, specials: &[u8]) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii() && specials.contains(&(c as u8)) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<i64>().prop_map(FieldValue::I64),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(FieldValue::F64),
        any::<bool>().prop_map(FieldValue::Bool),
        "[^\n]{0,12}".prop_map(|s| FieldValue::String(s.into())),
    ]
}

fn render(value: &FieldValue) -> String {
    match value {
        FieldValue::I64(n) => format!("{n}i"),
        // Rust writes the shortest text that reads back to the same float.
        FieldValue::F64(f) => format!("{f:?}").replace("inf", "x"),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

/// The rows and errors of `body` parsed into columns (twice, with one key cache: keys parsed,
/// then keys from the cache) and into points, each as (line number, table, point with its
/// fields sorted by name) and the errors.
type Rows = (Vec<(usize, String, Point)>, Vec<LineError>);
fn rows_both_ways(body: &str) -> (Rows, Rows) {
    let points = parse(body, Precision::Seconds, NOW_NS);
    let cache = KeyCache::default();
    let columns = parse_columns(body, Precision::Seconds, NOW_NS, &cache);
    let again = parse_columns(body, Precision::Seconds, NOW_NS, &cache);
    assert_eq!(again.errors, columns.errors, "{body}");
    assert_eq!(again.tables, columns.tables, "{body}");
    // Columns hold fields in the order the batch first had them; a point in the line's.
    let sorted = |mut p: Point| {
        p.fields.sort_by(|a, b| a.0.cmp(&b.0));
        p
    };
    let mut rows: Vec<(usize, String, Point)> = Vec::new();
    for (table, columns, numbers) in &columns.tables {
        assert_eq!(columns.len(), numbers.len());
        rows.extend(numbers.iter().enumerate().map(|(row, n)| (*n, table.clone(), sorted(columns.point(row)))));
    }
    rows.sort_by_key(|(n, _, _)| *n);
    let (mut expected, mut errors) = (Vec::new(), Vec::new());
    for line in points {
        match line {
            Ok(l) => expected.push((l.line_number, l.table, sorted(l.point))),
            Err(e) => errors.push(e),
        }
    }
    ((rows, columns.errors), (expected, errors))
}

/// Lines read by the fields of the line before them (same keys as written, in the same order)
/// give what any line gives, and lines that leave that pattern in any way are read in full.
#[test]
fn lines_that_repeat_the_fields_before_them_parse_as_any_line() {
    let body = [
        "m 9",
        "m,s=1 a=1,b\\ c=2i,d=\"x\" 10",
        "m,s=2 a=1.5,b\\ c=3i,d=\"y, z\" 11",
        "m,s=1 a=2,b\\ c=4i,d=\"\" 12",
        "m,s=1 a=2,b\\ c=4i 13",
        "m,s=1 a=2,b\\ c=4i,d=\"w\",e=t 14",
        "m,s=1 a=3,b\\ c=5i,d=\"v\"\t15",
        "m,s=1 a=3,b\\ c=5i,d=\"v\"",
        "m,s=1 a=3,b\\ c=5i,d=\"v\" 1x",
        "m,s=1 a=3,b\\ c=5i,d=\"unterminated 16",
        "m,s=1 a=x,b\\ c=5i,d=\"v\" 17",
        "m,s=1 b\\ c=5i,a=3,d=\"v\" 18",
        "m,s=1  a=4,b\\ c=6i,d=\"u\"  19",
        "m,s=1 a=4,b\\ c=6i,d=\"u\",a=5 20",
        "m,s=1 a=4,b\\ c=6i,d=\"u\" 21",
        "m,s=1 e=4,f\\ g=6i,h=\"u\" 21",
        "m,s=1 a=4,b\\ c=6i,d=\"u\",",
        "m,time=1 a=4,b\\ c=6i,d=\"u\" 22",
        "n a=4,b\\ c=6i,d=\"u\" 23",
        "m a=4,b\\ c=6i,d=\"u\" 24",
        "m a=4,ab=1 25",
        "m a=4,a=1 26",
        "m a=4 27",
        "m a==4 28",
        "m a=4i 29",
    ]
    .join("\n");
    let ((rows, errors), (expected, expected_errors)) = rows_both_ways(&body);
    assert_eq!(errors, expected_errors);
    assert_eq!(rows, expected);
    // The body holds both kinds, so neither comparison is vacuous.
    assert!(rows.len() >= 15 && errors.len() >= 4, "{rows:?} {errors:?}");
}

proptest! {
    #[test]
    fn points_written_with_their_escapes_parse_back(
        table in name().prop_filter("no comment", |s| !s.starts_with('#')),
        tags in prop::collection::btree_map(name(), name(), 0..4),
        fields in prop::collection::btree_map(name(), value(), 1..5),
        time in any::<i64>(),
    ) {
        let mut line = escape(&table, MEASUREMENT_ESCAPES);
        for (k, v) in &tags {
            line.push_str(&format!(",{}={}", escape(k, KEY_ESCAPES), escape(v, KEY_ESCAPES)));
        }
        let rendered: Vec<String> = fields.iter().map(|(k, v)| format!("{}={}", escape(k, KEY_ESCAPES), render(v))).collect();
        line.push_str(&format!(" {} {time}", rendered.join(",")));
        let parsed = parse(&line, Precision::Nanoseconds, NOW_NS);
        prop_assert_eq!(parsed.len(), 1);
        let parsed = parsed[0].clone().map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
        prop_assert_eq!(&parsed.table, &table);
        prop_assert_eq!(parsed.point.tags, tags.into_iter().collect::<Vec<_>>());
        let expected: Vec<(String, FieldValue)> = fields.into_iter().collect();
        prop_assert!(parsed.point.fields.len() == expected.len()
            && parsed.point.fields.iter().zip(&expected).all(|(a, b)| a.0 == b.0 && a.1.same(&b.1)), "{line}");
        prop_assert_eq!(parsed.point.time.0, time);
    }

    /// Any bytes: each line parses or is reported, nothing panics.
    #[test]
    fn any_text_is_parsed_or_reported(body in "[a-z ,=\"\\\\0-9.\n#tTfFiu-]{0,80}") {
        let lines = body.split('\n').filter(|l| { let t = l.trim(); !t.is_empty() && !t.starts_with('#') }).count();
        prop_assert_eq!(parse(&body, Precision::Seconds, NOW_NS).len(), lines);
    }

    /// Parsing into columns gives the same rows and the same errors as parsing into points,
    /// for bodies whose lines repeat keys, mix tables, conflict and fail in every way.
    #[test]
    fn columns_hold_what_points_hold(
        lines in prop::collection::vec(
            (
                prop::sample::select(vec!["m,a=1", "m,a=2", "m", "n,a=1,b=x", "m,time=1", "m,a=1,a=2", "m,a\\ b=1", ",a=1", "m,a="]),
                "([a-c]=([0-9]{1,2}i?|\"s\"|t|1\\.5|x)(,[a-c]=[0-9]i?){0,2}|time=1|)( [0-9]{1,3}| x)?",
            ),
            0..30,
        ),
        junk in "[a-z ,=\"\\\\0-9.\n#tTfFiu-]{0,40}",
    ) {
        let mut body: Vec<String> = lines.iter().map(|(key, rest)| format!("{key} {rest}")).collect();
        body.push(junk);
        let body = body.join("\n");
        let (columns, points) = rows_both_ways(&body);
        prop_assert_eq!(columns, points, "{}", body);
    }

    /// The fast path for plain numbers reads what the general path reads, where it reads
    /// anything: the same value, to the bit, and the same end.
    #[test]
    fn plain_numbers_read_as_the_general_path_reads_them(
        text in "-?[0-9]{0,20}(\\.[0-9]{0,20})?i?",
        float in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        decimals in 0usize..17,
        end in prop::sample::select(vec!["", ",", " ", "\t", "x", "e5", "u"]),
    ) {
        for text in [text, format!("{float:.decimals$}"), format!("{float}")] {
            let line = format!("{text}{end}");
            let Some((value, at)) = plain_number(&line, 0) else { continue };
            prop_assert_eq!(at, text.len(), "{}", line);
            let general = unquoted_value(&text).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
            prop_assert!(value.same(&general), "{}: {:?} != {:?}", line, value, general);
        }
    }
}
