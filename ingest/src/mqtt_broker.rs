//! Live readings for MQTT subscribers of isobar's listener: dashboards and services subscribe
//! with topic filters (`+`, `#`) and get each publish once it is durable, in memory.
//!
//! Each connection has a bounded queue of deliveries, in messages and in bytes. A subscriber
//! that lets its queue fill is disconnected rather than slowing the devices down or growing
//! memory: it reconnects and resubscribes, and what it missed is in the tables. A connection
//! holds at most so many subscriptions. Retained messages (the last one per topic published
//! with the retain flag; an empty payload clears it) go to each new matching subscription; only
//! messages the listener stored (as rows or dead letters) are retained, never a refused one,
//! and the broker keeps at most so many topics and bytes of them. Subscriptions are granted at QoS 0 or 1 and live as long as the
//! connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::mqtt_codec::Publish;
use crate::topic::TopicFilter;

/// Deliveries queued for one connection, at most.
pub const SUBSCRIBER_QUEUE_MAX: usize = 10_000;

/// SUBACK's code for a filter that is refused.
pub const SUBSCRIBE_REFUSED: u8 = 0x80;

/// Limits on what subscribers hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Topic filters one connection may subscribe to.
    pub subscriptions_per_client_max: usize,
    /// Payload bytes queued for one connection before it is disconnected as too slow.
    pub subscriber_queue_bytes_max: usize,
    /// Topics with a retained message.
    pub retained_messages_max: usize,
    /// Payload bytes of all retained messages.
    pub retained_bytes_max: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        Self {
            subscriptions_per_client_max: 100,
            subscriber_queue_bytes_max: 16 << 20,
            retained_messages_max: 10_000,
            retained_bytes_max: 64 << 20,
        }
    }
}

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

/// A connection's end of its queue: deliveries, and the payload bytes waiting in it.
#[derive(Debug)]
pub struct Deliveries {
    rx: mpsc::Receiver<Delivery>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Deliveries {
    /// The next delivery; `None` once the connection was dropped for falling behind.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let d = self.rx.recv().await?;
        self.queued_bytes.fetch_sub(d.payload.len(), Ordering::Relaxed);
        Some(d)
    }

    /// The next delivery if one is waiting.
    pub fn try_recv(&mut self) -> Result<Delivery, mpsc::error::TryRecvError> {
        let d = self.rx.try_recv()?;
        self.queued_bytes.fetch_sub(d.payload.len(), Ordering::Relaxed);
        Ok(d)
    }
}

#[derive(Debug)]
struct Subscriber {
    filters: Vec<(TopicFilter, u8)>,
    queue: mpsc::Sender<Delivery>,
    queued_bytes: Arc<AtomicUsize>,
}

