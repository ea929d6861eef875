//! HMAC-SHA256 (RFC 2104) with the inner and outer hash states precomputed
//! once per key, one message or two equal-length messages at a time; and the
//! one-iteration PBKDF2-HMAC-SHA256 (RFC 8018) that spiped's handshake derives
//! dk_1 and dk_2 with, its blocks computed in parallel lanes.

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

/// PBKDF2-HMAC-SHA256 with one iteration (RFC 8018 section 5.2, c = 1), filling `out`:
/// block i is HMAC-SHA256(key, salt || be32(i)), i from 1, the last one cut to fit;
/// intermediate tags are wiped. `out` may be at most 2^32 - 1 blocks (any real use is far below).
pub fn pbkdf2_sha256_one_iteration(key: &[u8], salt: &[u8], out: &mut [u8]) {
    let hmac = HmacSha256::new(key);
    let mut next: u32 = 1;
    let put = |chunk: &mut [u8], tags: &mut [[u8; 32]]| {
        for (dst, tag) in chunk.chunks_mut(32).zip(tags.iter()) {
            dst.copy_from_slice(&tag[..dst.len()]);
        }
        for tag in tags.iter_mut() {
            wipe(tag);
        }
    };
    for chunk in out.chunks_mut(4 * 32) {
        let blocks = chunk.len().div_ceil(32);
        let index = |i: u32| (next + i).to_be_bytes();
        if blocks == 4 {
            let ids = [index(0), index(1), index(2), index(3)];
            let mut tags = hmac.mac_with_suffix_lanes(ids.each_ref().map(|id| (salt, &id[..])));
            put(chunk, &mut tags);
        } else {
            for (i, piece) in chunk.chunks_mut(32).enumerate() {
                let id = index(i as u32);
                let mut tag = [hmac.mac_with_suffix(salt, &id)];
                put(piece, &mut tag);
            }
        }
        next += blocks as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestRng;

    #[test]
    fn pbkdf2_one_iteration_matches_rfc_7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P = "passwd", S = "salt", c = 1, dkLen = 64.
        let mut out = [0u8; 64];
        pbkdf2_sha256_one_iteration(b"passwd", b"salt", &mut out);
        let expected = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
                        49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783";
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

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
