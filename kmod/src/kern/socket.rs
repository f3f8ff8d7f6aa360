//! `struct socket` as the safe layer sees it:
//!
//! - `SocketRef`: borrowed for the duration of a kernel call into
//!   listenq (a protocol-switch entry, an upcall) or of a `SocketHold`;
//!   the lifetime keeps it from outliving what keeps the socket live.
//! - `SocketHold` (sockref.rs): an owned reference, soref(9) on creation
//!   and sorele(9) on drop.
//! - with a lock held for the call: `RcvLocked` and `SockLocked`
//!   (sockbuf.rs), `ListenLocked` (accf.rs).

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::kern::errno::{Errno, KResult};
use crate::kern::sysctl::SysctlReq;
use listenq_bindings as sys;
use listenq_policy::children::{CompQueue, Seen};
use listenq_policy::overflow::Stamp;
use listenq_policy::registry::{Local, Owner, QueueSample, SUN_PATH_LEN};

/// A live socket, borrowed for `'a`.
#[derive(Clone, Copy)]
pub struct SocketRef<'a> {
    so: NonNull<sys::socket>,
    _live: PhantomData<&'a sys::socket>,
}

const AF_INET: i32 = 2;
const AF_LOCAL: i32 = 1;
const AF_INET6: i32 = 28;

