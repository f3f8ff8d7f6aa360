//! Synchronisation and shared ownership, in the manner of Rust-for-Linux's
//! `kernel::sync`: every lock of listenq's is a `Mutex<T>` (mtx(9) in
//! place, with the data it guards and an RAII guard that tells WITNESS the
//! real caller), the module's static ones are `GlobalMutex<T>` (a
//! `Mutex<T>` with a gate that unload closes), and every object that
//! several owners share is an `ARef<T>` (a counted reference, allocated
//! fallibly, freed by whoever drops the last).

mod aref;
mod global;
mod mutex;

pub use aref::ARef;
pub use global::GlobalMutex;
pub use mutex::{Mutex, MutexGuard};
