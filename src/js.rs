//! The binding's contact with JavaScript values beyond what napi-rs converts:
//! borrowing the bytes of TypedArray arguments (refusing SharedArrayBuffer
//! backing), bigint/number arguments with this addon's exact TypeError and
//! RangeError messages, Buffers, the sealer/opener handles (type-tagged Externals:
//! Node-API's own proof that a pointer is one of ours, cheaper per call than napi-rs's
//! External registry), the plain Node-API callbacks of the per-batch functions, and
//! throwing errors with the class and `code` the JS layer expects. All of the
//! binding's `unsafe` lives here.

use napi::sys;
use napi::{Env, JsValue, Status, Unknown};
use std::borrow::Cow;
use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::null_mut;

/// A JS exception to throw when an exported function returns.
#[derive(Debug)]
pub enum JsError {
    /// `TypeError` with code `ERR_INVALID_ARG_TYPE`.
    Type(String),
    /// `RangeError` with code `ERR_OUT_OF_RANGE`.
    Range(String),
    /// `Error` with the given `code`.
    Coded(&'static str, String),
    /// A JS exception is already pending (thrown by Node-API itself).
    Pending,
}

/// Result of the binding's helpers.
pub type JsResult<T> = Result<T, JsError>;

/// Throws `err` (with its class and code) and returns the napi-rs error that leaves it pending.
pub fn throw(env: &Env, err: JsError) -> napi::Error {
    let pending = napi::Error::from_status(Status::PendingException);
    let c = |s: &str| CString::new(s.replace('\0', "?")).unwrap_or_default();
    let (code, msg) = match &err {
        JsError::Type(m) => (c("ERR_INVALID_ARG_TYPE"), c(m)),
        JsError::Range(m) => (c("ERR_OUT_OF_RANGE"), c(m)),
        JsError::Coded(code, m) => (c(code), c(m)),
        JsError::Pending => return pending,
    };
    let raw = env.raw();
    // SAFETY: valid env of the current call; code and message are NUL-terminated
    // strings alive for the call.
    unsafe {
        match err {
            JsError::Type(_) => sys::napi_throw_type_error(raw, code.as_ptr(), msg.as_ptr()),
            JsError::Range(_) => sys::napi_throw_range_error(raw, code.as_ptr(), msg.as_ptr()),
            _ => sys::napi_throw_error(raw, code.as_ptr(), msg.as_ptr()),
        };
    }
    pending
}

/// Maps a Node-API status to `Ok` or to the error to raise.
fn check(env: &Env, status: sys::napi_status, what: &str) -> JsResult<()> {
    if status == sys::Status::napi_ok {
        return Ok(());
    }
    let mut pending = false;
    // SAFETY: valid env for this call; `pending` is a valid out pointer.
    unsafe { sys::napi_is_exception_pending(env.raw(), &mut pending) };
    if pending {
        Err(JsError::Pending)
    } else {
        Err(JsError::Coded(
            "EINTERNAL",
            format!("{what} failed (napi_status {status})"),
        ))
    }
}

/// The bytes of a TypedArray or Buffer argument, valid for one call (`'cb`).
pub struct ByteView<'cb> {
    ptr: *mut u8,
    len: usize,
    _call: PhantomData<&'cb mut [u8]>,
}

impl<'cb> ByteView<'cb> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The bytes, read-only, for the rest of the call.
    pub fn into_slice(self) -> &'cb [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` points at `len` live bytes of the view's ArrayBuffer (never a
        // SharedArrayBuffer: `bytes` refuses those); no JS runs during the call, so it
        // is neither freed nor detached, and the only writable view (`split_in_out`)
        // never overlaps a live shared one (the input is copied when it would).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Read `input`, write `out`: when the two views share memory, the input is copied first.
/// Callers must hold no other slice of JS memory while the returned slices live.
pub fn split_in_out<'cb>(
    input: ByteView<'cb>,
    out: ByteView<'cb>,
) -> (Cow<'cb, [u8]>, &'cb mut [u8]) {
    let (i0, o0) = (input.ptr as usize, out.ptr as usize);
    let overlap = input.len > 0 && out.len > 0 && i0 < o0 + out.len && o0 < i0 + input.len;
    let input: Cow<'cb, [u8]> = if input.len == 0 {
        Cow::Borrowed(&[])
    } else if overlap {
        // SAFETY: as in `into_slice`; the borrow ends before `out` is created.
        Cow::Owned(unsafe { std::slice::from_raw_parts(input.ptr, input.len) }.to_vec())
    } else {
        // SAFETY: as in `into_slice`, and disjoint from `out` (checked above).
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(input.ptr, input.len) })
    };
    let out: &'cb mut [u8] = if out.len == 0 {
        &mut []
    } else {
        // SAFETY: `out.ptr` points at `out.len` live bytes (see `into_slice`),
        // not overlapping any other slice handed out for this call.
        unsafe { std::slice::from_raw_parts_mut(out.ptr, out.len) }
    };
    (input, out)
}

