//! A connection as an accept filter's callback sees it: with its receive
//! buffer locked (SOCK_RECVBUF_LOCK), and, on the call from
//! soisconnected(), its socket lock too. Each lock is a type that exists
//! only while the lock is held, and offers only what that lock allows.
//!
//! The buffer's counters and flags are read here, one load each, at the
//! offsets offsets_glue.h has the compiler compute (lq_sb_offsets): the
//! callback runs twice for every filtered connection, and each reads only
//! what its filter needs. Only the walk of the mbuf chains is a call.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};

use crate::kern::socket::SocketRef;
use listenq_bindings as sys;

/// A live connection whose receive-buffer lock this thread holds for `'a`.
/// Only the callback's entry (kern/entry/accf.rs) makes one: the kernel
/// calls an upcall with that lock held until it returns.
pub struct RcvLocked<'a> {
    so: SocketRef<'a>,
}

/// The connection's SOCK_LOCK is held by this thread for `'r` as well.
pub struct SockLocked<'r> {
    so: SocketRef<'r>,
}

/// The address of the field at `off` (an `lq_sb_offsets` value) of `so`.
impl<'a> RcvLocked<'a> {
    /// # Safety
    /// `so` is live and this thread holds its receive-buffer lock for
    /// `'a`.
    pub(in crate::kern) unsafe fn from_raw(so: *mut sys::socket) -> Option<RcvLocked<'a>> {
        // SAFETY: the contract above covers liveness.
        let so = unsafe { SocketRef::from_raw(so) }?;
        Some(RcvLocked { so })
    }

    /// The key listenq files the connection under.
    pub fn key(&self) -> usize {
        self.so.key()
    }

    /// A u_int or short of the receive buffer.
    fn sb_u32(&self, off: sys::lq_sb_offsets) -> u32 {
        // SAFETY: live, and the receive-buffer lock, which guards the
        // struct sockbuf fields, is held (the type's invariant): a plain
        // read of an aligned u_int at this offset.
        unsafe { self.so.field::<u32>(off).read() }
    }

    fn sb_i16(&self, off: sys::lq_sb_offsets) -> i16 {
        // SAFETY: as sb_u32, for a short.
        unsafe { self.so.field::<i16>(off).read() }
    }

    /// At most this many data bytes are there for a reader (`copy`):
    /// sbavail(), which also counts address and control mbufs, but every
    /// byte `copy` can reach (up to the first mbuf not ready) is in it.
    pub fn avail_bound(&self) -> u32 {
        self.sb_u32(sys::lq_sb_offsets_LQ_SB_OFF_RCV_ACC)
    }

    /// SBS_CANTRCVMORE: the peer finished sending.
    pub fn eof(&self) -> bool {
        let st = self.sb_i16(sys::lq_sb_offsets_LQ_SB_OFF_RCV_STATE);
        st as i32 & sys::lq_sb_offsets_LQ_SB_SBS_CANTRCVMORE as i32 != 0
    }

    /// No space left in the receive buffer: sbspace() <= 0.
    pub fn full(&self) -> bool {
        let flags = self.sb_i16(sys::lq_sb_offsets_LQ_SB_OFF_RCV_FLAGS);
        if flags as i32 & sys::lq_sb_offsets_LQ_SB_SB_STOP as i32 != 0 {
            return true;
        }
        // As sbspace(): int differences of the u_int fields.
        let bleft =
            self.sb_u32(sys::lq_sb_offsets_LQ_SB_OFF_RCV_HIWAT)
                .wrapping_sub(self.sb_u32(sys::lq_sb_offsets_LQ_SB_OFF_RCV_CCC)) as i32;
        let mleft = self
            .sb_u32(sys::lq_sb_offsets_LQ_SB_OFF_RCV_MBMAX)
            .wrapping_sub(self.sb_u32(sys::lq_sb_offsets_LQ_SB_OFF_RCV_MBCNT))
            as i32;
        bleft.min(mleft) <= 0
    }

    /// soreadable(): sb_lowat bytes, an error, or EOF.
    pub fn readable(&self) -> bool {
        let avail = self.sb_u32(sys::lq_sb_offsets_LQ_SB_OFF_RCV_ACC);
        if avail >= self.sb_u32(sys::lq_sb_offsets_LQ_SB_OFF_RCV_LOWAT) || self.eof() {
            return true;
        }
        // SAFETY: live; so_error and so_rerror are aligned u_shorts the
        // protocol may set without this lock ((f) in socketvar.h), read
        // as one atomic load each, as soreadable() reads them unlocked.
        let (err, rerr) = unsafe {
            (
                (*self
                    .so
                    .field::<AtomicU16>(sys::lq_sb_offsets_LQ_SB_OFF_SO_ERROR))
                .load(Ordering::Relaxed),
                (*self
                    .so
                    .field::<AtomicU16>(sys::lq_sb_offsets_LQ_SB_OFF_SO_RERROR))
                .load(Ordering::Relaxed),
            )
        };
        err != 0 || rerr != 0
    }

    /// On its listener's incomplete queue (SQ_INCOMP).
    ///
    /// so_qstate is SOCK_LOCK's (b), which cannot be taken under the
    /// receive-buffer lock; socketvar.h allows such unlocked reads with
    /// care. What matters is read right: the kernel takes a connection off
    /// the incomplete queue (soclose() of the listener, solisten_enqueue()
    /// dropping the oldest) before it aborts it in the same thread, and the
    /// abort is what calls the upcall one last time (soisdisconnected()).
    pub fn queued(&self) -> bool {
        // SAFETY: live; so_qstate is an aligned enum (an int), read as
        // one atomic load (atomic_load_int() in C).
        let q = unsafe {
            (*self
                .so
                .field::<AtomicU32>(sys::lq_sb_offsets_LQ_SB_OFF_SO_QSTATE))
            .load(Ordering::Relaxed)
        };
        q == sys::lq_sb_offsets_LQ_SB_SQ_INCOMP
    }

    /// Some when called from soisconnected(), with SOCK_LOCK held.
    pub fn sock_locked(&self) -> Option<SockLocked<'_>> {
        // SAFETY: live; mtx_lock is an aligned word other threads change
        // atomically, read as one atomic load, as mtx_owned() does.
        let v = unsafe {
            (*self
                .so
                .field::<AtomicUsize>(sys::lq_sb_offsets_LQ_SB_OFF_SO_LOCK))
            .load(Ordering::Relaxed)
        };
        let owner = v & !(sys::lq_sb_offsets_LQ_SB_MTX_FLAGMASK as usize);
        // mtx_owned(): this thread holds SOCK_LOCK now, and keeps it
        // until the callback returns (soisconnected() took it and
        // releases it after the call; nothing in listenq drops it).
        (owner == crate::kern::percpu::curthread()).then_some(SockLocked { so: self.so })
    }

    /// Copies data bytes a reader would get, from the `off`th on, into
    /// `buf`, which need not be initialized (zeroing it would cost more
    /// than the copy); the bytes copied, None when there are none.
    pub fn copy_uninit<'b, const N: usize>(
        &self,
        off: u32,
        buf: &'b mut MaybeUninit<[u8; N]>,
    ) -> Option<&'b [u8]> {
        let n = u32::try_from(N).unwrap_or(u32::MAX);
        // SAFETY: live, receive buffer locked; the helper writes at most
        // `n` bytes into `buf` (N bytes of storage) and walks only the
        // mbuf chains it finds.
        let got = unsafe { sys::lq_sb_copy(self.so.as_ptr(), off, buf.as_mut_ptr().cast(), n) };
        let got = got.min(n) as usize;
        if got == 0 {
            return None;
        }
        // SAFETY: the helper initialized the first `got` bytes (at most
        // N), and `buf` stays borrowed as long as the slice.
        Some(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), got) })
    }
}

