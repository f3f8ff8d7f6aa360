//! MOD_LOAD / MOD_QUIESCE / MOD_UNLOAD.
//!
//! # Why unloading is opt-in
//!
//! listenq puts its functions where the kernel calls through pointers:
//! the protocol switches (pr_listen, pr_accept, pr_close), listen upcalls,
//! accept filters (accf_create, accf_callback) and sysctl handlers. Unload
//! takes every pointer back and then waits until no thread is counted
//! inside the module (kern::inflight::InFlight). What it cannot see is a thread
//! that has already loaded one of those pointers but not yet executed the
//! module's first instruction (preempted between the load and the call in
//! soclose(), solisten(), accept_filt_setopt(), ...). The kernel keeps no
//! count of such threads and offers no primitive to wait for them (no
//! epoch covers protocol switch calls), so no ordering of unload steps can
//! prove that none exists; a pause only makes it unlikely. The other way
//! out, a resident trampoline that counts callers before they enter the
//! module, needs code that outlives the module, i.e. a kernel change.
//!
//! So listenq follows FreeBSD's own precedent for accept filters
//! (net.accf.unloadable, uipc_accf.c): kldunload is refused with
//! EOPNOTSUPP, as stock accf modules refuse it, unless the administrator
//! sets kern.ipc.listenq.unloadable=1 and accepts that residual window
//! (listenq(4), UNLOADING). Everything else unload does is safe by
//! construction, as the comments below argue.

use crate::accf_names;
use crate::kern::entry;
use crate::kern::errno::{Errno, KResult};
use crate::kern::inherit::{self, Inherit};
use crate::kern::module::Module;
use crate::kern::sync::{ModEvent, Revoked};
use crate::kern::{protosw, stat, sysctl};
use crate::kprintln;
use crate::listeners;

// # The lifecycle as types
//
// The module event handler holds a `ModEvent` (one event at a time:
// kld_sx); the Module value (kern/module.rs) is published at load and
// lent to it by `Module::peek`. Unload is a chain of steps, each consuming
// one phase and returning the next, or, where a step may refuse, the
// phase it was given, so that backing out is the only thing left to do
// with it:
//
//   Loaded --take_names--> NamesTaken --detach_sysctls--> Unreachable
//     ^                        |                              |
//     +------give_back---------+                      unhook -+
//                                                             v
//                                  Drained <--drain(ModEvent)-- Unhooked
//                                     |
//                                     +--free
//
// Only this file can make a phase (each has a private field). The first
// three borrow the module from the `ModEvent`; `Unhooked` borrows nothing,
// so that `drain` can take the `ModEvent` mutably to take the module back
// (`Module::revoke`), which no borrow of the module may outlive; `Drained`
// owns it then, and dropping it frees it.

/// Everything is in: hooks, registry, sysctls, filter names.
struct Loaded<'a>(&'a Module);
/// listenq's accept filter names are off the list: no listener uses or
/// can start using one of its filters (accf_names::unregister).
struct NamesTaken<'a>(&'a Module);
/// Neither names nor sysctls: nothing new reaches listenq but through the
/// protocol switches and the upcalls still installed.
struct Unreachable<'a>(&'a Module);
/// No pointer of listenq's is left in the kernel's structures, and no
/// listener is registered; threads may still be inside.
struct Unhooked(());
/// Every counted thread has left and the module value is unload's own:
/// only listenq's memory remains.
struct Drained<'e>(Option<Revoked<'e, Module>>);

impl<'a> Loaded<'a> {
    /// The module, if load finished (a failed load took it back).
    fn take(ev: &'a ModEvent) -> Option<Loaded<'a>> {
        Module::peek(ev).map(Loaded)
    }

    /// Held connections carry listenq's upcall and destructor: while any
    /// listener uses a listenq filter, refuse rather than free that code.
    fn take_names(self) -> Result<NamesTaken<'a>, Loaded<'a>> {
        if accf_names::unregister(self.0, &entry::accf::CALLBACKS) {
            Ok(NamesTaken(self.0))
        } else {
            Err(self)
        }
    }
}

impl<'a> NamesTaken<'a> {
    fn give_back(self) -> Loaded<'a> {
        accf_names::reopen(self.0, &entry::accf::CALLBACKS);
        Loaded(self.0)
    }

    /// sysctl_ctx_free() waits for handlers already running; after it no
    /// handler of listenq's can start.
    fn detach_sysctls(self) -> Result<Unreachable<'a>, NamesTaken<'a>> {
        match sysctl::detach() {
            Ok(()) => Ok(Unreachable(self.0)),
            Err(_) => Err(self),
        }
    }
}

