//! Fuzz target: the packet opener on arbitrary bytes (first 8 bytes: the first packet
//! number; the rest: the "packets"), under a fixed key. It must never panic, and it may
//! return plaintext only for packets that really are sealed under that key: every packet
//! it accepts must be exactly what the sealer makes of that plaintext at that number.
//! After a failure it must stay poisoned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spiped_crypto::{opened_capacity, sealed_len, Error, PacketOpener, PacketSealer, PACKET_LEN};

const ENC: [u8; 32] = [0x11; 32];
const MAC: [u8; 32] = [0x22; 32];

fuzz_target!(|input: &[u8]| {
    let (first, packets) = match input.split_first_chunk::<8>() {
        Some((n, rest)) => (u64::from_be_bytes(*n), rest),
        None => (0, input),
    };
    let mut opener = PacketOpener::new(&ENC, &MAC, first);
    let mut out = vec![0u8; opened_capacity(packets.len())];
    match opener.open_into(packets, &mut out) {
        Ok(_) => {
            // Accepted: each packet must be the sealer's own output for its plaintext.
            let mut one = PacketOpener::new(&ENC, &MAC, first);
            for (i, pkt) in packets.chunks_exact(PACKET_LEN).enumerate() {
                let mut plain = [0u8; 1024];
                let len = one.open_into(pkt, &mut plain).expect("accepted as a batch");
                let mut sealer = PacketSealer::new(&ENC, &MAC, first + i as u64);
                let mut again = vec![0u8; sealed_len(len)];
                sealer.seal_into(&plain[..len], &mut again).expect("room");
                assert_eq!(&again[..], pkt, "accepted a packet the sealer would not make");
            }
        }
        Err(Error::CounterExhausted) => assert_eq!(opener.next_packet(), first),
        Err(Error::OutputTooSmall) => unreachable!("out has opened_capacity bytes"),
        Err(_) => {
            // Poisoned for ever: even an empty batch is refused now.
            assert_eq!(opener.open_into(&[], &mut []), Err(Error::Failed));
            assert_eq!(opener.open_into(packets, &mut out), Err(Error::Failed));
        }
    }
});
