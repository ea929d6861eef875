//! The FFI layer: a small safe wrapper over `napi_sys` for this addon's
//! needs (argument decoding, Buffers, tagged Externals, thrown errors) and
//! the one `extern "C"` trampoline through which every exported function is
//! called, which also turns Rust panics into thrown JS errors. All of the
//! binding's `unsafe` lives here.

use crate::napi_sys::*;
use std::borrow::Cow;
use std::ffi::{c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;

pub type Value = napi_value;

/// Most arguments any exported function takes; missing ones read as `undefined`.
pub const MAX_ARGS: usize = 4;

/// An exported function body: decodes `args`, returns the result or the error to throw.
pub type Handler = for<'cb> fn(Env<'cb>, &[Value; MAX_ARGS]) -> JsResult<Value>;

/// A JS exception to throw when a handler returns.
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

pub type JsResult<T> = Result<T, JsError>;

/// The Node-API environment of one call; values it hands out live for that call (`'cb`).
#[derive(Clone, Copy)]
pub struct Env<'cb> {
    raw: napi_env,
    _call: PhantomData<&'cb ()>,
}

/// An object kind stored behind a type-tagged External.
pub trait Tagged: Sized + 'static {
    /// Unique tag that marks Externals holding a `Box<Self>`.
    const TAG: napi_type_tag;
}

/// The bytes of a TypedArray or Buffer argument, valid for one call.
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
        // SAFETY: `ptr` points at `len` live bytes of the TypedArray's backing
        // store; no JS runs during the call, so it is neither freed nor detached,
        // and the only writable view (`split_in_out`) never overlaps a live
        // shared one (the input is copied when it would).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Read `input`, write `out`: when the two views share memory, the input is copied first.
/// Handlers must hold no other slice of JS memory while the returned slices live.
pub fn split_in_out<'cb>(
    input: ByteView<'cb>,
    out: ByteView<'cb>,
) -> (Cow<'cb, [u8]>, &'cb mut [u8]) {
    let (i0, o0) = (input.ptr as usize, out.ptr as usize);
    let overlap = input.len > 0 && out.len > 0 && i0 < o0 + out.len && o0 < i0 + input.len;
    let input: Cow<'cb, [u8]> = if input.len == 0 {
        Cow::Borrowed(&[])
    } else if overlap {
        // SAFETY: as in `as_slice`; the borrow ends before `out` is created.
        Cow::Owned(unsafe { std::slice::from_raw_parts(input.ptr, input.len) }.to_vec())
    } else {
        // SAFETY: as in `as_slice`, and disjoint from `out` (checked above).
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(input.ptr, input.len) })
    };
    let out: &'cb mut [u8] = if out.len == 0 {
        &mut []
    } else {
        // SAFETY: `out.ptr` points at `out.len` live bytes (see `as_slice`),
        // not overlapping any other slice handed out for this call.
        unsafe { std::slice::from_raw_parts_mut(out.ptr, out.len) }
    };
    (input, out)
}

impl<'cb> Env<'cb> {
    /// Maps a Node-API status to `Ok` or to the error to raise.
    fn check(self, status: napi_status, what: &str) -> JsResult<()> {
        if status == NAPI_OK {
            return Ok(());
        }
        let mut pending = false;
        // SAFETY: valid env for this call; `pending` is a valid out pointer.
        unsafe { napi_is_exception_pending(self.raw, &mut pending) };
        if pending {
            Err(JsError::Pending)
        } else {
            Err(JsError::Coded(
                "EINTERNAL",
                format!("{what} failed (napi_status {status})"),
            ))
        }
    }

