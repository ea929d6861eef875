//! Fuzz target: valid packets sealed under a fixed key, then mutated (bytes XORed,
//! truncated, extended, packets swapped), opened in one batch. The opener must never
//! panic; it may accept the input only if it is still a whole-packet prefix of what was
//! sealed (and then return exactly that prefix's plaintext); after a rejection it must
//! refuse even the original, untouched packets.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spiped_crypto::{opened_capacity, sealed_len, Error, PacketOpener, PacketSealer, MAX_PAYLOAD, PACKET_LEN};

const ENC: [u8; 32] = [0x33; 32];
const MAC: [u8; 32] = [0x44; 32];

#[derive(Arbitrary, Debug)]
struct Case {
    plaintext: Vec<u8>,
    first: u64,
    flips: Vec<(u16, u8)>,
    truncate: Option<u16>,
    extra: Vec<u8>,
    swap: Option<(u8, u8)>,
}

fuzz_target!(|case: Case| {
    let plaintext = &case.plaintext[..case.plaintext.len().min(8 * MAX_PAYLOAD)];
    let count = plaintext.len().div_ceil(MAX_PAYLOAD) as u64;
    if case.first.checked_add(count).is_none() {
        return;
    }
    let mut sealer = PacketSealer::new(&ENC, &MAC, case.first);
    let mut wire = vec![0u8; sealed_len(plaintext.len())];
    sealer.seal_into(plaintext, &mut wire).expect("room and counter checked");
    let original = wire.clone();

    if !wire.is_empty() {
        for (pos, x) in &case.flips {
            let at = *pos as usize % wire.len();
            wire[at] ^= x;
        }
        if let Some((a, b)) = case.swap {
            let n = wire.len() / PACKET_LEN;
            let (a, b) = (a as usize % n, b as usize % n);
            if a != b {
                let pa = wire[a * PACKET_LEN..(a + 1) * PACKET_LEN].to_vec();
                let pb = wire[b * PACKET_LEN..(b + 1) * PACKET_LEN].to_vec();
                wire[a * PACKET_LEN..(a + 1) * PACKET_LEN].copy_from_slice(&pb);
                wire[b * PACKET_LEN..(b + 1) * PACKET_LEN].copy_from_slice(&pa);
            }
        }
    }
    if let Some(t) = case.truncate {
        wire.truncate(t as usize);
    }
    wire.extend_from_slice(&case.extra);

    let mut opener = PacketOpener::new(&ENC, &MAC, case.first);
    let mut out = vec![0u8; opened_capacity(wire.len())];
    match opener.open_into(&wire, &mut out) {
        Ok(n) => {
            assert!(wire.len() % PACKET_LEN == 0 && original.starts_with(&wire), "accepted a changed packet");
            let packets = wire.len() / PACKET_LEN;
            let want = &plaintext[..(packets * MAX_PAYLOAD).min(plaintext.len())];
            assert_eq!(&out[..n], want);
        }
        Err(Error::CounterExhausted) => assert_eq!(opener.next_packet(), case.first),
        Err(Error::OutputTooSmall) => unreachable!("out has opened_capacity bytes"),
        Err(_) => {
            let mut again = vec![0u8; opened_capacity(original.len())];
            assert_eq!(opener.open_into(&original, &mut again), Err(Error::Failed), "not poisoned");
        }
    }
});
