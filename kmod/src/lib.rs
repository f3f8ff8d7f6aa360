//! listenq.ko: the FreeBSD listen queue and accept filters in Rust.
//!
//! kern/ is the thin safe layer over the kernel (the only FFI, and the only
//! place `unsafe` is allowed); hooks, listeners and module are
//! kernel-facing logic built on it; the policy and parsers live in the
//! listenq-policy and listenq-accf crates, which know nothing of the
//! kernel.
#![no_std]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
// Checked by `cargo clippy -p listenq` for the host target (tests/run-all.sh).
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[allow(unsafe_code)]
pub mod kern;

// TODO(issue 9): accf.rs still calls the bindings and uses the
// lifetime-less `Socket`; move that into kern/ and drop this allowance.
#[allow(unsafe_code)]
mod accf;
mod defaults;
mod hooks;
mod listeners;
mod module;

#[global_allocator]
static ALLOC: kern::alloc::KernelMalloc = kern::alloc::KernelMalloc;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kern::print::panic(info)
}