impl<'a> RcvLocked<'a> {
    /// The data bytes a reader would get, from the `off`th on, in place,
    /// run by run (one walk to `off`, then each mbuf's bytes once): the
    /// runs are borrowed for as long as the receive-buffer lock is held.
    /// The walk ends at the end of the data or where bytes cannot be read
    /// in place (an unmapped mbuf); `copy_uninit` reads on from there.
    pub fn runs(&self, off: u32) -> Runs<'_> {
        let mut cur = MaybeUninit::<sys::lq_sb_cursor>::uninit();
        // SAFETY: live, receive buffer locked; the helper fills in the
        // whole cursor, walking only the chains it finds.
        unsafe { sys::lq_sb_seek(self.so.as_ptr(), off, cur.as_mut_ptr()) };
        Runs {
            rcv: self,
            // SAFETY: lq_sb_seek() wrote every field.
            cur: unsafe { cur.assume_init() },
        }
    }
}

/// `RcvLocked::runs`: an iterator over runs of a held connection's bytes.
pub struct Runs<'r> {
    rcv: &'r RcvLocked<'r>,
    cur: sys::lq_sb_cursor,
}

impl Runs<'_> {
    /// The walk stopped at bytes it cannot read in place (an unmapped
    /// mbuf): `copy_uninit` reads on; false at the end of the data.
    pub fn stopped_unmapped(&self) -> bool {
        !self.cur.m.is_null()
    }
}

