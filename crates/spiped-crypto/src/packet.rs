//! The spiped 1.6 packet format, sealed and opened a whole batch at a time.
//!
//! Each packet carries 1..=1024 bytes of data `M`:
//! `padded = M || zeros up to 1024 || be32(len(M))` (1028 bytes),
//! `encrypted = AES-256-CTR(E, padded)` with counter block `be64(n) || be64(0)`,
//! `packet = encrypted || HMAC-SHA256(H, encrypted || be64(n))` (1060 bytes),
//! where `n` is the packet number in this direction.

use crate::aes::Aes256Ctr;
pub use crate::error::{Error, MAX_PAYLOAD, PACKET_LEN};
use crate::hmac::HmacSha256;

/// Bytes covered by the encryption (payload area plus the length field).
const BODY_LEN: usize = MAX_PAYLOAD + 4;
/// Packets whose HMACs are computed together in interleaved SHA-256 lanes.
const LANES: usize = 4;

/// Bytes produced by sealing `plain_len` bytes: ceil(plain_len / 1024) * 1060 (saturating).
pub fn sealed_len(plain_len: usize) -> usize {
    plain_len.div_ceil(MAX_PAYLOAD).saturating_mul(PACKET_LEN)
}

/// Largest plaintext that `packets_len` bytes of packets can open to: packets_len / 1060 * 1024.
pub fn opened_capacity(packets_len: usize) -> usize {
    packets_len / PACKET_LEN * MAX_PAYLOAD
}

/// Checks that `count` packets numbered from `next` keep every number <= u64::MAX - 1; returns the new next.
fn advance(next: u64, count: usize) -> Result<u64, Error> {
    next.checked_add(count as u64)
        .ok_or(Error::CounterExhausted)
}

/// Encrypts `m` (1..=1024 bytes) as packet `n` into `pkt[..1028]`, leaving the MAC to the caller.
fn encrypt_body(aes: &Aes256Ctr, n: u64, m: &[u8], pkt: &mut [u8]) {
    let body = &mut pkt[..BODY_LEN];
    body[..m.len()].copy_from_slice(m);
    body[m.len()..MAX_PAYLOAD].fill(0);
    body[MAX_PAYLOAD..].copy_from_slice(&(m.len() as u32).to_be_bytes());
    aes.apply_keystream(n, 0, body);
}

/// Seals plaintext into spiped packets numbered consecutively.
pub struct PacketSealer {
    aes: Aes256Ctr,
    mac: HmacSha256,
    next: u64,
}

impl PacketSealer {
    /// A sealer with encryption key `enc_key`, MAC key `mac_key`, numbering from `first_packet`, on the process's kernels.
    pub fn new(enc_key: &[u8; 32], mac_key: &[u8; 32], first_packet: u64) -> Self {
        PacketSealer {
            aes: Aes256Ctr::new(enc_key),
            mac: HmacSha256::new(mac_key),
            next: first_packet,
        }
    }

    /// Seals `data` (cut into 1024-byte packets) into `out`, returning `sealed_len(data.len())`; on error nothing changes.
    pub fn seal_into(&mut self, data: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let count = data.len().div_ceil(MAX_PAYLOAD);
        let next = advance(self.next, count)?;
        let total = sealed_len(data.len());
        if out.len() < total {
            return Err(Error::OutputTooSmall);
        }
        let mut n = self.next;
        let (mut data, mut out) = (data, &mut out[..total]);
        // Groups of LANES packets (then 2, then 1) so their HMACs share interleaved SHA-256 lanes.
        while !data.is_empty() {
            let take = match data.len().div_ceil(MAX_PAYLOAD) {
                LANES.. => self.seal_group::<LANES>(n, data, out),
                2..LANES => self.seal_group::<2>(n, data, out),
                _ => self.seal_group::<1>(n, data, out),
            };
            data = &data[(take * MAX_PAYLOAD).min(data.len())..];
            out = &mut out[take * PACKET_LEN..];
            n += take as u64;
        }
        debug_assert_eq!(n, next);
        self.next = next;
        Ok(total)
    }

