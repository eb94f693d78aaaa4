//! IoT rules: SQL in the style of AWS IoT rules that turns an MQTT message into a table row.
//!
//! ```sql
//! SELECT topic(6) AS sensor_id, topic(4) AS station_id, topic(5) AS sensor, sensor_timestamp,
//!        cast(sensor_value AS double) AS sensor_value
//! FROM 'weather/+/+/+/+/+' WHERE sensor_value > -100
//! ```
//!
//! A rule's outputs become one row of its table: the outputs it names as tags, the time from
//! its time output (or the arrival time), and every other output a field. `SELECT *` outputs
//! the payload's top-level keys, and the items after it add to or override them. Outputs that
//! are Undefined or NULL are left out; objects and arrays are stored as JSON text.

mod expr;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sqlparser::ast::{SelectItem, SetExpr, Statement};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

use isobar_storage::{FieldValue, Point};

use crate::error::{Error, Result};
use crate::topic::TopicFilter;
use expr::{Context, Expr, Val};

/// A rule as configured.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Names the rule in errors and dead letters.
    pub name: String,
    /// `SELECT ... FROM '<topic filter>' [WHERE ...]`.
    pub sql: String,
    /// The table rows go to.
    pub table: String,
    /// Outputs that identify the series (tags); every other output except the time is a field.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The output holding the reading's time; without one, the arrival time is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The time output's unit.
    #[serde(default)]
    pub time_unit: TimeUnit,
}

/// Units of a numeric time output.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Seconds, milliseconds, microseconds or nanoseconds since 1970, told apart by magnitude
    /// (a reading after 1973 and before 2286 is unambiguous). Strings are RFC 3339.
    #[default]
    Auto,
    S,
    Ms,
    Us,
    Ns,
}

impl TimeUnit {
    /// What a time in this unit is, for messages.
    fn describe(self) -> &'static str {
        match self {
            Self::Auto => "seconds, milliseconds, microseconds or nanoseconds since 1970 (before 2262), or RFC 3339",
            Self::S => "seconds since 1970 (before 2262)",
            Self::Ms => "milliseconds since 1970 (before 2262)",
            Self::Us => "microseconds since 1970 (before 2262)",
            Self::Ns => "nanoseconds since 1970",
        }
    }
}

/// One message offered to the rules.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The MQTT topic; for a stream record, the stream's name, which rules match by their
    /// `FROM` (`topic()` is Undefined for it).
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub client_id: &'a str,
    /// When isobar received it.
    pub arrival_ns: i64,
    /// Set for a record read from a stream (Kinesis).
    pub stream: Option<StreamRecord<'a>>,
}

/// What a rule can read of a stream record besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRecord<'a> {
    pub partition_key: &'a str,
    pub sequence_number: &'a str,
    /// Its place in a KPL aggregate; `None` for a record that was not aggregated.
    pub sub_sequence_number: Option<u64>,
    pub shard_id: &'a str,
    /// When the stream accepted it, in milliseconds since 1970.
    pub arrival_ms: i64,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    spec: RuleSpec,
    filter: TopicFilter,
    select_all: bool,
    outputs: Vec<(String, Expr)>,
    condition: Option<Expr>,
}

