//! listenq.ko: the FreeBSD listen queue and accept filters in Rust.
//!
//! kern/ is the thin safe layer over the kernel (the only FFI, and the only
//! place `unsafe` is allowed); accf, filters, listeners, defaults and
//! module are kernel-facing logic built on it; the policy and parsers live in the
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

mod accf;
mod accf_names;
mod defaults;
mod filters;
mod lifecycle;
mod listeners;
mod state;

#[global_allocator]
static ALLOC: kern::alloc::KernelMalloc = kern::alloc::KernelMalloc;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kern::print::panic(info)
}
