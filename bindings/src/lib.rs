//! Raw bindings to the FreeBSD kernel, generated at build time by bindgen
//! from the headers in `SYSDIR` with the same flags a kernel module uses.
//! Nothing here is safe to call directly: kmod/src/kern wraps it.
#![no_std]
#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
