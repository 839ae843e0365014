//! Stream metadata, stored as a JSON `$metadata` event in the stream
//! `$$<stream>`, with KurrentDB's reserved keys.

use serde_json::{Map, Value};

/// The metadata of a stream. Keys other than the ones below are kept in
/// `custom` untouched (including KurrentDB keys we do not act on, like `$acl`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamMetadata {
    /// Only the newest `max_count` events are readable.
    pub max_count: Option<u64>,
    /// Events older than this many seconds are not readable.
    pub max_age_secs: Option<u64>,
    /// Events with a lower revision are not readable (soft delete sets it).
    pub truncate_before: Option<u64>,
    pub cache_control_secs: Option<u64>,
    pub custom: Map<String, Value>,
}

const KEY_MAX_COUNT: &str = "$maxCount";
const KEY_MAX_AGE: &str = "$maxAge";
const KEY_TRUNCATE_BEFORE: &str = "$tb";
const KEY_CACHE_CONTROL: &str = "$cacheControl";

impl StreamMetadata {
    pub fn to_json(&self) -> Vec<u8> {
        let mut object = self.custom.clone();
        let mut put = |key: &str, value: Option<u64>| {
            if let Some(value) = value {
                object.insert(key.to_owned(), Value::from(value));
            }
        };
        put(KEY_MAX_COUNT, self.max_count);
        put(KEY_MAX_AGE, self.max_age_secs);
        put(KEY_TRUNCATE_BEFORE, self.truncate_before);
        put(KEY_CACHE_CONTROL, self.cache_control_secs);
        serde_json::to_vec(&Value::Object(object)).expect("a JSON map always serializes")
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(mut object) = value else {
            return Err("metadata must be a JSON object".to_owned());
        };
        let mut take = |key: &str| -> Result<Option<u64>, String> {
            match object.remove(key) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => {
                    value.as_u64().map(Some).ok_or_else(|| format!("{key} must be a non-negative integer, got {value}"))
                }
            }
        };
        let max_count = take(KEY_MAX_COUNT)?;
        let max_age_secs = take(KEY_MAX_AGE)?;
        let truncate_before = take(KEY_TRUNCATE_BEFORE)?;
        let cache_control_secs = take(KEY_CACHE_CONTROL)?;
        if max_count == Some(0) {
            return Err("$maxCount must be at least 1".to_owned());
        }
        Ok(Self { max_count, max_age_secs, truncate_before, cache_control_secs, custom: object })
    }

    /// The lowest revision still readable given the stream's last revision
    /// and the time now, or `None` when the age limit does not apply.
    pub fn first_readable_revision(&self, last_revision: u64) -> u64 {
        let by_count = self.max_count.map_or(0, |n| (last_revision + 1).saturating_sub(n));
        by_count.max(self.truncate_before.unwrap_or(0))
    }

    pub fn is_expired(&self, recorded_at_us: u64, now_us: u64) -> bool {
        self.max_age_secs.is_some_and(|age| recorded_at_us.saturating_add(age.saturating_mul(1_000_000)) < now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_custom_keys() {
        let json = br#"{"$maxCount":10,"$tb":3,"owner":"ops","$acl":{"$r":"$all"}}"#;
        let metadata = StreamMetadata::from_json(json).unwrap();
        assert_eq!(metadata.max_count, Some(10));
        assert_eq!(metadata.truncate_before, Some(3));
        assert_eq!(metadata.custom["owner"], "ops");
        assert_eq!(StreamMetadata::from_json(&metadata.to_json()).unwrap(), metadata);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(StreamMetadata::from_json(b"[1]").is_err());
        assert!(StreamMetadata::from_json(br#"{"$maxCount":-1}"#).is_err());
        assert!(StreamMetadata::from_json(br#"{"$maxAge":"x"}"#).is_err());
        assert!(StreamMetadata::from_json(b"{not json").is_err());
    }

    #[test]
    fn readable_range() {
        let metadata = StreamMetadata { max_count: Some(3), truncate_before: Some(2), ..Default::default() };
        assert_eq!(metadata.first_readable_revision(9), 7);
        assert_eq!(metadata.first_readable_revision(2), 2);
    }
}
