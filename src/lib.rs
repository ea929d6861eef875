//! Node-API addon `spiped-native`: exposes `spiped-crypto`'s packet sealer and
//! opener to JavaScript through a hand-written FFI (`napi_sys`, `napi`). One
//! call seals or opens a whole batch; handles are type-tagged Externals.

mod napi;
mod napi_sys;

use napi::{split_in_out, Env, JsError, JsResult, Tagged, Value, MAX_ARGS};
use napi_sys::{napi_env, napi_type_tag, napi_value};
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

/// The JS error for a crypto failure.
fn crypto_error(e: Error) -> JsError {
    match e {
        Error::BadSize | Error::BadMac { .. } | Error::BadLength { .. } | Error::Failed => {
            JsError::Coded("EBADPACKET", e.to_string())
        }
        Error::CounterExhausted | Error::OutputTooSmall => JsError::Range(e.to_string()),
    }
}

/// A 32-byte key argument, borrowed from JS memory.
fn key<'cb>(env: Env<'cb>, v: Value, name: &str) -> JsResult<&'cb [u8; 32]> {
    let view = env.bytes(v, name)?;
    let len = view.len();
    <&[u8; 32]>::try_from(view.into_slice())
        .map_err(|_| JsError::Type(format!("{name} must be 32 bytes, got {len}")))
}

/// `(encKey, macKey, firstPacket)` of the constructors.
fn key_args<'cb>(
    env: Env<'cb>,
    args: &[Value; MAX_ARGS],
) -> JsResult<(&'cb [u8; 32], &'cb [u8; 32], u64)> {
    Ok((
        key(env, args[0], "encKey")?,
        key(env, args[1], "macKey")?,
        env.bigint_u64(args[2], "firstPacket")?,
    ))
}

/// The JS error for a handle whose keys `dispose` already wiped.
fn disposed(what: &str) -> JsError {
    JsError::Coded(
        "EDISPOSED",
        format!("spiped-native: this {what} was disposed"),
    )
}

/// The live sealer behind `v`; TypeError for anything else, EDISPOSED once disposed.
fn sealer<'cb>(env: Env<'cb>, v: Value) -> JsResult<&'cb mut PacketSealer> {
    env.try_unwrap::<PacketSealer>(v)?
        .ok_or_else(|| JsError::Type("sealer must be a handle returned by createSealer".into()))?
        .as_mut()
        .ok_or_else(|| disposed("sealer"))
}

/// The live opener behind `v`; TypeError for anything else, EDISPOSED once disposed.
fn opener<'cb>(env: Env<'cb>, v: Value) -> JsResult<&'cb mut PacketOpener> {
    env.try_unwrap::<PacketOpener>(v)?
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

/// `cpuFeatures(): { aesni, shani, vaes, avx2 }`
fn cpu_features(env: Env, _: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let f = spiped_crypto::cpu_features();
    env.bools_object(&[
        (c"aesni", f.aesni),
        (c"shani", f.shani),
        (c"vaes", f.vaes),
        (c"avx2", f.avx2),
    ])
}

/// `createSealer(encKey, macKey, firstPacket: bigint)`
fn create_sealer(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let (enc, mac, first) = key_args(env, args)?;
    env.wrap(Box::new(Some(PacketSealer::new(enc, mac, first))))
}

/// `createOpener(encKey, macKey, firstPacket: bigint)`
fn create_opener(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let (enc, mac, first) = key_args(env, args)?;
    env.wrap(Box::new(Some(PacketOpener::new(enc, mac, first))))
}

/// `seal(sealer, data): Buffer`
fn seal(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let s = sealer(env, args[0])?;
    let data = env.bytes(args[1], "data")?;
    let (buf, out) = env.buffer(sealed_len(data.len()))?;
    s.seal_into(data.into_slice(), out).map_err(crypto_error)?;
    Ok(buf)
}

