//! Recorded events as JSON, written straight into a buffer.
//!
//! `data` is the stored JSON text itself when the content type is
//! `application/json` and the bytes are valid JSON (so what was appended
//! comes back byte for byte); otherwise it is `data_base64`. `metadata`
//! likewise: omitted when empty, JSON text when it is valid JSON, else
//! `metadata_base64`.

use std::io::Write;

use base64::Engine;
use serde::de::IgnoredAny;
use steledb::RecordedEvent;

/// Appends `event` as a JSON object to `out`.
pub fn write_event(out: &mut Vec<u8>, event: &RecordedEvent) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(event.id.hyphenated().encode_lower(&mut steledb::Uuid::encode_buffer()).as_bytes());
    out.extend_from_slice(b"\",\"stream\":");
    write_string(out, event.stream());
    // Writing to a Vec cannot fail.
    let _ = write!(out, ",\"revision\":{},\"position\":{},\"type\":", event.revision, event.position);
    write_string(out, event.event_type());
    out.extend_from_slice(b",\"content_type\":");
    write_string(out, event.content_type());
    if event.is_json() && is_json_text(event.data()) {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(event.data());
    } else {
        write_base64(out, "data_base64", event.data());
    }
    if !event.metadata().is_empty() {
        if is_json_text(event.metadata()) {
            out.extend_from_slice(b",\"metadata\":");
            out.extend_from_slice(event.metadata());
        } else {
            write_base64(out, "metadata_base64", event.metadata());
        }
    }
    let _ = write!(out, ",\"recorded_at_us\":{}}}", event.recorded_at_us);
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    // Serializing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_base64(out: &mut Vec<u8>, key: &str, bytes: &[u8]) {
    let _ = write!(out, ",\"{key}\":\"");
    let start = out.len();
    let encoded_len = bytes.len().div_ceil(3) * 4;
    out.resize(start + encoded_len, 0);
    match base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..]) {
        Ok(written) => out.truncate(start + written),
        Err(_) => {
            out.truncate(start);
            out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(bytes).as_bytes());
        }
    }
    out.push(b'"');
}

/// True when `bytes` can be placed verbatim into a JSON document.
fn is_json_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| serde_json::from_str::<IgnoredAny>(text).is_ok())
}

/// Appends `event` as a single line of JSON (Server-Sent Events, the CLI's
/// NDJSON), without the final newline: a raw line break inside valid JSON
/// can only be whitespace, so it becomes a space.
pub fn write_event_line(out: &mut Vec<u8>, event: &RecordedEvent) {
    let start = out.len();
    write_event(out, event);
    for byte in &mut out[start..] {
        if matches!(*byte, b'\r' | b'\n') {
            *byte = b' ';
        }
    }
}

/// [`write_event_line`] into a new string.
pub fn event_line(event: &RecordedEvent) -> String {
    let mut out = Vec::with_capacity(256 + event.data().len() + event.metadata().len());
    write_event_line(&mut out, event);
    // Everything written is UTF-8: strings from serde_json, JSON text checked above.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(content_type: &str, data: &[u8], metadata: &[u8]) -> RecordedEvent {
        RecordedEvent::new(steledb::RecordedEventParts {
            id: steledb::Uuid::nil(),
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

    fn json(event: &RecordedEvent) -> serde_json::Value {
        let mut out = Vec::new();
        write_event(&mut out, event);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn json_data_is_spliced_and_binary_is_base64() {
        let value = json(&event("application/json", b"{\"b\":1,\"a\":[true]}", b""));
        assert_eq!(value["data"], serde_json::json!({"b": 1, "a": [true]}));
        assert_eq!(value["stream"], "s\"1");
        assert!(value.get("metadata").is_none());
        assert_eq!(value["recorded_at_us"], 7);
        let value = json(&event("application/json", b"{broken", b"\x00\x01"));
        assert_eq!(value["data_base64"], "e2Jyb2tlbg==");
        assert_eq!(value["metadata_base64"], "AAE=");
        let value = json(&event("application/octet-stream", b"1", b"{\"m\":2}"));
        assert_eq!(value["data_base64"], "MQ==");
        assert_eq!(value["metadata"]["m"], 2);
    }

    #[test]
    fn event_lines_have_no_line_breaks() {
        let line = event_line(&event("application/json", b"{\r\n\"a\":\n1}\n", b""));
        assert!(!line.contains(['\r', '\n']));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap()["data"]["a"], 1);
    }
}