impl<'r> Iterator for Runs<'r> {
    type Item = &'r [u8];

    fn next(&mut self) -> Option<&'r [u8]> {
        // Past the last mbuf: what lq_sb_next() would say, without the
        // call (the usual end of an upcall's walk).
        if self.cur.m.is_null() {
            return None;
        }
        let mut p: *const cty::c_char = core::ptr::null();
        // SAFETY: live, receive buffer locked for 'r; the cursor came from
        // lq_sb_seek() on this socket under this lock and was moved only
        // by lq_sb_next(): it names an mbuf of this buffer or nothing.
        let n = unsafe { sys::lq_sb_next(self.rcv.so.as_ptr(), &mut self.cur, &mut p) };
        if n == 0 || p.is_null() {
            return None;
        }
        // SAFETY: `n` bytes of an mbuf's data at `p` (mtod + offset, within
        // m_len), which nothing changes or frees while the receive-buffer
        // lock is held (appends only write past m_len), and 'r is no
        // longer than that lock.
        Some(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), n as usize) })
    }
}

impl SockLocked<'_> {
    /// Gives the socket listenq's so_dtor, so listenq learns when it is
    /// freed; None if it already has another destructor. The one place a
    /// socket gets it (tag_glue.c lq_so_untag() and kern/socket.rs
    /// `maybe_tagged` look for it), set here without a call.
    pub fn tag(&self) -> Option<Tagged<'_>> {
        // SAFETY: a const pointer, initialized statically in tag_glue.c.
        let ours = unsafe { sys::lq_so_dtor_ptr }.map_or(0, |f| f as usize);
        // SAFETY: live; so_dtor is an aligned pointer that SOCK_LOCK,
        // held (the type's invariant), guards: read and written as one
        // word each (lq_so_untag()'s unlocked first look reads it as one).
        let dtor = unsafe { &*self.so.field::<AtomicUsize>(sys::lq_offsets_LQ_OFF_SO_DTOR) };
        if ours == 0 || dtor.load(Ordering::Relaxed) != 0 {
            return None;
        }
        dtor.store(ours, Ordering::Relaxed);
        Some(Tagged { so: self.so })
    }
}

/// A socket `SockLocked::tag` gave listenq's destructor, SOCK_LOCK still
/// held: what a hold queue admits (held_conns.rs).
pub struct Tagged<'t> {
    so: SocketRef<'t>,
}

impl Tagged<'_> {
    pub fn key(&self) -> usize {
        self.so.key()
    }

    /// Where the connection comes from, for fair eviction: its peer's
    /// address under `prefix4`/`prefix6` bits (TCP), or its peer's uid
    /// (local sockets), as a key (socket_glue.c lq_so_source()).
    pub fn source(&self, prefix4: u8, prefix6: u8) -> u64 {
        // SAFETY: live, SOCK_LOCK held (the type's invariant); the helper
        // reads the pcb's foreign address or the peer credentials, which
        // a connected socket keeps unchanged.
        unsafe { sys::lq_so_source(self.so.as_ptr(), i32::from(prefix4), i32::from(prefix6)) }
    }

    /// Takes listenq's so_dtor back: the socket is not held after all.
    pub fn untag(self) {
        // SAFETY: live, SOCK_LOCK held.
        unsafe { sys::lq_so_untag_locked(self.so.as_ptr()) }
    }
}