impl<'a> SocketRef<'a> {
    /// # Safety
    /// `so` points to a socket that stays live for `'a`: the kernel call
    /// that handed it over has not returned, or a reference is held.
    pub unsafe fn from_raw(so: *mut sys::socket) -> Option<SocketRef<'a>> {
        Some(SocketRef {
            so: NonNull::new(so)?,
            _live: PhantomData,
        })
    }

    /// # Safety
    /// As for `from_raw`.
    pub(super) unsafe fn from_non_null(so: NonNull<sys::socket>) -> SocketRef<'a> {
        SocketRef {
            so,
            _live: PhantomData,
        }
    }

    pub(super) fn as_non_null(self) -> NonNull<sys::socket> {
        self.so
    }

    pub(super) fn as_ptr(self) -> *mut sys::socket {
        self.so.as_ptr()
    }

    /// The key listenq files the socket under (its address). Safe code
    /// never turns one back into a socket: only `socket_of_key` does, in
    /// this layer, where a hold queue's argument says the socket is live.
    pub fn key(self) -> usize {
        self.so.as_ptr() as usize
    }

    /// The address of the field at `off` (an offset offsets_glue.h has
    /// the compiler compute) as a `T`.
    pub(super) fn field<T>(self, off: sys::lq_offsets) -> *mut T {
        self.so
            .as_ptr()
            .cast::<u8>()
            .wrapping_add(off as usize)
            .cast::<T>()
    }

    /// The protocol switch, as an identity to look the hooks up by.
    pub fn proto(self) -> *mut sys::protosw {
        // SAFETY: live for 'a; so_proto (a pointer at this offset, set in
        // socreate()/solisten_clone() and never changed) is read as is.
        unsafe {
            self.field::<*mut sys::protosw>(sys::lq_offsets_LQ_OFF_SO_PROTO)
                .read()
        }
    }

    /// pr_close of a listener, after the protocol's own: a TCP listener is
    /// kept one network-epoch grace period past its close (socket_glue.c
    /// lq_tcp_listen_close() says why). Never sleeps. Err(ENOMEM) when it
    /// could not be: the close is then the kernel's own.
    pub fn listen_close_grace(self) -> KResult<()> {
        // SAFETY: pr_close's argument, live until soclose() returns, with
        // the closing descriptor's reference; the helper takes one more
        // and neither sleeps nor needs a lock.
        Errno::check(unsafe { sys::lq_tcp_listen_close(self.so.as_ptr()) })
    }

    pub fn is_listening(self) -> bool {
        // SAFETY: live; so_options is an aligned int, read as one atomic
        // load (SOLISTENING() reads it without a lock as well: the bit is
        // set once, by solisten_proto(), and never cleared).
        let opts = unsafe {
            (*self.field::<core::sync::atomic::AtomicI32>(sys::lq_offsets_LQ_OFF_SO_OPTIONS))
                .load(core::sync::atomic::Ordering::Relaxed)
        };
        opts & sys::lq_offsets_LQ_SO_ACCEPTCONN as i32 != 0
    }

    /// so_gencnt: unique for the kernel's lifetime, set in soalloc() and
    /// never changed.
    pub fn gencnt(self) -> u64 {
        // SAFETY: live; an aligned so_gen_t (uint64_t) written once before
        // the socket was published.
        unsafe { self.field::<u64>(sys::lq_offsets_LQ_OFF_SO_GENCNT).read() }
    }

    /// Whether the socket may carry listenq's destructor (set only by
    /// kern/sockbuf.rs `SockLocked::tag`), read without the socket lock:
    /// the caller says why
    /// that cannot miss a tag, and confirms a yes under the lock.
    pub(super) fn maybe_tagged(self) -> bool {
        // SAFETY: a const pointer, initialized statically in tag_glue.c.
        let ours = unsafe { sys::lq_so_dtor_ptr }.map_or(0, |f| f as usize);
        self.dtor_is(ours)
    }

    fn dtor_is(self, dtor: usize) -> bool {
        // SAFETY: live; so_dtor is an aligned pointer, read as one atomic
        // load (as atomic_load_ptr() in C).
        let d = unsafe {
            (*self.field::<core::sync::atomic::AtomicUsize>(sys::lq_offsets_LQ_OFF_SO_DTOR))
                .load(core::sync::atomic::Ordering::Relaxed)
        };
        d == dtor
    }

    /// The listener's overflow state (sol_overcount, sol_lastover).
    ///
    /// # Safety
    /// The caller holds SOLISTEN_LOCK(self), which guards both.
    pub unsafe fn overflow_locked(self) -> (i32, Stamp) {
        // SAFETY: live and locked (contract); an int and a struct timeval
        // (two 64-bit fields on amd64) at these offsets.
        unsafe {
            let count = self
                .field::<i32>(sys::lq_offsets_LQ_OFF_SOL_OVERCOUNT)
                .read();
            let tv = self.field::<[i64; 2]>(sys::lq_offsets_LQ_OFF_SOL_LASTOVER);
            (
                count,
                Stamp {
                    sec: (*tv)[0],
                    usec: (*tv)[1],
                },
            )
        }
    }

    /// Queue state; takes and drops the listen lock. `None` if the socket
    /// is not listening.
    pub fn sample(self) -> Option<QueueSample> {
        let mut q = sys::lq_qsample::default();
        // SAFETY: live; `q` is a valid out-pointer for the call.
        let rc = unsafe { sys::lq_solisten_sample(self.as_ptr(), &mut q) };
        (rc == 0).then(|| from_c(&q))
    }

    /// Queue state when the caller already holds the listen lock (upcalls).
    ///
    /// # Safety
    /// The caller holds SOLISTEN_LOCK(self).
    pub unsafe fn sample_locked(self) -> QueueSample {
        let mut q = sys::lq_qsample::default();
        // SAFETY: live, listening and locked per the contract.
        unsafe { sys::lq_solisten_sample_locked(self.as_ptr(), &mut q) };
        from_c(&q)
    }

    pub fn local(self) -> Local {
        let mut l = sys::lq_local::default();
        // SAFETY: live; `l` is a valid out-pointer.
        unsafe { sys::lq_so_local(self.as_ptr(), &mut l) };
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
                len: u8::try_from(n.min(SUN_PATH_LEN)).unwrap_or(0),
            },
            _ => Local::Unknown,
        }
    }

    /// For a TCP socket, whether its pcb takes IPv4 and IPv6 (INP_IPV4 and
    /// INP_IPV6 of inp_vflag): (false, false) for other sockets. Fixed
    /// once the socket listens (socket_glue.c says why).
    pub fn inp_versions(self) -> (bool, bool) {
        // SAFETY: live; reads the pcb's flags, without writing.
        let v = unsafe { sys::lq_so_inp_versions(self.as_ptr()) } as u32;
        (v & sys::LQ_INP_IPV4 != 0, v & sys::LQ_INP_IPV6 != 0)
    }

    /// The credential the socket was created with: user and jail.
    pub fn owner(self) -> Owner {
        let mut o = sys::lq_owner::default();
        // SAFETY: live; so_cred never changes; `o` is an out-pointer.
        unsafe { sys::lq_so_owner(self.as_ptr(), &mut o) };
        Owner {
            uid: o.uid,
            jid: o.jid,
        }
    }

    /// Nothing but listenq's own `ours` references keeps it: soclose()
    /// has run (through the kernel's pr_close, or listenq would have
    /// forgotten it) and no descriptor can reach it again.
    pub fn orphaned(self, ours: u32) -> bool {
        // SAFETY: live; reads a count.
        unsafe { sys::lq_so_orphaned(self.as_ptr(), ours) != 0 }
    }

    /// For listen(2) on a TCP socket: EINVAL when its connection is not
    /// over (socket_glue.c says why 14 lets a half-closed one through).
    pub fn tcp_listen_check(self) -> KResult<()> {
        // SAFETY: live (a pr_listen call in progress); the helper takes
        // the inpcb lock itself and reads the tcpcb under it.
        Errno::check(unsafe { sys::lq_tcp_listen_check(self.as_ptr()) })
    }

    /// After a TCP listen(2) succeeded: stops any timer a connection that
    /// raced the check above brought into LISTEN (socket_glue.c).
    pub fn tcp_listen_done(self) {
        // SAFETY: live (the pr_listen call that made it a listener is in
        // progress); the helper takes the inpcb lock itself.
        unsafe { sys::lq_tcp_listen_done(self.as_ptr()) }
    }

    /// The name of the accept filter set on the listener, whichever module
    /// runs it; all zero when none.
    pub fn filter_name(self) -> [u8; 16] {
        let mut n = [0 as cty::c_char; 16];
        // SAFETY: live; `n` has the 16 bytes the helper writes.
        unsafe { sys::lq_so_filter_name(self.as_ptr(), n.as_mut_ptr()) };
        n.map(|c| c as u8)
    }

    /// Whether the process reading `req` may see this socket (the rules
    /// netstat(1) and sockstat(1) follow).
    pub fn visible_to(self, req: &SysctlReq<'_>) -> bool {
        // SAFETY: live; `req` is the live request of a running handler.
        unsafe { sys::lq_so_visible(self.as_ptr(), req.as_ptr()) != 0 }
    }
}

