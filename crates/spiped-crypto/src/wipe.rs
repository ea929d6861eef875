//! Zeroing of secret memory that the optimiser may not remove.

use std::sync::atomic::{compiler_fence, Ordering};

/// Overwrites every element of `v` with its zero value via volatile writes.
pub(crate) fn wipe<T: Copy + Default>(v: &mut [T]) {
    for x in v.iter_mut() {
        // SAFETY: `x` is a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(x, T::default()) };
    }
    compiler_fence(Ordering::SeqCst);
}
