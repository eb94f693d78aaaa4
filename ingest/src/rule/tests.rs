//! Rules against seed-shaped messages and the bad inputs a fleet sends.

use super::*;

const SEED_RULE: &str = "SELECT topic(6) AS sensor_id, topic(4) AS station_id, topic(5) AS sensor, sensor_timestamp, \
    cast(sensor_value AS float) AS sensor_value, cast(sensor_value_smoothed AS float) AS sensor_value_smoothed, \
    cast(direction AS int) AS direction FROM 'weather/+/+/+/+/+'";
const TOPIC: &str = "weather/wa/seattle/st-00001/temperature/st-00001-temperature";
const ARRIVAL_NS: i64 = 1_700_000_000_000_000_000;

fn seed_rule() -> Rule {
    Rule::new(RuleSpec {
        name: "seed".into(),
        sql: SEED_RULE.into(),
        table: "weather".into(),
        tags: vec!["station_id".into(), "sensor".into(), "sensor_id".into()],
        time: Some("sensor_timestamp".into()),
        time_unit: TimeUnit::Ms,
    })
    .expect("the seed rule compiles")
}

fn apply(rule: &Rule, topic: &str, payload: &str) -> Result<Option<Point>> {
    let json: Json = serde_json::from_str(payload).expect("test payloads are JSON");
    rule.apply(&Message { topic, payload: payload.as_bytes(), client_id: "device-1", arrival_ns: ARRIVAL_NS, stream: None }, &json)
}

fn field<'p>(point: &'p Point, name: &str) -> Option<&'p FieldValue> {
    point.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[test]
fn the_seed_rule_maps_topic_levels_to_tags_and_casts_fields() {
    let payload = r#"{"sensor_timestamp": 1700000000123, "sensor_value": "21.5", "sensor_value_smoothed": 21, "direction": "-1"}"#;
    let point = apply(&seed_rule(), TOPIC, payload).expect("stored").expect("not filtered");
    assert_eq!(point.time.0, 1_700_000_000_123_000_000);
    assert_eq!(
        point.tags,
        vec![
            ("station_id".to_owned(), "st-00001".to_owned()),
            ("sensor".to_owned(), "temperature".to_owned()),
            ("sensor_id".to_owned(), "st-00001-temperature".to_owned()),
        ]
    );
    assert_eq!(field(&point, "sensor_value"), Some(&FieldValue::F64(21.5)));
    // A whole number stays a double: the column's type does not depend on one reading.
    assert_eq!(field(&point, "sensor_value_smoothed"), Some(&FieldValue::F64(21.0)));
    assert_eq!(field(&point, "direction"), Some(&FieldValue::I64(-1)));
    assert!(!seed_rule().matches("weather/wa/seattle/st-00001/temperature"));
}

