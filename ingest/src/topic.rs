//! MQTT topic filters: `+` matches one level, a final `#` matches any number of levels
//! (including none), as MQTT 3.1.1 §4.7 defines them.

use crate::error::{Error, Result};

/// A parsed topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    filter: String,
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    One,
    Rest,
}

impl TopicFilter {
    /// Parses `filter`; `+` and `#` must fill a whole level, and `#` must be the last one.
    pub fn parse(filter: &str) -> Result<Self> {
        if filter.is_empty() {
            return Err(Error::Rule("an empty topic filter".into()));
        }
        let parts: Vec<&str> = filter.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            levels.push(match *part {
                "+" => Level::One,
                "#" if i + 1 == parts.len() => Level::Rest,
                p if p.contains(['+', '#']) => {
                    return Err(Error::Rule(format!("topic filter {filter:?}: `+` and `#` must fill a whole level, and `#` must be last")));
                }
                p => Level::Exact(p.to_owned()),
            });
        }
        Ok(Self { filter: filter.to_owned(), levels })
    }

    /// Whether `topic` (a topic name, without wildcards) matches. Topics starting with `$`
    /// match only filters that name that first level (MQTT 3.1.1 §4.7.2).
    pub fn matches(&self, topic: &str) -> bool {
        let mut parts = topic.split('/');
        for (i, level) in self.levels.iter().enumerate() {
            match (level, parts.next()) {
                (Level::Rest, first) => return !(i == 0 && first.is_some_and(|p| p.starts_with('$'))),
                (Level::One, Some(p)) if !(i == 0 && p.starts_with('$')) => {}
                (Level::Exact(e), Some(p)) if e == p => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }

    /// Whether every topic `other` matches, this filter matches too: a subscription to
    /// `other` is within what this filter allows (an ACL check, as mosquitto makes it).
    pub fn covers(&self, other: &TopicFilter) -> bool {
        let mut theirs = other.levels.iter();
        for (i, level) in self.levels.iter().enumerate() {
            match (level, theirs.next()) {
                // `#` covers everything below, but `$` topics only when named.
                (Level::Rest, first) => return !(i == 0 && matches!(first, Some(Level::Exact(e)) if e.starts_with('$'))),
                (Level::One, Some(Level::Exact(e))) if !(i == 0 && e.starts_with('$')) => {}
                (Level::One, Some(Level::One)) => {}
                (Level::Exact(a), Some(Level::Exact(b))) if a == b => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.filter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_mqtt_defines() {
        let cases = [
            ("weather/+/+/+/+/+", "weather/wa/seattle/st-1/temperature/st-1-t", true),
            ("weather/+/+/+/+/+", "weather/wa/seattle/st-1/temperature", false),
            ("weather/+/+/+/+/+", "weather/wa/seattle/st-1/temperature/a/b", false),
            ("weather/#", "weather", true),
            ("weather/#", "weather/wa/seattle", true),
            ("#", "anything/at/all", true),
            ("#", "$SYS/broker/load", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/broker/load", true),
            ("a/+/c", "a//c", true),
            ("a/b", "a/b/", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(TopicFilter::parse(filter).expect("parses").matches(topic), expected, "{filter} on {topic}");
        }
    }

    #[test]
    fn a_filter_covers_the_subscriptions_within_it() {
        let cases = [
            ("devices/st-1/#", "devices/st-1/temperature", true),
            ("devices/st-1/#", "devices/st-1/#", true),
            ("devices/st-1/#", "devices/#", false),
            ("devices/+/status", "devices/st-2/status", true),
            ("devices/+/status", "devices/+/status", true),
            ("devices/+/status", "devices/#", false),
            ("devices/+/status", "devices/st-2/status/x", false),
            ("rollups/#", "rollups/+/+", true),
            ("#", "weather/+/x", true),
            ("#", "$SYS/#", false),
            ("+/x", "+/x", true),
            ("+/x", "$SYS/x", false),
            ("a/+", "a/#", false),
        ];
        for (acl, filter, expected) in cases {
            let (acl_f, filter_f) = (TopicFilter::parse(acl).expect("acl"), TopicFilter::parse(filter).expect("filter"));
            assert_eq!(acl_f.covers(&filter_f), expected, "{acl} covers {filter}");
        }
    }

    #[test]
    fn misplaced_wildcards_are_errors() {
        for filter in ["", "a/#/b", "a+/b", "a/b#"] {
            assert!(TopicFilter::parse(filter).is_err(), "{filter}");
        }
    }
}
