//! The event every system is sent: 200 bytes of JSON data, a client-made
//! UUID and a type name. Built anew for every append on every system, so
//! each pays the same client-side cost.

use uuid::Uuid;

/// Size of each event's JSON data; the figure issue 5 and docs/benchmarks.md use.
pub const EVENT_DATA_BYTES: usize = 200;
pub const EVENT_TYPE: &str = "OrderPlaced";

#[derive(Debug, Clone)]
pub struct BenchEvent {
    pub id: Uuid,
    pub event_type: &'static str,
    pub data: Vec<u8>,
}

/// One event whose JSON body varies with `sequence` and is padded to
/// exactly `EVENT_DATA_BYTES`.
pub fn event(sequence: u64) -> BenchEvent {
    let mut text = format!(
        r#"{{"order_id":"o-{:012}","customer_id":"c-{:06}","amount_cents":{},"currency":"EUR","note":""#,
        // Fixed widths keep every event the same size before padding.
        sequence % 1_000_000_000_000,
        sequence % 100_003,
        100_000 + sequence.wrapping_mul(7919) % 900_000
    );
    let padding = EVENT_DATA_BYTES.saturating_sub(text.len() + 2);
    text.extend(std::iter::repeat_n('x', padding));
    text.push_str("\"}");
    debug_assert_eq!(text.len(), EVENT_DATA_BYTES);
    BenchEvent { id: Uuid::new_v4(), event_type: EVENT_TYPE, data: text.into_bytes() }
}

/// `count` fresh events numbered from `first`.
pub fn events(first: u64, count: usize) -> Vec<BenchEvent> {
    (0..count as u64).map(|n| event(first + n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_200_bytes_of_valid_json() {
        for sequence in [0, 1, 99_999, u64::MAX / 2] {
            let e = event(sequence);
            assert_eq!(e.data.len(), EVENT_DATA_BYTES);
            serde_json::from_slice::<serde_json::Value>(&e.data).expect("valid JSON");
        }
    }
}
