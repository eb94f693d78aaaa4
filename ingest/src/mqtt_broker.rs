//! Live readings for MQTT subscribers of isobar's listener: dashboards and services subscribe
//! with topic filters (`+`, `#`) and get each publish once it is durable, in memory.
//!
//! Each connection has a bounded queue of deliveries. A subscriber that lets its queue fill
//! is disconnected rather than slowing the devices down or growing memory: it reconnects and
//! resubscribes, and what it missed is in the tables. Retained messages (the last one per
//! topic published with the retain flag; an empty payload clears it) go to each new matching
//! subscription. Subscriptions are granted at QoS 0 or 1 and live as long as the connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::mqtt_codec::Publish;
use crate::topic::TopicFilter;

/// Deliveries queued for one connection, at most.
pub const SUBSCRIBER_QUEUE_MAX: usize = 10_000;

/// One message on its way to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    /// The lower of the publish's QoS and the subscription's.
    pub qos: u8,
    /// Set on retained messages sent when a subscription starts.
    pub retain: bool,
}

/// Identifies a connection's subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

#[derive(Debug)]
struct Subscriber {
    filters: Vec<(TopicFilter, u8)>,
    queue: mpsc::Sender<Delivery>,
}

#[derive(Debug, Default)]
struct Routes {
    next_id: u64,
    subscribers: HashMap<SubscriberId, Subscriber>,
    retained: BTreeMap<String, Publish>,
}

/// The subscriptions of every connection, and the retained messages.
#[derive(Debug, Default)]
pub struct Broker {
    routes: Mutex<Routes>,
}

impl Broker {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection's queue. The queue closes when the connection leaves or falls behind.
    pub fn register(&self) -> (SubscriberId, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE_MAX);
        let mut routes = self.routes();
        routes.next_id += 1;
        let id = SubscriberId(routes.next_id);
        routes.subscribers.insert(id, Subscriber { filters: Vec::new(), queue: tx });
        (id, rx)
    }

    /// Forgets a connection's subscriptions.
    pub fn unregister(&self, id: SubscriberId) {
        self.routes().subscribers.remove(&id);
    }

    /// Adds subscriptions; returns the SUBACK code of each filter (the granted QoS, or 0x80
    /// for a filter that is not one) and queues the retained messages they match.
    pub fn subscribe(&self, id: SubscriberId, filters: &[(String, u8)]) -> Vec<u8> {
        let mut routes = self.routes();
        let Routes { subscribers, retained, .. } = &mut *routes;
        let Some(subscriber) = subscribers.get_mut(&id) else { return vec![0x80; filters.len()] };
        let mut codes = Vec::with_capacity(filters.len());
        for (filter, qos) in filters {
            let Ok(parsed) = TopicFilter::parse(filter) else {
                codes.push(0x80);
                continue;
            };
            let granted = (*qos).min(1);
            for publish in retained.values().filter(|p| parsed.matches(&p.topic)) {
                let delivery = Delivery {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    qos: publish.qos.min(granted),
                    retain: true,
                };
                let _ = subscriber.queue.try_send(delivery);
            }
            subscriber.filters.retain(|(f, _)| f.as_str() != filter);
            subscriber.filters.push((parsed, granted));
            codes.push(granted);
        }
        codes
    }

    /// Removes subscriptions.
    pub fn unsubscribe(&self, id: SubscriberId, filters: &[String]) {
        if let Some(subscriber) = self.routes().subscribers.get_mut(&id) {
            subscriber.filters.retain(|(f, _)| !filters.iter().any(|g| g == f.as_str()));
        }
    }

    /// Hands durable publishes to every matching subscription and keeps retained ones.
    /// A subscriber whose queue is full is dropped (its connection then closes).
    pub fn publish(&self, publishes: &[Publish]) {
        let mut routes = self.routes();
        if routes.subscribers.is_empty() && !publishes.iter().any(|p| p.retain) {
            return;
        }
        let mut behind = Vec::new();
        for publish in publishes {
            if publish.retain {
                match publish.payload.is_empty() {
                    true => routes.retained.remove(&publish.topic),
                    false => routes.retained.insert(publish.topic.clone(), publish.clone()),
                };
            }
            for (id, subscriber) in &routes.subscribers {
                // The highest QoS among the connection's matching filters, delivered once.
                let Some(granted) = subscriber.filters.iter().filter(|(f, _)| f.matches(&publish.topic)).map(|(_, q)| *q).max() else {
                    continue;
                };
                let delivery = Delivery {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    qos: publish.qos.min(granted),
                    retain: false,
                };
                if subscriber.queue.try_send(delivery).is_err() {
                    behind.push(*id);
                }
            }
        }
        for id in behind {
            routes.subscribers.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str, payload: &str, qos: u8, retain: bool) -> Publish {
        Publish { qos, dup: false, retain, topic: topic.into(), pkid: 1, payload: Bytes::from(payload.to_owned()) }
    }

    #[test]
    fn subscribers_get_matching_publishes_once_at_the_lower_qos_and_retained_ones_on_subscribing() {
        let broker = Broker::default();
        broker.publish(&[
            publish("weather/wa/t1", "old", 1, true),
            publish("weather/wa/t2", "x", 1, true),
            publish("weather/wa/t2", "", 0, true),
        ]);
        let (a, mut rx) = broker.register();
        assert_eq!(broker.subscribe(a, &[("weather/+/t1".into(), 2), ("weather/#".into(), 0), ("bad/#/x".into(), 1)]), [1, 0, 0x80]);
        // The retained message of t1, once per matching filter; t2's was cleared.
        let first = rx.try_recv().expect("retained");
        assert_eq!((first.topic.as_str(), &first.payload[..], first.retain), ("weather/wa/t1", &b"old"[..], true));
        while rx.try_recv().is_ok() {}
        broker.publish(&[publish("weather/wa/t1", "new", 1, false), publish("other/x", "no", 1, false)]);
        let got = rx.try_recv().expect("a delivery");
        assert_eq!((got.topic.as_str(), &got.payload[..], got.qos, got.retain), ("weather/wa/t1", &b"new"[..], 1, false));
        assert!(rx.try_recv().is_err(), "once, and nothing for other topics");
        broker.unsubscribe(a, &["weather/+/t1".into(), "weather/#".into()]);
        broker.publish(&[publish("weather/wa/t1", "after", 1, false)]);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_dropped() {
        let broker = Broker::default();
        let (a, mut rx) = broker.register();
        broker.subscribe(a, &[("#".into(), 0)]);
        let many: Vec<Publish> = (0..=SUBSCRIBER_QUEUE_MAX).map(|i| publish("t", &i.to_string(), 0, false)).collect();
        broker.publish(&many);
        let mut received = 0;
        while rx.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, SUBSCRIBER_QUEUE_MAX);
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)), "its queue is closed");
    }
}
