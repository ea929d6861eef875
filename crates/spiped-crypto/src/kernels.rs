//! Which kernels seal and open in this process, chosen once: the hand-written
//! x86_64 ones (AES-NI/VAES CTR, multi-lane SHA-NI), used only on a CPU that has
//! AES-NI and SHA-NI and only after their known-answer self-test passed, else the
//! portable core (RustCrypto's `aes` + `ctr` and `sha2`, which dispatch to their
//! own hardware backends at run time and otherwise use constant-time software).
//! `SPIPED_NATIVE_KERNELS=portable` forces the portable core.

use std::sync::OnceLock;

/// The kernel set in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// Hand-written AES-NI/VAES and SHA-NI kernels (self-tested).
    X86_64,
    /// RustCrypto's aes/ctr/sha2.
    Portable,
}

impl Kernels {
    /// `"x86_64"` or `"portable"`, as `cryptoBackend().kernels` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::X86_64 => "x86_64",
            Kernels::Portable => "portable",
        }
    }
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// The kernels of this process, chosen (and self-tested) on the first call.
pub fn kernels() -> Kernels {
    *KERNELS.get_or_init(choose)
}

fn choose() -> Kernels {
    let forced = std::env::var_os("SPIPED_NATIVE_KERNELS").is_some_and(|v| v == "portable");
    #[cfg(target_arch = "x86_64")]
    return decide(forced, crate::cpu::cpu_features(), x86_self_test);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = forced;
        Kernels::Portable
    }
}

/// The x86_64 kernels only if not `forced` portable, the CPU has AES-NI and SHA-NI, and
/// then `self_test` passes (it runs only in that case).
#[cfg(target_arch = "x86_64")]
fn decide(forced: bool, f: crate::CpuFeatures, self_test: impl FnOnce() -> bool) -> Kernels {
    if !forced && f.aesni && f.shani && self_test() {
        Kernels::X86_64
    } else {
        Kernels::Portable
    }
}

/// Known answers for the hand-written kernels: SP 800-38A F.5.5 (CTR-AES256) on
/// AES-NI and, when present, VAES (whose 256-byte path is checked against the
/// portable AES), and FIPS 180-4 SHA-256 on one, two and four SHA-NI lanes.
#[cfg(target_arch = "x86_64")]
fn x86_self_test() -> bool {
    use crate::aes::{Aes256Ctr, AesBackend};
    use crate::sha256::{compress_lanes_x86, pad_final, state_to_bytes, IV};

    const KEY: [u8; 32] = [
        0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77,
        0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14,
        0xdf, 0xf4,
    ];
    const PLAIN: [u8; 32] = [
        0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17,
        0x2a, 0xae, 0x2d, 0x8a, 0x57, 0x1e, 0x03, 0xac, 0x9c, 0x9e, 0xb7, 0x6f, 0xac, 0x45, 0xaf,
        0x8e, 0x51,
    ];
    const CIPHER: [u8; 32] = [
        0x60, 0x1e, 0xc3, 0x13, 0x77, 0x57, 0x89, 0xa5, 0xb7, 0xa7, 0xf5, 0x04, 0xbb, 0xf3, 0xd2,
        0x28, 0xf4, 0x43, 0xe3, 0xca, 0x4d, 0x62, 0xb5, 0x9a, 0xca, 0x84, 0xe9, 0x90, 0xca, 0xca,
        0xf5, 0xc5,
    ];
    const NONCE: u64 = 0xf0f1_f2f3_f4f5_f6f7;
    const BLOCK: u64 = 0xf8f9_fafb_fcfd_feff;
    // SHA-256("abc") and of the 448-bit FIPS 180-4 message (two blocks once padded).
    const ABC: [u8; 32] = [
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22,
        0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00,
        0x15, 0xad,
    ];
    const MSG448: &[u8] = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const MSG448_DIGEST: [u8; 32] = [
        0x24, 0x8d, 0x6a, 0x61, 0xd2, 0x06, 0x38, 0xb8, 0xe5, 0xc0, 0x26, 0x93, 0x0c, 0x3e, 0x60,
        0x39, 0xa3, 0x3c, 0xe4, 0x59, 0x64, 0xff, 0x21, 0x67, 0xf6, 0xec, 0xed, 0xd4, 0x19, 0xdb,
        0x06, 0xc1,
    ];

    let f = crate::cpu::cpu_features();
    let portable = Aes256Ctr::with_backend(&KEY, AesBackend::Portable).expect("portable AES");
    for backend in [AesBackend::AesNi, AesBackend::Vaes] {
        let Some(aes) = Aes256Ctr::with_backend(&KEY, backend) else {
            continue;
        };
        let mut buf = PLAIN;
        aes.apply_keystream(NONCE, BLOCK, &mut buf);
        if buf != CIPHER {
            return false;
        }
        // 1028 bytes across the block counter's wrap: the 256-byte VAES loop and the tail.
        let mut a = [0x5au8; 1028];
        let mut b = a;
        aes.apply_keystream(NONCE, u64::MAX - 20, &mut a);
        portable.apply_keystream(NONCE, u64::MAX - 20, &mut b);
        if a != b {
            return false;
        }
    }
    if !f.shani {
        return false;
    }
    fn digest_lanes<const N: usize>(msg: &[u8]) -> [[u8; 32]; N] {
        let mut buf = [0u8; 128];
        let tail = pad_final(&[msg], msg.len() as u64, &mut buf);
        let mut states = [IV; N];
        // SAFETY: SHA-NI, SSSE3 and SSE4.1 were detected (checked by the caller).
        unsafe { compress_lanes_x86(states.each_mut(), [tail; N]) };
        states.map(|s| state_to_bytes(&s))
    }
    for (msg, want) in [(&b"abc"[..], ABC), (MSG448, MSG448_DIGEST)] {
        let ok = digest_lanes::<1>(msg).iter().all(|d| *d == want)
            && digest_lanes::<2>(msg).iter().all(|d| *d == want)
            && digest_lanes::<4>(msg).iter().all(|d| *d == want);
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn self_test_passes_on_a_cpu_with_the_extensions() {
        let f = crate::cpu::cpu_features();
        if !(f.aesni && f.shani) {
            eprintln!("AES-NI or SHA-NI absent: skipped");
            return;
        }
        assert!(super::x86_self_test());
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_kernels_only_with_the_extensions_a_passing_self_test_and_not_forced() {
        use super::{decide, Kernels};
        let all = crate::CpuFeatures {
            aesni: true,
            shani: true,
            vaes: true,
            avx2: true,
        };
        let never = || -> bool { panic!("self-test must not run") };
        assert_eq!(decide(false, all, || true), Kernels::X86_64);
        assert_eq!(
            decide(false, all, || false),
            Kernels::Portable,
            "failed self-test"
        );
        assert_eq!(
            decide(true, all, never),
            Kernels::Portable,
            "forced portable"
        );
        let no_sha = crate::CpuFeatures {
            shani: false,
            ..all
        };
        assert_eq!(decide(false, no_sha, never), Kernels::Portable);
        let no_aes = crate::CpuFeatures {
            aesni: false,
            ..all
        };
        assert_eq!(decide(false, no_aes, never), Kernels::Portable);
    }
}
