//! spiped packet cryptography: AES-256-CTR (AES-NI / VAES) and HMAC-SHA256
//! (SHA-NI or portable), sealing and opening whole batches of 1060-byte
//! spiped 1.6 packets. No external crates; the CPU backend is chosen once at
//! run time (see `cpu`).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod aes;
pub mod cpu;
pub mod hmac;
pub mod packet;
pub mod sha256;
mod wipe;

pub use cpu::{cpu_features, CpuFeatures};
pub use packet::{
    opened_capacity, sealed_len, Error, PacketOpener, PacketSealer, MAX_PAYLOAD, PACKET_LEN,
};

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
