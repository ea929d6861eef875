//! AES-256 key expansion and CTR-mode keystream XOR on one of three backends:
//! hand-written AES-NI (eight blocks interleaved) or VAES (sixteen blocks in
//! eight 256-bit registers) kernels, or the portable core: RustCrypto's `aes`
//! (AES-NI when detected, else fixsliced constant-time software) driven by `ctr`.
//!
//! The 16-byte counter block is `bigendian64(nonce) || bigendian64(block)`;
//! `block` grows by one per 16 bytes and wraps without carrying into
//! `nonce`, as in spiped's `crypto_aesctr`.

use crate::kernels::{kernels, Kernels};
use crate::wipe::wipe;
use aes::cipher::{BlockEncrypt, InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};

/// Which implementation generates the keystream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AesBackend {
    /// Hand-written 128-bit AES-NI, eight blocks in flight.
    AesNi,
    /// Hand-written 256-bit VAES (with AVX2), sixteen blocks in flight.
    Vaes,
    /// RustCrypto `aes` + `ctr` (its own AES-NI or constant-time software).
    Portable,
}

/// The 15 AES-256 round keys, as 128-bit values and broadcast to 256 bits.
#[repr(C, align(32))]
struct RoundKeys {
    ymm: [[u8; 32]; 15],
    xmm: [[u8; 16]; 15],
}

impl Drop for RoundKeys {
    fn drop(&mut self) {
        wipe(self.ymm.as_flattened_mut());
        wipe(self.xmm.as_flattened_mut());
    }
}

/// The expanded key of one backend; every variant wipes its round keys on drop
/// (`aes::Aes256` through its `zeroize` feature).
enum Keys {
    /// AES-NI or VAES round keys (the backend is checked at construction).
    Hand(Box<RoundKeys>, AesBackend),
    Portable(Box<aes::Aes256>),
}

/// An expanded AES-256 key for CTR mode; round keys wiped on drop.
pub struct Aes256Ctr {
    keys: Keys,
}

/// `ctr`'s CTR mode with a 64-bit big-endian block counter, over a borrowed key.
type PortableCtr<'a> = ctr::CtrCore<&'a aes::Aes256, ctr::flavors::Ctr64BE>;

impl Aes256Ctr {
    /// Expands `key` for the process's kernels: VAES or AES-NI on the x86_64 kernels, else portable.
    pub fn new(key: &[u8; 32]) -> Self {
        let f = crate::cpu::cpu_features();
        let backend = match kernels() {
            Kernels::X86_64 if f.vaes && f.avx2 => AesBackend::Vaes,
            Kernels::X86_64 => AesBackend::AesNi,
            Kernels::Portable => AesBackend::Portable,
        };
        Self::with_backend(key, backend).expect("the chosen kernels run on this CPU")
    }

