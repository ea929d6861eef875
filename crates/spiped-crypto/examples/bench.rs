//! Throughput of the primitives and of packet seal/open on this machine:
//! `cargo run --release --example bench` (compare with
//! `openssl speed -evp aes-256-ctr -bytes 1024` and `openssl speed -evp sha256 -bytes 1024`).

use spiped_crypto::aes::{Aes256Ctr, AesBackend};
use spiped_crypto::hmac::HmacSha256;
use spiped_crypto::{opened_capacity, sealed_len, PacketOpener, PacketSealer};
use std::hint::black_box;
use std::time::Instant;

const TOTAL: usize = 64 << 20;
const BATCH: usize = 64 << 10;

/// Runs `f` (which processes `bytes_per_call` bytes) for ~TOTAL bytes, best of 5, in MB/s (10^6 bytes).
fn rate(bytes_per_call: usize, mut f: impl FnMut()) -> f64 {
    let calls = TOTAL / bytes_per_call;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            (calls * bytes_per_call) as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .fold(0.0, f64::max)
}

fn main() {
    println!(
        "{:?}, kernels {}",
        spiped_crypto::cpu_features(),
        spiped_crypto::kernels().name()
    );
    let key = [0x42u8; 32];
    let mut buf = vec![0u8; BATCH];
    for backend in [AesBackend::AesNi, AesBackend::Vaes, AesBackend::Portable] {
        let Some(aes) = Aes256Ctr::with_backend(&key, backend) else {
            continue;
        };
        let mut n = 0u64;
        let per_packet = rate(BATCH, || {
            for chunk in buf.chunks_mut(1028) {
                aes.apply_keystream(n, 0, chunk);
                n += 1;
            }
        });
        let bulk = rate(BATCH, || aes.apply_keystream(1, 0, &mut buf));
        println!("AES-256-CTR {backend:?}: {per_packet:.0} MB/s in 1028-byte packets, {bulk:.0} MB/s over 64 KiB");
    }

    let mac = HmacSha256::new(&key);
    let body = [0x17u8; 1028];
    let msg = (&body[..], &[1u8; 8][..]);
    let one = rate(1028, || {
        black_box(mac.mac_with_suffix_lanes([black_box(msg)]));
    });
    let two = rate(2 * 1028, || {
        black_box(mac.mac_with_suffix_lanes([black_box(msg); 2]));
    });
    let four = rate(4 * 1028, || {
        black_box(mac.mac_with_suffix_lanes([black_box(msg); 4]));
    });
    println!("HMAC-SHA256 of 1036-byte packet messages: 1 lane {one:.0} MB/s, 2 lanes {two:.0} MB/s, 4 lanes {four:.0} MB/s");

    let data = vec![0x5au8; BATCH];
    let mut wire = vec![0u8; sealed_len(BATCH)];
    let mut sealer = PacketSealer::new(&key, &key, 0);
    let seal = rate(BATCH, || {
        sealer.seal_into(&data, &mut wire).unwrap();
    });
    let mut plain = vec![0u8; opened_capacity(wire.len())];
    let mut fresh = PacketSealer::new(&key, &key, 0);
    fresh.seal_into(&data, &mut wire).unwrap();
    let open = rate(BATCH, || {
        // Re-open the same batch: a new opener each time (key setup included, ~0.1%).
        let mut opener = PacketOpener::new(&key, &key, 0);
        opener.open_into(&wire, &mut plain).unwrap();
    });
    println!("packets, 64 KiB batches: seal {seal:.0} MB/s, open {open:.0} MB/s (plaintext bytes)");
}
