//! Delivering notifications from the outbox (`state.rs`) to webhooks, Amazon SNS and MQTT.
//!
//! A webhook gets the notification as a JSON POST with `X-Isobar-Delivery` (the notification's
//! id, the same on every attempt), `X-Isobar-Event` (`firing` or `resolved`),
//! `X-Isobar-Timestamp` (Unix seconds) and, with a secret, `X-Isobar-Signature: sha256=<hex>`,
//! the HMAC-SHA256 of `<timestamp>.<body>` under the secret; any 2xx answer delivers it. SNS
//! gets it as the message of a `Publish` (the AWS SDK), with a subject naming the alert, its
//! state and the series. MQTT gets it as the payload of a publish on the notifier's topic.
//! A failed attempt is retried after 1, 2, 4 … seconds (at most 5 minutes apart) until the
//! notifier's `attempts_max`, then given up and logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::MessageAttributeValue;
use bytes::Bytes;
use isobar_ingest::emit::{self, Target};
use isobar_ingest::mqtt_broker::Broker;
use isobar_ingest::mqtt_codec::Publish;

use super::judge::AlertMetrics;
use super::state::{Delivery, Notification, Store};
use super::{NotifierKind, NotifierSpec};

/// Longest wait between two attempts at one notification, in milliseconds.
const BACKOFF_MAX_MS: i64 = 300_000;
/// Deliveries attempted at once.
const DELIVERIES_AT_ONCE: usize = 16;
/// Longest an SNS subject may be (the API's limit is 100 characters).
const SUBJECT_CHARS_MAX: usize = 99;

/// How each notifier sends.
#[derive(Debug)]
enum Sender {
    Webhook {
        client: reqwest::Client,
        url: String,
        secret: Option<String>,
    },
    /// Made at the first notification (loading the AWS configuration is async).
    Sns {
        client: tokio::sync::OnceCell<aws_sdk_sns::Client>,
    },
    Mqtt {
        topic: String,
        qos: u8,
        retain: bool,
        target: Target,
    },
}

/// Every notifier's sender, by name.
#[derive(Debug)]
pub(super) struct Senders {
    by_name: HashMap<String, (Sender, NotifierSpec)>,
}

impl Senders {
    /// The senders of `notifiers`; an MQTT notifier with a broker connects to it now.
    pub(super) fn new(notifiers: &[NotifierSpec], broker: &Arc<Broker>) -> Self {
        let by_name = notifiers
            .iter()
            .map(|spec| {
                let sender = match spec.kind {
                    NotifierKind::Webhook => Sender::Webhook {
                        client: reqwest::Client::builder()
                            .timeout(Duration::from_millis(spec.timeout_ms))
                            .redirect(reqwest::redirect::Policy::none())
                            .user_agent(concat!("isobar/", env!("CARGO_PKG_VERSION")))
                            .build()
                            .unwrap_or_default(),
                        url: spec.url.clone(),
                        secret: spec.secret.clone(),
                    },
                    NotifierKind::Sns => Sender::Sns { client: tokio::sync::OnceCell::new() },
                    NotifierKind::Mqtt => Sender::Mqtt {
                        topic: spec.topic.clone(),
                        qos: spec.qos,
                        retain: spec.retain,
                        target: match spec.broker {
                            Some(_) => Target::Broker(emit::broker::spawn(spec.emit_spec())),
                            None => Target::Listener(Arc::clone(broker)),
                        },
                    },
                };
                (spec.name.clone(), (sender, spec.clone()))
            })
            .collect();
        Self { by_name }
    }

    /// One attempt at `delivery`.
    async fn send(&self, delivery: &Delivery) -> Result<(), String> {
        let Some((sender, spec)) = self.by_name.get(&delivery.notifier) else {
            return Err(format!("no notifier is named {}", delivery.notifier));
        };
        let notification = &delivery.notification;
        let body = serde_json::to_vec(notification).map_err(|e| e.to_string())?;
        match sender {
            Sender::Webhook { client, url, secret } => {
                let timestamp = chrono::Utc::now().timestamp().to_string();
                let mut request = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Isobar-Delivery", &notification.id)
                    .header("X-Isobar-Event", notification.state.as_str())
                    .header("X-Isobar-Timestamp", &timestamp);
                if let Some(secret) = secret {
                    request = request.header("X-Isobar-Signature", signature(secret, &timestamp, &body));
                }
                let response = request.body(body).send().await.map_err(|e| format!("POST {url}: {e}"))?;
                match response.status() {
                    status if status.is_success() => Ok(()),
                    status => Err(format!("POST {url}: answered {status}")),
                }
            }
            Sender::Sns { client } => {
                let client = client.get_or_init(|| sns_client(spec)).await;
                let attribute = |value: &str| MessageAttributeValue::builder().data_type("String").string_value(value).build();
                let publish = client
                    .publish()
                    .topic_arn(&spec.topic_arn)
                    .subject(subject(notification))
                    .message(String::from_utf8_lossy(&body))
                    .message_attributes("alert", attribute(&notification.alert).map_err(|e| e.to_string())?)
                    .message_attributes("state", attribute(notification.state.as_str()).map_err(|e| e.to_string())?)
                    .send();
                match tokio::time::timeout(Duration::from_millis(spec.timeout_ms), publish).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("SNS publish to {}: {}", spec.topic_arn, DisplayErrorContext(e))),
                    Err(_) => Err(format!("SNS publish to {}: no answer in {} ms", spec.topic_arn, spec.timeout_ms)),
                }
            }
            Sender::Mqtt { topic, qos, retain, target } => {
                let topic = emit::fill_topic(topic, |name| match name {
                    "alert" => Some(notification.alert.as_str()),
                    "state" => Some(notification.state.as_str()),
                    "table" => Some(notification.table.as_str()),
                    tag => notification.series.get(tag).map(String::as_str),
                })
                .ok_or_else(|| format!("topic {topic} names a tag series {:?} lacks", notification.series))?;
                let publish = Publish { qos: *qos, dup: false, retain: *retain, topic, pkid: 0, payload: Bytes::from(body) };
                match target {
                    Target::Listener(listener) => {
                        listener.publish(&[publish]);
                        Ok(())
                    }
                    Target::Broker(outbox) => outbox
                        .try_send(publish)
                        .map_err(|_| format!("the connection to {} is not keeping up", spec.broker.as_deref().unwrap_or_default())),
                }
            }
        }
    }
}