    /// Seals the first `N` packets of `data` (all but the last must be full) as packets `n..n+N` into `out`; returns `N`.
    fn seal_group<const N: usize>(&self, n: u64, data: &[u8], out: &mut [u8]) -> usize {
        let mut chunks = data.chunks(MAX_PAYLOAD);
        let mut pkts = out.chunks_exact_mut(PACKET_LEN);
        let mut pkts: [&mut [u8]; N] =
            core::array::from_fn(|_| pkts.next().expect("room for N packets"));
        for (i, pkt) in pkts.iter_mut().enumerate() {
            encrypt_body(
                &self.aes,
                n + i as u64,
                chunks.next().expect("N chunks"),
                pkt,
            );
        }
        let numbers: [[u8; 8]; N] = core::array::from_fn(|i| (n + i as u64).to_be_bytes());
        let tags: [[u8; 32]; N] = self.mac.mac_with_suffix_lanes(core::array::from_fn(|i| {
            (&pkts[i][..BODY_LEN], &numbers[i][..])
        }));
        for (pkt, tag) in pkts.iter_mut().zip(tags) {
            pkt[BODY_LEN..].copy_from_slice(&tag);
        }
        N
    }

    /// The number the next sealed packet will carry.
    pub fn next_packet(&self) -> u64 {
        self.next
    }
}

/// Verifies and opens spiped packets numbered consecutively; poisoned by the first failure.
pub struct PacketOpener {
    aes: Aes256Ctr,
    mac: HmacSha256,
    next: u64,
    failed: bool,
}

/// Constant-time comparison of a computed tag with a received one (no early exit).
fn tag_matches(expected: &[u8; 32], received: &[u8]) -> bool {
    let mut diff = 0u8;
    for (a, b) in expected.iter().zip(received) {
        diff |= a ^ b;
    }
    std::hint::black_box(diff) == 0
}

impl PacketOpener {
    /// An opener with encryption key `enc_key`, MAC key `mac_key`, expecting `first_packet` first, on the process's kernels.
    pub fn new(enc_key: &[u8; 32], mac_key: &[u8; 32], first_packet: u64) -> Self {
        PacketOpener {
            aes: Aes256Ctr::new(enc_key),
            mac: HmacSha256::new(mac_key),
            next: first_packet,
            failed: false,
        }
    }

