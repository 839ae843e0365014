use regex_lite::Regex;

/// A server-side filter for reads and subscriptions of `$all`.
#[derive(Debug, Clone)]
pub enum EventFilter {
    /// The stream name starts with any of these.
    StreamPrefix(Vec<String>),
    /// The event type starts with any of these.
    EventTypePrefix(Vec<String>),
    StreamRegex(Regex),
    EventTypeRegex(Regex),
}

impl EventFilter {
    /// Builds a regex filter, reporting a bad pattern as a plain message.
    pub fn stream_regex(pattern: &str) -> Result<Self, String> {
        Regex::new(pattern).map(Self::StreamRegex).map_err(|e| e.to_string())
    }
    pub fn event_type_regex(pattern: &str) -> Result<Self, String> {
        Regex::new(pattern).map(Self::EventTypeRegex).map_err(|e| e.to_string())
    }

    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        match self {
            Self::StreamPrefix(prefixes) => prefixes.iter().any(|p| stream.starts_with(p.as_str())),
            Self::EventTypePrefix(prefixes) => prefixes.iter().any(|p| event_type.starts_with(p.as_str())),
            Self::StreamRegex(regex) => regex.is_match(stream),
            Self::EventTypeRegex(regex) => regex.is_match(event_type),
        }
    }
}
