//! Differential property tests (proptest): this crate's kernels (the hand-written
//! x86_64 ones where this CPU has them, else the portable core; force one with
//! SPIPED_NATIVE_KERNELS=portable) against RustCrypto's `sha2`, `hmac` and `aes`
//! used as independent references: SHA-256 of any length and split, HMAC over
//! 1..4 lanes, one-iteration PBKDF2 (against the `pbkdf2` crate), AES-256-CTR on every backend (counters across the 2^64 wrap), and
//! whole seal/open against a reference packet encoder, over random keys, lengths
//! up to 300 KiB, chunkings and packet numbers near 2^64.

use aes::cipher::{BlockEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use spiped_crypto::aes::{Aes256Ctr, AesBackend};
use spiped_crypto::hmac::{pbkdf2_sha256_one_iteration, HmacSha256};
use spiped_crypto::sha256::{sha256, Sha256 as OurSha256};
use spiped_crypto::{
    opened_capacity, sealed_len, PacketOpener, PacketSealer, MAX_PAYLOAD, PACKET_LEN,
};

/// AES-256-CTR keystream XOR by the reference: one `aes` block encryption per counter
/// block `be64(nonce) || be64(block)`, the block number wrapping without carry.
fn reference_ctr(key: &[u8; 32], nonce: u64, first_block: u64, data: &mut [u8]) {
    let aes = aes::Aes256::new(key.into());
    for (i, chunk) in data.chunks_mut(16).enumerate() {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&nonce.to_be_bytes());
        block[8..].copy_from_slice(&first_block.wrapping_add(i as u64).to_be_bytes());
        let mut b = block.into();
        aes.encrypt_block(&mut b);
        for (d, k) in chunk.iter_mut().zip(b.iter()) {
            *d ^= k;
        }
    }
}

/// HMAC-SHA256 by the `hmac` crate.
fn reference_hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The spiped packets of `data` from packet `first`, by the reference primitives.
fn reference_seal(enc: &[u8; 32], mac: &[u8; 32], first: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed_len(data.len()));
    for (i, chunk) in data.chunks(MAX_PAYLOAD).enumerate() {
        let n = first + i as u64;
        let mut body = [0u8; MAX_PAYLOAD + 4];
        body[..chunk.len()].copy_from_slice(chunk);
        body[MAX_PAYLOAD..].copy_from_slice(&(chunk.len() as u32).to_be_bytes());
        reference_ctr(enc, n, 0, &mut body);
        out.extend_from_slice(&body);
        out.extend_from_slice(&reference_hmac(mac, &[&body, &n.to_be_bytes()]));
    }
    out
}

/// Cuts `len` into consecutive pieces at the (sorted, deduplicated) cut points.
fn pieces(len: usize, cuts: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| w[0]..w[1]).collect()
}

fn key() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

