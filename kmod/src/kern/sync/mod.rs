//! Synchronisation and shared ownership, in the manner of Rust-for-Linux's
//! `kernel::sync`: every lock of listenq's is a `Mutex<T>` (mtx(9) in
//! place, with the data it guards and an RAII guard that tells WITNESS the
//! real caller), what lives from load to unload is a `Revocable<T>` (a
//! gate unload closes, reached through a thread's `InFlight` token), and
//! every object that several owners share is an `ARef<T>` (a counted
//! reference, allocated fallibly, freed by whoever drops the last).

mod aref;
mod mutex;
mod revocable;

pub use aref::ARef;
pub use mutex::{Mutex, MutexGuard};
pub use revocable::{ModEvent, Revocable, Revoked};
