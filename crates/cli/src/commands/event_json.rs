//! Events as single lines of JSON, the shape of the server's HTTP API
//! (`crates/server/src/event_json.rs`): `id`, `stream`, `revision`,
//! `position`, `type`, `content_type`, `data`, `metadata` (omitted when
//! empty), `recorded_at_us`.
//!
//! `data` is the stored JSON text itself when the content type is
//! `application/json` and the bytes are valid JSON, else `data_base64`;
//! `metadata` is JSON text when it is valid JSON, else `metadata_base64`.
//! A line break inside valid JSON can only be whitespace, so it is written
//! as a space: everything else comes back byte for byte when a line is read
//! again ([`parse_line`]), which is what makes export and import lossless.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::value::RawValue;

use steledb::{NewEvent, RecordedEvent};

use steledb::CONTENT_TYPE_BINARY;
pub use steledb::CONTENT_TYPE_JSON;

/// Appends `event` as one line of JSON, newline included, in the server's
/// HTTP shape (one writer serves both: `stele_server::event_json`).
pub fn write_line(out: &mut Vec<u8>, event: &RecordedEvent) {
    stele_server::event_json::write_event_line(out, event);
    out.push(b'\n');
}

/// An event read back from a line: what to append, and where it was.
#[derive(Debug)]
pub struct LineEvent {
    pub stream: Option<String>,
    pub revision: Option<u64>,
    pub position: Option<u64>,
    /// None when the line has no `id` (a new one is made for appends).
    pub id: Option<uuid::Uuid>,
    pub event_type: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

impl LineEvent {
    /// The event to append; `id` when the line had none.
    pub fn into_new_event(self, id: uuid::Uuid) -> NewEvent {
        NewEvent {
            id: self.id.unwrap_or(id),
            event_type: self.event_type,
            content_type: self.content_type,
            data: self.data,
            metadata: self.metadata,
        }
    }
}

/// Reads one event line: `type` and `data` (or `data_base64`) are required;
/// `id`, `content_type` (default `application/json` with `data`,
/// `application/octet-stream` with `data_base64`), `metadata` (or
/// `metadata_base64`), `stream`, `revision` and `position` are optional;
/// other keys (`recorded_at_us`) are ignored. JSON `data` and `metadata`
/// are kept as the exact text of the line.
pub fn parse_line(line: &str) -> Result<LineEvent, String> {
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let string = |key: &str| -> Result<Option<String>, String> {
        fields
            .get(key)
            .map(|raw| serde_json::from_str::<String>(raw.get()).map_err(|_| format!("\"{key}\" must be a string")))
            .transpose()
    };
    let number = |key: &str| -> Result<Option<u64>, String> {
        fields
            .get(key)
            .map(|raw| {
                serde_json::from_str::<u64>(raw.get())
                    .map_err(|_| format!("\"{key}\" must be a whole number from 0 to 2^64-1"))
            })
            .transpose()
    };
    let base64 = |key: &str| -> Result<Option<Vec<u8>>, String> {
        string(key)?
            .map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| format!("\"{key}\" is not base64: {e}"))
            })
            .transpose()
    };
    let event_type = string("type")?.ok_or("no \"type\"")?;
    if event_type.is_empty() {
        return Err("\"type\" is empty".to_owned());
    }
    let (data, default_content_type) = match (fields.get("data"), base64("data_base64")?) {
        (Some(raw), None) => (raw.get().as_bytes().to_vec(), CONTENT_TYPE_JSON),
        (None, Some(bytes)) => (bytes, CONTENT_TYPE_BINARY),
        (Some(_), Some(_)) => return Err("both \"data\" and \"data_base64\"; give one".to_owned()),
        (None, None) => return Err("no \"data\" (JSON) or \"data_base64\"".to_owned()),
    };
    let metadata = match (fields.get("metadata"), base64("metadata_base64")?) {
        (Some(raw), None) => raw.get().as_bytes().to_vec(),
        (None, Some(bytes)) => bytes,
        (Some(_), Some(_)) => return Err("both \"metadata\" and \"metadata_base64\"; give one".to_owned()),
        (None, None) => Vec::new(),
    };
    let id = string("id")?
        .map(|text| uuid::Uuid::parse_str(&text).map_err(|_| format!("\"id\" '{text}' is not a UUID")))
        .transpose()?;
    Ok(LineEvent {
        stream: string("stream")?,
        revision: number("revision")?,
        position: number("position")?,
        id,
        event_type,
        content_type: string("content_type")?.unwrap_or_else(|| default_content_type.to_owned()),
        data,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(content_type: &str, data: &[u8], metadata: &[u8]) -> RecordedEvent {
        RecordedEvent::new(steledb::RecordedEventParts {
            id: uuid::Uuid::from_u128(0x1234),
            stream: "s\"1",
            revision: 3,
            position: 99,
            event_type: "T",
            content_type,
            data,
            metadata,
            recorded_at_us: 7,
        })
    }

    fn line(event: &RecordedEvent) -> String {
        let mut out = Vec::new();
        write_line(&mut out, event);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_round_trip_byte_for_byte() {
        for (content_type, data, metadata) in [
            ("application/json", &b"{\"b\":1, \"a\":[1.50,true]}"[..], &b""[..]),
            ("application/json", b"{broken", b"\x00\x01"),
            ("application/octet-stream", b"1", b"{\"m\":2}"),
            ("application/json", b"", b""),
        ] {
            let original = event(content_type, data, metadata);
            let text = line(&original);
            assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'));
            let parsed = parse_line(&text).unwrap();
            assert_eq!(parsed.stream.as_deref(), Some("s\"1"));
            assert_eq!((parsed.revision, parsed.position), (Some(3), Some(99)));
            assert_eq!(parsed.id, Some(original.id));
            assert_eq!(parsed.content_type, content_type);
            assert_eq!(parsed.data, data, "{text}");
            assert_eq!(parsed.metadata, metadata, "{text}");
        }
    }

    #[test]
    fn line_breaks_in_json_become_spaces() {
        let text = line(&event("application/json", b"{\r\n\"a\":\n1}", b""));
        assert_eq!(text.matches('\n').count(), 1);
        assert_eq!(parse_line(&text).unwrap().data, b"{  \"a\": 1}");
    }

    #[test]
    fn shapes_of_the_http_api() {
        let value: serde_json::Value =
            serde_json::from_str(&line(&event("application/json", b"{broken", b"\x00\x01"))).expect("a line is JSON");
        assert_eq!(value["data_base64"], "e2Jyb2tlbg==");
        assert_eq!(value["metadata_base64"], "AAE=");
        assert_eq!(value["recorded_at_us"], 7);
        assert!(value.get("data").is_none() && value.get("metadata").is_none());
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert_eq!(parse_line("{\"data\":{}}").unwrap_err(), "no \"type\"");
        assert_eq!(parse_line("{\"type\":\"T\"}").unwrap_err(), "no \"data\" (JSON) or \"data_base64\"");
        assert!(parse_line("{\"type\":\"T\",\"data\":1,\"id\":\"x\"}").unwrap_err().contains("not a UUID"));
        assert!(parse_line("{\"type\":\"T\",\"data\":1,\"revision\":-1}").unwrap_err().contains("whole number"));
        assert!(parse_line("[1]").unwrap_err().starts_with("not a JSON object"));
        let parsed = parse_line("{\"type\":\"T\",\"data\":null,\"data_x\":0}").unwrap();
        assert_eq!(parsed.data, b"null");
        assert_eq!(parsed.content_type, "application/json");
        assert_eq!(parse_line("{\"type\":\"T\",\"data_base64\":\"AAE=\"}").unwrap().content_type, CONTENT_TYPE_BINARY);
    }
}
