//! Alerts: a condition on a rollup table's columns, judged per series on every window that
//! becomes final, with notifications when a series starts and stops breaching it.
//!
//! An `[[alerts]]` entry names a rollup table (`weather_1m`), a `condition` (an SQL boolean
//! expression over its columns, `sensor_value_max > 40`), optionally a `filter` choosing the
//! series (`sensor = 'temperature'`), and how many consecutive final windows make a series
//! fire (`for_windows`) and resolve again (`resolve_windows`). Each series is `pending`
//! while it breaches for fewer windows than that, `firing` after, and `resolved` once it
//! stops; firing and resolving send a notification to every notifier the alert names
//! (`[[notifiers]]`: a webhook, Amazon SNS, or an MQTT topic).
//!
//! The judge (`alerts/judge.rs`) reads the windows between its cursor and the table's rollup
//! frontier with SQL, so windows that became final while isobar was down are judged after it
//! starts. Series states, cursors and the notifications not yet delivered are kept in
//! `<data_dir>/alerts.json` (`alerts/state.rs`), written before any notification goes out:
//! a transition is notified once, and at least once across crashes (a receiver tells a
//! repeat by the notification's `id`). `alerts/notify.rs` delivers, with retries and backoff.

mod judge;
mod notify;
mod state;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use isobar_ingest::emit::EmitSpec;
use isobar_ingest::mqtt_broker::Broker;
use isobar_ingest::topic::TopicFilter;
use isobar_query::QueryEngine;
use serde::{Deserialize, Serialize};

pub(crate) use judge::AlertMetrics;
pub(crate) use state::{SeriesRow, Store};

/// One alert, as configured (`[[alerts]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertSpec {
    pub(crate) name: String,
    /// The rollup table whose final windows are judged, e.g. `weather_1m`.
    pub(crate) table: String,
    /// An SQL boolean expression over the table's columns; true is a breach.
    pub(crate) condition: String,
    /// An SQL boolean expression choosing the series judged (by their tags); unset: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) filter: Option<String>,
    /// Consecutive breaching windows that make a series fire.
    #[serde(default = "one")]
    pub(crate) for_windows: u32,
    /// Consecutive windows without a breach that resolve a firing series.
    #[serde(default = "one")]
    pub(crate) resolve_windows: u32,
    /// The notifiers (`[[notifiers]]` names) told when a series fires and resolves.
    #[serde(default)]
    pub(crate) notify: Vec<String>,
}

fn one() -> u32 {
    1
}

/// Where notifications go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NotifierKind {
    /// A JSON POST to `url`.
    #[default]
    Webhook,
    /// A message to the Amazon SNS topic `topic_arn`.
    Sns,
    /// A publish to `topic` on isobar's MQTT listener, or on `broker`.
    Mqtt,
}

/// One notifier, as configured (`[[notifiers]]`). Which keys apply depends on `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NotifierSpec {
    pub(crate) name: String,
    pub(crate) kind: NotifierKind,
    /// Attempts at one notification before it is given up.
    pub(crate) attempts_max: u32,
    /// Time one attempt may take, in milliseconds.
    pub(crate) timeout_ms: u64,
    /// webhook: where to POST.
    pub(crate) url: String,
    /// webhook: the key of the HMAC-SHA256 signature in `X-Isobar-Signature`; unset: unsigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret: Option<String>,
    /// sns: the topic.
    pub(crate) topic_arn: String,
    /// sns: the region; unset: the topic ARN's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) region: Option<String>,
    /// sns: a server other than AWS's, e.g. `http://127.0.0.1:5000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint: Option<String>,
    /// sns: credentials; unset: from the AWS environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_access_key: Option<String>,
    /// mqtt: topic template; `{alert}`, `{state}`, `{table}` and the series' tags are filled in.
    pub(crate) topic: String,
    /// mqtt: QoS of the publish (0 or 1).
    pub(crate) qos: u8,
    /// mqtt: keep the newest notification per topic for subscribers that arrive later.
    pub(crate) retain: bool,
    /// mqtt: an external broker, `mqtt://HOST:PORT` or `mqtts://HOST:PORT`; unset: isobar's
    /// own listener. `client_id`, `username`, `password` and `ca_path` as for `[[emit]]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ca_path: Option<PathBuf>,
}

impl Default for NotifierSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: NotifierKind::Webhook,
            attempts_max: 10,
            timeout_ms: 10_000,
            url: String::new(),
            secret: None,
            topic_arn: String::new(),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            topic: String::new(),
            qos: 0,
            retain: false,
            broker: None,
            client_id: None,
            username: None,
            password: None,
            ca_path: None,
        }
    }
}