    /// The bytes of a TypedArray or Buffer (any element type, honouring byteOffset); else a TypeError naming `name`.
    pub fn bytes(self, v: Value, name: &str) -> JsResult<ByteView<'cb>> {
        // `kind` starts out of range, so a kind this code does not know (or a Node
        // that leaves it unset) is refused rather than read as Int8Array.
        let (mut kind, mut length, mut data, mut backing) = (-1, 0usize, null_mut(), null_mut());
        // SAFETY: valid env and value for this call; the unused output may be null per
        // the API. A value that is not a TypedArray yields napi_invalid_arg, and no
        // exception is pending then.
        let status = unsafe {
            napi_get_typedarray_info(
                self.raw,
                v,
                &mut kind,
                &mut length,
                &mut data,
                &mut backing,
                null_mut(),
            )
        };
        if status == NAPI_INVALID_ARG {
            return Err(JsError::Type(format!(
                "{name} must be a Uint8Array, Buffer or other TypedArray"
            )));
        }
        self.check(status, "napi_get_typedarray_info")?;
        // napi_is_arraybuffer is false for a SharedArrayBuffer: memory another thread
        // may change while we read it (a MAC checked, then different bytes decrypted).
        let mut plain = false;
        // SAFETY: valid env; `backing` is the view's buffer; `plain` is a valid out pointer.
        self.check(
            unsafe { napi_is_arraybuffer(self.raw, backing, &mut plain) },
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
    pub fn bigint_u64(self, v: Value, name: &str) -> JsResult<u64> {
        let (mut x, mut lossless) = (0u64, false);
        // SAFETY: valid env and value; out pointers are valid.
        let status = unsafe { napi_get_value_bigint_uint64(self.raw, v, &mut x, &mut lossless) };
        if status != NAPI_OK {
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
    pub fn index(self, v: Value, name: &str) -> JsResult<usize> {
        let mut x = 0f64;
        // SAFETY: valid env and value; `x` is a valid out pointer.
        if unsafe { napi_get_value_double(self.raw, v, &mut x) } != NAPI_OK {
            return Err(JsError::Type(format!("{name} must be a number")));
        }
        if !((0.0..=9007199254740991.0).contains(&x) && x.fract() == 0.0) {
            return Err(JsError::Range(format!(
                "{name} must be a non-negative integer, got {x}"
            )));
        }
        Ok(x as usize)
    }

    /// A JS bigint.
    pub fn bigint(self, x: u64) -> JsResult<Value> {
        let mut v = null_mut();
        // SAFETY: valid env; `v` is a valid out pointer.
        self.check(
            unsafe { napi_create_bigint_uint64(self.raw, x, &mut v) },
            "napi_create_bigint_uint64",
        )?;
        Ok(v)
    }

    /// A JS number.
    pub fn number(self, x: f64) -> JsResult<Value> {
        let mut v = null_mut();
        // SAFETY: valid env; `v` is a valid out pointer.
        self.check(
            unsafe { napi_create_double(self.raw, x, &mut v) },
            "napi_create_double",
        )?;
        Ok(v)
    }

    /// `undefined`.
    pub fn undefined(self) -> JsResult<Value> {
        let mut v = null_mut();
        // SAFETY: valid env; `v` is a valid out pointer.
        self.check(
            unsafe { napi_get_undefined(self.raw, &mut v) },
            "napi_get_undefined",
        )?;
        Ok(v)
    }

    /// A JS string.
    pub fn string(self, s: &str) -> JsResult<Value> {
        let mut v = null_mut();
        // SAFETY: valid env; `s` is readable for its length; `v` is a valid out pointer.
        self.check(
            unsafe { napi_create_string_utf8(self.raw, s.as_ptr().cast(), s.len(), &mut v) },
            "napi_create_string_utf8",
        )?;
        Ok(v)
    }

    /// A plain object with the given boolean properties.
    pub fn bools_object(self, props: &[(&CStr, bool)]) -> JsResult<Value> {
        let mut obj = null_mut();
        // SAFETY: valid env; `obj` is a valid out pointer.
        self.check(
            unsafe { napi_create_object(self.raw, &mut obj) },
            "napi_create_object",
        )?;
        for (name, b) in props {
            let mut v = null_mut();
            // SAFETY: valid env, object and NUL-terminated name; out pointer valid.
            unsafe {
                self.check(napi_get_boolean(self.raw, *b, &mut v), "napi_get_boolean")?;
                self.check(
                    napi_set_named_property(self.raw, obj, name.as_ptr(), v),
                    "napi_set_named_property",
                )?;
            }
        }
        Ok(obj)
    }

    /// A new Buffer of `len` uninitialised-by-us bytes and a writable view of them.
    pub fn buffer(self, len: usize) -> JsResult<(Value, &'cb mut [u8])> {
        let (mut data, mut v) = (null_mut(), null_mut());
        // SAFETY: valid env; out pointers valid.
        self.check(
            unsafe { napi_create_buffer(self.raw, len, &mut data, &mut v) },
            "napi_create_buffer",
        )?;
        if len == 0 || data.is_null() {
            return Ok((v, &mut []));
        }
        // SAFETY: the fresh Buffer owns `len` bytes at `data`, alive for this call
        // (the handle scope holds `v`) and aliased by no other slice.
        Ok((v, unsafe {
            std::slice::from_raw_parts_mut(data.cast(), len)
        }))
    }

    /// A new Buffer holding a copy of `bytes`.
    pub fn buffer_copy(self, bytes: &[u8]) -> JsResult<Value> {
        let mut v = null_mut();
        // SAFETY: `bytes` is readable for its length; null result_data is allowed.
        self.check(
            unsafe {
                napi_create_buffer_copy(
                    self.raw,
                    bytes.len(),
                    bytes.as_ptr().cast(),
                    null_mut(),
                    &mut v,
                )
            },
            "napi_create_buffer_copy",
        )?;
        Ok(v)
    }

    /// Moves `obj` into a new External tagged `T::TAG`; it is dropped when the External is
    /// collected, or earlier when a handler sets the slot `try_unwrap` returns to `None`.
    pub fn wrap<T: Tagged>(self, obj: Box<Option<T>>) -> JsResult<Value> {
        unsafe extern "C" fn finalize<T>(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
            // SAFETY: `data` came from `Box::into_raw` in `wrap::<T>` and is finalised once.
            drop(unsafe { Box::from_raw(data.cast::<Option<T>>()) });
        }
        let ptr = Box::into_raw(obj);
        let mut v = null_mut();
        // SAFETY: valid env; on success the External owns `ptr` and frees it via `finalize::<T>`.
        let status = unsafe {
            napi_create_external(self.raw, ptr.cast(), finalize::<T>, null_mut(), &mut v)
        };
        if status != NAPI_OK {
            // SAFETY: the External was not created, so `ptr` is still solely ours.
            drop(unsafe { Box::from_raw(ptr) });
            return self.check(status, "napi_create_external").map(|_| v);
        }
        // SAFETY: `v` is the External just created; the tag outlives the call.
        self.check(
            unsafe { napi_type_tag_object(self.raw, v, &T::TAG) },
            "napi_type_tag_object",
        )?;
        Ok(v)
    }

    /// The slot inside `v` if `v` is an External tagged `T::TAG`, else `None`. The slot
    /// holds `None` once disposed. Handlers take at most one handle per call, so the `&mut` is unique.
    pub fn try_unwrap<T: Tagged>(self, v: Value) -> JsResult<Option<&'cb mut Option<T>>> {
        let mut data = null_mut();
        // SAFETY: valid env and value; out pointer valid. Anything but an External
        // yields napi_invalid_arg, with no exception pending.
        let status = unsafe { napi_get_value_external(self.raw, v, &mut data) };
        if status == NAPI_INVALID_ARG {
            return Ok(None);
        }
        self.check(status, "napi_get_value_external")?;
        let mut tagged = false;
        // SAFETY: `v` is an External (an object for type tagging); pointers valid.
        self.check(
            unsafe { napi_check_object_type_tag(self.raw, v, &T::TAG, &mut tagged) },
            "napi_check_object_type_tag",
        )?;
        if !tagged {
            return Ok(None);
        }
        // SAFETY: only `wrap::<T>` tags Externals with `T::TAG`, and it stores a live
        // `Box<Option<T>>` that is freed only when the External is collected, which
        // cannot happen while `v` is an argument of this call. JS is single-threaded
        // and no JS runs during the call, so nothing else borrows it.
        Ok(Some(unsafe { &mut *data.cast::<Option<T>>() }))
    }

    /// Throws `err` as a JS exception (no-op for `Pending`).
    fn throw(self, err: JsError) {
        let c = |s: &str| CString::new(s.replace('\0', "?")).unwrap_or_default();
        // SAFETY: valid env; code and message are NUL-terminated strings alive for the call.
        unsafe {
            match err {
                JsError::Type(m) => napi_throw_type_error(
                    self.raw,
                    c"ERR_INVALID_ARG_TYPE".as_ptr(),
                    c(&m).as_ptr(),
                ),
                JsError::Range(m) => {
                    napi_throw_range_error(self.raw, c"ERR_OUT_OF_RANGE".as_ptr(), c(&m).as_ptr())
                }
                JsError::Coded(code, m) => {
                    napi_throw_error(self.raw, c(code).as_ptr(), c(&m).as_ptr())
                }
                JsError::Pending => NAPI_OK,
            };
        }
    }
}

/// The single C entry point of every exported function: decodes the call, runs
/// the handler passed as the function's data pointer, and throws its error or panic.
unsafe extern "C" fn trampoline(raw: napi_env, info: napi_callback_info) -> napi_value {
    let env = Env {
        raw,
        _call: PhantomData,
    };
    let mut argc = MAX_ARGS;
    let mut argv: [Value; MAX_ARGS] = [null_mut(); MAX_ARGS];
    let mut data = null_mut();
    // SAFETY: `raw`/`info` come from Node for this call; `argv` has room for
    // `argc` values (missing arguments are filled with `undefined`).
    let status = unsafe {
        napi_get_cb_info(
            raw,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            null_mut(),
            &mut data,
        )
    };
    let result = env.check(status, "napi_get_cb_info").and_then(|()| {
        // SAFETY: `export` registered this function with a `Handler` as its data pointer.
        let handler: Handler = unsafe { std::mem::transmute::<*mut c_void, Handler>(data) };
        catch_unwind(AssertUnwindSafe(|| handler(env, &argv))).unwrap_or_else(|panic| {
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
    });
    match result {
        Ok(v) => v,
        Err(e) => {
            env.throw(e);
            null_mut()
        }
    }
}

/// Adds `exports[name] = function` calling `handler`.
///
/// # Safety
/// `raw` and `exports` must be the arguments Node passed to module registration.
pub unsafe fn export(raw: napi_env, exports: napi_value, name: &CStr, handler: Handler) -> bool {
    let mut f = null_mut();
    // SAFETY: per the contract; `handler` is a plain fn pointer, valid forever,
    // stored as the data pointer that `trampoline` turns back into a `Handler`.
    unsafe {
        napi_create_function(
            raw,
            name.as_ptr(),
            usize::MAX,
            trampoline,
            handler as *mut c_void,
            &mut f,
        ) == NAPI_OK
            && napi_set_named_property(raw, exports, name.as_ptr(), f) == NAPI_OK
    }
}
