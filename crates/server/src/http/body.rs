//! Parsing an append body: one event object or an array of them.
//!
//! `data` and `metadata` are stored as the exact JSON text the client sent
//! (the bytes between the value's first and last character), not as a
//! re-serialization: numbers keep every digit and objects keep their key
//! order. The body is first validated as a whole by `serde_json`; a small
//! scanner then finds the spans of the fields.

use base64::Engine;
use serde::de::IgnoredAny;
use steledb::{NewEvent, Uuid, CONTENT_TYPE_BINARY, CONTENT_TYPE_JSON};

use super::ApiError;

/// The events of an append body. More than `events_max` events is refused
/// as soon as it is seen.
pub fn parse_events(body: &[u8], events_max: usize) -> Result<Vec<NewEvent>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body is empty; send an event object or an array of event objects",
        ));
    }
    serde_json::from_str::<IgnoredAny>(text)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    let mut scanner = Scanner { text, at: 0 };
    scanner.skip_whitespace();
    match scanner.peek() {
        Some(b'{') => Ok(vec![parse_event(&mut scanner, None)?]),
        Some(b'[') => {
            scanner.at += 1;
            let mut events = Vec::new();
            scanner.skip_whitespace();
            if scanner.peek() == Some(b']') {
                return Err(ApiError::bad_request("empty_append", "the array of events is empty"));
            }
            loop {
                if events.len() == events_max {
                    return Err(ApiError::new(
                        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "too_many_events",
                        format!("an append may hold at most {events_max} events"),
                    )
                    .with("limit", events_max));
                }
                scanner.skip_whitespace();
                events.push(parse_event(&mut scanner, Some(events.len()))?);
                scanner.skip_whitespace();
                match scanner.next_byte()? {
                    b',' => continue,
                    b']' => return Ok(events),
                    _ => return Err(scanner.unexpected()),
                }
            }
        }
        _ => {
            Err(ApiError::bad_request("invalid_event", "the body must be an event object or an array of event objects"))
        }
    }
}

/// The raw JSON text of each field of one event object.
#[derive(Default)]
struct Fields<'a> {
    id: Option<&'a str>,
    event_type: Option<&'a str>,
    content_type: Option<&'a str>,
    data: Option<&'a str>,
    data_base64: Option<&'a str>,
    metadata: Option<&'a str>,
    metadata_base64: Option<&'a str>,
}

const FIELDS: &str = "id, type, content_type, data, data_base64, metadata, metadata_base64";