impl Rule {
    /// Compiles a configured rule; the error names the rule and what is wrong with it.
    pub fn new(spec: RuleSpec) -> Result<Self> {
        // Every error below is about this rule: prefix its name.
        let named = |e: Error| match e {
            Error::Rule(reason) => Error::Rule(format!("{}: {reason}", spec.name)),
            other => other,
        };
        let (sql, filter) = take_topic_filter(&spec.sql).map_err(named)?;
        let filter = TopicFilter::parse(&filter).map_err(named)?;
        let mut statements = Parser::parse_sql(&GenericDialect {}, &sql).map_err(|e| named(Error::Rule(e.to_string())))?;
        let (Some(Statement::Query(query)), None) = (statements.pop(), statements.pop()) else {
            return Err(named(Error::Rule("a rule is one SELECT".into())));
        };
        let SetExpr::Select(select) = *query.body else { return Err(named(Error::Rule("a rule is one SELECT".into()))) };
        let mut select_all = false;
        let mut outputs = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) => select_all = true,
                SelectItem::ExprWithAlias { expr, alias } => outputs.push((alias.value.clone(), Expr::compile(expr).map_err(named)?)),
                SelectItem::UnnamedExpr(expr) => {
                    let name = match expr {
                        sqlparser::ast::Expr::Identifier(i) => i.value.clone(),
                        sqlparser::ast::Expr::CompoundIdentifier(ids) => ids.last().map(|i| i.value.clone()).unwrap_or_default(),
                        other => return Err(named(Error::Rule(format!("`{other}` needs a name: `{other} AS name`")))),
                    };
                    outputs.push((name, Expr::compile(expr).map_err(named)?));
                }
                other => return Err(named(Error::Rule(format!("unsupported select item {other}")))),
            }
        }
        let condition = select.selection.as_ref().map(Expr::compile).transpose().map_err(named)?;
        let produces = |name: &str| select_all || outputs.iter().any(|(n, _)| n == name);
        for required in spec.tags.iter().chain(&spec.time) {
            if !produces(required) {
                return Err(named(Error::Rule(format!("the SELECT has no output named {required}"))));
            }
        }
        Ok(Self { spec, filter, select_all, outputs, condition })
    }

    /// The configured rule.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// Whether messages on `topic` go through this rule.
    pub fn matches(&self, topic: &str) -> bool {
        self.filter.matches(topic)
    }

    /// The row a message makes, `Ok(None)` when the `WHERE` leaves it out, or the reason it
    /// cannot be stored. `payload` is the message's parsed JSON.
    pub fn apply(&self, message: &Message<'_>, payload: &Json) -> Result<Option<Point>> {
        let cx = Context {
            topic: if message.stream.is_some() { None } else { Some(message.topic) },
            stream: message.stream,
            client_id: message.client_id,
            arrival_ms: message.arrival_ns / 1_000_000,
            payload,
        };
        if let Some(condition) = &self.condition
            && condition.eval(&cx) != Some(Val::Bool(true))
        {
            return Ok(None);
        }
        let mut outputs: Vec<(String, Val)> = Vec::new();
        if self.select_all {
            let object = payload.as_object().ok_or_else(|| self.reject("SELECT * needs a JSON object payload"))?;
            outputs.extend(object.iter().map(|(k, v)| (k.clone(), Val::from_json(v))));
        }
        for (name, expr) in &self.outputs {
            let value = expr.eval(&cx);
            outputs.retain(|(n, _)| n != name);
            if let Some(value) = value {
                outputs.push((name.clone(), value));
            }
        }
        outputs.retain(|(_, v)| *v != Val::Null);
        let mut take = |name: &str| outputs.iter().position(|(n, _)| n == name).map(|i| outputs.remove(i).1);

        let time_ns = match &self.spec.time {
            None => message.arrival_ns,
            Some(name) => {
                let value = take(name).ok_or_else(|| self.reject(format!("time {name} is missing")))?;
                let time_ns = time_ns(&value, self.spec.time_unit)
                    .ok_or_else(|| self.reject(format!("time {name} = {value} is not a time in {}", self.spec.time_unit.describe())))?;
                if time_ns < 0 {
                    return Err(self.reject(format!("time {name} is before 1970")));
                }
                time_ns
            }
        };
        let mut point = Point::new(time_ns);
        for tag in &self.spec.tags {
            let text = match take(tag) {
                Some(Val::Str(s)) => s,
                Some(Val::Int(i)) => i.to_string(),
                Some(Val::Float(f)) => f.to_string(),
                Some(Val::Num(n)) => n.to_string(),
                Some(Val::Bool(b)) => b.to_string(),
                Some(Val::Json(j)) => j.to_string(),
                Some(Val::Null) | None => return Err(self.reject(format!("tag {tag} is missing"))),
            };
            point.tags.push((tag.clone(), text));
        }
        for (name, value) in outputs {
            let field = match value {
                Val::Float(f) if !f.is_finite() => return Err(self.reject(format!("field {name} is {f}"))),
                Val::Float(f) => FieldValue::F64(f),
                Val::Num(n) => match n.as_f64() {
                    Some(f) if f.is_finite() => FieldValue::F64(f),
                    _ => return Err(self.reject(format!("field {name} = {n} is outside a double's range"))),
                },
                Val::Int(i) => FieldValue::I64(i),
                Val::Bool(b) => FieldValue::Bool(b),
                Val::Str(s) => FieldValue::String(s.into()),
                Val::Json(j) => FieldValue::String(j.to_string().into()),
                Val::Null => continue,
            };
            point.fields.push((name, field));
        }
        if point.fields.is_empty() {
            return Err(self.reject("no fields"));
        }
        Ok(Some(point))
    }

    fn reject(&self, reason: impl std::fmt::Display) -> Error {
        Error::Rejected(format!("rule {}: {reason}", self.spec.name))
    }
}