/// The bytes of a TypedArray or Buffer over an ArrayBuffer (any element type, honouring
/// byteOffset); else a TypeError naming `name`.
pub fn bytes<'cb>(env: &Env, v: &Unknown<'cb>, name: &str) -> JsResult<ByteView<'cb>> {
    // `kind` starts out of range, so a kind this code does not know (or a Node that
    // leaves it unset) is refused rather than read as Int8Array.
    let (mut kind, mut length, mut data, mut backing) = (-1, 0usize, null_mut(), null_mut());
    // SAFETY: valid env and value for this call; the unused output may be null. A
    // value that is not a TypedArray yields napi_invalid_arg, with no exception pending.
    let status = unsafe {
        sys::napi_get_typedarray_info(
            env.raw(),
            v.raw(),
            &mut kind,
            &mut length,
            &mut data,
            &mut backing,
            null_mut(),
        )
    };
    if status == sys::Status::napi_invalid_arg {
        return Err(JsError::Type(format!(
            "{name} must be a Uint8Array, Buffer or other TypedArray"
        )));
    }
    check(env, status, "napi_get_typedarray_info")?;
    // napi_is_arraybuffer is false for a SharedArrayBuffer: memory another thread may
    // change while we read it (a MAC checked, then different bytes decrypted).
    let mut plain = false;
    // SAFETY: valid env; `backing` is the view's buffer; `plain` is a valid out pointer.
    check(
        env,
        unsafe { sys::napi_is_arraybuffer(env.raw(), backing, &mut plain) },
        "napi_is_arraybuffer",
    )?;
    if !plain {
        return Err(JsError::Type(format!(
            "{name} must not be backed by a SharedArrayBuffer"
        )));
    }
    // Element sizes in napi_typedarray_type order: int8, uint8, uint8_clamped,
    // int16, uint16, int32, uint32, float32, float64, bigint64, biguint64.
    let size = match kind {
        0..=2 => 1,
        3..=4 => 2,
        5..=7 => 4,
        8..=10 => 8,
        _ => {
            return Err(JsError::Type(format!(
                "{name} has an unsupported TypedArray type"
            )))
        }
    };
    let len = if data.is_null() { 0 } else { length * size };
    Ok(ByteView {
        ptr: data.cast(),
        len,
        _call: PhantomData,
    })
}

/// A bigint in 0..=u64::MAX; TypeError if not a bigint, RangeError if out of range.
pub fn bigint_u64(env: &Env, v: &Unknown, name: &str) -> JsResult<u64> {
    let (mut x, mut lossless) = (0u64, false);
    // SAFETY: valid env and value; out pointers are valid.
    let status =
        unsafe { sys::napi_get_value_bigint_uint64(env.raw(), v.raw(), &mut x, &mut lossless) };
    if status != sys::Status::napi_ok {
        return Err(JsError::Type(format!("{name} must be a bigint")));
    }
    if !lossless {
        return Err(JsError::Range(format!(
            "{name} must be a bigint between 0 and 2^64 - 1"
        )));
    }
    Ok(x)
}

/// A non-negative safe-integer number, as an index; TypeError if not a number, RangeError otherwise.
pub fn index(env: &Env, v: &Unknown, name: &str) -> JsResult<usize> {
    let mut x = 0f64;
    // SAFETY: valid env and value; `x` is a valid out pointer.
    if unsafe { sys::napi_get_value_double(env.raw(), v.raw(), &mut x) } != sys::Status::napi_ok {
        return Err(JsError::Type(format!("{name} must be a number")));
    }
    if !((0.0..=9007199254740991.0).contains(&x) && x.fract() == 0.0) {
        return Err(JsError::Range(format!(
            "{name} must be a non-negative integer, got {x}"
        )));
    }
    Ok(x as usize)
}

