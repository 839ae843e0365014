use regex_lite::Regex;

/// A server-side filter for reads and subscriptions of `$all`.
#[derive(Debug, Clone)]
pub enum EventFilter {
    /// The stream name starts with any of these.
    StreamPrefix(Vec<String>),
    /// The event type starts with any of these.
    EventTypePrefix(Vec<String>),
    StreamRegex(Pattern),
    EventTypeRegex(Pattern),
}

/// A regular expression as clients send them. The engine (regex-lite) has
/// no look-around, but clients commonly exclude system events with a
/// leading negative look-ahead, `^(?!(A|B))rest`; that form is supported by
/// matching `^(?:A|B)` and `^(?:rest)` separately. Other look-around is
/// refused with a clear error.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// `^(?!(excluded))`: a match of this at the start rejects the input.
    excluded: Option<Regex>,
    /// What must match (anywhere, unless it is anchored).
    required: Regex,
    /// The pattern as given, to pass on (a client sends it to a server).
    source: String,
}

impl Pattern {
    pub fn new(pattern: &str) -> Result<Self, String> {
        let compile = |p: &str| Regex::new(p).map_err(|e| e.to_string());
        if let Some(rest) = pattern.strip_prefix("^(?!") {
            let close = matching_paren(rest).ok_or("unbalanced parentheses in the look-ahead")?;
            let (excluded, required) = (&rest[..close], &rest[close + 1..]);
            return Ok(Self {
                excluded: Some(compile(&format!("^(?:{excluded})"))?),
                required: compile(&format!("^(?:{required})"))?,
                source: pattern.to_owned(),
            });
        }
        Ok(Self { excluded: None, required: compile(pattern)?, source: pattern.to_owned() })
    }

    /// The pattern as it was given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.excluded.as_ref().is_none_or(|e| !e.is_match(text)) && self.required.is_match(text)
    }
}

/// The index of the `)` closing a group whose `(` was just consumed.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut escaped = false;
    let mut in_class = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

impl EventFilter {
    /// Builds a regex filter, reporting a bad pattern as a plain message.
    pub fn stream_regex(pattern: &str) -> Result<Self, String> {
        Pattern::new(pattern).map(Self::StreamRegex)
    }
    pub fn event_type_regex(pattern: &str) -> Result<Self, String> {
        Pattern::new(pattern).map(Self::EventTypeRegex)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_negative_look_ahead_excludes() {
        // The Python client's default: no system, PersistentConfig or Result events.
        let pattern = Pattern::new(r"^(?!(\$.+$|PersistentConfig\d+$|Result$))").unwrap();
        assert!(pattern.is_match("OrderPlaced"));
        assert!(pattern.is_match("Results"));
        assert!(!pattern.is_match("$metadata"));
        assert!(!pattern.is_match("PersistentConfig1"));
        assert!(!pattern.is_match("Result"));
        let with_rest = Pattern::new(r"^(?!(tmp-))order-\d+$").unwrap();
        assert!(with_rest.is_match("order-12"));
        assert!(!with_rest.is_match("tmp-order-12"));
        assert!(!with_rest.is_match("user-12"));
    }

    #[test]
    fn plain_patterns_and_errors() {
        assert!(Pattern::new("^[^$].*").unwrap().is_match("user-1"));
        assert!(!Pattern::new("^[^$].*").unwrap().is_match("$all"));
        assert!(Pattern::new("(?<=x)y").is_err());
        assert!(Pattern::new("^(?!(unclosed").is_err());
    }
}