fn parse_event(scanner: &mut Scanner<'_>, index: Option<usize>) -> Result<NewEvent, ApiError> {
    let which = match index {
        Some(i) => format!("event {i}"),
        None => "the event".to_owned(),
    };
    let error = |code: &'static str, message: String| {
        let error = ApiError::bad_request(code, format!("{which}: {message}"));
        match index {
            Some(i) => error.with("index", i),
            None => error,
        }
    };
    if scanner.peek() != Some(b'{') {
        return Err(error("invalid_event", "is not a JSON object".to_owned()));
    }
    scanner.at += 1;
    let mut fields = Fields::default();
    scanner.skip_whitespace();
    if scanner.peek() == Some(b'}') {
        scanner.at += 1;
    } else {
        loop {
            scanner.skip_whitespace();
            let key: String = serde_json::from_str(scanner.value()?).map_err(|_| scanner.unexpected())?;
            scanner.skip_whitespace();
            if scanner.next_byte()? != b':' {
                return Err(scanner.unexpected());
            }
            scanner.skip_whitespace();
            let value = scanner.value()?;
            let slot = match key.as_str() {
                "id" => &mut fields.id,
                "type" => &mut fields.event_type,
                "content_type" => &mut fields.content_type,
                "data" => &mut fields.data,
                "data_base64" => &mut fields.data_base64,
                "metadata" => &mut fields.metadata,
                "metadata_base64" => &mut fields.metadata_base64,
                other => {
                    return Err(error("invalid_event", format!("unknown field '{other}'; the fields are {FIELDS}")));
                }
            };
            if slot.replace(value).is_some() {
                return Err(error("invalid_event", format!("field '{key}' is given twice")));
            }
            scanner.skip_whitespace();
            match scanner.next_byte()? {
                b',' => continue,
                b'}' => break,
                _ => return Err(scanner.unexpected()),
            }
        }
    }

    let string = |name: &str, raw: &str| -> Result<String, ApiError> {
        serde_json::from_str(raw).map_err(|_| error("invalid_event", format!("field '{name}' must be a string")))
    };
    let optional_string = |name: &str, raw: Option<&str>| -> Result<Option<String>, ApiError> {
        match raw {
            None | Some("null") => Ok(None),
            Some(raw) => string(name, raw).map(Some),
        }
    };
    let base64 = |name: &str, raw: &str| -> Result<Vec<u8>, ApiError> {
        base64::engine::general_purpose::STANDARD
            .decode(string(name, raw)?)
            .map_err(|e| error("invalid_base64", format!("field '{name}' is not valid base64: {e}")))
    };

    let id = match optional_string("id", fields.id)? {
        None => Uuid::new_v4(),
        Some(text) => {
            Uuid::parse_str(&text).map_err(|e| error("invalid_uuid", format!("id '{text}' is not a UUID: {e}")))?
        }
    };
    let event_type = match fields.event_type {
        Some(raw) => string("type", raw)?,
        None => return Err(error("invalid_event", "field 'type' is required".to_owned())),
    };
    let (data, default_content_type) = match (fields.data, fields.data_base64) {
        (Some(raw), None) => (raw.as_bytes().to_vec(), CONTENT_TYPE_JSON),
        (None, Some(raw)) => (base64("data_base64", raw)?, CONTENT_TYPE_BINARY),
        (Some(_), Some(_)) => {
            return Err(error("invalid_event", "give either 'data' or 'data_base64', not both".to_owned()));
        }
        (None, None) => {
            return Err(error("invalid_event", "field 'data' (a JSON value) or 'data_base64' is required".to_owned()));
        }
    };
    let content_type = optional_string("content_type", fields.content_type)?;
    let metadata = match (fields.metadata, fields.metadata_base64) {
        (None | Some("null"), None) => Vec::new(),
        (Some(raw), None) => raw.as_bytes().to_vec(),
        (None, Some(raw)) => base64("metadata_base64", raw)?,
        (Some(_), Some(_)) => {
            return Err(error("invalid_event", "give either 'metadata' or 'metadata_base64', not both".to_owned()));
        }
    };
    Ok(NewEvent {
        id,
        event_type,
        content_type: content_type.unwrap_or_else(|| default_content_type.to_owned()),
        data,
        metadata,
    })
}