impl NotifierSpec {
    /// The MQTT publishing of a `mqtt` notifier, as an emitter's (whose checks and broker
    /// connection it shares).
    fn emit_spec(&self) -> EmitSpec {
        EmitSpec {
            table: format!("notifier {}", self.name),
            topic: self.topic.clone(),
            fields: Default::default(),
            qos: self.qos,
            retain: self.retain,
            broker: self.broker.clone(),
            client_id: self.client_id.clone().or_else(|| self.broker.as_ref().map(|_| format!("isobar-notify-{}", self.name))),
            username: self.username.clone(),
            password: self.password.clone(),
            ca_path: self.ca_path.clone(),
        }
    }

    /// The topics a `mqtt` notifier publishes to on isobar's own listener, which no client may
    /// publish to.
    pub(crate) fn reserved_topics(&self) -> Option<TopicFilter> {
        (self.kind == NotifierKind::Mqtt).then(|| self.emit_spec().reserved_topics()).flatten()
    }

    fn check(&self) -> Result<(), String> {
        let who = format!("notifiers {}", self.name);
        if self.name.is_empty() {
            return Err("notifiers: every notifier needs a name".into());
        }
        if self.attempts_max == 0 || self.timeout_ms == 0 {
            return Err(format!("{who}: attempts_max and timeout_ms must be above 0"));
        }
        fn set(keys: &[(&'static str, bool)]) -> Vec<&'static str> {
            keys.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect()
        }
        let (webhook, sns, mqtt) = (
            set(&[("url", !self.url.is_empty()), ("secret", self.secret.is_some())]),
            set(&[
                ("topic_arn", !self.topic_arn.is_empty()),
                ("region", self.region.is_some()),
                ("endpoint", self.endpoint.is_some()),
                ("access_key_id", self.access_key_id.is_some()),
                ("secret_access_key", self.secret_access_key.is_some()),
            ]),
            set(&[
                ("topic", !self.topic.is_empty()),
                ("qos", self.qos != 0),
                ("retain", self.retain),
                ("broker", self.broker.is_some()),
                ("client_id", self.client_id.is_some()),
                ("username", self.username.is_some()),
                ("password", self.password.is_some()),
                ("ca_path", self.ca_path.is_some()),
            ]),
        );
        let foreign: Vec<&str> = match self.kind {
            NotifierKind::Webhook => [sns, mqtt].concat(),
            NotifierKind::Sns => [webhook, mqtt].concat(),
            NotifierKind::Mqtt => [webhook, sns].concat(),
        };
        if let Some(key) = foreign.first() {
            return Err(format!("{who}: {key} does not apply to kind = \"{}\"", self.kind_name()));
        }
        match self.kind {
            NotifierKind::Webhook => {
                let url = reqwest::Url::parse(&self.url).map_err(|e| format!("{who}: url {:?}: {e}", self.url))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!("{who}: url {} is not http:// or https://", self.url));
                }
            }
            NotifierKind::Sns => {
                if !self.topic_arn.starts_with("arn:") || self.topic_arn.split(':').count() != 6 {
                    return Err(format!("{who}: topic_arn {:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)", self.topic_arn));
                }
                if self.access_key_id.is_some() != self.secret_access_key.is_some() {
                    return Err(format!("{who}: access_key_id and secret_access_key go together"));
                }
            }
            NotifierKind::Mqtt => self.emit_spec().check().map_err(|e| format!("{who}: {e}"))?,
        }
        Ok(())
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            NotifierKind::Webhook => "webhook",
            NotifierKind::Sns => "sns",
            NotifierKind::Mqtt => "mqtt",
        }
    }
}

impl AlertSpec {
    fn check(&self, notifiers: &[NotifierSpec]) -> Result<(), String> {
        let who = format!("alerts {}", self.name);
        if self.name.is_empty() || self.table.is_empty() || self.condition.is_empty() {
            return Err(format!("alerts: name, table and condition are required (name {:?}, table {:?})", self.name, self.table));
        }
        if self.for_windows == 0 || self.resolve_windows == 0 {
            return Err(format!("{who}: for_windows and resolve_windows must be at least 1"));
        }
        check_expression(&self.condition).map_err(|e| format!("{who}: condition {:?}: {e}", self.condition))?;
        if let Some(filter) = &self.filter {
            check_expression(filter).map_err(|e| format!("{who}: filter {filter:?}: {e}"))?;
        }
        for name in &self.notify {
            if !notifiers.iter().any(|n| &n.name == name) {
                return Err(format!("{who}: notify names {name}, which no [[notifiers]] entry is"));
            }
        }
        Ok(())
    }

    /// What the alert's series states depend on: when it changes, they start over.
    fn definition(&self) -> String {
        format!("{}|{}|{}|{}|{}", self.table, self.condition, self.filter.as_deref().unwrap_or(""), self.for_windows, self.resolve_windows)
    }
}

/// One SQL expression and nothing after it (no second statement hides in a condition).
fn check_expression(sql: &str) -> Result<(), String> {
    let mut parser = Parser::new(&PostgreSqlDialect {}).try_with_sql(sql).map_err(|e| e.to_string())?;
    parser.parse_expr().map_err(|e| e.to_string())?;
    match parser.peek_token().token {
        datafusion::sql::sqlparser::tokenizer::Token::EOF => Ok(()),
        token => Err(format!("unexpected {token} after the expression")),
    }
}

