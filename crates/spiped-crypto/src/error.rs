//! The crate's error type: why sealing or opening failed. A module of its own so
//! that every other module (aes, packet, ...) can depend on it without a cycle.

use std::fmt;

/// Bytes on the wire per packet.
pub const PACKET_LEN: usize = 1060;
/// Largest data payload of one packet.
pub const MAX_PAYLOAD: usize = 1024;

/// Why sealing or opening failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The input to `open_into` is not a whole number of packets.
    BadSize,
    /// A packet's HMAC did not verify.
    BadMac { packet: u64 },
    /// An authenticated packet declared a length outside 1..=1024.
    BadLength { packet: u64, length: u32 },
    /// The batch would need a packet number above `u64::MAX - 1`.
    CounterExhausted,
    /// The output buffer is too short for the batch.
    OutputTooSmall,
    /// The opener already failed once and refuses all further input.
    Failed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadSize => write!(
                f,
                "spiped packet data is not a multiple of {PACKET_LEN} bytes"
            ),
            Error::BadMac { packet } => write!(f, "spiped packet {packet} failed authentication"),
            Error::BadLength { packet, length } => {
                write!(f, "spiped packet {packet} declares invalid length {length} (must be 1..={MAX_PAYLOAD})")
            }
            Error::CounterExhausted => write!(f, "spiped packet counter exhausted"),
            Error::OutputTooSmall => write!(f, "output buffer too small"),
            Error::Failed => write!(
                f,
                "spiped stream already failed; no further packets are accepted"
            ),
        }
    }
}

impl std::error::Error for Error {}