    /// Expands `key` for `backend`; `None` if this CPU cannot run it (Portable always runs).
    pub fn with_backend(key: &[u8; 32], backend: AesBackend) -> Option<Self> {
        if backend == AesBackend::Portable {
            let aes = Box::new(aes::Aes256::new(key.into()));
            return Some(Aes256Ctr {
                keys: Keys::Portable(aes),
            });
        }
        let f = crate::cpu::cpu_features();
        let ok = f.aesni && (backend == AesBackend::AesNi || (f.vaes && f.avx2));
        if !ok {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AES-NI was detected at run time.
            let xmm = unsafe { x86::expand_key(key) };
            let mut rk = Box::new(RoundKeys {
                ymm: [[0u8; 32]; 15],
                xmm,
            });
            let RoundKeys { ymm, xmm } = &mut *rk;
            for (y, x) in ymm.iter_mut().zip(xmm.iter()) {
                y[..16].copy_from_slice(x);
                y[16..].copy_from_slice(x);
            }
            Some(Aes256Ctr {
                keys: Keys::Hand(rk, backend),
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AES-NI is never detected off x86_64")
    }

    /// The backend this key was expanded for.
    pub fn backend(&self) -> AesBackend {
        match &self.keys {
            Keys::Hand(_, b) => *b,
            Keys::Portable(_) => AesBackend::Portable,
        }
    }

    /// XORs the keystream for `nonce`, starting at counter `first_block`, into `buf` in place.
    pub fn apply_keystream(&self, nonce: u64, first_block: u64, buf: &mut [u8]) {
        match &self.keys {
            Keys::Portable(aes) => portable_ctr(aes, nonce, first_block, buf),
            Keys::Hand(..) => {
                let p = buf.as_mut_ptr();
                // SAFETY: `p` is valid for reading and writing `buf.len()` bytes; src == dst is allowed.
                unsafe { self.xor_raw(nonce, first_block, p, p, buf.len()) }
            }
        }
    }

    /// Writes `src` XOR keystream (for `nonce`, from counter `first_block`) to `dst`; panics unless the lengths match.
    pub fn apply_keystream_to(&self, nonce: u64, first_block: u64, src: &[u8], dst: &mut [u8]) {
        assert_eq!(
            src.len(),
            dst.len(),
            "keystream source and destination differ in length"
        );
        match &self.keys {
            Keys::Portable(aes) => {
                dst.copy_from_slice(src);
                portable_ctr(aes, nonce, first_block, dst);
            }
            // SAFETY: `src` is readable and `dst` writable for `src.len()` bytes and they do not overlap.
            Keys::Hand(..) => unsafe {
                self.xor_raw(
                    nonce,
                    first_block,
                    src.as_ptr(),
                    dst.as_mut_ptr(),
                    src.len(),
                )
            },
        }
    }

    /// # Safety
    /// `src` must be readable and `dst` writable for `len` bytes; they are either equal or disjoint.
    unsafe fn xor_raw(
        &self,
        nonce: u64,
        first_block: u64,
        src: *const u8,
        dst: *mut u8,
        len: usize,
    ) {
        let Keys::Hand(rk, backend) = &self.keys else {
            unreachable!("xor_raw is only called for the hand-written backends")
        };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: construction checked that the CPU supports `backend`;
        // the pointer contract is the caller's.
        unsafe {
            match backend {
                AesBackend::Vaes => x86::ctr_vaes(rk, nonce, first_block, src, dst, len),
                _ => x86::ctr_aesni(&rk.xmm, nonce, first_block, src, dst, len),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (rk, backend, nonce, first_block, src, dst, len);
            unreachable!("no hand-written Aes256Ctr exists off x86_64")
        }
    }
}

/// The counter block `be64(nonce) || be64(block)`.
fn counter_block(nonce: u64, block: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&nonce.to_be_bytes());
    iv[8..].copy_from_slice(&block.to_be_bytes());
    iv
}

/// CTR on the portable core, in place. `ctr` refuses to pass block number 2^64-1, so the
/// run is cut there and that last block before the wrap is done by hand.
fn portable_ctr(aes: &aes::Aes256, nonce: u64, mut block: u64, mut buf: &mut [u8]) {
    while !buf.is_empty() {
        let room = u64::MAX - block;
        if room == 0 {
            let mut ks = counter_block(nonce, block).into();
            aes.encrypt_block(&mut ks);
            let n = buf.len().min(16);
            for (b, k) in buf[..n].iter_mut().zip(ks.iter()) {
                *b ^= k;
            }
            buf = &mut buf[n..];
            block = 0;
            continue;
        }
        let take = usize::try_from(room)
            .ok()
            .and_then(|r| r.checked_mul(16))
            .map_or(buf.len(), |r| r.min(buf.len()));
        let (now, rest) = buf.split_at_mut(take);
        let core = PortableCtr::inner_iv_init(aes, &counter_block(nonce, block).into());
        StreamCipherCoreWrapper::from_core(core).apply_keystream(now);
        buf = rest;
        block = block.wrapping_add((take / 16) as u64);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AES-NI / VAES intrinsics.
    use super::RoundKeys;
    use core::arch::x86_64::*;

    /// One step of the AES-256 key schedule: `a` ^ its prefix XORs ^ `t`.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn mix(a: __m128i, t: __m128i) -> __m128i {
        let a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        let a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        let a = _mm_xor_si128(a, _mm_slli_si128(a, 4));
        _mm_xor_si128(a, t)
    }

    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn expand_key(key: &[u8; 32]) -> [[u8; 16]; 15] {
        // SAFETY (whole body): AES-NI enabled by the caller's detection; the
        // loads read `key` (32 bytes), the stores write `rk` (15 x 16 bytes).
        unsafe {
            let mut rk = [[0u8; 16]; 15];
            let mut a = _mm_loadu_si128(key.as_ptr().cast());
            let mut b = _mm_loadu_si128(key.as_ptr().add(16).cast());
            _mm_storeu_si128(rk[0].as_mut_ptr().cast(), a);
            _mm_storeu_si128(rk[1].as_mut_ptr().cast(), b);
            // Round keys 2i (from b, with rcon) and 2i + 1 (from the new a).
            macro_rules! rounds {
                ($i:expr, $rcon:expr) => {
                    a = mix(
                        a,
                        _mm_shuffle_epi32(_mm_aeskeygenassist_si128(b, $rcon), 0xff),
                    );
                    _mm_storeu_si128(rk[2 * $i].as_mut_ptr().cast(), a);
                    b = mix(b, _mm_shuffle_epi32(_mm_aeskeygenassist_si128(a, 0), 0xaa));
                    _mm_storeu_si128(rk[2 * $i + 1].as_mut_ptr().cast(), b);
                };
            }
            rounds!(1, 0x01);
            rounds!(2, 0x02);
            rounds!(3, 0x04);
            rounds!(4, 0x08);
            rounds!(5, 0x10);
            rounds!(6, 0x20);
            a = mix(
                a,
                _mm_shuffle_epi32(_mm_aeskeygenassist_si128(b, 0x40), 0xff),
            );
            _mm_storeu_si128(rk[14].as_mut_ptr().cast(), a);
            rk
        }
    }

    /// Counter in "nonce big-endian, block native" form; `bswap_block()` turns it into the counter block.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn counter(nonce: u64, block: u64) -> __m128i {
        _mm_set_epi64x(block as i64, nonce.swap_bytes() as i64)
    }

    /// Shuffle that byte-reverses the upper 64 bits (the block number) only.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn bswap_block() -> __m128i {
        _mm_set_epi8(8, 9, 10, 11, 12, 13, 14, 15, 7, 6, 5, 4, 3, 2, 1, 0)
    }

    /// # Safety
    /// AES-NI and SSSE3 present; `src` readable and `dst` writable for `len` bytes, equal or disjoint.
    #[target_feature(enable = "aes,sse2,ssse3")]
    pub(super) unsafe fn ctr_aesni(
        rk: &[[u8; 16]; 15],
        nonce: u64,
        block: u64,
        src: *const u8,
        dst: *mut u8,
        len: usize,
    ) {
        // SAFETY (whole body): every access to src/dst is at offset < len,
        // per the contract; round-key loads stay inside `rk`.
        unsafe {
            let k: [__m128i; 15] = core::array::from_fn(|r| _mm_loadu_si128(rk[r].as_ptr().cast()));
            let mask = bswap_block();
            let one = _mm_set_epi64x(1, 0);
            let mut ctr = counter(nonce, block);
            let mut i = 0;
            while len - i >= 128 {
                let mut b = [_mm_setzero_si128(); 8];
                for x in b.iter_mut() {
                    *x = _mm_xor_si128(_mm_shuffle_epi8(ctr, mask), k[0]);
                    ctr = _mm_add_epi64(ctr, one);
                }
                for key in &k[1..14] {
                    for x in b.iter_mut() {
                        *x = _mm_aesenc_si128(*x, *key);
                    }
                }
                for (j, x) in b.iter().enumerate() {
                    let p = src.add(i + 16 * j).cast::<__m128i>();
                    let v = _mm_xor_si128(_mm_aesenclast_si128(*x, k[14]), _mm_loadu_si128(p));
                    _mm_storeu_si128(dst.add(i + 16 * j).cast(), v);
                }
                i += 128;
            }
            while i < len {
                let mut x = _mm_xor_si128(_mm_shuffle_epi8(ctr, mask), k[0]);
                ctr = _mm_add_epi64(ctr, one);
                for key in &k[1..14] {
                    x = _mm_aesenc_si128(x, *key);
                }
                x = _mm_aesenclast_si128(x, k[14]);
                if len - i >= 16 {
                    let v = _mm_xor_si128(x, _mm_loadu_si128(src.add(i).cast()));
                    _mm_storeu_si128(dst.add(i).cast(), v);
                    i += 16;
                } else {
                    let mut ks = [0u8; 16];
                    _mm_storeu_si128(ks.as_mut_ptr().cast(), x);
                    for (j, kb) in ks.iter().enumerate().take(len - i) {
                        *dst.add(i + j) = *src.add(i + j) ^ kb;
                    }
                    i = len;
                }
            }
        }
    }

    /// # Safety
    /// AES-NI, AVX2 and VAES present; pointer contract as for `ctr_aesni`.
    #[target_feature(enable = "aes,sse2,ssse3,avx,avx2,vaes")]
    pub(super) unsafe fn ctr_vaes(
        rk: &RoundKeys,
        nonce: u64,
        block: u64,
        src: *const u8,
        dst: *mut u8,
        len: usize,
    ) {
        // SAFETY (whole body): every access to src/dst is at offset < len,
        // per the contract; round-key loads stay inside `rk`.
        unsafe {
            let key = |r: usize| _mm256_loadu_si256(rk.ymm[r].as_ptr().cast());
            let mask = _mm256_broadcastsi128_si256(bswap_block());
            let two = _mm256_set_epi64x(2, 0, 2, 0);
            let c0 = counter(nonce, block);
            let mut ctr = _mm256_set_m128i(_mm_add_epi64(c0, _mm_set_epi64x(1, 0)), c0);
            let mut i = 0;
            while len - i >= 256 {
                let k0 = key(0);
                let mut b = [_mm256_setzero_si256(); 8];
                for x in b.iter_mut() {
                    *x = _mm256_xor_si256(_mm256_shuffle_epi8(ctr, mask), k0);
                    ctr = _mm256_add_epi64(ctr, two);
                }
                for r in 1..14 {
                    let kr = key(r);
                    for x in b.iter_mut() {
                        *x = _mm256_aesenc_epi128(*x, kr);
                    }
                }
                let k14 = key(14);
                for (j, x) in b.iter().enumerate() {
                    let p = src.add(i + 32 * j).cast::<__m256i>();
                    let v =
                        _mm256_xor_si256(_mm256_aesenclast_epi128(*x, k14), _mm256_loadu_si256(p));
                    _mm256_storeu_si256(dst.add(i + 32 * j).cast(), v);
                }
                i += 256;
            }
            if i < len {
                let done = (i / 16) as u64;
                ctr_aesni(
                    &rk.xmm,
                    nonce,
                    block.wrapping_add(done),
                    src.add(i),
                    dst.add(i),
                    len - i,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestRng;

    #[test]
    fn vaes_and_portable_match_aesni_and_in_place_matches_copy() {
        let f = crate::cpu_features();
        if !(f.aesni && f.vaes && f.avx2) {
            eprintln!("VAES or AES-NI absent: skipped");
            return;
        }
        let mut rng = TestRng::new(4);
        for len in (0..600).chain([1028, 4096 + 5, 65536]) {
            let key: [u8; 32] = rng.bytes(32).try_into().unwrap();
            let ni = Aes256Ctr::with_backend(&key, AesBackend::AesNi).unwrap();
            let va = Aes256Ctr::with_backend(&key, AesBackend::Vaes).unwrap();
            let po = Aes256Ctr::with_backend(&key, AesBackend::Portable).unwrap();
            let nonce = rng.next_u64();
            // Every few lengths start just below the wrap of the block counter.
            let block = if len % 3 == 0 {
                u64::MAX - 3
            } else {
                rng.next_u64() % 1000
            };
            let src = rng.bytes(len);
            let mut a = vec![0u8; len];
            ni.apply_keystream_to(nonce, block, &src, &mut a);
            let mut b = src.clone();
            va.apply_keystream(nonce, block, &mut b);
            assert_eq!(a, b, "length {len}");
            let mut c = vec![0u8; len];
            po.apply_keystream_to(nonce, block, &src, &mut c);
            assert_eq!(a, c, "portable, length {len}");
        }
    }
}