#[test]
fn select_star_adds_payload_keys_and_later_items_override() {
    let rule = Rule::new(RuleSpec {
        name: "all".into(),
        sql: "SELECT *, 15 AS speed, topic(2) AS device, cast(temp AS int) AS temp FROM 'sensors/+/data' WHERE temp > 0".into(),
        table: "t".into(),
        tags: vec!["device".into()],
        time: None,
        time_unit: TimeUnit::Auto,
    })
    .expect("compiles");
    let point = apply(&rule, "sensors/d-7/data", r#"{"temp": 20.7, "ok": true, "meta": {"fw": 3}, "gone": null}"#)
        .expect("stored")
        .expect("not filtered");
    assert_eq!(point.time.0, ARRIVAL_NS, "no time output: the arrival time");
    assert_eq!(point.tags, vec![("device".to_owned(), "d-7".to_owned())]);
    assert_eq!(field(&point, "temp"), Some(&FieldValue::I64(20)));
    assert_eq!(field(&point, "speed"), Some(&FieldValue::I64(15)));
    assert_eq!(field(&point, "ok"), Some(&FieldValue::Bool(true)));
    assert_eq!(field(&point, "meta"), Some(&FieldValue::String(r#"{"fw":3}"#.into())));
    assert_eq!(field(&point, "gone"), None);
    assert!(apply(&rule, "sensors/d-7/data", r#"{"temp": -1}"#).expect("no error").is_none(), "WHERE filters");
    assert!(apply(&rule, "sensors/d-7/data", r#"{"other": 1}"#).expect("no error").is_none(), "Undefined is false");
}

#[test]
fn times_in_every_unit_and_rfc3339() {
    let rule = |unit| {
        Rule::new(RuleSpec {
            name: "t".into(),
            sql: "SELECT ts, v FROM '#'".into(),
            table: "t".into(),
            tags: vec![],
            time: Some("ts".into()),
            time_unit: unit,
        })
        .expect("compiles")
    };
    let expected = 1_699_999_999_000_000_000i64;
    for (unit, ts) in [
        (TimeUnit::Auto, "1699999999"),
        (TimeUnit::Auto, "1699999999000"),
        (TimeUnit::Auto, "1699999999000000"),
        (TimeUnit::Auto, "1699999999000000000"),
        (TimeUnit::Auto, r#""2023-11-14T22:13:19Z""#),
        (TimeUnit::Auto, r#""1699999999000""#),
        (TimeUnit::S, "1699999999"),
        (TimeUnit::Us, "1699999999000000"),
    ] {
        let point = apply(&rule(unit), "a", &format!(r#"{{"ts": {ts}, "v": 1}}"#)).expect("stored").expect("kept");
        assert_eq!(point.time.0, expected, "{ts} as {unit:?}");
    }
    // Nanoseconds keep every digit; fractions of a unit are rounded to the nanosecond.
    let point = apply(&rule(TimeUnit::Auto), "a", r#"{"ts": 1699999999000000001, "v": 1}"#).expect("stored").expect("kept");
    assert_eq!(point.time.0, expected + 1);
    let point = apply(&rule(TimeUnit::S), "a", r#"{"ts": 1699999999.25, "v": 1}"#).expect("stored").expect("kept");
    assert_eq!(point.time.0, expected + 250_000_000);
}

#[test]
fn bad_messages_are_rejected_with_the_rule_and_reason() {
    let rule = seed_rule();
    let cases = [
        (r#"{"sensor_value": 1}"#, "time sensor_timestamp is missing"),
        (r#"{"sensor_timestamp": -5, "sensor_value": 1}"#, "before 1970"),
        (r#"{"sensor_timestamp": "yesterday", "sensor_value": 1}"#, "is not a time"),
        (r#"{"sensor_timestamp": 1700000000000, "sensor_value": "abc"}"#, "no fields"),
        (r#"[1, 2]"#, "time sensor_timestamp is missing"),
    ];
    for (payload, reason) in cases {
        let err = apply(&rule, TOPIC, payload).expect_err(payload).to_string();
        assert!(err.starts_with("rule seed: ") && err.contains(reason), "{payload}: {err}");
    }
    let err = apply(&rule, "weather/wa/seattle/st-1/temperature/", r#"{"sensor_timestamp": 1700000000000, "sensor_value": 1}"#);
    assert!(err.is_ok(), "an empty level is still a level: {err:?}");
}

#[test]
fn rules_that_cannot_work_are_refused_at_start() {
    let spec = |sql: &str, tags: &[&str]| RuleSpec {
        name: "r".into(),
        sql: sql.into(),
        table: "t".into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        time: None,
        time_unit: TimeUnit::Auto,
    };
    for (sql, tags, reason) in [
        ("SELECT v FROM sensors", &[][..], "FROM '<topic filter>'"),
        ("SELECT v FROM 'a/#/b'", &[], "whole level"),
        ("SELECT v FROM 'a'", &["station"], "no output named station"),
        ("SELECT v + 1 FROM 'a'", &[], "needs a name"),
        ("SELECT upper(v) AS u FROM 'a'", &[], "unsupported"),
        ("DELETE FROM 'a'", &[], "one SELECT"),
    ] {
        let err = Rule::new(spec(sql, tags)).expect_err(sql).to_string();
        assert!(err.contains(reason) && err.contains("r: "), "{sql}: {err}");
    }
}
