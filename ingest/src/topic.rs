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
    fn misplaced_wildcards_are_errors() {
        for filter in ["", "a/#/b", "a+/b", "a/b#"] {
            assert!(TopicFilter::parse(filter).is_err(), "{filter}");
        }
    }
}
