//! Run-time CPU feature detection, done once and cached for the process.

use std::sync::OnceLock;

/// The instruction-set extensions the fast backends use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AES-NI (plus the SSE2/SSSE3 it is used with).
    pub aesni: bool,
    /// SHA extensions (SHA-NI, plus SSSE3/SSE4.1 they are used with).
    pub shani: bool,
    /// VAES (256-bit AES rounds).
    pub vaes: bool,
    /// AVX2.
    pub avx2: bool,
}

static FEATURES: OnceLock<CpuFeatures> = OnceLock::new();

/// The features of this CPU, detected on the first call and cached.
pub fn cpu_features() -> CpuFeatures {
    *FEATURES.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> CpuFeatures {
    use std::arch::is_x86_feature_detected as has;
    let ssse3 = has!("ssse3");
    CpuFeatures {
        aesni: has!("aes") && ssse3,
        shani: has!("sha") && ssse3 && has!("sse4.1"),
        vaes: has!("vaes"),
        avx2: has!("avx2"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> CpuFeatures {
    CpuFeatures {
        aesni: false,
        shani: false,
        vaes: false,
        avx2: false,
    }
}
