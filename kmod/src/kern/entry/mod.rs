//! Every function the kernel or the C glue calls into listenq. Each one counts itself in
//! (InFlight), turns the raw pointers it was given into the borrowed types
//! of kern/, whose lifetimes end with the call, and calls a safe function
//! of the module's logic.

pub mod accf;
pub mod defaults;
pub mod module;
pub mod protosw;
pub mod sysctl;
pub mod upcall;
