//! What every overlink plugin needs besides its bindings, in `no_std`.
//!
//! A plugin imports nothing (no WASI), so it cannot use `std`. This crate gives it:
//!
//! - a global allocator (`dlmalloc` over `memory.grow`) and the `cabi_realloc` export the
//!   canonical ABI needs (`std` provides it on `wasm32-wasip2`, `wit-bindgen` does not);
//! - a panic handler that traps (the host then fails the hook closed);
//! - `memcmp`/`bcmp`, which a `no_std` build on `wasm32-wasip2` otherwise lacks;
//! - [`Config`]: the JSON configuration `init` receives, read with messages that name the key;
//! - [`Global`]: a place for the state `init` builds and the hooks read.
//!
//! A plugin crate must link it: `extern crate support;` (or use any item of it).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod config;
pub mod json;

pub use config::Config;

use core::cell::RefCell;

// `memcmp` and `bcmp` are not compiler intrinsics on wasm (`memcpy`/`memset` are: bulk memory),
// and on `wasm32-wasip2` `compiler_builtins` leaves them to libc. Take them from the toolchain's
// own wasi-libc archive: the linker pulls only those members, which import nothing. Without
// this, the linker would turn them into imports from `env`, which the component encoder refuses.
#[cfg(target_arch = "wasm32")]
#[link(name = "c")]
extern "C" {}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocator export. `std` provides it on `wasm32-wasip2`; a `no_std` guest
/// must, and `wit-bindgen` does not on that target.
///
/// # Safety
///
/// Called only by the canonical ABI, with `old_ptr`/`old_len`/`align` describing an allocation
/// this function returned earlier (or `old_len == 0` for a new one).
#[cfg(target_arch = "wasm32")]
#[no_mangle]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use alloc::alloc::{alloc, realloc, Layout};

    if new_len == 0 {
        // A zero-sized allocation: any well-aligned non-null pointer will do.
        return align as *mut u8;
    }
    let ptr = if old_len == 0 {
        match Layout::from_size_align(new_len, align) {
            // SAFETY: `layout` has a non-zero size.
            Ok(layout) => unsafe { alloc(layout) },
            Err(_) => core::ptr::null_mut(),
        }
    } else {
        match Layout::from_size_align(old_len, align) {
            // SAFETY: the caller guarantees `old_ptr` came from this allocator with this layout;
            // `new_len` is non-zero.
            Ok(layout) => unsafe { realloc(old_ptr, layout, new_len) },
            Err(_) => core::ptr::null_mut(),
        }
    };
    if ptr.is_null() {
        // Out of memory (the host's cap) or a bad layout: trap, the host fails the hook closed.
        core::arch::wasm32::unreachable()
    }
    ptr
}

/// Mutable state shared by a plugin's hooks: what `init` parsed, counters.
///
/// An instance is single-threaded and the host never re-enters it, so a `RefCell` in a `static`
/// is all that is needed; this wrapper only states that to the compiler.
#[derive(Debug)]
pub struct Global<T>(RefCell<T>);

// SAFETY: plugins are built without the `atomics` target feature (checked below), so a wasm
// instance runs on exactly one thread and the `RefCell` is never reached from two threads.
#[cfg(not(target_feature = "atomics"))]
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// A global holding `value`.
    pub const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    /// Runs `f` with the value. Panics (traps) if called from inside another `with`.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}
