//! A connection as an accept filter's callback sees it: with its receive
//! buffer locked (SOCK_RECVBUF_LOCK), and, on the call from
//! soisconnected(), its socket lock too. Each lock is a type that exists
//! only while the lock is held, and offers only what that lock allows.

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

/// The receive buffer, read once per callback.
pub struct SbState<'r> {
    /// Data bytes a reader would get (`RcvLocked::copy`).
    pub avail: u32,
    /// No space left in the receive buffer.
    pub full: bool,
    /// SBS_CANTRCVMORE.
    pub eof: bool,
    /// soreadable(): sb_lowat bytes, an error or EOF.
    pub readable: bool,
    /// On its listener's incomplete queue (SQ_INCOMP).
    pub queued: bool,
    /// Some when called from soisconnected(), with SOCK_LOCK held.
    pub sock_locked: Option<SockLocked<'r>>,
}

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

    pub fn state(&self) -> SbState<'_> {
        let mut sb = sys::lq_sbstate::default();
        // SAFETY: live, receive buffer locked (the type's invariant);
        // `sb` is a valid out-pointer for the call.
        unsafe { sys::lq_sb_state(self.so.as_ptr(), &mut sb) };
        SbState {
            avail: sb.avail,
            full: sb.full != 0,
            eof: sb.eof != 0,
            readable: sb.readable != 0,
            queued: sb.queued != 0,
            // mtx_owned(): this thread holds SOCK_LOCK now, and keeps it
            // until the callback returns (soisconnected() took it and
            // releases it after the call; nothing in listenq drops it).
            sock_locked: (sb.sock_locked != 0).then_some(SockLocked { so: self.so }),
        }
    }

    /// Copies data bytes a reader would get, from the `off`th on, into
    /// `buf`; returns how many (at most `buf.len()`).
    pub fn copy(&self, off: u32, buf: &mut [u8]) -> u32 {
        let n = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: live, receive buffer locked; the helper writes at most
        // `n` bytes into `buf` and walks only the mbuf chains it finds.
        unsafe { sys::lq_sb_copy(self.so.as_ptr(), off, buf.as_mut_ptr().cast(), n) }.min(n)
    }
}

impl SockLocked<'_> {
    /// Gives the socket listenq's so_dtor, so listenq learns when it is
    /// freed; None if it already has another destructor.
    pub fn tag(&self) -> Option<Tagged<'_>> {
        // SAFETY: live, SOCK_LOCK held (so_dtor's locking key).
        let ok = unsafe { sys::lq_so_tag(self.so.as_ptr()) != 0 };
        ok.then_some(Tagged { so: self.so })
    }
}

/// A socket `SockLocked::tag` gave listenq's destructor, SOCK_LOCK still
/// held: what a hold queue admits (held.rs).
pub struct Tagged<'t> {
    so: SocketRef<'t>,
}

impl Tagged<'_> {
    pub fn key(&self) -> usize {
        self.so.key()
    }

    /// Takes listenq's so_dtor back: the socket is not held after all.
    pub fn untag(self) {
        // SAFETY: live, SOCK_LOCK held.
        unsafe { sys::lq_so_untag_locked(self.so.as_ptr()) }
    }
}
