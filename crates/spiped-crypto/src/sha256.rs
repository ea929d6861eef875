//! SHA-256 (FIPS 180-4): the compression function (hand-written SHA-NI with up
//! to four independent messages interleaved, on the x86_64 kernels; RustCrypto's
//! `sha2::compress256` on the portable core), final-block padding, a streaming
//! hasher and a one-shot `sha256`.

use crate::kernels::{kernels, Kernels};

const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The SHA-256 initial hash value H(0).
pub(crate) const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Compresses every whole 64-byte block of `blocks` into `state` (a trailing partial block is ignored).
pub(crate) fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    compress_lanes([state], [blocks]);
}

/// Compresses `N` independent messages of equal length at once (lanes interleaved on SHA-NI);
/// same result as `N` calls of `compress`.
pub(crate) fn compress_lanes<const N: usize>(states: [&mut [u32; 8]; N], blocks: [&[u8]; N]) {
    assert!(
        blocks.iter().all(|b| b.len() == blocks[0].len()),
        "SHA-256 lanes need equal lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if kernels() == Kernels::X86_64 {
        // SAFETY: the x86_64 kernels are chosen only with SHA-NI, SSSE3 and SSE4.1 present.
        unsafe { x86::compress_lanes(states, blocks) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (kernels(), Kernels::Portable);
    for (state, b) in states.into_iter().zip(blocks) {
        portable::compress(state, b);
    }
}

/// The hand-written SHA-NI kernel itself, for the self-test (which runs before any kernel is chosen).
///
/// # Safety
/// SHA-NI, SSSE3 and SSE4.1 must be present; lanes must have equal lengths.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn compress_lanes_x86<const N: usize>(
    states: [&mut [u32; 8]; N],
    blocks: [&[u8]; N],
) {
    assert!(
        blocks.iter().all(|b| b.len() == blocks[0].len()),
        "SHA-256 lanes need equal lengths"
    );
    // SAFETY: the caller's contract.
    unsafe { x86::compress_lanes(states, blocks) }
}

/// Writes the unprocessed tail `parts` (concatenated, at most 119 bytes) plus SHA-256 padding for a
/// message of `total_len` bytes into `buf`; returns the 64 or 128 bytes left to compress.
pub(crate) fn pad_final<'a>(parts: &[&[u8]], total_len: u64, buf: &'a mut [u8; 128]) -> &'a [u8] {
    let mut n = 0;
    for p in parts {
        buf[n..n + p.len()].copy_from_slice(p);
        n += p.len();
    }
    let end = if n + 9 <= 64 { 64 } else { 128 };
    buf[n] = 0x80;
    buf[n + 1..end - 8].fill(0);
    buf[end - 8..end].copy_from_slice(&(total_len << 3).to_be_bytes());
    &buf[..end]
}

/// Serialises a hash state as the big-endian 32-byte digest.
pub(crate) fn state_to_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_be_bytes());
    }
    out
}

/// Streaming SHA-256 hasher.
#[derive(Clone)]
pub struct Sha256 {
    state: [u32; 8],
    buf: [u8; 64],
    buf_len: usize,
    total: u64,
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256 {
    /// A hasher for the empty message.
    pub fn new() -> Self {
        Sha256 {
            state: IV,
            buf: [0; 64],
            buf_len: 0,
            total: 0,
        }
    }

    /// Appends `data` to the message.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = data.len().min(64 - self.buf_len);
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 64 {
                return;
            }
            compress(&mut self.state, &self.buf);
            self.buf_len = 0;
        }
        let whole = data.len() & !63;
        compress(&mut self.state, &data[..whole]);
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    /// The digest of everything appended so far.
    pub fn finalize(mut self) -> [u8; 32] {
        let mut block = [0u8; 128];
        let tail = pad_final(&[&self.buf[..self.buf_len]], self.total, &mut block);
        compress(&mut self.state, tail);
        state_to_bytes(&self.state)
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize()
}

mod portable {
    //! The portable compression: RustCrypto's `sha2::compress256` (its own SHA-NI
    //! when detected, else plain Rust with no data-indexed tables).
    use sha2::digest::generic_array::GenericArray;

