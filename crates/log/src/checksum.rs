//! CRC32C of record frames, one at a time or several together.
//!
//! A frame's checksum covers its length prefix and everything after the
//! checksum field: `[0, 4) ++ [8, length_bytes)` (see `format`).
//!
//! Reads verify every record, and records are short (~300 bytes for a
//! 200-byte event), too short for the `crc32c` crate's three-way split, so
//! each one is a single chain of `crc32` instructions: each step waits for
//! the one before (latency ~3 cycles, throughput one per cycle). Verifying
//! three frames in interleaved chains keeps the unit busy and makes
//! checksumming a read window about three times cheaper.

/// How many frames [`frame_checksums`] verifies in one pass.
pub const FRAMES_PER_PASS: usize = 3;

/// The CRC32C a frame's checksum field must hold.
pub fn frame_checksum(frame: &[u8]) -> u32 {
    debug_assert!(frame.len() >= 8);
    crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..])
}

/// The checksums of three frames, as [`frame_checksum`] gives them.
pub fn frame_checksums(frames: [&[u8]; FRAMES_PER_PASS]) -> [u32; FRAMES_PER_PASS] {
    #[cfg(target_arch = "x86_64")]
    {
        // The detection is cached by std: one relaxed load after the first call.
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE 4.2, checked just above.
            return unsafe { x86::frame_checksums_sse42(frames) };
        }
    }
    frames.map(frame_checksum)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};

    use super::FRAMES_PER_PASS;

    #[target_feature(enable = "sse4.2")]
    pub(super) fn frame_checksums_sse42(frames: [&[u8]; FRAMES_PER_PASS]) -> [u32; FRAMES_PER_PASS] {
        for frame in frames {
            assert!(frame.len() >= 8);
        }
        let mut state = frames.map(|frame| {
            let length_prefix = u32::from_le_bytes(frame[0..4].try_into().unwrap());
            u64::from(_mm_crc32_u32(!0, length_prefix))
        });
        let bodies = frames.map(|frame| &frame[8..]);
        // The words all three bodies have, one from each per step.
        let mut words = bodies.map(|body| body.chunks_exact(8));
        let words_common = words.iter().map(|w| w.len()).min().unwrap();
        for _ in 0..words_common {
            for (lane, state) in words.iter_mut().zip(state.iter_mut()) {
                let word = u64::from_le_bytes(lane.next().unwrap().try_into().unwrap());
                *state = _mm_crc32_u64(*state, word);
            }
        }
        // What is left of each body, one chain at a time.
        for (lane, state) in words.iter_mut().zip(state.iter_mut()) {
            for word in lane.by_ref() {
                *state = _mm_crc32_u64(*state, u64::from_le_bytes(word.try_into().unwrap()));
            }
            let mut crc = *state as u32;
            for &byte in lane.remainder() {
                crc = _mm_crc32_u8(crc, byte);
            }
            *state = u64::from(crc);
        }
        state.map(|crc| !(crc as u32))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any three frames, of equal or different lengths, get the
        /// checksums the one-at-a-time path gives.
        #[test]
        fn together_equals_one_at_a_time(
            a in proptest::collection::vec(any::<u8>(), 8..700),
            b in proptest::collection::vec(any::<u8>(), 8..700),
            c in proptest::collection::vec(any::<u8>(), 8..700),
        ) {
            let frames = [&a[..], &b[..], &c[..]];
            prop_assert_eq!(frame_checksums(frames), frames.map(frame_checksum));
        }
    }

    #[test]
    fn the_checksum_skips_the_checksum_field() {
        let mut frame = b"\x10\0\0\0CRC!abcdefgh".to_vec();
        let crc = frame_checksum(&frame);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(frame_checksum(&frame), crc);
        let mut whole = frame[0..4].to_vec();
        whole.extend_from_slice(&frame[8..]);
        assert_eq!(crc, crc32c::crc32c(&whole));
    }
}
