//! Known-answer tests: FIPS 180-4 SHA-256, RFC 4231 HMAC-SHA256, NIST SP 800-38A
//! CTR-AES256, and a recorded spiped 1.6.2 session (test-vectors/ at the repository root).

use spiped_crypto::aes::Aes256Ctr;
use spiped_crypto::hmac::HmacSha256;
use spiped_crypto::sha256::{sha256, Sha256};
use spiped_crypto::{Error, PacketOpener, PacketSealer, PACKET_LEN};

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn key32(b: &[u8]) -> [u8; 32] {
    b.try_into().expect("32-byte key")
}

#[test]
fn fips_180_4_sha256() {
    assert_eq!(
        sha256(b"abc"),
        *hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(
        sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        *hex("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    );
    let mut h = Sha256::new();
    for _ in 0..1000 {
        h.update(&[b'a'; 1000]);
    }
    assert_eq!(
        h.finalize(),
        *hex("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    );
}

#[test]
fn rfc_4231_hmac_sha256() {
    let long_key = vec![0xaa; 131];
    let cases: [(Vec<u8>, &[u8], &str); 7] = [
        (vec![0x0b; 20], b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe".to_vec(), b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (vec![0xaa; 20], &[0xdd; 50], "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ((1..=25).collect(), &[0xcd; 50], "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        (vec![0x0c; 20], b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
        (long_key.clone(), b"Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        (long_key, b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ];
    for (i, (key, data, want)) in cases.iter().enumerate() {
        let want = hex(want);
        let tag = HmacSha256::new(key).mac(data);
        assert_eq!(&tag[..want.len()], &want[..], "RFC 4231 case {}", i + 1);
    }
}

#[test]
fn sp800_38a_f55_ctr_aes256_encrypt() {
    let aes = Aes256Ctr::new(&key32(&hex(
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
    )));
    let plain = hex(concat!(
        "6bc1bee22e409f96e93d7e117393172a",
        "ae2d8a571e03ac9c9eb76fac45af8e51",
        "30c81c46a35ce411e5fbc1191a0a52ef",
        "f69f2445df4f9b17ad2b417be66c3710"
    ));
    let want = hex(concat!(
        "601ec313775789a5b7a7f504bbf3d228",
        "f443e3ca4d62b59aca84e990cacaf5c5",
        "2b0930daa23de94ce87017ba2d84988d",
        "dfc9c58db67aada613c2dd08457941a6"
    ));
    // Initial counter block f0f1f2f3f4f5f6f7 || f8f9fafbfcfdfeff.
    let mut buf = plain.clone();
    aes.apply_keystream(0xf0f1f2f3f4f5f6f7, 0xf8f9fafbfcfdfeff, &mut buf);
    assert_eq!(buf, want);
    // Block by block (the single-block path).
    for i in 0..4 {
        let mut b = plain[16 * i..16 * i + 16].to_vec();
        aes.apply_keystream(0xf0f1f2f3f4f5f6f7, 0xf8f9fafbfcfdfeff + i as u64, &mut b);
        assert_eq!(b, want[16 * i..16 * i + 16]);
    }
}

/// The string value of `"name": "..."` in a flat JSON object (no escapes needed for hex).
fn json_str<'a>(json: &'a str, name: &str) -> &'a str {
    let key = format!("\"{name}\"");
    let at = json.find(&key).unwrap_or_else(|| panic!("{name} missing")) + key.len();
    let rest = json[at..]
        .trim_start()
        .strip_prefix(':')
        .expect("colon")
        .trim_start();
    let rest = rest.strip_prefix('"').expect("string value");
    &rest[..rest.find('"').expect("closing quote")]
}

fn load_session() -> String {
    let dir = std::env::var("SPIPED_VECTORS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-vectors").to_string());
    let path = format!("{dir}/spiped-1.6.2-fast-session.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (set SPIPED_VECTORS)"))
}

/// PBKDF2-HMAC-SHA256 with one iteration (all spiped uses).
fn pbkdf2_1(password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let h = HmacSha256::new(password);
    let mut out = Vec::new();
    for i in 1..=len.div_ceil(32) as u32 {
        out.extend_from_slice(&h.mac(&[salt, &i.to_be_bytes()].concat()));
    }
    out.truncate(len);
    out
}

/// Opens one direction packet by packet and as one batch, and re-seals every packet.
fn check_direction(wire: &[u8], plain: &[u8], enc: &[u8; 32], mac: &[u8; 32]) {
    let packets = &wire[320..];
    assert_eq!(packets.len() % PACKET_LEN, 0);
    let mut batch = PacketOpener::new(enc, mac, 0);
    let mut out = vec![0u8; spiped_crypto::opened_capacity(packets.len())];
    let n = batch.open_into(packets, &mut out).unwrap();
    assert_eq!(&out[..n], plain);
    assert_eq!(batch.next_packet(), (packets.len() / PACKET_LEN) as u64);

    let mut opener = PacketOpener::new(enc, mac, 0);
    let mut at = 0;
    for (i, pkt) in packets.chunks(PACKET_LEN).enumerate() {
        let mut m = [0u8; 1024];
        let len = opener.open_into(pkt, &mut m).unwrap();
        assert_eq!(&m[..len], &plain[at..at + len], "packet {i}");
        at += len;
        let mut sealer = PacketSealer::new(enc, mac, i as u64);
        let mut resealed = [0u8; PACKET_LEN];
        assert_eq!(sealer.seal_into(&m[..len], &mut resealed), Ok(PACKET_LEN));
        assert_eq!(resealed, pkt, "re-sealed packet {i}");
    }
    assert_eq!(at, plain.len());
}

#[test]
fn recorded_spiped_session() {
    if !spiped_crypto::cpu_features().aesni {
        eprintln!("no AES-NI: skipped");
        return;
    }
    let json = load_session();
    let k = sha256(&hex(json_str(&json, "keyfile_hex")));
    let c2s = hex(json_str(&json, "client_to_server_hex"));
    let s2c = hex(json_str(&json, "server_to_client_hex"));
    let (nonce_c, nonce_s) = (&c2s[..32], &s2c[..32]);

    // Handshake sanity: y || HMAC(dhmac, y), with y = 1 in fast mode.
    let dk1 = pbkdf2_1(&k, &[nonce_c, nonce_s].concat(), 64);
    let mut one = [0u8; 256];
    one[255] = 1;
    for (wire, dhmac) in [(&c2s, &dk1[..32]), (&s2c, &dk1[32..])] {
        assert_eq!(wire[32..288], one);
        assert_eq!(wire[288..320], HmacSha256::new(dhmac).mac(&one));
    }

    let dk2 = pbkdf2_1(&k, &[nonce_c, nonce_s, &one].concat(), 128);
    let part = |i: usize| key32(&dk2[32 * i..32 * i + 32]);
    let (e_c, h_c, e_s, h_s) = (part(0), part(1), part(2), part(3));
    check_direction(
        &c2s,
        &hex(json_str(&json, "plaintext_client_to_server_hex")),
        &e_c,
        &h_c,
    );
    check_direction(
        &s2c,
        &hex(json_str(&json, "plaintext_server_to_client_hex")),
        &e_s,
        &h_s,
    );
    // Keys of the wrong direction must not authenticate.
    let mut out = vec![0u8; 1024];
    let mut wrong = PacketOpener::new(&e_s, &h_s, 0);
    assert_eq!(
        wrong.open_into(&c2s[320..320 + PACKET_LEN], &mut out),
        Err(Error::BadMac { packet: 0 })
    );
}
