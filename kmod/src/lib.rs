//! listenq.ko: the FreeBSD listen queue and accept filters in Rust.
//!
//! kern/ is the thin safe layer over the kernel (the only FFI); hooks,
//! listeners and module are kernel-facing logic built on it; the policy and
//! parsers live in the listenq-policy and listenq-accf crates, which know
//! nothing of the kernel.
#![no_std]

extern crate alloc;

pub mod kern;

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
