//! Publishing final rollup windows as JSON over MQTT, as the seed's stream processor emitted
//! its 60-second aggregates: each window that becomes final (and again after late rows
//! changed it) goes on a topic made from its tags to the subscribers of isobar's listener, or
//! with `broker` to an external broker (`broker.rs`).
//!
//! An `[[emit]]` entry names the rollup table, a topic template (`{tag}` is replaced by the
//! series' value of that tag, `{table}` by the table) and optionally the JSON object's keys,
//! each mapped to a rollup column or `time` (the window's start, `YYYY-MM-DD HH:MM:SS.sss`
//! UTC as in the seed). Without `fields`, every tag, `time` (RFC 3339) and every column goes
//! out under its own name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use isobar_storage::{FieldValue, FinalWindow};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::mqtt_broker::Broker;
use crate::mqtt_codec::Publish;
use crate::topic::TopicFilter;

pub mod broker;

/// One emission rule, as configured (`[[emit]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmitSpec {
    /// The rollup table whose final windows go out, e.g. `weather_1m`.
    pub table: String,
    /// Topic template, e.g. `rollups/weather/{station_id}/{sensor_id}`.
    pub topic: String,
    /// JSON key → rollup column (a tag, an aggregate such as `sensor_value_avg`, or `time`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// QoS of the deliveries to subscribers (0 or 1).
    #[serde(default)]
    pub qos: u8,
    /// Keep the newest window per topic for subscribers that arrive later.
    #[serde(default)]
    pub retain: bool,
    /// An external broker to publish to, `mqtt://HOST:PORT` or `mqtts://HOST:PORT`; unset, the
    /// windows go to the subscribers of isobar's own listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// The client id isobar publishes to `broker` with; unset: `isobar-emit-<table>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// PEM file of the CA certificates that may sign an `mqtts://` broker's certificate;
    /// unset: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_path: Option<PathBuf>,
}

impl EmitSpec {
    /// Refuses an entry that cannot work, naming what is wrong.
    pub fn check(&self) -> Result<()> {
        if self.table.is_empty() || self.topic.is_empty() {
            return Err(Error::Config(format!("emit: table and topic are required (table {:?}, topic {:?})", self.table, self.topic)));
        }
        if self.topic.contains(['+', '#']) {
            return Err(Error::Config(format!("emit {}: topic {} has a wildcard", self.table, self.topic)));
        }
        if self.qos > 1 {
            return Err(Error::Config(format!("emit {}: qos is 0 or 1", self.table)));
        }
        match &self.broker {
            Some(broker) => crate::remote::check(broker, self.ca_path.as_deref(), &format!("emit {}", self.table))?,
            None if self.client_id.is_some() || self.username.is_some() || self.password.is_some() || self.ca_path.is_some() => {
                return Err(Error::Config(format!("emit {}: client_id, username, password and ca_path need a broker", self.table)));
            }
            None => {}
        }
        Ok(())
    }

    /// The topics this entry publishes to isobar's listener, as a filter (each level that names
    /// a tag is `+`); `None` when it publishes to an external broker. No client may publish
    /// to them.
    pub fn reserved_topics(&self) -> Option<TopicFilter> {
        if self.broker.is_some() {
            return None;
        }
        let levels: Vec<&str> = self.topic.split('/').map(|level| if level.contains('{') { "+" } else { level }).collect();
        TopicFilter::parse(&levels.join("/")).ok()
    }

    /// The topic of `window`; `None` when the window lacks a tag the template names.
    pub fn topic_of(&self, window: &FinalWindow) -> Option<String> {
        fill_topic(&self.topic, |name| if name == "table" { Some(window.table.as_str()) } else { tag(window, name) })
    }

    /// The JSON payload of `window`.
    pub fn payload(&self, window: &FinalWindow) -> String {
        let mut object = Map::new();
        if self.fields.is_empty() {
            object.insert("time".into(), Value::String(time_rfc3339(window.start_ns)));
            for (name, value) in &window.tags {
                object.insert(name.clone(), Value::String(value.clone()));
            }
            for (name, value) in &window.fields {
                object.insert(name.clone(), json(value));
            }
        } else {
            for (key, column) in &self.fields {
                let value = match column.as_str() {
                    "time" => Value::String(time_seed(window.start_ns)),
                    column => match tag(window, column) {
                        Some(tag) => Value::String(tag.to_owned()),
                        None => window.fields.iter().find(|(n, _)| n == column).map_or(Value::Null, |(_, v)| json(v)),
                    },
                };
                object.insert(key.clone(), value);
            }
        }
        Value::Object(object).to_string()
    }
}