/// The SQL with its `FROM '<filter>'` made a plain identifier SQL parsers accept, and the filter.
fn take_topic_filter(sql: &str) -> Result<(String, String)> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().map_err(|e| Error::Rule(e.to_string()))?;
    let mut out = String::with_capacity(sql.len());
    let mut filter = None;
    let mut after_from = false;
    for token in &tokens {
        match token {
            Token::Whitespace(_) => {
                out.push_str(&token.to_string());
                continue;
            }
            Token::SingleQuotedString(s) if after_from && filter.is_none() => {
                filter = Some(s.clone());
                out.push_str("topic_messages");
                after_from = false;
                continue;
            }
            Token::Word(w) => after_from = w.value.eq_ignore_ascii_case("from"),
            _ => after_from = false,
        }
        out.push_str(&token.to_string());
    }
    let filter = filter.ok_or_else(|| Error::Rule("FROM '<topic filter>' is missing".into()))?;
    Ok((out, filter))
}

fn time_ns(value: &Val, unit: TimeUnit) -> Option<i64> {
    let number = match value {
        Val::Int(i) => Json::from(*i),
        Val::Float(f) => Json::from(*f),
        Val::Num(n) => Json::Number(n.clone()),
        Val::Str(s) => match serde_json::from_str::<serde_json::Number>(s.trim()) {
            Ok(n) => Json::Number(n),
            Err(_) => return chrono::DateTime::parse_from_rfc3339(s.trim()).ok()?.timestamp_nanos_opt(),
        },
        _ => return None,
    };
    let magnitude = number.as_f64()?.abs();
    let unit = match unit {
        TimeUnit::Auto if magnitude < 1e11 => TimeUnit::S,
        TimeUnit::Auto if magnitude < 1e14 => TimeUnit::Ms,
        TimeUnit::Auto if magnitude < 1e17 => TimeUnit::Us,
        TimeUnit::Auto => TimeUnit::Ns,
        unit => unit,
    };
    let ns_per_unit: i64 = match unit {
        TimeUnit::S => 1_000_000_000,
        TimeUnit::Ms => 1_000_000,
        TimeUnit::Us => 1_000,
        _ => 1,
    };
    // Whole numbers exactly (a nanosecond time has more digits than a double); fractions of a
    // unit through a double.
    match number.as_i64() {
        Some(i) => i.checked_mul(ns_per_unit),
        None => {
            let f = number.as_f64()?;
            let whole = f.trunc();
            if !whole.is_finite() || whole.abs() >= 9.2e18 {
                return None;
            }
            (whole as i64).checked_mul(ns_per_unit)?.checked_add((f.fract() * ns_per_unit as f64).round() as i64)
        }
    }
}

#[cfg(test)]
mod tests;