/// `sha256=<hex>` of the HMAC-SHA256 of `<timestamp>.<body>` under `secret`.
fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// `isobar alert <name> firing: <tags>`, printable ASCII of at most 99 characters, as SNS
/// subjects must be.
fn subject(notification: &Notification) -> String {
    let series: Vec<String> = notification.series.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let text = format!("isobar alert {} {}: {}", notification.alert, notification.state.as_str(), series.join(", "));
    text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(SUBJECT_CHARS_MAX).collect()
}

/// An SDK client for the notifier's topic, region, endpoint and credentials.
async fn sns_client(spec: &NotifierSpec) -> aws_sdk_sns::Client {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    // arn:aws:sns:REGION:ACCOUNT:NAME
    if let Some(region) = spec.region.as_deref().or_else(|| spec.topic_arn.split(':').nth(3)) {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let (Some(key), Some(secret)) = (&spec.access_key_id, &spec.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "isobar configuration"));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_sns::config::Builder::from(&shared);
    if let Some(endpoint) = &spec.endpoint {
        config = config.endpoint_url(endpoint);
    }
    // The deliverer retries with its own backoff, and counts each attempt.
    config = config.retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled());
    aws_sdk_sns::Client::from_conf(config.build())
}

/// The wait after the `attempts`-th failed attempt, in milliseconds.
fn backoff_ms(attempts: u32) -> i64 {
    1_000i64.saturating_mul(1 << attempts.saturating_sub(1).min(20)).min(BACKOFF_MAX_MS)
}

/// Delivers what the outbox holds until the task is dropped.
pub(super) async fn deliver(store: Arc<Store>, senders: Senders, metrics: Arc<AlertMetrics>) {
    loop {
        let due = store.due(chrono::Utc::now().timestamp_millis());
        for batch in due.chunks(DELIVERIES_AT_ONCE) {
            let outcomes = futures::future::join_all(batch.iter().map(|d| senders.send(d))).await;
            let now_ms = chrono::Utc::now().timestamp_millis();
            for (delivery, outcome) in batch.iter().zip(outcomes) {
                let next = match outcome {
                    Ok(()) => {
                        metrics.notifications_sent.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("alert {}: {} sent to {}", delivery.notification.alert, delivery.notification.id, delivery.notifier);
                        None
                    }
                    Err(e) => {
                        metrics.notification_failures.fetch_add(1, Ordering::Relaxed);
                        let attempts = delivery.attempts + 1;
                        let attempts_max = senders.by_name.get(&delivery.notifier).map_or(1, |(_, spec)| spec.attempts_max);
                        if attempts >= attempts_max {
                            metrics.notifications_given_up.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                "alert {}: gave {} up after {attempts} attempts: {e}",
                                delivery.notification.alert,
                                delivery.notification.id
                            );
                            None
                        } else {
                            tracing::warn!(
                                "alert {}: {} to {}, attempt {attempts}: {e}",
                                delivery.notification.alert,
                                delivery.notification.id,
                                delivery.notifier
                            );
                            Some(delivery.clone().retry(attempts, now_ms.saturating_add(backoff_ms(attempts))))
                        }
                    }
                };
                store.settle(delivery, next);
            }
        }
        if !due.is_empty()
            && let Err(e) = store.save().await
        {
            tracing::error!("alerts: {e}");
        }
        let wait_ms =
            store.next_attempt_ms().map_or(60_000, |at| at.saturating_sub(chrono::Utc::now().timestamp_millis()).clamp(0, 60_000));
        tokio::select! {
            _ = store.outbox_filled.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_and_body() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(
            signature("s3cret", "1700000000", br#"{"a":1}"#),
            "sha256=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!([1, 2, 3, 9, 10, 40].map(backoff_ms), [1_000, 2_000, 4_000, 256_000, 300_000, 300_000]);
    }
}