/// A listener's completed queue (sol_comp), walked under SOLISTEN_LOCK,
/// which the kernel holds for the listen upcall: the TAILQ links read in
/// place, as TAILQ_LAST(), TAILQ_PREV() and TAILQ_NEXT() do. Built only by
/// `SocketRef::sol_comp_locked` and kept inside kern/ (the upcall walks it
/// with `each_new`, which passes back only connections the queue gave):
/// its methods trust that a `Seen` they get is on the queue.
pub(in crate::kern) struct SolComp<'a> {
    head: SocketRef<'a>,
}

/// The two pointers of a TAILQ_HEAD or TAILQ_ENTRY: first/next, then
/// last/prev (a pointer to the previous element's next link).
#[repr(C)]
struct Links {
    next: *mut sys::socket,
    prev: *mut *mut sys::socket,
}

impl SolComp<'_> {
    /// What TAILQ_LAST() and TAILQ_PREV() read: `link` points at a next
    /// link of the queue (a head's first or an entry's next, each the
    /// first field of a `Links`); the `prev` beside it points at another
    /// link, and the element that one names is returned.
    ///
    /// # Safety
    /// `link` is the address of a live link of this queue (the listener
    /// is locked).
    unsafe fn before(link: *mut *mut sys::socket) -> Option<Seen> {
        // SAFETY: caller; a link of the queue is a TAILQ head or entry.
        let back = unsafe { (*link.cast::<Links>()).prev };
        // SAFETY: `back` is a link of the same locked queue.
        let so = unsafe { *back };
        Self::seen(so)
    }

    fn seen(so: *mut sys::socket) -> Option<Seen> {
        let so = NonNull::new(so)?;
        // SAFETY: a socket on the locked queue is live (leaving the queue
        // needs the lock).
        let s = unsafe { SocketRef::from_non_null(so) };
        Some(Seen {
            so: s.key(),
            gen: s.gencnt(),
        })
    }

    fn entry(c: Seen) -> *mut Links {
        (c.so as *mut u8)
            .wrapping_add(sys::lq_offsets_LQ_OFF_SO_LIST as usize)
            .cast::<Links>()
    }
}

impl CompQueue for SolComp<'_> {
    fn last(&self) -> Option<Seen> {
        let head = self.head.field::<Links>(sys::lq_offsets_LQ_OFF_SOL_COMP);
        // SAFETY: the listener is live and locked (`sol_comp_locked`);
        // its head's last link is a link of the queue.
        unsafe { Self::before((*head).prev) }
    }

    fn prev(&self, c: Seen) -> Option<Seen> {
        // SAFETY: `c` is on the locked queue (the type's contract), so
        // its entry's prev is a link of the queue.
        unsafe { Self::before((*Self::entry(c)).prev) }
    }

    fn next(&self, c: Seen) -> Option<Seen> {
        // SAFETY: as prev().
        Self::seen(unsafe { (*Self::entry(c)).next })
    }
}

impl<'a> SocketRef<'a> {
    /// The completed queue of this listener.
    ///
    /// # Safety
    /// The caller holds SOLISTEN_LOCK(self) for as long as the value
    /// lives, and passes it only `Seen`s it returned.
    pub(in crate::kern) unsafe fn sol_comp_locked(self) -> SolComp<'a> {
        SolComp { head: self }
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

/// The socket a key (`SocketRef::key`) names, for the C side.
///
/// # Safety
/// The socket is live for as long as the caller uses the pointer: the
/// key is in a hold queue whose state's mutex the caller holds, or its
/// entry owns references on it (kern/held_conns.rs says why either is
/// enough).
pub(in crate::kern) unsafe fn socket_of_key(key: usize) -> *mut sys::socket {
    key as *mut sys::socket
}

/// Waits until every listener kept past its close by
/// `SocketRef::listen_close_grace` has been let go (their epoch callbacks
/// are this module's code). Unload, once no pr_close of listenq's can run
/// any more; sleeps.
pub fn listen_close_graces_drain() {
    // SAFETY: no arguments; the caller may sleep and holds no lock.
    unsafe { sys::lq_close_fini() }
}
