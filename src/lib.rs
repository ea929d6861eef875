//! Node-API addon `spiped-native` on napi-rs: exposes `spiped-crypto`'s packet
//! sealer and opener to JavaScript. One call seals or opens a whole batch;
//! handles are type-tagged Externals holding an `Option` that `dispose` empties
//! (dropping, and so wiping, the keys) while the JS handle lives on. Arguments are
//! decoded by `js` with this addon's exact TypeError/RangeError messages; every
//! function catches panics (`catch_unwind`), so none crosses into JavaScript.

mod js;

use js::{bytes, handle, split_in_out, throw, JsError, JsResult, Tagged, RAW_ARGS};
use napi::bindgen_prelude::Object;
use napi::sys::napi_type_tag;
use napi::{Env, Unknown};
use napi_derive::napi;
use spiped_crypto::{opened_capacity, sealed_len, Error, PacketOpener, PacketSealer};

impl Tagged for PacketSealer {
    const TAG: napi_type_tag = napi_type_tag {
        lower: 0x5ea1_e4f0_73c2_9b1d,
        upper: 0x8d2b_41a6_c0de_5e01,
    };
}

impl Tagged for PacketOpener {
    const TAG: napi_type_tag = napi_type_tag {
        lower: 0x09e7_e4f0_73c2_9b1d,
        upper: 0x8d2b_41a6_c0de_5e02,
    };
}

/// Runs `f`, turning its `JsError` into the matching thrown JS exception.
fn run<T>(env: &Env, f: impl FnOnce() -> JsResult<T>) -> napi::Result<T> {
    f().map_err(|e| throw(env, e))
}

/// The JS error for a crypto failure.
fn crypto_error(e: Error) -> JsError {
    match e {
        Error::BadSize | Error::BadMac { .. } | Error::BadLength { .. } | Error::Failed => {
            JsError::Coded("EBADPACKET", e.to_string())
        }
        Error::CounterExhausted | Error::OutputTooSmall => JsError::Range(e.to_string()),
    }
}

/// The JS error for a handle whose keys `dispose` already wiped.
fn disposed(what: &str) -> JsError {
    JsError::Coded(
        "EDISPOSED",
        format!("spiped-native: this {what} was disposed"),
    )
}

/// A 32-byte key argument, borrowed from JS memory.
fn key<'cb>(env: &Env, v: &Unknown<'cb>, name: &str) -> JsResult<&'cb [u8; 32]> {
    let view = bytes(env, v, name)?;
    let len = view.len();
    <&[u8; 32]>::try_from(view.into_slice())
        .map_err(|_| JsError::Type(format!("{name} must be 32 bytes, got {len}")))
}

/// The live sealer behind `v`; TypeError for anything else, EDISPOSED once disposed.
fn sealer<'cb>(env: &Env, v: &Unknown<'cb>) -> JsResult<&'cb mut PacketSealer> {
    handle::<PacketSealer>(env, v)?
        .ok_or_else(|| JsError::Type("sealer must be a handle returned by createSealer".into()))?
        .as_mut()
        .ok_or_else(|| disposed("sealer"))
}

/// The live opener behind `v`; TypeError for anything else, EDISPOSED once disposed.
fn opener<'cb>(env: &Env, v: &Unknown<'cb>) -> JsResult<&'cb mut PacketOpener> {
    handle::<PacketOpener>(env, v)?
        .ok_or_else(|| JsError::Type("opener must be a handle returned by createOpener".into()))?
        .as_mut()
        .ok_or_else(|| disposed("opener"))
}

/// The output window `out[outOffset..]`, which must hold at least `need` bytes.
fn check_window(out_len: usize, offset: usize, need: usize) -> JsResult<()> {
    if offset > out_len {
        return Err(JsError::Range(format!(
            "outOffset {offset} is beyond the end of out ({out_len} bytes)"
        )));
    }
    if out_len - offset < need {
        return Err(JsError::Range(format!(
            "out has {} bytes after outOffset {offset}, {need} are needed",
            out_len - offset
        )));
    }
    Ok(())
}

/// CPU features the x86_64 kernels use.
#[napi(object)]
pub struct CpuFeatures {
    pub aesni: bool,
    pub shani: bool,
    pub vaes: bool,
    pub avx2: bool,
}

/// `cpuFeatures()`: this CPU's AES-NI, SHA-NI, VAES and AVX2.
#[napi]
pub fn cpu_features() -> CpuFeatures {
    let f = spiped_crypto::cpu_features();
    CpuFeatures {
        aesni: f.aesni,
        shani: f.shani,
        vaes: f.vaes,
        avx2: f.avx2,
    }
}

