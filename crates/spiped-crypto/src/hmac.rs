//! HMAC-SHA256 (RFC 2104) with the inner and outer hash states precomputed
//! once per key, one message or two equal-length messages at a time.

use crate::sha256::{compress, compress_lanes, pad_final, sha256, state_to_bytes, IV};
use crate::wipe::wipe;

/// An HMAC-SHA256 key, kept as the hash states after the ipad / opad block; wiped on drop.
pub struct HmacSha256 {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl Drop for HmacSha256 {
    fn drop(&mut self) {
        wipe(&mut self.inner);
        wipe(&mut self.outer);
    }
}

/// Longest suffix accepted by the `mac_with_suffix*` functions.
pub const MAX_SUFFIX: usize = 56;

impl HmacSha256 {
    /// Prepares `key` (any length; longer than 64 bytes is hashed first).
    pub fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&sha256(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut pad = [0u8; 64];
        let mut state = |x: u8| {
            for (p, k) in pad.iter_mut().zip(&block) {
                *p = k ^ x;
            }
            let mut s = IV;
            compress(&mut s, &pad);
            s
        };
        let (inner, outer) = (state(0x36), state(0x5c));
        wipe(&mut pad);
        wipe(&mut block);
        HmacSha256 { inner, outer }
    }

    /// HMAC-SHA256(key, data).
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        self.mac_with_suffix(data, &[])
    }

    /// HMAC-SHA256(key, data || suffix) without copying `data`; `suffix` is at most `MAX_SUFFIX` bytes.
    pub fn mac_with_suffix(&self, data: &[u8], suffix: &[u8]) -> [u8; 32] {
        let [tag] = self.mac_with_suffix_lanes([(data, suffix)]);
        tag
    }

    /// The MACs of `N` messages `data || suffix` computed together (interleaved SHA-NI lanes);
    /// all data parts must have equal lengths, and so must all suffixes (at most `MAX_SUFFIX`).
    pub fn mac_with_suffix_lanes<const N: usize>(
        &self,
        msgs: [(&[u8], &[u8]); N],
    ) -> [[u8; 32]; N] {
        let (len, suffix_len) = (msgs[0].0.len(), msgs[0].1.len());
        assert!(
            msgs.iter()
                .all(|m| m.0.len() == len && m.1.len() == suffix_len),
            "HMAC lanes need equal lengths"
        );
        assert!(suffix_len <= MAX_SUFFIX, "HMAC suffix too long");
        let whole = len & !63;
        let total = 64 + (len + suffix_len) as u64;
        let mut states = [self.inner; N];
        compress_lanes(states.each_mut(), msgs.map(|m| &m.0[..whole]));
        let mut bufs = [[0u8; 128]; N];
        let mut tail_len = 0;
        for (buf, m) in bufs.iter_mut().zip(&msgs) {
            tail_len = pad_final(&[&m.0[whole..], m.1], total, buf).len();
        }
        compress_lanes(states.each_mut(), bufs.each_ref().map(|b| &b[..tail_len]));
        let digests = states.map(|s| state_to_bytes(&s));
        for (buf, d) in bufs.iter_mut().zip(&digests) {
            pad_final(&[d], 96, buf);
        }
        let mut outer = [self.outer; N];
        compress_lanes(outer.each_mut(), bufs.each_ref().map(|b| &b[..64]));
        outer.map(|s| state_to_bytes(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestRng;

    #[test]
    fn lanes_match_one_lane() {
        let mut rng = TestRng::new(3);
        for len in (0..200).chain([1028, 4000]) {
            let key = rng.bytes(len % 100);
            let h = HmacSha256::new(&key);
            let sl = len % (MAX_SUFFIX + 1);
            let data: [Vec<u8>; 4] = core::array::from_fn(|_| rng.bytes(len));
            let suffixes: [Vec<u8>; 4] = core::array::from_fn(|_| rng.bytes(sl));
            let tags: [[u8; 32]; 4] =
                h.mac_with_suffix_lanes(core::array::from_fn(|l| (&data[l][..], &suffixes[l][..])));
            for l in 0..4 {
                assert_eq!(
                    tags[l],
                    h.mac(&[data[l].as_slice(), &suffixes[l]].concat()),
                    "length {len}"
                );
            }
            let [a, b] = h.mac_with_suffix_lanes([
                (&data[0][..], &suffixes[0][..]),
                (&data[1], &suffixes[1]),
            ]);
            assert_eq!([a, b], [tags[0], tags[1]]);
        }
    }
}