/// `sealInto(sealer, data, out, outOffset): number`
fn seal_into(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let s = sealer(env, args[0])?;
    let data = env.bytes(args[1], "data")?;
    let out = env.bytes(args[2], "out")?;
    let offset = env.index(args[3], "outOffset")?;
    check_window(out.len(), offset, sealed_len(data.len()))?;
    let (input, out) = split_in_out(data, out);
    let n = s
        .seal_into(&input, &mut out[offset..])
        .map_err(crypto_error)?;
    env.number(n as f64)
}

/// `open(opener, packets): Buffer` of exactly the plaintext length.
fn open(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let o = opener(env, args[0])?;
    let packets = env.bytes(args[1], "packets")?;
    let capacity = opened_capacity(packets.len());
    let (buf, out) = env.buffer(capacity)?;
    let n = o
        .open_into(packets.into_slice(), out)
        .map_err(crypto_error)?;
    // Full packets (the bulk case) fill the buffer exactly; otherwise copy the
    // plaintext into a right-sized Buffer rather than keep the larger one alive.
    if n == capacity {
        Ok(buf)
    } else {
        env.buffer_copy(&out[..n])
    }
}

/// `openInto(opener, packets, out, outOffset): number`; out needs room for `opened_capacity(packets.length)`.
fn open_into(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let o = opener(env, args[0])?;
    let packets = env.bytes(args[1], "packets")?;
    let out = env.bytes(args[2], "out")?;
    let offset = env.index(args[3], "outOffset")?;
    check_window(out.len(), offset, opened_capacity(packets.len()))?;
    let (input, out) = split_in_out(packets, out);
    let n = o
        .open_into(&input, &mut out[offset..])
        .map_err(crypto_error)?;
    env.number(n as f64)
}

/// `nextPacket(sealerOrOpener): bigint`; EDISPOSED once disposed.
fn next_packet(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    let next = if let Some(s) = env.try_unwrap::<PacketSealer>(args[0])? {
        s.as_ref().ok_or_else(|| disposed("sealer"))?.next_packet()
    } else if let Some(o) = env.try_unwrap::<PacketOpener>(args[0])? {
        o.as_ref().ok_or_else(|| disposed("opener"))?.next_packet()
    } else {
        return Err(JsError::Type(
            "nextPacket needs a handle returned by createSealer or createOpener".into(),
        ));
    };
    env.bigint(next)
}

/// `dispose(sealerOrOpener): undefined`: drops (and so wipes) the keys now; idempotent.
fn dispose(env: Env, args: &[Value; MAX_ARGS]) -> JsResult<Value> {
    if let Some(s) = env.try_unwrap::<PacketSealer>(args[0])? {
        *s = None;
    } else if let Some(o) = env.try_unwrap::<PacketOpener>(args[0])? {
        *o = None;
    } else {
        return Err(JsError::Type(
            "dispose needs a handle returned by createSealer or createOpener".into(),
        ));
    }
    env.undefined()
}

/// `version(): string`, the crate version (kept equal to package.json's).
fn version(env: Env, _: &[Value; MAX_ARGS]) -> JsResult<Value> {
    env.string(env!("CARGO_PKG_VERSION"))
}

/// Module registration, called by Node when the addon is loaded.
///
/// # Safety
/// Called only by Node with a valid environment and exports object.
#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(env: napi_env, exports: napi_value) -> napi_value {
    let functions: [(&std::ffi::CStr, napi::Handler); 10] = [
        (c"cpuFeatures", cpu_features),
        (c"createSealer", create_sealer),
        (c"createOpener", create_opener),
        (c"seal", seal),
        (c"sealInto", seal_into),
        (c"open", open),
        (c"openInto", open_into),
        (c"nextPacket", next_packet),
        (c"dispose", dispose),
        (c"version", version),
    ];
    for (name, handler) in functions {
        // SAFETY: `env` and `exports` are the registration arguments from Node.
        if !unsafe { napi::export(env, exports, name, handler) } {
            return std::ptr::null_mut();
        }
    }
    exports
}
