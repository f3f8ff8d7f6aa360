//! The safe wrapper layer over the kernel, and the only FFI: everything
//! that touches the bindings or holds `unsafe` is here. Kernel objects
//! cross into the rest of the module as types whose lifetimes say what
//! keeps them live or locked: a borrowed `SocketRef<'a>`, an owned
//! `SocketHold`, a `SysctlReq<'a>`, a mutex `MutexGuard` (kern::sync, with the `Revocable` gate and the counted `ARef`), the one `Module` value a counted thread reaches through its `InFlight` token, a receive buffer
//! `RcvLocked<'a>` and a listener `ListenLocked<'a>` whose locks the
//! caller holds, a listener's `Pending` through a counted `PendingRef`
//! and its mutex guard `PendingLocked<'a>`, an accept filter's state
//! `Arg<'a, T>`, a hold queue `HeldConns` whose keys are sockets listenq
//! tagged (`Tagged<'a>`).
//! entry/ holds the functions the kernel and the C glue call.

pub mod accf;
pub mod alloc;
pub mod defaults;
pub mod deliver;
pub mod entry;
pub mod errno;
pub mod filter_arg;
pub mod held_conns;
pub mod inflight;
pub mod inherit;
pub mod listen;
pub mod module;
pub mod pending;
pub mod percpu;
pub mod print;
pub mod protosw;
pub mod sdt;
pub mod sockbuf;
pub mod socket;
pub mod sockref;
pub mod stat;
pub mod sync;
pub mod sysctl;
pub mod time;
pub mod work;
