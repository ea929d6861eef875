//! spiped packet cryptography: AES-256-CTR and HMAC-SHA256, sealing and
//! opening whole batches of 1060-byte spiped 1.6 packets, on hand-written
//! x86_64 kernels (AES-NI / VAES, multi-lane SHA-NI; self-tested before use)
//! or on the portable core (RustCrypto's aes/ctr/sha2). The kernels are chosen
//! once per process (see `kernels`).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod aes;
pub mod cpu;
pub mod error;
pub mod hmac;
pub mod kernels;
pub mod packet;
pub mod sha256;
mod wipe;

pub use cpu::{cpu_features, CpuFeatures};
pub use error::{Error, MAX_PAYLOAD, PACKET_LEN};
pub use kernels::{kernels, Kernels};
pub use packet::{opened_capacity, sealed_len, PacketOpener, PacketSealer};

/// Deterministic xorshift64* generator for the unit tests (no `rand` crate).
#[cfg(test)]
pub(crate) struct TestRng(u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn new(seed: u64) -> Self {
        TestRng(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