/// `kernels()`: 'x86_64' (hand-written, self-tested) or 'portable' (RustCrypto), chosen once.
#[napi(ts_return_type = "'x86_64' | 'portable'")]
pub fn kernels() -> &'static str {
    spiped_crypto::kernels().name()
}

/// `version()`: the crate version, kept equal to package.json's.
#[napi]
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `(encKey, macKey, firstPacket)` of the constructors.
fn key_args<'cb>(
    env: &Env,
    enc_key: &Unknown<'cb>,
    mac_key: &Unknown<'cb>,
    first_packet: &Unknown<'cb>,
) -> JsResult<(&'cb [u8; 32], &'cb [u8; 32], u64)> {
    Ok((
        key(env, enc_key, "encKey")?,
        key(env, mac_key, "macKey")?,
        js::bigint_u64(env, first_packet, "firstPacket")?,
    ))
}

/// A new handle holding `make(encKey, macKey, firstPacket)`, from the constructors' arguments.
fn create<'cb, T: Tagged>(
    env: &Env,
    args: [&Unknown<'cb>; 3],
    make: fn(&[u8; 32], &[u8; 32], u64) -> T,
) -> napi::Result<Unknown<'cb>> {
    run(env, || {
        let (enc, mac, first) = key_args(env, args[0], args[1], args[2])?;
        js::wrap(env, Box::new(Some(make(enc, mac, first))))
    })
}

/// `createSealer(encKey, macKey, firstPacket: bigint)`: a sealer handle.
#[napi(
    catch_unwind,
    ts_args_type = "encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint",
    ts_return_type = "ExternalObject<unknown>"
)]
pub fn create_sealer<'cb>(
    env: Env,
    enc: Unknown<'cb>,
    mac: Unknown<'cb>,
    first: Unknown<'cb>,
) -> napi::Result<Unknown<'cb>> {
    create(&env, [&enc, &mac, &first], PacketSealer::new)
}

/// `createOpener(encKey, macKey, firstPacket: bigint)`: an opener handle.
#[napi(
    catch_unwind,
    ts_args_type = "encKey: Uint8Array, macKey: Uint8Array, firstPacket: bigint",
    ts_return_type = "ExternalObject<unknown>"
)]
pub fn create_opener<'cb>(
    env: Env,
    enc: Unknown<'cb>,
    mac: Unknown<'cb>,
    first: Unknown<'cb>,
) -> napi::Result<Unknown<'cb>> {
    create(&env, [&enc, &mac, &first], PacketOpener::new)
}

/// `seal(sealer, data): Buffer` of ceil(len/1024) packets.
fn seal<'cb>(env: &Env, args: &[Unknown<'cb>; RAW_ARGS]) -> JsResult<Unknown<'cb>> {
    let s = sealer(env, &args[0])?;
    let data = bytes(env, &args[1], "data")?;
    let (buf, out) = js::buffer(env, sealed_len(data.len()))?;
    s.seal_into(data.into_slice(), out).map_err(crypto_error)?;
    Ok(buf)
}

/// `sealInto(sealer, data, out, outOffset): number` of bytes written.
fn seal_into<'cb>(env: &Env, args: &[Unknown<'cb>; RAW_ARGS]) -> JsResult<Unknown<'cb>> {
    let s = sealer(env, &args[0])?;
    let data = bytes(env, &args[1], "data")?;
    let out = bytes(env, &args[2], "out")?;
    let offset = js::index(env, &args[3], "outOffset")?;
    check_window(out.len(), offset, sealed_len(data.len()))?;
    let (input, out) = split_in_out(data, out);
    let n = s
        .seal_into(&input, &mut out[offset..])
        .map_err(crypto_error)?;
    js::number(env, n as f64)
}

/// `open(opener, packets): Buffer` of exactly the plaintext length.
fn open<'cb>(env: &Env, args: &[Unknown<'cb>; RAW_ARGS]) -> JsResult<Unknown<'cb>> {
    let o = opener(env, &args[0])?;
    let packets = bytes(env, &args[1], "packets")?;
    let capacity = opened_capacity(packets.len());
    let (buf, out) = js::buffer(env, capacity)?;
    let n = o
        .open_into(packets.into_slice(), out)
        .map_err(crypto_error)?;
    // Full packets (the bulk case) fill the buffer exactly; otherwise copy the
    // plaintext into a right-sized Buffer rather than keep the larger one alive.
    if n == capacity {
        Ok(buf)
    } else {
        js::buffer_copy(env, &out[..n])
    }
}

