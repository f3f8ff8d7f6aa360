//! TODO(issue 9): only accf.rs still names `hooks::InFlight`; the count
//! lives in kern/inflight.rs and the protocol-switch entries in
//! kern/entry/protosw.rs. Remove this file when accf.rs imports it from
//! there.

pub use crate::kern::inflight::InFlight;
