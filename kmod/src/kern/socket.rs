//! A borrowed `struct socket *` with the accessors listenq needs. The
//! pointer is only valid while the kernel guarantees it (during a protocol
//! switch call or an upcall, or while listenq holds a reference), which is
//! what the unsafe constructor asks the caller to promise.

use crate::kern::sysctl::SysctlReq;
use listenq_bindings as sys;
use listenq_policy::overflow::Stamp;
use listenq_policy::registry::{Local, Owner, QueueSample};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Socket(*mut sys::socket);

// SAFETY: a socket is a shared kernel object; this is only its address,
// and every access goes through functions that take the right locks.
unsafe impl Send for Socket {}

const AF_INET: i32 = 2;
const AF_LOCAL: i32 = 1;
const AF_INET6: i32 = 28;

impl Socket {
    /// # Safety
    /// `so` must point to a live socket for as long as this value is used.
    pub unsafe fn from_raw(so: *mut sys::socket) -> Socket {
        Socket(so)
    }

    pub fn as_ptr(self) -> *mut sys::socket {
        self.0
    }

    /// The key listenq files the socket under.
    pub fn key(self) -> usize {
        self.0 as usize
    }

    pub fn proto(self) -> *mut sys::protosw {
        // SAFETY: live socket (constructor contract); so_proto never changes.
        unsafe { sys::lq_so_proto(self.0) }
    }

    pub fn is_listening(self) -> bool {
        // SAFETY: live socket; SOLISTENING reads one option bit.
        unsafe { sys::lq_so_listening(self.0) != 0 }
    }

    /// Queue state; takes and drops the listen lock. `None` if the socket
    /// is not listening.
    pub fn sample(self) -> Option<QueueSample> {
        let mut q = sys::lq_qsample::default();
        // SAFETY: live socket; `q` is a valid out-pointer for the call.
        let rc = unsafe { sys::lq_solisten_sample(self.0, &mut q) };
        (rc == 0).then(|| from_c(&q))
    }

    /// Queue state when the caller already holds the listen lock (upcalls).
    ///
    /// # Safety
    /// The caller holds SOLISTEN_LOCK(self).
    pub unsafe fn sample_locked(self) -> QueueSample {
        let mut q = sys::lq_qsample::default();
        // SAFETY: live, listening and locked per the contract.
        unsafe { sys::lq_solisten_sample_locked(self.0, &mut q) };
        from_c(&q)
    }

    pub fn local(self) -> Local {
        let mut l = sys::lq_local::default();
        // SAFETY: live socket; `l` is a valid out-pointer.
        unsafe { sys::lq_so_local(self.0, &mut l) };
        let n = usize::from(l.len);
        match l.family {
            AF_INET => {
                let mut a = [0u8; 4];
                a.copy_from_slice(l.addr.get(..4).unwrap_or(&[0; 4]));
                Local::Inet {
                    addr: a,
                    port: l.port,
                }
            }
            AF_INET6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(l.addr.get(..16).unwrap_or(&[0; 16]));
                Local::Inet6 {
                    addr: a,
                    port: l.port,
                }
            }
            AF_LOCAL => Local::Path {
                path: l.addr,
                len: u8::try_from(n.min(64)).unwrap_or(64),
            },
            _ => Local::Unknown,
        }
    }

    /// Gives the socket listenq's so_dtor, so listenq learns when it is
    /// freed; false if it already has another destructor.
    ///
    /// # Safety
    /// The caller holds SOCK_LOCK(self) (so_dtor's locking key).
    pub unsafe fn tag_locked(self) -> bool {
        // SAFETY: live and locked per the contract.
        unsafe { sys::lq_so_tag(self.0) != 0 }
    }

    /// Takes listenq's so_dtor back, if it is there.
    ///
    /// # Safety
    /// The caller holds SOCK_LOCK(self).
    pub unsafe fn untag_locked(self) {
        // SAFETY: live and locked per the contract.
        unsafe { sys::lq_so_untag_locked(self.0) }
    }

    /// The credential the socket was created with: user and jail.
    pub fn owner(self) -> Owner {
        let mut o = sys::lq_owner::default();
        // SAFETY: live socket; so_cred never changes; `o` is an out-pointer.
        unsafe { sys::lq_so_owner(self.0, &mut o) };
        Owner {
            uid: o.uid,
            jid: o.jid,
        }
    }

    /// Nothing but listenq's own `ours` references keeps it: soclose()
    /// has run (through the kernel's pr_close, or listenq would have
    /// forgotten it) and no descriptor can reach it again.
    pub fn orphaned(self, ours: u32) -> bool {
        // SAFETY: live socket (the caller holds references); reads a count.
        unsafe { sys::lq_so_orphaned(self.0, ours) != 0 }
    }

    /// The name of the accept filter set on the listener, whichever module
    /// runs it; all zero when none.
    pub fn filter_name(self) -> [u8; 16] {
        let mut n = [0 as cty::c_char; 16];
        // SAFETY: live socket; `n` has the 16 bytes the helper writes.
        unsafe { sys::lq_so_filter_name(self.0, n.as_mut_ptr()) };
        n.map(|c| c as u8)
    }

    /// Whether the process reading `req` may see this socket (the rules
    /// netstat(1) and sockstat(1) follow).
    pub fn visible_to(self, req: &SysctlReq) -> bool {
        // SAFETY: live socket; `req` is the live request of a handler.
        unsafe { sys::lq_so_visible(self.0, req.as_ptr()) != 0 }
    }

    /// soref(9): keeps the socket from being freed until `release`.
    pub fn hold(self) -> HeldSocket {
        // SAFETY: live socket, so its refcount is non-zero.
        unsafe { sys::lq_soref(self.0) };
        HeldSocket(self)
    }

    /// Claims the listen upcall if nobody else has (see glue.h).
    pub fn install_listen_upcall(self) {
        // SAFETY: live socket; the helper takes the listen lock.
        unsafe { sys::lq_listen_upcall_install(self.0) }
    }

    pub fn remove_listen_upcall(self) {
        // SAFETY: live socket; the helper takes the listen lock.
        unsafe { sys::lq_listen_upcall_remove(self.0) }
    }
}

/// A socket listenq holds a reference on; dropping it calls sorele(9),
/// which may free the socket, so it must be dropped without locks held.
pub struct HeldSocket(Socket);

impl HeldSocket {
    pub fn socket(&self) -> Socket {
        self.0
    }

    /// Keeps the reference without the handle (a registry row owns it);
    /// `from_owned_ref` gives it back.
    pub fn into_owned_ref(self) -> Socket {
        let s = self.0;
        core::mem::forget(self);
        s
    }

    /// # Safety
    /// `s` carries a reference given up by `into_owned_ref` and not yet
    /// taken back.
    pub unsafe fn from_owned_ref(s: Socket) -> HeldSocket {
        HeldSocket(s)
    }
}

impl Drop for HeldSocket {
    fn drop(&mut self) {
        // SAFETY: the reference taken in hold() keeps it live until here.
        unsafe { sys::lq_sorele(self.0.as_ptr()) }
    }
}

fn from_c(q: &sys::lq_qsample) -> QueueSample {
    QueueSample {
        qlen: q.qlen,
        incqlen: q.incqlen,
        qlimit: q.qlimit,
        overcount: q.overcount,
        lastover: Stamp {
            sec: q.lastover_sec,
            usec: q.lastover_usec,
        },
    }
}