/// `openInto(opener, packets, out, outOffset): number`; out needs room for `opened_capacity(packets.length)`.
fn open_into<'cb>(env: &Env, args: &[Unknown<'cb>; RAW_ARGS]) -> JsResult<Unknown<'cb>> {
    let o = opener(env, &args[0])?;
    let packets = bytes(env, &args[1], "packets")?;
    let out = bytes(env, &args[2], "out")?;
    let offset = js::index(env, &args[3], "outOffset")?;
    check_window(out.len(), offset, opened_capacity(packets.len()))?;
    let (input, out) = split_in_out(packets, out);
    let n = o
        .open_into(&input, &mut out[offset..])
        .map_err(crypto_error)?;
    js::number(env, n as f64)
}

/// The most bytes `pbkdf2Sha256` derives (the handshake needs 64 and 128).
const MAX_DERIVED: usize = 1024;

/// `pbkdf2Sha256(key, salt, length): Buffer`: one-iteration PBKDF2-HMAC-SHA256 (the handshake's dk_1 and dk_2).
fn pbkdf2_sha256<'cb>(env: &Env, args: &[Unknown<'cb>; RAW_ARGS]) -> JsResult<Unknown<'cb>> {
    let key = bytes(env, &args[0], "key")?;
    let salt = bytes(env, &args[1], "salt")?;
    let length = js::index(env, &args[2], "length")?;
    if length == 0 || length > MAX_DERIVED {
        return Err(JsError::Range(format!(
            "length must be 1 to {MAX_DERIVED}, got {length}"
        )));
    }
    let (buf, out) = js::buffer(env, length)?;
    spiped_crypto::hmac::pbkdf2_sha256_one_iteration(key.into_slice(), salt.into_slice(), out);
    Ok(buf)
}

/// `hmacSha256(key, data): Buffer` of 32 bytes (the handshake's DH message MACs).
fn hmac_sha256<'cb>(env: &Env, args: &[Unknown<'cb>; RAW_ARGS]) -> JsResult<Unknown<'cb>> {
    let key = bytes(env, &args[0], "key")?;
    let data = bytes(env, &args[1], "data")?;
    let tag = spiped_crypto::hmac::HmacSha256::new(key.into_slice()).mac(data.into_slice());
    js::buffer_copy(env, &tag)
}

/// Registers the four per-batch functions (seal, sealInto, open, openInto) and the
/// handshake's two key functions (pbkdf2Sha256, hmacSha256) as plain Node-API
/// callbacks: they run once per socket read or handshake step, and napi-rs's
/// generated wrappers cost them measurably (per-call borrow-tracking scopes). Their
/// type declarations are in the dts header (package.json build:native).
#[napi(module_exports)]
pub fn register_batch_functions(exports: Object, env: Env) -> napi::Result<()> {
    let functions: [(&std::ffi::CStr, js::RawHandler); 6] = [
        (c"seal", seal),
        (c"sealInto", seal_into),
        (c"open", open),
        (c"openInto", open_into),
        (c"pbkdf2Sha256", pbkdf2_sha256),
        (c"hmacSha256", hmac_sha256),
    ];
    for (name, handler) in functions {
        js::export_raw(&env, &exports, name, handler)?;
    }
    Ok(())
}

/// `nextPacket(sealerOrOpener): bigint`; EDISPOSED once disposed.
#[napi(catch_unwind, ts_args_type = "handle: ExternalObject<unknown>")]
pub fn next_packet(env: Env, h: Unknown) -> napi::Result<napi::bindgen_prelude::BigInt> {
    run(&env, || {
        let next = if let Some(s) = handle::<PacketSealer>(&env, &h)? {
            s.as_ref().ok_or_else(|| disposed("sealer"))?.next_packet()
        } else if let Some(o) = handle::<PacketOpener>(&env, &h)? {
            o.as_ref().ok_or_else(|| disposed("opener"))?.next_packet()
        } else {
            return Err(JsError::Type(
                "nextPacket needs a handle returned by createSealer or createOpener".into(),
            ));
        };
        Ok(napi::bindgen_prelude::BigInt::from(next))
    })
}

/// `dispose(sealerOrOpener)`: drops (and so wipes) the keys now; idempotent.
#[napi(catch_unwind, ts_args_type = "handle: ExternalObject<unknown>")]
pub fn dispose(env: Env, h: Unknown) -> napi::Result<()> {
    run(&env, || {
        if let Some(s) = handle::<PacketSealer>(&env, &h)? {
            *s = None;
        } else if let Some(o) = handle::<PacketOpener>(&env, &h)? {
            *o = None;
        } else {
            return Err(JsError::Type(
                "dispose needs a handle returned by createSealer or createOpener".into(),
            ));
        }
        Ok(())
    })
}