/// Walks text that `serde_json` has already accepted as JSON, returning
/// the spans of values. Every access is bounds-checked all the same.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next_byte(&mut self) -> Result<u8, ApiError> {
        let byte = self.peek().ok_or_else(|| self.unexpected())?;
        self.at += 1;
        Ok(byte)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn unexpected(&self) -> ApiError {
        ApiError::bad_request("invalid_json", format!("unexpected JSON structure at byte {}", self.at))
    }

    /// Skips one value and returns its text.
    fn value(&mut self) -> Result<&'a str, ApiError> {
        let start = self.at;
        match self.peek() {
            Some(b'"') => self.skip_string()?,
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'"') => {
                            self.skip_string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth = depth.checked_sub(1).ok_or_else(|| self.unexpected())?;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err(self.unexpected()),
                    }
                    self.at += 1;
                }
            }
            Some(_) => {
                while !matches!(self.peek(), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                    self.at += 1;
                }
            }
            None => return Err(self.unexpected()),
        }
        match self.text.get(start..self.at) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(self.unexpected()),
        }
    }

    fn skip_string(&mut self) -> Result<(), ApiError> {
        self.at += 1;
        loop {
            match self.peek() {
                Some(b'\\') => self.at += 2,
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(_) => self.at += 1,
                None => return Err(self.unexpected()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_exact_text_of_data_and_metadata() {
        let body = br#" [ {"type":"a","data": {"z":1, "a":[1,2,{"x":"}]\""}], "n": 12345678901234567890123 } ,
            "metadata":{"k":"v"}},
            {"id":"0b9a3b5e-3f5c-4a59-9b1e-5f1f3e1e2c3d","type":"b","data":"s\"tr","content_type":"text/plain"} ] "#;
        let events = parse_events(body, 10).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, br#"{"z":1, "a":[1,2,{"x":"}]\""}], "n": 12345678901234567890123 }"#);
        assert_eq!(events[0].metadata, br#"{"k":"v"}"#);
        assert_eq!(events[0].content_type, "application/json");
        assert_eq!(events[1].data, br#""s\"tr""#);
        assert_eq!(events[1].content_type, "text/plain");
        assert_eq!(events[1].id.to_string(), "0b9a3b5e-3f5c-4a59-9b1e-5f1f3e1e2c3d");
    }

    #[test]
    fn scalars_and_base64() {
        let events = parse_events(br#"{"type":"a","data":-1.5e3}"#, 10).unwrap();
        assert_eq!(events[0].data, b"-1.5e3");
        let events = parse_events(br#"{"type":"a","data_base64":"AAEC/w==","metadata":null}"#, 10).unwrap();
        assert_eq!(events[0].data, [0, 1, 2, 255]);
        assert_eq!(events[0].content_type, "application/octet-stream");
        assert!(events[0].metadata.is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_store_faithfully() {
        let code = |body: &[u8]| parse_events(body, 2).unwrap_err().code;
        assert_eq!(code(b"{\"type\":\"a\",\"data\":1"), "invalid_json");
        assert_eq!(code(b"\xff"), "invalid_json");
        assert_eq!(code(b"  "), "invalid_json");
        assert_eq!(code(b"[]"), "empty_append");
        assert_eq!(code(b"[1]"), "invalid_event");
        assert_eq!(code(b"\"x\""), "invalid_event");
        assert_eq!(code(br#"{"type":"a"}"#), "invalid_event");
        assert_eq!(code(br#"{"type":"a","data":1,"data":2}"#), "invalid_event");
        assert_eq!(code(br#"{"type":"a","data":1,"metdata":2}"#), "invalid_event");
        assert_eq!(code(br#"{"type":"a","data":1,"data_base64":""}"#), "invalid_event");
        assert_eq!(code(br#"{"type":5,"data":1}"#), "invalid_event");
        assert_eq!(code(br#"{"type":"a","data":1,"id":"nope"}"#), "invalid_uuid");
        assert_eq!(code(br#"{"type":"a","data_base64":"!!"}"#), "invalid_base64");
        let three = br#"[{"type":"a","data":1},{"type":"a","data":1},{"type":"a","data":1}]"#;
        assert_eq!(code(three), "too_many_events");
    }

    // Hostile input: the request-body parser against arbitrary and damaged
    // bodies, and against serde_json on generated JSON.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;
        use serde_json::Value;

        const ERROR_CODES: [&str; 7] = [
            "invalid_json",
            "empty_append",
            "invalid_event",
            "invalid_uuid",
            "invalid_base64",
            "too_many_events",
            "invalid_event_type",
        ];

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Whatever the outcome, it is a stored-as-given event list or one
        /// of the documented errors; JSON data is always valid JSON text.
        fn check(body: &[u8]) -> Result<(), TestCaseError> {
            match parse_events(body, 100) {
                Ok(events) => {
                    for event in events {
                        if event.content_type == steledb::CONTENT_TYPE_JSON {
                            // Valid JSON text; serde_json (f64 numbers) may only
                            // object to a number's range, which JSON leaves open.
                            let parsed = serde_json::from_slice::<Value>(&event.data);
                            let fine = parsed
                                .as_ref()
                                .map_or_else(|e| e.to_string().contains("number out of range"), |_| true);
                            prop_assert!(
                                fine,
                                "data is not JSON ({parsed:?}): {:?}",
                                String::from_utf8_lossy(&event.data)
                            );
                        }
                    }
                }
                Err(error) => prop_assert!(ERROR_CODES.contains(&error.code), "unexpected code {}", error.code),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_are_refused_or_parsed(body in proptest::collection::vec(any::<u8>(), 0..300)) {
                check(&body)?;
            }

            #[test]
            fn generated_json_round_trips(data in json_value(), metadata in json_value(), event_type in "[A-Za-z]{1,12}") {
                let body = serde_json::to_vec(&serde_json::json!({ "type": event_type, "data": data, "metadata": metadata })).unwrap();
                let events = parse_events(&body, 10).unwrap();
                prop_assert_eq!(events.len(), 1);
                // Stored as the exact text the client sent.
                prop_assert_eq!(&events[0].data, &serde_json::to_vec(&data).unwrap());
                let metadata_text = if metadata.is_null() { Vec::new() } else { serde_json::to_vec(&metadata).unwrap() };
                prop_assert_eq!(&events[0].metadata, &metadata_text);
            }

            #[test]
            fn damaged_bodies_are_refused_or_parsed(data in json_value(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), byte: u8) {
                let body = serde_json::to_vec(&serde_json::json!([{ "type": "T", "data": data }])).unwrap();
                check(&body[..cut.index(body.len() + 1)])?;
                let mut flipped = body.clone();
                let at = flip.index(flipped.len());
                flipped[at] = byte;
                check(&flipped)?;
            }
        }
    }
}