impl Unreachable<'_> {
    /// Takes every pointer back. Cannot fail: nothing here allocates or
    /// waits for an event listenq would have to cause.
    fn unhook(self) -> Unhooked {
        let m = self.0;
        // Rows hold a socket reference each, and close_all() takes them
        // all without allocating, so no row can be left naming a freed
        // listener (one that closed through the kernel's pr_close after
        // restore() below is simply released here or kept alive until its
        // reference is dropped). Upcalls: see lq_upcalls_closed in
        // socket_glue.c.
        listeners::close_all(m);
        // Nothing registers any more (the registry is closed, no filter
        // can be created): free what is left while the lock still works.
        let mut r = m.registry();
        r.reg.clear();
        r.accf.clear();
        drop(r);
        protosw::restore();
        Unhooked(())
    }
}

impl Unhooked {
    /// No new thread can enter through a pointer listenq still owns, and
    /// no thread gets the module from now on; every thread already
    /// counted leaves in bounded time, and this returns once they have.
    fn drain(self, ev: &mut ModEvent) -> Drained<'_> {
        let owned = Module::revoke(ev);
        // The residual window (see the top of this file): not a proof,
        // only a margin for a thread preempted between a pointer load and
        // the call.
        crate::kern::time::pause_ms(20);
        protosw::clear();
        Drained(owned)
    }
}

impl Drained<'_> {
    /// Frees what is left; also a failed load's way out (`load`).
    fn free(self) {
        // Listeners closed before the hooks went are let go (their
        // callbacks are this module's code).
        crate::kern::socket::listen_close_graces_drain();
        drop(self.0);
        stat::fini();
    }
}

pub fn load(ev: &mut ModEvent) -> KResult<()> {
    // Before the hooks: the probe's own sockets must not reach them.
    let inherit = inherit::probe();
    stat::init();
    if !Module::publish(ev) {
        // The kernel does not load a module twice.
        stat::fini();
        return Err(Errno::EEXIST);
    }
    let n = entry::protosw::install();
    if n == 0 {
        // Nothing was installed: nothing can be inside listenq.
        Unhooked(()).drain(ev).free();
        kprintln!("no stream protocol to hook (no TCP, no local sockets?)");
        return Err(Errno::ENOENT);
    }
    // After the hooks: a listener adopted now is one whose close goes
    // through listenq's pr_close (or, if it started closing just before,
    // is pruned once only listenq's references are left; rows hold a
    // reference either way).
    listeners::adopt_existing();
    // Before the filters: the knobs' loader tunables are fetched when
    // their OIDs are added, and a listener may attach a filter as soon as
    // its name is registered.
    sysctl::attach();
    let f = accf_names::register(&entry::accf::CALLBACKS);
    kprintln!(
        "loaded: {} protocol switches hooked, {} accept filters registered",
        n,
        f
    );
    kprintln!("{}", inherit_line(inherit));
    Ok(())
}

/// The one console line on which path accept filters take here
/// (kern.ipc.listenq.accf_inherit says the same).
fn inherit_line(i: Inherit) -> &'static str {
    match i {
        Inherit::Yes => {
            "accept filters: new connections inherit SO_ACCEPTFILTER; the kernel runs the filters (accf_inherit=1)"
        }
        Inherit::No => {
            "accept filters: new connections do not inherit SO_ACCEPTFILTER (unpatched kernel); listenq's filters hold them from its listen upcall, stock accf modules hold nothing (accf_inherit=0)"
        }
        Inherit::Unknown => {
            "accept filters: could not find out whether new connections inherit SO_ACCEPTFILTER; listenq's filters hold them from its listen upcall (accf_inherit=-1)"
        }
    }
}

fn refuse_unloadable() -> Errno {
    kprintln!(
        "kldunload refused: kern.ipc.listenq.unloadable is 0 (set it to 1 to allow unloading; see listenq(4), UNLOADING)"
    );
    Errno::EOPNOTSUPP
}

pub fn unload(ev: &mut ModEvent) -> KResult<()> {
    // After a failed MOD_LOAD the kernel sends MOD_UNLOAD too: load
    // cleaned up already.
    let Some(loaded) = Loaded::take(ev) else {
        return Ok(());
    };
    if !sysctl::unloadable() {
        return Err(refuse_unloadable());
    }
    let names = match loaded.take_names() {
        Ok(n) => n,
        Err(_) => {
            kprintln!("unload refused: accept filters in use (remove them or close the listeners)");
            return Err(Errno::EBUSY);
        }
    };
    let gone = match names.detach_sysctls() {
        Ok(u) => u,
        Err(names) => {
            names.give_back();
            kprintln!("unload refused: its sysctls could not be removed");
            return Err(Errno::EBUSY);
        }
    };
    gone.unhook().drain(ev).free();
    kprintln!("unloaded");
    Ok(())
}

/// MOD_QUIESCE cannot refuse with EOPNOTSUPP (module_quiesce() reads it
/// as "no opinion"), so the unloadable check is MOD_UNLOAD's alone, as in
/// stock's accept_filt_generic_mod_event(); that also covers
/// `kldunload -f`, which skips MOD_QUIESCE.
pub fn quiesce(ev: &ModEvent) -> KResult<()> {
    if sysctl::unloadable() && Module::peek(ev).is_some_and(accf_names::busy) {
        Err(Errno::EBUSY)
    } else {
        Ok(())
    }
}
