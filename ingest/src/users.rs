//! Who may connect to a listener that has no protocol-level authentication of its own
//! (MQTT's CONNECT, HTTP's basic auth), and what an MQTT client may do once in.
//!
//! Users are configured names and passwords, compared in time that does not depend on where a
//! password differs; with none, every client is admitted, which the server allows only on a
//! loopback listener. An MQTT user may have access lists, as mosquitto's: topic filters it may
//! publish to and subscribe to, where `%u` stands for its user name and `%c` for its client id
//! (`weather/+/+/%u/#`). Without a list, any topic. Topics isobar publishes itself (the final
//! rollup windows of `[[emit]]`) are reserved: no client may publish to them.

use crate::topic::TopicFilter;

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
    /// Topic filters it may publish to; `None`: any topic.
    pub publish: Option<Vec<String>>,
    /// Topic filters it may subscribe within; `None`: any.
    pub subscribe: Option<Vec<String>>,
}

impl User {
    /// A user with no access lists.
    pub fn new(name: impl Into<String>, password: impl Into<String>) -> Self {
        Self { name: name.into(), password: password.into(), publish: None, subscribe: None }
    }
}

/// The users of one listener.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: Vec<User>,
    /// Topics only isobar publishes to.
    reserved: Vec<TopicFilter>,
}

/// What one connected client may do.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// `None`: any topic (but the reserved ones).
    publish: Option<Vec<TopicFilter>>,
    subscribe: Option<Vec<TopicFilter>>,
    reserved: Vec<TopicFilter>,
}

impl Users {
    /// The users; `reserved` are topic filters no client may publish to.
    pub fn new(users: impl IntoIterator<Item = User>, reserved: Vec<TopicFilter>) -> Self {
        Self { users: users.into_iter().collect(), reserved }
    }

    /// Whether no users are configured (every client is admitted).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether these credentials let a client in.
    pub fn admits(&self, username: Option<&str>, password: Option<&[u8]>) -> bool {
        self.login(username, password, "").is_some()
    }

    /// What a client with these credentials and client id may do; `None` when they do not
    /// let it in.
    pub fn login(&self, username: Option<&str>, password: Option<&[u8]>, client_id: &str) -> Option<Grant> {
        if self.users.is_empty() {
            return Some(Grant { reserved: self.reserved.clone(), ..Grant::default() });
        }
        let (Some(username), Some(password)) = (username, password) else { return None };
        // Every user is compared, so the time taken says nothing of which name matched.
        let found = self.users.iter().fold(None, |found, user| {
            let matched = user.name == username && same_bytes(user.password.as_bytes(), password);
            if matched { Some(user) } else { found }
        })?;
        let filters = |list: &Option<Vec<String>>| {
            list.as_ref().map(|patterns| patterns.iter().filter_map(|p| substitute(p, &found.name, client_id)).collect())
        };
        Some(Grant { publish: filters(&found.publish), subscribe: filters(&found.subscribe), reserved: self.reserved.clone() })
    }
}

impl Grant {
    /// Whether the client may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        !self.reserved.iter().any(|r| r.matches(topic))
            && self.publish.as_ref().is_none_or(|allowed| allowed.iter().any(|f| f.matches(topic)))
    }

    /// Whether the client may subscribe to `filter`: it must lie within an allowed filter.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let Ok(filter) = TopicFilter::parse(filter) else { return true }; // the broker refuses it anyway
        self.subscribe.as_ref().is_none_or(|allowed| allowed.iter().any(|a| a.covers(&filter)))
    }
}

/// `pattern` with `%u` and `%c` replaced; `None` (allowing nothing) when a value would open
/// new levels or wildcards, as a user name `a/#` would.
fn substitute(pattern: &str, user: &str, client_id: &str) -> Option<TopicFilter> {
    let unsafe_value = |v: &str| v.is_empty() || v.contains(['/', '+', '#']);
    if (pattern.contains("%u") && unsafe_value(user)) || (pattern.contains("%c") && unsafe_value(client_id)) {
        return None;
    }
    TopicFilter::parse(&pattern.replace("%u", user).replace("%c", client_id)).ok()
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        let station = User {
            publish: Some(vec!["weather/+/+/%u/#".into(), "clients/%c/status".into()]),
            subscribe: Some(vec!["rollups/%u/#".into()]),
            ..User::new("st-7", "s3cret")
        };
        let dashboard = User { publish: Some(vec![]), ..User::new("dashboard", "d") };
        Users::new([station, dashboard], vec![TopicFilter::parse("rollups/+/+").expect("filter")])
    }

    #[test]
    fn only_a_matching_name_and_password_are_admitted() {
        let users = users();
        assert!(users.admits(Some("st-7"), Some(b"s3cret")));
        assert!(!users.admits(Some("st-7"), Some(b"s3cre")));
        assert!(!users.admits(Some("st-8"), Some(b"s3cret")));
        assert!(!users.admits(None, None));
        assert!(Users::default().admits(None, None), "no users: anyone, on loopback only");
    }

    #[test]
    fn access_lists_substitute_the_user_and_client_and_reserve_isobars_topics() {
        let users = users();
        let station = users.login(Some("st-7"), Some(b"s3cret"), "dev-1").expect("in");
        assert!(station.may_publish("weather/wa/seattle/st-7/temperature/t-1"));
        assert!(!station.may_publish("weather/wa/seattle/st-8/temperature/t-1"), "another station's topic");
        assert!(station.may_publish("clients/dev-1/status"));
        assert!(!station.may_publish("clients/dev-2/status"));
        assert!(station.may_subscribe("rollups/st-7/#"));
        assert!(!station.may_subscribe("rollups/#"), "wider than its list");
        let dashboard = users.login(Some("dashboard"), Some(b"d"), "grafana").expect("in");
        assert!(!dashboard.may_publish("weather/wa/seattle/st-7/temperature/t-1"), "an empty list allows nothing");
        assert!(dashboard.may_subscribe("#"), "no list: any subscription");
        let anyone = Users::new([], vec![TopicFilter::parse("rollups/+/+").expect("filter")]).login(None, None, "x").expect("in");
        assert!(!anyone.may_publish("rollups/st-7/t-1"), "isobar's own topics are reserved");
        assert!(anyone.may_publish("weather/a"));
        // A user name that would open levels allows nothing.
        let sneaky = Users::new([User { publish: Some(vec!["devices/%u".into()]), ..User::new("a/#", "p") }], vec![]);
        assert!(!sneaky.login(Some("a/#"), Some(b"p"), "c").expect("in").may_publish("devices/a/b"));
    }
}
