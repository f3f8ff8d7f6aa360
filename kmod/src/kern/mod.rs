//! The safe wrapper layer over the kernel: the only place besides the
//! bindings crate where `unsafe` talks to FreeBSD. Everything above it works
//! with these types and the pure policy crates.

pub mod alloc;
pub mod defaults;
pub mod errno;
pub mod mtx;
pub mod print;
pub mod protosw;
pub mod socket;
pub mod sysctl;
pub mod time;
pub mod walk;
pub mod work;