    pub(super) fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        for block in blocks.chunks_exact(64) {
            sha2::compress256(
                state,
                core::slice::from_ref(GenericArray::from_slice(block)),
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! SHA-NI compression, one lane and two interleaved lanes.
    use super::K;
    use core::arch::x86_64::*;

    /// Byte shuffle turning four big-endian message words into native lanes.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn bswap_mask() -> __m128i {
        _mm_set_epi64x(0x0c0d0e0f08090a0b, 0x0405060700010203)
    }

    /// Loads `state` (a..h) into the ABEF / CDGH register layout SHA256RNDS2 uses.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load_state(state: &[u32; 8]) -> (__m128i, __m128i) {
        // SAFETY: both 16-byte loads are inside `state` (32 bytes).
        let (dcba, hgfe) = unsafe {
            (
                _mm_loadu_si128(state.as_ptr().cast()),
                _mm_loadu_si128(state.as_ptr().add(4).cast()),
            )
        };
        let cdab = _mm_shuffle_epi32(dcba, 0xb1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1b);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xf0),
        )
    }

    /// Inverse of `load_state`.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn store_state(state: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        let feba = _mm_shuffle_epi32(abef, 0x1b);
        let dchg = _mm_shuffle_epi32(cdgh, 0xb1);
        // SAFETY: both 16-byte stores are inside `state` (32 bytes).
        unsafe {
            _mm_storeu_si128(state.as_mut_ptr().cast(), _mm_blend_epi16(feba, dchg, 0xf0));
            _mm_storeu_si128(
                state.as_mut_ptr().add(4).cast(),
                _mm_alignr_epi8(dchg, feba, 8),
            );
        }
    }

    /// Loads the four message-schedule words of one 64-byte block.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn load_block(block: &[u8]) -> [__m128i; 4] {
        assert!(block.len() >= 64);
        let p = block.as_ptr().cast::<__m128i>();
        let m = bswap_mask();
        // SAFETY: the four 16-byte loads are inside `block` (checked above).
        unsafe {
            [
                _mm_shuffle_epi8(_mm_loadu_si128(p), m),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), m),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), m),
                _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), m),
            ]
        }
    }

    /// Four rounds with message words `w` (round group `i`).
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn rounds4(abef: &mut __m128i, cdgh: &mut __m128i, w: __m128i, i: usize) {
        let k = &K[4 * i..4 * i + 4];
        // SAFETY: the 16-byte load reads exactly `k`.
        let wk = _mm_add_epi32(w, unsafe { _mm_loadu_si128(k.as_ptr().cast()) });
        *cdgh = _mm_sha256rnds2_epu32(*cdgh, *abef, wk);
        *abef = _mm_sha256rnds2_epu32(*abef, *cdgh, _mm_shuffle_epi32(wk, 0x0e));
    }

    /// Next four message words from the previous sixteen.
    #[inline]
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    fn schedule(w0: __m128i, w1: __m128i, w2: __m128i, w3: __m128i) -> __m128i {
        let t = _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4));
        _mm_sha256msg2_epu32(t, w3)
    }

    /// `N` interleaved lanes: the SHA units are pipelined, so independent
    /// lanes fill the latency of each lane's SHA256RNDS2 chain. Rounds 16..64 run
    /// as three passes of four groups so that every message-word index is a
    /// constant once unrolled and the words stay in registers: one loop over
    /// `i % 4` was left rolled, kept them on the stack, and the store-to-load
    /// latency then paced every four rounds (60 ns a block on one lane, now 45).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) fn compress_lanes<const N: usize>(states: [&mut [u32; 8]; N], blocks: [&[u8]; N]) {
        let mut st: [(__m128i, __m128i); N] = core::array::from_fn(|l| load_state(states[l]));
        for j in 0..blocks[0].len() / 64 {
            let save = st;
            let mut w: [[__m128i; 4]; N] =
                core::array::from_fn(|l| load_block(&blocks[l][64 * j..]));
            for i in 0..4 {
                for l in 0..N {
                    rounds4(&mut st[l].0, &mut st[l].1, w[l][i], i);
                }
            }
            for pass in 1..4 {
                for k in 0..4 {
                    for l in 0..N {
                        let w = &mut w[l];
                        w[k] = schedule(w[k], w[(k + 1) % 4], w[(k + 2) % 4], w[(k + 3) % 4]);
                        rounds4(&mut st[l].0, &mut st[l].1, w[k], 4 * pass + k);
                    }
                }
            }
            for (s, saved) in st.iter_mut().zip(save) {
                s.0 = _mm_add_epi32(s.0, saved.0);
                s.1 = _mm_add_epi32(s.1, saved.1);
            }
        }
        for (state, s) in states.into_iter().zip(st) {
            store_state(state, s.0, s.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestRng;

    /// Full SHA-256 of `data` through the given compression function.
    fn hash_with(f: &mut dyn FnMut(&mut [u32; 8], &[u8]), data: &[u8]) -> [u8; 32] {
        let mut s = IV;
        let whole = data.len() & !63;
        f(&mut s, &data[..whole]);
        let mut buf = [0u8; 128];
        f(
            &mut s,
            pad_final(&[&data[whole..]], data.len() as u64, &mut buf),
        );
        state_to_bytes(&s)
    }

    fn lengths() -> impl Iterator<Item = usize> {
        (0..300).chain([1023, 1024, 1036, 4096, 65536 + 17, 1 << 20])
    }

    #[test]
    fn streaming_matches_one_shot_at_every_split() {
        let mut rng = TestRng::new(7);
        let data = rng.bytes(300);
        let whole = sha256(&data);
        for split in 0..=data.len() {
            let mut h = Sha256::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finalize(), whole, "split {split}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn shani_matches_portable() {
        if !crate::cpu_features().shani {
            eprintln!("SHA-NI absent: skipped");
            return;
        }
        let mut rng = TestRng::new(1);
        for len in lengths() {
            let data = rng.bytes(len);
            let p = hash_with(&mut portable::compress, &data);
            // SAFETY: SHA-NI detected above.
            let x = hash_with(&mut |s, b| unsafe { x86::compress_lanes([s], [b]) }, &data);
            assert_eq!(p, x, "length {len}");
            assert_eq!(p, sha256(&data), "length {len}");
        }
    }

    fn lanes_match_portable<const N: usize>(rng: &mut TestRng, len: usize) {
        let msgs: [Vec<u8>; N] = core::array::from_fn(|_| rng.bytes(len));
        let mut states: [[u32; 8]; N] =
            core::array::from_fn(|_| core::array::from_fn(|_| rng.next_u64() as u32));
        let mut want = states;
        for (s, m) in want.iter_mut().zip(&msgs) {
            portable::compress(s, m);
        }
        compress_lanes::<N>(states.each_mut(), core::array::from_fn(|l| &msgs[l][..]));
        assert_eq!(states, want, "{N} lanes, length {len}");
    }

    #[test]
    fn multi_lane_matches_portable() {
        if !crate::cpu_features().shani {
            eprintln!("SHA-NI absent: only the portable fallback is checked");
        }
        let mut rng = TestRng::new(2);
        for len in lengths() {
            lanes_match_portable::<2>(&mut rng, len);
            lanes_match_portable::<3>(&mut rng, len);
            lanes_match_portable::<4>(&mut rng, len);
        }
    }
}