/// `template` with each `{name}` replaced by `value(name)`; `None` when a name has no value. A
/// value's `/`, `+` and `#` become `_`: it may not open new topic levels or wildcards.
pub fn fill_topic<'a>(template: &str, value: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}')? + open;
        out.push_str(&rest[..open]);
        out.push_str(&value(&rest[open + 1..close])?.replace(['/', '+', '#'], "_"));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn tag<'a>(window: &'a FinalWindow, name: &str) -> Option<&'a str> {
    window.tags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn json(value: &FieldValue) -> Value {
    match value {
        FieldValue::F64(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        FieldValue::I64(x) => Value::from(*x),
        FieldValue::Bool(x) => Value::Bool(*x),
        FieldValue::String(s) => Value::String(s.to_string()),
    }
}

fn time_rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The seed's `record_timestamp` format.
fn time_seed(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// Where an entry's windows go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The subscribers of isobar's listener.
    Listener(Arc<Broker>),
    /// The outbox of an external broker's connection ([`broker::spawn`]).
    Broker(tokio::sync::mpsc::Sender<Publish>),
}

/// Publishes every window from `windows` that an entry of `specs` names to the entry's
/// target (`targets`, one per entry), until storage closes the queue. A window an external
/// broker's full outbox cannot take is counted in `dropped`. Blocking: run it on its own
/// thread.
pub fn run(specs: Arc<Vec<EmitSpec>>, targets: Vec<Target>, windows: crossbeam_channel::Receiver<FinalWindow>, dropped: Arc<AtomicU64>) {
    for window in windows {
        for (spec, target) in specs.iter().zip(&targets).filter(|(s, _)| s.table == window.table) {
            let Some(topic) = spec.topic_of(&window) else { continue };
            let publish =
                Publish { qos: spec.qos, dup: false, retain: spec.retain, topic, pkid: 0, payload: Bytes::from(spec.payload(&window)) };
            match target {
                Target::Listener(listener) => listener.publish(&[publish]),
                Target::Broker(outbox) => {
                    if outbox.try_send(publish).is_err() {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> FinalWindow {
        FinalWindow {
            table: "weather_1m".into(),
            start_ns: 1_478_672_940_000_000_000,
            tags: vec![
                ("sensor_id".into(), "dc2b8383eb79fe49".into()),
                ("station_id".into(), "qwb/KAM".into()),
                ("sensor".into(), "vib".into()),
            ],
            fields: vec![
                ("final".into(), FieldValue::Bool(true)),
                ("late_updates".into(), FieldValue::I64(0)),
                ("sensor_value_count".into(), FieldValue::I64(60)),
                ("sensor_value_sum".into(), FieldValue::F64(64.5)),
                ("sensor_value_avg".into(), FieldValue::F64(1.075)),
            ],
        }
    }

    #[test]
    fn the_seed_shape_comes_from_a_field_map() {
        let spec = EmitSpec {
            table: "weather_1m".into(),
            topic: "rollups/{station_id}/{sensor_id}".into(),
            fields: [
                ("sensor_id", "sensor_id"),
                ("sensor", "sensor"),
                ("sensor_avg_value", "sensor_value_avg"),
                ("60sec_sum_of_sensor_value", "sensor_value_sum"),
                ("60sec_number_of_msg", "sensor_value_count"),
                ("record_timestamp", "time"),
                ("missing", "no_such_column"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..EmitSpec::default()
        };
        assert_eq!(spec.topic_of(&window()).as_deref(), Some("rollups/qwb_KAM/dc2b8383eb79fe49"));
        assert_eq!(spec.reserved_topics().map(|f| f.as_str().to_owned()).as_deref(), Some("rollups/+/+"));
        let payload: Value = serde_json::from_str(&spec.payload(&window())).expect("JSON");
        assert_eq!(payload["sensor_avg_value"], 1.075);
        assert_eq!(payload["60sec_number_of_msg"], 60);
        assert_eq!(payload["record_timestamp"], "2016-11-09 06:29:00.000");
        assert_eq!(payload["sensor"], "vib");
        assert_eq!(payload["missing"], Value::Null);
        let unknown = EmitSpec { topic: "r/{nope}".into(), ..spec };
        assert_eq!(unknown.topic_of(&window()), None);
    }

    #[test]
    fn without_fields_everything_goes_out() {
        let spec = EmitSpec { table: "weather_1m".into(), topic: "{table}".into(), qos: 1, retain: true, ..EmitSpec::default() };
        let payload: Value = serde_json::from_str(&spec.payload(&window())).expect("JSON");
        assert_eq!(payload["time"], "2016-11-09T06:29:00Z");
        assert_eq!(payload["final"], true);
        assert_eq!(payload["sensor_value_sum"], 64.5);
        assert_eq!(spec.topic_of(&window()).as_deref(), Some("weather_1m"));
        assert!(EmitSpec { topic: "a/#".into(), ..spec.clone() }.check().is_err());
        assert!(spec.check().is_ok());
    }

    #[test]
    fn an_external_broker_is_checked() {
        let spec = EmitSpec { table: "weather_1m".into(), topic: "{table}".into(), ..EmitSpec::default() };
        let to = |broker: &str| EmitSpec { broker: Some(broker.into()), ..spec.clone() };
        assert!(to("mqtt://broker.local:1883").check().is_ok());
        let err = to("http://broker.local:1883").check().expect_err("not mqtt").to_string();
        assert!(err.contains("mqtt://HOST:PORT"), "{err}");
        let err = EmitSpec { username: Some("u".into()), ..spec.clone() }.check().expect_err("no broker").to_string();
        assert!(err.contains("need a broker"), "{err}");
        let err = EmitSpec { ca_path: Some("/ca.pem".into()), ..to("mqtt://b:1") }.check().expect_err("ca_path without TLS").to_string();
        assert!(err.contains("not mqtts://"), "{err}");
    }
}
