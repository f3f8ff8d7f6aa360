//! Hooking the protocol switch: listenq replaces pr_listen, pr_accept and
//! pr_close of the stream protocols it serves and calls the saved entries
//! from its own. The protosw structures are the kernel's writable tables;
//! an aligned pointer store is atomic on amd64, so a concurrent caller sees
//! either the old or the new entry, both of which work.

use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use listenq_bindings as sys;
use listenq_policy::registry::Proto;

pub type ListenFn = unsafe extern "C" fn(*mut sys::socket, i32, *mut sys::thread) -> i32;
pub type AcceptFn = unsafe extern "C" fn(*mut sys::socket, *mut *mut sys::sockaddr) -> i32;
pub type CloseFn = unsafe extern "C" fn(*mut sys::socket);

/// listenq's replacements for the three entries.
#[derive(Clone, Copy)]
pub struct Hooks {
    pub listen: ListenFn,
    pub accept: AcceptFn,
    pub close: CloseFn,
}

/// The kernel's entries saved from one protosw.
#[derive(Clone, Copy)]
pub struct Originals {
    pub proto: Proto,
    pub listen: ListenFn,
    pub accept: AcceptFn,
    pub close: Option<CloseFn>,
}

struct Slot {
    pr: AtomicPtr<sys::protosw>,
    listen: AtomicUsize,
    accept: AtomicUsize,
    close: AtomicUsize,
}

const fn empty() -> Slot {
    Slot {
        pr: AtomicPtr::new(core::ptr::null_mut()),
        listen: AtomicUsize::new(0),
        accept: AtomicUsize::new(0),
        close: AtomicUsize::new(0),
    }
}

/// What listenq serves: (family, type, protocol) for pffindproto(9).
const SERVED: [(Proto, i32, i32, i32); NSERVED] = [
    (
        Proto::Tcp4,
        sys::PF_INET as i32,
        sys::SOCK_STREAM as i32,
        sys::IPPROTO_TCP as i32,
    ),
    (
        Proto::Tcp6,
        sys::PF_INET6 as i32,
        sys::SOCK_STREAM as i32,
        sys::IPPROTO_TCP as i32,
    ),
    (
        Proto::LocalStream,
        sys::AF_UNIX as i32,
        sys::SOCK_STREAM as i32,
        0,
    ),
    (
        Proto::LocalSeqpacket,
        sys::AF_UNIX as i32,
        sys::SOCK_SEQPACKET as i32,
        0,
    ),
];

static SLOTS: [Slot; NSERVED] = [const { empty() }; NSERVED];

/// How many protocol switches listenq may hook (SERVED).
pub const NSERVED: usize = 4;

/// Installs the hooks on every served protocol the kernel has, `h[i]` on
/// the `i`th of SERVED (so that each entry knows its saved originals
/// without a lookup, `originals_at`); returns how many protocol switches
/// were hooked.
pub fn install(hooks: &[Hooks; NSERVED]) -> usize {
    let mut n = 0;
    for ((slot, (_, family, ty, proto)), h) in SLOTS.iter().zip(SERVED.iter()).zip(hooks.iter()) {
        // SAFETY: pffindproto only walks the domain list.
        let pr = unsafe { sys::pffindproto(*family, *ty, *proto) };
        if pr.is_null() {
            continue;
        }
        // SAFETY: `pr` is a protosw from the kernel's domain tables, which
        // live as long as the kernel; the fields are plain function
        // pointers.
        unsafe {
            let (Some(l), Some(a)) = ((*pr).pr_listen, (*pr).pr_accept) else {
                continue;
            };
            slot.listen.store(l as usize, Ordering::Release);
            slot.accept.store(a as usize, Ordering::Release);
            slot.close
                .store((*pr).pr_close.map_or(0, |c| c as usize), Ordering::Release);
            slot.pr.store(pr, Ordering::Release);
            core::ptr::write_volatile(&mut (*pr).pr_listen, Some(h.listen));
            core::ptr::write_volatile(&mut (*pr).pr_accept, Some(h.accept));
            core::ptr::write_volatile(&mut (*pr).pr_close, Some(h.close));
        }
        n += 1;
    }
    n
}

/// Puts the saved entries back. Callers already in listenq's functions
/// still find the originals through `originals()` until they return.
pub fn restore() {
    for slot in SLOTS.iter() {
        let pr = slot.pr.load(Ordering::Acquire);
        if pr.is_null() {
            continue;
        }
        if let Some(o) = originals_of(slot, Proto::Tcp4) {
            // SAFETY: as in install(); writing back what was there.
            unsafe {
                core::ptr::write_volatile(&mut (*pr).pr_listen, Some(o.listen));
                core::ptr::write_volatile(&mut (*pr).pr_accept, Some(o.accept));
                core::ptr::write_volatile(&mut (*pr).pr_close, o.close);
            }
        }
    }
}

/// Forgets the saved entries (after restore() and the drain).
pub fn clear() {
    for slot in SLOTS.iter() {
        slot.pr.store(core::ptr::null_mut(), Ordering::Release);
    }
}

/// The `i`th of SERVED's slot while it is hooked (not yet cleared).
fn hooked(i: usize) -> Option<&'static Slot> {
    SLOTS
        .get(i)
        .filter(|s| !s.pr.load(Ordering::Acquire).is_null())
}

/// The kernel's entries saved from the `i`th of SERVED, None once
/// cleared (or never hooked).
pub fn originals_at(i: usize) -> Option<Originals> {
    let slot = hooked(i)?;
    let (proto, ..) = SERVED.get(i)?;
    originals_of(slot, *proto)
}

/// The kernel's close entry saved from the `i`th of SERVED: as
/// `originals_at`, for the one entry every socket's close passes.
pub fn original_close(i: usize) -> Option<CloseFn> {
    let slot = hooked(i)?;
    let c = slot.close.load(Ordering::Acquire);
    // SAFETY: stored from a non-null function pointer of exactly this type
    // in install(), or 0.
    (c != 0).then(|| unsafe { core::mem::transmute::<usize, CloseFn>(c) })
}

/// The kernel's entries for the protocol switch `pr` points to.
pub fn originals(pr: *mut sys::protosw) -> Option<Originals> {
    SLOTS
        .iter()
        .zip(SERVED.iter())
        .find(|(s, _)| !pr.is_null() && s.pr.load(Ordering::Acquire) == pr)
        .and_then(|(s, (proto, ..))| originals_of(s, *proto))
}

fn originals_of(slot: &Slot, proto: Proto) -> Option<Originals> {
    let l = slot.listen.load(Ordering::Acquire);
    let a = slot.accept.load(Ordering::Acquire);
    let c = slot.close.load(Ordering::Acquire);
    if l == 0 || a == 0 {
        return None;
    }
    // SAFETY: the values were stored from non-null function pointers of
    // exactly these types in install().
    unsafe {
        Some(Originals {
            proto,
            listen: core::mem::transmute::<usize, ListenFn>(l),
            accept: core::mem::transmute::<usize, AcceptFn>(a),
            close: (c != 0).then(|| core::mem::transmute::<usize, CloseFn>(c)),
        })
    }
}