/// A new Buffer of `len` bytes and a writable view of them, for the rest of the call.
pub fn buffer<'cb>(env: &Env, len: usize) -> JsResult<(Unknown<'cb>, &'cb mut [u8])> {
    let (mut data, mut v) = (null_mut(), null_mut());
    // SAFETY: valid env; out pointers valid.
    check(
        env,
        unsafe { sys::napi_create_buffer(env.raw(), len, &mut data, &mut v) },
        "napi_create_buffer",
    )?;
    // SAFETY: `v` is the Buffer just created in this call's scope.
    let value = unsafe { Unknown::from_raw_unchecked(env.raw(), v) };
    if len == 0 || data.is_null() {
        return Ok((value, &mut []));
    }
    // SAFETY: the fresh Buffer owns `len` bytes at `data`, alive for this call
    // (the handle scope holds `v`) and aliased by no other slice.
    Ok((value, unsafe {
        std::slice::from_raw_parts_mut(data.cast(), len)
    }))
}

/// A new Buffer holding a copy of `bytes`.
pub fn buffer_copy<'cb>(env: &Env, bytes: &[u8]) -> JsResult<Unknown<'cb>> {
    let mut v = null_mut();
    // SAFETY: `bytes` is readable for its length; a null result_data is allowed.
    check(
        env,
        unsafe {
            sys::napi_create_buffer_copy(
                env.raw(),
                bytes.len(),
                bytes.as_ptr().cast(),
                null_mut(),
                &mut v,
            )
        },
        "napi_create_buffer_copy",
    )?;
    // SAFETY: `v` is the Buffer just created in this call's scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), v) })
}

/// An object kind stored behind a type-tagged External (a sealer or opener handle).
pub trait Tagged: Sized + 'static {
    /// Unique tag that marks Externals holding a `Box<Option<Self>>`.
    const TAG: sys::napi_type_tag;
}

/// Moves `obj` into a new External tagged `T::TAG`; it is dropped when the External is
/// collected, or earlier when a caller empties the slot `handle` returns.
pub fn wrap<'cb, T: Tagged>(env: &Env, obj: Box<Option<T>>) -> JsResult<Unknown<'cb>> {
    unsafe extern "C" fn finalize<T>(
        _env: sys::napi_env,
        data: *mut std::ffi::c_void,
        _hint: *mut std::ffi::c_void,
    ) {
        // SAFETY: `data` came from `Box::into_raw` in `wrap::<T>` and is finalised once.
        drop(unsafe { Box::from_raw(data.cast::<Option<T>>()) });
    }
    let ptr = Box::into_raw(obj);
    let mut v = null_mut();
    // SAFETY: valid env; on success the External owns `ptr` and frees it via `finalize::<T>`.
    let status = unsafe {
        sys::napi_create_external(
            env.raw(),
            ptr.cast(),
            Some(finalize::<T>),
            null_mut(),
            &mut v,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the External was not created, so `ptr` is still solely ours.
        drop(unsafe { Box::from_raw(ptr) });
        return check(env, status, "napi_create_external").map(|()| unreachable!());
    }
    // SAFETY: `v` is the External just created; the tag outlives the call.
    check(
        env,
        unsafe { sys::napi_type_tag_object(env.raw(), v, &T::TAG) },
        "napi_type_tag_object",
    )?;
    // SAFETY: `v` was created in this call's scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), v) })
}

/// The slot inside `v` if `v` is an External tagged `T::TAG` (so made by `wrap::<T>`),
/// else `None`. The slot holds `None` once disposed. Exported functions take at most one
/// handle per call, so the `&mut` is unique.
pub fn handle<'cb, T: Tagged>(env: &Env, v: &Unknown<'cb>) -> JsResult<Option<&'cb mut Option<T>>> {
    let mut data = null_mut();
    // SAFETY: valid env and value; out pointer valid. Anything but an External yields
    // napi_invalid_arg, with no exception pending.
    let status = unsafe { sys::napi_get_value_external(env.raw(), v.raw(), &mut data) };
    if status == sys::Status::napi_invalid_arg {
        return Ok(None);
    }
    check(env, status, "napi_get_value_external")?;
    let mut tagged = false;
    // SAFETY: `v` is an External (an object for type tagging); pointers valid.
    check(
        env,
        unsafe { sys::napi_check_object_type_tag(env.raw(), v.raw(), &T::TAG, &mut tagged) },
        "napi_check_object_type_tag",
    )?;
    if !tagged || data.is_null() {
        return Ok(None);
    }
    // SAFETY: only `wrap::<T>` tags Externals with `T::TAG` (a foreign External cannot
    // carry this 128-bit tag unless its code copied it), and it stores a live
    // `Box<Option<T>>` that is freed only when the External is collected, which cannot
    // happen while `v` is an argument of this call. JS is single-threaded and no JS runs
    // during the call, so nothing else borrows it.
    Ok(Some(unsafe { &mut *data.cast::<Option<T>>() }))
}

