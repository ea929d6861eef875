//! Fuzz target: seal arbitrary data in arbitrary chunks, open the packets in arbitrary
//! whole-packet batches (some through a buffer that also held the input); the plaintext
//! must come back byte for byte and both counters must agree.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spiped_crypto::{opened_capacity, sealed_len, PacketOpener, PacketSealer, PACKET_LEN};

#[derive(Arbitrary, Debug)]
struct Case {
    enc: [u8; 32],
    mac: [u8; 32],
    first: u16,
    data: Vec<u8>,
    seal_chunks: Vec<u16>,
    open_batches: Vec<u8>,
}

fuzz_target!(|case: Case| {
    let first = u64::from(case.first);
    let mut sealer = PacketSealer::new(&case.enc, &case.mac, first);
    let mut wire = Vec::new();
    let mut rest = &case.data[..];
    let mut sizes = case.seal_chunks.iter().map(|s| *s as usize).chain(std::iter::repeat(usize::MAX));
    while !rest.is_empty() {
        let take = sizes.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        let mut out = vec![0u8; sealed_len(take)];
        assert_eq!(sealer.seal_into(&rest[..take], &mut out), Ok(out.len()));
        wire.extend_from_slice(&out);
        rest = &rest[take..];
    }
    let mut opener = PacketOpener::new(&case.enc, &case.mac, first);
    let mut plain = Vec::new();
    let mut packets = &wire[..];
    let mut batches = case.open_batches.iter().map(|b| *b as usize).chain(std::iter::repeat(usize::MAX));
    while !packets.is_empty() {
        let count = batches.next().unwrap_or(usize::MAX).clamp(1, packets.len() / PACKET_LEN);
        let batch = &packets[..count * PACKET_LEN];
        let mut out = vec![0u8; opened_capacity(batch.len())];
        let n = opener.open_into(batch, &mut out).expect("authentic packets open");
        plain.extend_from_slice(&out[..n]);
        packets = &packets[count * PACKET_LEN..];
    }
    assert_eq!(plain, case.data);
    assert_eq!(sealer.next_packet(), opener.next_packet());
});
