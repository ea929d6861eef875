//! Fuzz target: HMAC-SHA256 (and so SHA-256 compression) over two and four interleaved
//! lanes must equal one lane per message, for arbitrary keys, lengths and suffixes; the
//! one-shot and streaming SHA-256 must agree at any split.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spiped_crypto::hmac::{HmacSha256, MAX_SUFFIX};
use spiped_crypto::sha256::{sha256, Sha256};

#[derive(Arbitrary, Debug)]
struct Case {
    key: Vec<u8>,
    messages: [Vec<u8>; 4],
    suffix: [u8; MAX_SUFFIX],
    suffix_len: u8,
    split: u16,
}

fuzz_target!(|case: Case| {
    let len = case.messages.iter().map(Vec::len).min().unwrap_or(0);
    let msgs: [&[u8]; 4] = core::array::from_fn(|i| &case.messages[i][..len]);
    let sl = case.suffix_len as usize % (MAX_SUFFIX + 1);
    let suffix = &case.suffix[..sl];
    let h = HmacSha256::new(&case.key);
    let one: [[u8; 32]; 4] = core::array::from_fn(|i| h.mac_with_suffix_lanes([(msgs[i], suffix)])[0]);
    let two = h.mac_with_suffix_lanes([(msgs[0], suffix), (msgs[1], suffix)]);
    assert_eq!(two, [one[0], one[1]]);
    let four = h.mac_with_suffix_lanes(msgs.map(|m| (m, suffix)));
    assert_eq!(four, one);

    let whole = &case.messages[0];
    let at = case.split as usize % (whole.len() + 1);
    let mut s = Sha256::new();
    s.update(&whole[..at]);
    s.update(&whole[at..]);
    assert_eq!(s.finalize(), sha256(whole));
});
