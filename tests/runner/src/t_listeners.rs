//! RESERVED for the module's own sysctls and per-listener statistics
//! (kern.ipc.listenq.*). Called while listenq is loaded, after the second
//! run of the listen(2) semantic suite. Add tests here; each must report
//! through `tap` (tap.ok / tap.check / tap.skip).
//!
//! It deliberately reports nothing yet: a stub is not a test.

use crate::env::Env;
use crate::tap::Tap;

pub fn run(_tap: &mut Tap, _env: &Env) {}