/// Packet numbers: small, random, or within a few thousand of 2^64 - 2.
fn first_packet() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..1000u64,
        any::<u64>().prop_map(|x| x >> 1),
        (0..3000u64).prop_map(|d| u64::MAX - 1 - d)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn sha256_of_any_length_and_split(data in prop::collection::vec(any::<u8>(), 0..5000), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        let want: [u8; 32] = Sha256::digest(&data).into();
        prop_assert_eq!(sha256(&data), want);
        let mut h = OurSha256::new();
        for r in pieces(data.len(), &cuts) {
            h.update(&data[r]);
        }
        prop_assert_eq!(h.finalize(), want);
    }

    #[test]
    fn hmac_on_one_to_four_lanes(key in prop::collection::vec(any::<u8>(), 0..150), len in 0usize..2100, suffix_len in 0usize..=56, seed in any::<u8>()) {
        let h = HmacSha256::new(&key);
        let msg = |l: u8| -> (Vec<u8>, Vec<u8>) {
            ((0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed ^ l).collect(), (0..suffix_len).map(|i| i as u8 ^ l).collect())
        };
        let m: [(Vec<u8>, Vec<u8>); 4] = core::array::from_fn(|l| msg(l as u8));
        let want: [[u8; 32]; 4] = core::array::from_fn(|l| reference_hmac(&key, &[&m[l].0, &m[l].1]));
        prop_assert_eq!(h.mac_with_suffix(&m[0].0, &m[0].1), want[0]);
        let two = h.mac_with_suffix_lanes([(&m[0].0[..], &m[0].1[..]), (&m[1].0, &m[1].1)]);
        prop_assert_eq!(two, [want[0], want[1]]);
        let four = h.mac_with_suffix_lanes(core::array::from_fn(|l| (&m[l].0[..], &m[l].1[..])));
        prop_assert_eq!(four, want);
    }

    #[test]
    fn pbkdf2_one_iteration_against_the_pbkdf2_crate(key in prop::collection::vec(any::<u8>(), 0..100), salt in prop::collection::vec(any::<u8>(), 0..400), len in 1usize..300) {
        let mut want = vec![0u8; len];
        pbkdf2::pbkdf2_hmac::<Sha256>(&key, &salt, 1, &mut want);
        let mut ours = vec![0u8; len];
        pbkdf2_sha256_one_iteration(&key, &salt, &mut ours);
        prop_assert_eq!(ours, want);
    }

    #[test]
    fn aes256_ctr_on_every_backend(key in key(), nonce in any::<u64>(), block in prop_oneof![any::<u64>(), (0..40u64).prop_map(|d| u64::MAX - d)], data in prop::collection::vec(any::<u8>(), 0..3000)) {
        let mut want = data.clone();
        reference_ctr(&key, nonce, block, &mut want);
        for backend in [AesBackend::AesNi, AesBackend::Vaes, AesBackend::Portable] {
            let Some(aes) = Aes256Ctr::with_backend(&key, backend) else { continue };
            let mut in_place = data.clone();
            aes.apply_keystream(nonce, block, &mut in_place);
            prop_assert_eq!(&in_place, &want, "{:?} in place", backend);
            let mut copy = vec![0u8; data.len()];
            aes.apply_keystream_to(nonce, block, &data, &mut copy);
            prop_assert_eq!(&copy, &want, "{:?} copy", backend);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn seal_and_open_match_the_reference(
        enc in key(),
        mac in key(),
        first in first_packet(),
        len in prop_oneof![0usize..5000, 0usize..=300 * 1024],
        seal_cuts in prop::collection::vec(any::<usize>(), 0..5),
        open_cuts in prop::collection::vec(any::<usize>(), 0..5),
        seed in any::<u64>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| (seed.rotate_left(i as u32 % 64) as u8) ^ i as u8).collect();
        let mut sealer = PacketSealer::new(&enc, &mac, first);
        let mut wire = Vec::new();
        let mut want = Vec::new();
        let mut n = first;
        let mut refused = false;
        for r in pieces(len, &seal_cuts) {
            let chunk = &data[r];
            let count = chunk.len().div_ceil(MAX_PAYLOAD) as u64;
            let mut out = vec![0u8; sealed_len(chunk.len())];
            let res = sealer.seal_into(chunk, &mut out);
            if n.checked_add(count).is_none() {
                // Would pass packet number 2^64 - 2: refused, nothing changes.
                prop_assert!(res.is_err());
                prop_assert_eq!(sealer.next_packet(), n);
                refused = true;
                break;
            }
            prop_assert_eq!(res, Ok(out.len()));
            want.extend_from_slice(&reference_seal(&enc, &mac, n, chunk));
            wire.extend_from_slice(&out);
            n += count;
        }
        prop_assert_eq!(&wire, &want);
        let mut opener = PacketOpener::new(&enc, &mac, first);
        let packets = wire.len() / PACKET_LEN;
        let mut plain = Vec::new();
        for r in pieces(packets, &open_cuts) {
            let batch = &wire[r.start * PACKET_LEN..r.end * PACKET_LEN];
            let mut out = vec![0u8; opened_capacity(batch.len())];
            let got = opener.open_into(batch, &mut out);
            prop_assert!(got.is_ok(), "{:?}", got);
            plain.extend_from_slice(&out[..got.unwrap_or(0)]);
        }
        prop_assert_eq!(opener.next_packet(), n);
        if !refused {
            prop_assert_eq!(&plain, &data);
        }
    }
}
