//! Listen-queue policy for listenq, written without kernel types so that it
//! runs and is tested on any host.
//!
//! The kernel module (kmod/) owns the FFI boundary: it turns kernel state into
//! the plain values these modules take, and applies the decisions they return.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod backlog;
pub mod children;
pub mod fair;
pub mod holdq;
pub mod keymap;
pub mod latency;
pub mod overflow;
pub mod ratelimit;
pub mod registry;
pub mod table;
pub mod xlisten;
