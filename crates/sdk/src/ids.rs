//! Deterministic ids: RFC 9562 name-based UUIDs (version 5, SHA-1).
//!
//! Event ids are derived from the command id so that handling the same
//! command again produces the same ids, which is what lets the store
//! recognise a retried append. Version 5 is the standard choice so a client
//! in another language (Python's `uuid.uuid5`, ...) derives the same ids.
//!
//! SHA-1 is written out here instead of enabling uuid's `v5` feature: that
//! would pull a new crate into the shared lock file for ~60 lines of code.
//! Its weakness against chosen collisions does not matter here: the names
//! hashed are ids the caller already controls.

use uuid::Uuid;

/// Namespace of event ids derived from a command id (a random v4 UUID,
/// fixed forever: changing it would change every derived id).
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_93d7_4b0a_8e55_0c3b_7d2f_91a6);
/// Namespace of ids a decider asks its [`Context`](crate::Context) for.
pub const CONTEXT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2b8e_5d10_c4a3_4f67_9a1e_6d7c_0f48_b3e2);
/// Namespace of dead-letter event ids (see `GatewayRunner::with_dead_letters`).
pub const DEAD_LETTER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x4a7e_c2d9_10b3_4f85_a6d1_3e9c_72b0_58f4);
/// Namespace of snapshot event ids.
pub const SNAPSHOT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x91d4_07e3_5a6b_4c28_b7f0_e2a9_4c61_d85b);

/// The version-5 UUID of `name` in `namespace`, as RFC 9562 section 5.5 defines it.
pub fn uuid_v5(namespace: Uuid, name: &[u8]) -> Uuid {
    let mut input = Vec::with_capacity(16 + name.len());
    input.extend_from_slice(namespace.as_bytes());
    input.extend_from_slice(name);
    let digest = sha1(&input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

/// The id of event `index` of the append that command `command_id` makes
/// to `stream`. The stream is part of the name so one command writing to
/// several streams gets distinct ids in each.
pub fn event_id(command_id: Uuid, stream: &str, index: u32) -> Uuid {
    uuid_v5(EVENT_ID_NAMESPACE, &name_of(command_id, stream.as_bytes(), index))
}

pub(crate) fn name_of(id: Uuid, label: &[u8], index: u32) -> Vec<u8> {
    // Fixed-width fields first, so no two (id, label, index) share a name.
    let mut name = Vec::with_capacity(20 + label.len());
    name.extend_from_slice(id.as_bytes());
    name.extend_from_slice(&index.to_be_bytes());
    name.extend_from_slice(label);
    name
}

/// SHA-1 (FIPS 180-4), used only to derive ids.
fn sha1(message: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476, 0xc3d2_e1f0];
    let length_bits = (message.len() as u64).wrapping_mul(8);
    let mut padded = message.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&length_bits.to_be_bytes());
    for block in padded.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(v);
        }
    }
    let mut digest = [0u8; 20];
    for (chunk, word) in digest.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        // Two blocks, with the padding spilling into the second.
        assert_eq!(
            hex(&sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(hex(&sha1(&vec![b'a'; 1_000_000])), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }

    #[test]
    fn uuid_v5_matches_other_implementations() {
        // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        let dns = Uuid::parse_str("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
        assert_eq!(uuid_v5(dns, b"python.org").to_string(), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
    }

    #[test]
    fn event_ids_differ_by_command_stream_and_index() {
        let command = Uuid::from_u128(1);
        let id = event_id(command, "account-1", 0);
        assert_eq!(id, event_id(command, "account-1", 0));
        assert_ne!(id, event_id(command, "account-1", 1));
        assert_ne!(id, event_id(command, "account-2", 0));
        assert_ne!(id, event_id(Uuid::from_u128(2), "account-1", 0));
        assert_eq!(id.get_version_num(), 5);
    }
}