/// Checks every alert and notifier: unique names, known notifiers, expressions that parse.
pub(crate) fn check(alerts: &[AlertSpec], notifiers: &[NotifierSpec]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for notifier in notifiers {
        notifier.check()?;
        if !names.insert(&notifier.name) {
            return Err(format!("notifiers: two are named {}", notifier.name));
        }
    }
    let mut names = BTreeSet::new();
    for alert in alerts {
        alert.check(notifiers)?;
        if !names.insert(&alert.name) {
            return Err(format!("alerts: two are named {}", alert.name));
        }
    }
    Ok(())
}

/// What the alert tasks need from the server.
#[derive(Debug)]
pub(crate) struct AlertContext {
    pub(crate) engine: QueryEngine,
    /// isobar's MQTT listener, for `mqtt` notifiers without a broker.
    pub(crate) broker: Arc<Broker>,
    pub(crate) data_dir: PathBuf,
    /// The runtime the judge's queries run on.
    pub(crate) query_runtime: tokio::runtime::Handle,
}

/// Opens the alert state and starts judging and notifying on the current runtime; the
/// returned store feeds `system.alerts`.
pub(crate) fn start(
    alerts: Vec<AlertSpec>,
    notifiers: Vec<NotifierSpec>,
    context: AlertContext,
    metrics: Arc<AlertMetrics>,
) -> crate::error::Result<Arc<Store>> {
    let store = Arc::new(Store::open(&context.data_dir, &alerts)?);
    if alerts.is_empty() {
        return Ok(store);
    }
    let senders = notify::Senders::new(&notifiers, &context.broker);
    tokio::spawn(notify::deliver(Arc::clone(&store), senders, Arc::clone(&metrics)));
    context.query_runtime.spawn(judge::run(alerts, context.engine, Arc::clone(&store), metrics));
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook() -> NotifierSpec {
        NotifierSpec { name: "ops".into(), url: "https://hooks.example.com/isobar".into(), ..NotifierSpec::default() }
    }

    fn alert() -> AlertSpec {
        AlertSpec {
            name: "hot".into(),
            table: "weather_1m".into(),
            condition: "sensor_value_max > 40".into(),
            for_windows: 2,
            resolve_windows: 1,
            notify: vec!["ops".into()],
            ..AlertSpec::default()
        }
    }

    #[test]
    fn a_good_alert_and_its_notifiers_pass() {
        let sns = NotifierSpec {
            name: "sns".into(),
            kind: NotifierKind::Sns,
            topic_arn: "arn:aws:sns:eu-west-1:123456789012:alerts".into(),
            ..NotifierSpec::default()
        };
        let mqtt = NotifierSpec {
            name: "mqtt".into(),
            kind: NotifierKind::Mqtt,
            topic: "alerts/{alert}/{station_id}".into(),
            ..NotifierSpec::default()
        };
        assert_eq!(check(&[alert()], &[webhook(), sns, mqtt.clone()]), Ok(()));
        assert_eq!(mqtt.reserved_topics().map(|f| f.as_str().to_owned()).as_deref(), Some("alerts/+/+"));
    }

    #[test]
    fn what_cannot_work_is_refused_with_its_reason() {
        let refused = |alerts: &[AlertSpec], notifiers: &[NotifierSpec]| check(alerts, notifiers).expect_err("refused");
        assert!(refused(&[AlertSpec { notify: vec!["pager".into()], ..alert() }], &[webhook()]).contains("no [[notifiers]]"));
        assert!(
            refused(&[AlertSpec { condition: "x > 1; DROP TABLE weather".into(), ..alert() }], &[webhook()])
                .contains("after the expression")
        );
        assert!(refused(&[AlertSpec { condition: "x >".into(), ..alert() }], &[webhook()]).contains("condition"));
        assert!(refused(&[AlertSpec { for_windows: 0, ..alert() }], &[webhook()]).contains("at least 1"));
        assert!(refused(&[alert(), alert()], &[webhook()]).contains("two are named hot"));
        assert!(refused(&[], &[NotifierSpec { url: "ftp://x".into(), ..webhook() }]).contains("not http"));
        assert!(refused(&[], &[NotifierSpec { topic: "a/b".into(), ..webhook() }]).contains("topic does not apply"));
        let sns = NotifierSpec { kind: NotifierKind::Sns, url: String::new(), topic_arn: "alerts".into(), ..webhook() };
        assert!(refused(&[], &[sns]).contains("not an SNS topic ARN"));
        let mqtt = NotifierSpec { kind: NotifierKind::Mqtt, url: String::new(), topic: "a/#".into(), ..webhook() };
        assert!(refused(&[], &[mqtt]).contains("wildcard"));
    }
}