/// Arguments every raw-registered function receives (missing ones read as `undefined`).
pub const RAW_ARGS: usize = 4;

/// The body of a function registered by `export_raw`: decodes `args`, returns the result or the error to throw.
pub type RawHandler = for<'cb> fn(&Env, &[Unknown<'cb>; RAW_ARGS]) -> JsResult<Unknown<'cb>>;

/// A JS number.
pub fn number<'cb>(env: &Env, x: f64) -> JsResult<Unknown<'cb>> {
    let mut v = null_mut();
    // SAFETY: valid env; `v` is a valid out pointer.
    check(
        env,
        unsafe { sys::napi_create_double(env.raw(), x, &mut v) },
        "napi_create_double",
    )?;
    // SAFETY: `v` was just created in this call's scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), v) })
}

/// The C entry point of every `export_raw` function: reads up to four arguments, runs the
/// handler stored as the function's data pointer, and throws its error, or a panic as an
/// `EINTERNAL` Error (no panic crosses into JavaScript).
unsafe extern "C" fn trampoline(
    raw: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let env = Env::from_raw(raw);
    let mut argc = RAW_ARGS;
    let mut argv: [sys::napi_value; RAW_ARGS] = [null_mut(); RAW_ARGS];
    let mut data = null_mut();
    // SAFETY: `raw`/`info` come from Node for this call; `argv` has room for `argc`
    // values (missing arguments are filled with `undefined`).
    let status = unsafe {
        sys::napi_get_cb_info(
            raw,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            null_mut(),
            &mut data,
        )
    };
    let result = check(&env, status, "napi_get_cb_info").and_then(|()| {
        // SAFETY: `export_raw` registered this function with a `RawHandler` as its data.
        let handler = unsafe { std::mem::transmute::<*mut std::ffi::c_void, RawHandler>(data) };
        // SAFETY: each value is an argument of this call, alive for the call.
        let args = argv.map(|v| unsafe { Unknown::from_raw_unchecked(raw, v) });
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&env, &args)))
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(JsError::Coded(
                    "EINTERNAL",
                    format!("spiped-native internal error: {what}"),
                ))
            })
            .map(|v| v.raw())
    });
    result.unwrap_or_else(|e| {
        throw(&env, e);
        null_mut()
    })
}

/// Adds `exports[name]`, a function calling `handler` through `trampoline` (no per-call
/// allocation; napi-rs's generated callbacks set up borrow tracking these functions do not need).
pub fn export_raw(
    env: &Env,
    exports: &napi::bindgen_prelude::Object,
    name: &std::ffi::CStr,
    handler: RawHandler,
) -> napi::Result<()> {
    let mut f = null_mut();
    // SAFETY: valid env (module registration); `handler` is a plain fn pointer, valid
    // for ever, stored as the data pointer that `trampoline` turns back into a handler.
    let ok = unsafe {
        sys::napi_create_function(
            env.raw(),
            name.as_ptr(),
            name.to_bytes().len() as isize,
            Some(trampoline),
            handler as *mut std::ffi::c_void,
            &mut f,
        ) == sys::Status::napi_ok
            && sys::napi_set_named_property(env.raw(), exports.raw(), name.as_ptr(), f)
                == sys::Status::napi_ok
    };
    if ok {
        Ok(())
    } else {
        Err(napi::Error::from_reason(format!("cannot export {name:?}")))
    }
}