impl Subscriber {
    /// Queues a delivery; false when the queue is full, in messages or bytes.
    fn offer(&self, delivery: Delivery, bytes_max: usize) -> bool {
        let n = delivery.payload.len();
        if self.queued_bytes.fetch_add(n, Ordering::Relaxed) + n > bytes_max {
            self.queued_bytes.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        if self.queue.try_send(delivery).is_err() {
            self.queued_bytes.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[derive(Debug, Default)]
struct Routes {
    next_id: u64,
    subscribers: HashMap<SubscriberId, Subscriber>,
    retained: BTreeMap<String, Publish>,
    retained_bytes: usize,
}

/// The subscriptions of every connection, and the retained messages.
#[derive(Debug, Default)]
pub struct Broker {
    routes: Mutex<Routes>,
    limits: BrokerLimits,
}

impl Broker {
    /// A broker with these limits.
    pub fn new(limits: BrokerLimits) -> Self {
        Self { routes: Mutex::default(), limits }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new connection's queue. The queue closes when the connection leaves or falls behind.
    pub fn register(&self) -> (SubscriberId, Deliveries) {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE_MAX);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let mut routes = self.routes();
        routes.next_id += 1;
        let id = SubscriberId(routes.next_id);
        routes.subscribers.insert(id, Subscriber { filters: Vec::new(), queue: tx, queued_bytes: Arc::clone(&queued_bytes) });
        (id, Deliveries { rx, queued_bytes })
    }

    /// Forgets a connection's subscriptions.
    pub fn unregister(&self, id: SubscriberId) {
        self.routes().subscribers.remove(&id);
    }

    /// Adds subscriptions; returns the SUBACK code of each filter (the granted QoS, or
    /// [`SUBSCRIBE_REFUSED`] for a filter that is not one or past the connection's limit) and
    /// queues the retained messages they match.
    pub fn subscribe(&self, id: SubscriberId, filters: &[(String, u8)]) -> Vec<u8> {
        let mut routes = self.routes();
        let Routes { subscribers, retained, .. } = &mut *routes;
        let Some(subscriber) = subscribers.get_mut(&id) else { return vec![SUBSCRIBE_REFUSED; filters.len()] };
        let mut codes = Vec::with_capacity(filters.len());
        for (filter, qos) in filters {
            let Ok(parsed) = TopicFilter::parse(filter) else {
                codes.push(SUBSCRIBE_REFUSED);
                continue;
            };
            let renewed = subscriber.filters.iter().any(|(f, _)| f.as_str() == filter);
            if !renewed && subscriber.filters.len() >= self.limits.subscriptions_per_client_max {
                codes.push(SUBSCRIBE_REFUSED);
                continue;
            }
            let granted = (*qos).min(1);
            for publish in retained.values().filter(|p| parsed.matches(&p.topic)) {
                let delivery = Delivery {
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    qos: publish.qos.min(granted),
                    retain: true,
                };
                subscriber.offer(delivery, self.limits.subscriber_queue_bytes_max);
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

    /// Hands durable publishes to every matching subscription and keeps retained ones, within
    /// the retained limits (a new topic past them is delivered but not retained). A subscriber
    /// whose queue is full is dropped (its connection then closes).
    pub fn publish(&self, publishes: &[Publish]) {
        let mut routes = self.routes();
        if routes.subscribers.is_empty() && !publishes.iter().any(|p| p.retain) {
            return;
        }
        let mut behind = Vec::new();
        for publish in publishes {
            if publish.retain {
                self.retain(&mut routes, publish);
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
                if !subscriber.offer(delivery, self.limits.subscriber_queue_bytes_max) {
                    behind.push(*id);
                }
            }
        }
        for id in behind {
            routes.subscribers.remove(&id);
        }
    }

    /// Keeps (or, for an empty payload, clears) a topic's retained message, within the limits.
    fn retain(&self, routes: &mut Routes, publish: &Publish) {
        let old = routes.retained.get(&publish.topic).map_or(0, |p| p.payload.len());
        if publish.payload.is_empty() {
            routes.retained.remove(&publish.topic);
            routes.retained_bytes -= old;
            return;
        }
        let is_new = !routes.retained.contains_key(&publish.topic);
        let bytes = routes.retained_bytes - old + publish.payload.len();
        if (is_new && routes.retained.len() >= self.limits.retained_messages_max) || bytes > self.limits.retained_bytes_max {
            return;
        }
        routes.retained_bytes = bytes;
        routes.retained.insert(publish.topic.clone(), publish.clone());
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

    #[test]
    fn subscriptions_retained_messages_and_queued_bytes_are_bounded() {
        let limits = BrokerLimits {
            subscriptions_per_client_max: 2,
            subscriber_queue_bytes_max: 1000,
            retained_messages_max: 2,
            retained_bytes_max: 100,
        };
        let broker = Broker::new(limits);
        let (a, mut rx) = broker.register();
        assert_eq!(broker.subscribe(a, &[("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]), [1, 1, SUBSCRIBE_REFUSED]);
        assert_eq!(broker.subscribe(a, &[("a".into(), 0)]), [0], "renewing a subscription is not another one");
        broker.publish(&[publish("r/1", "x", 0, true), publish("r/2", "y", 0, true), publish("r/3", "z", 0, true)]);
        broker.publish(&[publish("r/1", &"w".repeat(150), 0, true)]);
        let (b, mut rx_b) = broker.register();
        broker.subscribe(b, &[("r/#".into(), 0)]);
        let mut retained = Vec::new();
        while let Ok(d) = rx_b.try_recv() {
            retained.push((d.topic, d.payload));
        }
        assert_eq!(retained, [("r/1".to_owned(), Bytes::from("x")), ("r/2".to_owned(), Bytes::from("y"))], "two topics, 100 bytes");
        // 1,000 bytes queued and not read: the next byte drops the subscriber.
        broker.publish(&[publish("a", &"v".repeat(1000), 0, false)]);
        broker.publish(&[publish("a", "one more", 0, false)]);
        assert_eq!(rx.try_recv().map(|d| d.payload.len()), Ok(1000));
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)), "dropped past its bytes");
    }
}