    /// Verifies and decrypts a whole number of packets into `out` (at least `opened_capacity(packets.len())`
    /// bytes), returning the plaintext length. A bad size, MAC or length poisons the opener (later calls
    /// fail with `Failed`) and the contents of `out` must then be discarded; `CounterExhausted` and
    /// `OutputTooSmall` change nothing.
    pub fn open_into(&mut self, packets: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        if !packets.len().is_multiple_of(PACKET_LEN) {
            self.failed = true;
            return Err(Error::BadSize);
        }
        let count = packets.len() / PACKET_LEN;
        let next = advance(self.next, count)?;
        if out.len() < opened_capacity(packets.len()) {
            return Err(Error::OutputTooSmall);
        }
        match self.open_all(packets, out) {
            Ok(written) => {
                self.next = next;
                Ok(written)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Opens every packet (MACs checked in groups of interleaved lanes), writing plaintext contiguously into `out`.
    fn open_all(&self, mut packets: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let mut n = self.next;
        let mut written = 0;
        while !packets.is_empty() {
            let out = &mut out[written..];
            let (count, len) = match packets.len() / PACKET_LEN {
                LANES.. => (LANES, self.open_group::<LANES>(n, packets, out)?),
                2..LANES => (2, self.open_group::<2>(n, packets, out)?),
                _ => (1, self.open_group::<1>(n, packets, out)?),
            };
            packets = &packets[count * PACKET_LEN..];
            written += len;
            n += count as u64;
        }
        Ok(written)
    }

    /// Verifies the first `N` packets (numbered from `n`) and decrypts them in order into `out`;
    /// stops at the first bad one. Returns the plaintext length.
    fn open_group<const N: usize>(
        &self,
        n: u64,
        packets: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error> {
        let pkts: [&[u8]; N] =
            core::array::from_fn(|i| &packets[i * PACKET_LEN..(i + 1) * PACKET_LEN]);
        let numbers: [[u8; 8]; N] = core::array::from_fn(|i| (n + i as u64).to_be_bytes());
        let tags: [[u8; 32]; N] = self.mac.mac_with_suffix_lanes(core::array::from_fn(|i| {
            (&pkts[i][..BODY_LEN], &numbers[i][..])
        }));
        let mut written = 0;
        for (i, (pkt, tag)) in pkts.iter().zip(&tags).enumerate() {
            if !tag_matches(tag, &pkt[BODY_LEN..]) {
                return Err(Error::BadMac {
                    packet: n + i as u64,
                });
            }
            written += self.decrypt(n + i as u64, pkt, &mut out[written..])?;
        }
        Ok(written)
    }

    /// Decrypts authenticated packet `n` into the front of `out`, returning its data length.
    /// The zero padding between the data and the length field is not checked, as in the reference.
    fn decrypt(&self, n: u64, pkt: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let mut len_be = [0u8; 4];
        self.aes.apply_keystream_to(
            n,
            (MAX_PAYLOAD / 16) as u64,
            &pkt[MAX_PAYLOAD..BODY_LEN],
            &mut len_be,
        );
        let length = u32::from_be_bytes(len_be);
        if length == 0 || length as usize > MAX_PAYLOAD {
            return Err(Error::BadLength { packet: n, length });
        }
        let len = length as usize;
        self.aes
            .apply_keystream_to(n, 0, &pkt[..len], &mut out[..len]);
        Ok(len)
    }

    /// The number the next packet must carry.
    pub fn next_packet(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestRng;

    const EK: [u8; 32] = [7; 32];
    const MK: [u8; 32] = [9; 32];

    fn seal(first: u64, data: &[u8]) -> Vec<u8> {
        let mut s = PacketSealer::new(&EK, &MK, first);
        let mut out = vec![0u8; sealed_len(data.len())];
        assert_eq!(s.seal_into(data, &mut out), Ok(out.len()));
        out
    }

    fn open(first: u64, packets: &[u8]) -> Result<Vec<u8>, Error> {
        let mut o = PacketOpener::new(&EK, &MK, first);
        let mut out = vec![0u8; opened_capacity(packets.len())];
        let n = o.open_into(packets, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn lengths() {
        assert_eq!(sealed_len(0), 0);
        assert_eq!(sealed_len(1), 1060);
        assert_eq!(sealed_len(1024), 1060);
        assert_eq!(sealed_len(1025), 2120);
        assert_eq!(opened_capacity(2120), 2048);
        assert_eq!(opened_capacity(2119), 1024);
    }

    #[test]
    fn round_trips_in_varied_batches() {
        let mut rng = TestRng::new(5);
        let mut sealer = PacketSealer::new(&EK, &MK, 3);
        let mut opener = PacketOpener::new(&EK, &MK, 3);
        for len in (0..3000)
            .step_by(97)
            .chain([1024, 2048, 8 * 1024 + 1, 65536])
        {
            let data = rng.bytes(len);
            let mut wire = vec![0u8; sealed_len(len) + 5];
            assert_eq!(sealer.seal_into(&data, &mut wire), Ok(sealed_len(len)));
            let mut out = vec![0u8; opened_capacity(sealed_len(len))];
            let n = opener
                .open_into(&wire[..sealed_len(len)], &mut out)
                .unwrap();
            assert_eq!(&out[..n], &data[..], "length {len}");
            assert_eq!(sealer.next_packet(), opener.next_packet());
        }
    }

    #[test]
    fn every_bit_flip_is_rejected_and_poisons() {
        let wire = seal(0, &[0x55; 7000]); // 7 packets: lane groups of 4, 2 and 1
        for bit in (0..wire.len() * 8).step_by(13) {
            let mut bad = wire.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut o = PacketOpener::new(&EK, &MK, 0);
            let mut out = vec![0u8; 7 * 1024];
            let packet = (bit / 8 / PACKET_LEN) as u64;
            assert_eq!(
                o.open_into(&bad, &mut out),
                Err(Error::BadMac { packet }),
                "bit {bit}"
            );
            assert_eq!(o.open_into(&wire, &mut out), Err(Error::Failed));
        }
        // Wrong packet number: the MAC covers n.
        assert_eq!(open(1, &wire), Err(Error::BadMac { packet: 1 }));
    }

    #[test]
    fn authenticated_bad_length_is_rejected() {
        let aes = Aes256Ctr::new(&EK);
        let mac = HmacSha256::new(&MK);
        for length in [0u32, 1025, u32::MAX] {
            let mut pkt = [0u8; PACKET_LEN];
            pkt[MAX_PAYLOAD..BODY_LEN].copy_from_slice(&length.to_be_bytes());
            aes.apply_keystream(0, 0, &mut pkt[..BODY_LEN]);
            let tag = mac.mac_with_suffix(&pkt[..BODY_LEN], &0u64.to_be_bytes());
            pkt[BODY_LEN..].copy_from_slice(&tag);
            assert_eq!(open(0, &pkt), Err(Error::BadLength { packet: 0, length }));
        }
    }

    #[test]
    fn bad_size_poisons() {
        let wire = seal(0, b"hello");
        let mut o = PacketOpener::new(&EK, &MK, 0);
        let mut out = [0u8; 2048];
        assert_eq!(o.open_into(&wire[..1059], &mut out), Err(Error::BadSize));
        assert_eq!(o.open_into(&wire, &mut out), Err(Error::Failed));
        assert_eq!(open(0, &[]), Ok(vec![]));
    }

    #[test]
    fn output_too_small_changes_nothing() {
        let mut s = PacketSealer::new(&EK, &MK, 0);
        let mut small = [0u8; 1059];
        assert_eq!(s.seal_into(b"x", &mut small), Err(Error::OutputTooSmall));
        assert_eq!(s.next_packet(), 0);
        let wire = seal(0, b"x");
        let mut o = PacketOpener::new(&EK, &MK, 0);
        assert_eq!(
            o.open_into(&wire, &mut [0u8; 1023]),
            Err(Error::OutputTooSmall)
        );
        assert_eq!(o.open_into(&wire, &mut [0u8; 1024]), Ok(1));
    }

    #[test]
    fn counter_never_wraps() {
        let max = u64::MAX;
        // Packets max-2 and max-1 are the last usable ones.
        let mut s = PacketSealer::new(&EK, &MK, max - 2);
        let mut out = vec![0xeeu8; 3 * PACKET_LEN];
        assert_eq!(
            s.seal_into(&[1; 3 * 1024], &mut out),
            Err(Error::CounterExhausted)
        );
        assert!(out.iter().all(|&b| b == 0xee), "nothing written");
        assert_eq!(s.next_packet(), max - 2);
        assert_eq!(s.seal_into(&[1; 2048], &mut out), Ok(2 * PACKET_LEN));
        assert_eq!(s.next_packet(), max);
        assert_eq!(s.seal_into(b"x", &mut out), Err(Error::CounterExhausted));
        assert_eq!(s.seal_into(b"", &mut out), Ok(0));
        assert_eq!(open(max - 2, &out[..2 * PACKET_LEN]), Ok(vec![1; 2048]));

        let mut o = PacketOpener::new(&EK, &MK, max - 1);
        let mut buf = vec![0u8; 2048];
        assert_eq!(
            o.open_into(&out[..2 * PACKET_LEN], &mut buf),
            Err(Error::CounterExhausted)
        );
        assert_eq!(o.next_packet(), max - 1);
        assert_eq!(
            o.open_into(&out[PACKET_LEN..2 * PACKET_LEN], &mut buf),
            Ok(1024)
        );
        assert_eq!(o.next_packet(), max);
    }
}
