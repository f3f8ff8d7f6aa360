//! The secondary queue: connections held by an accept filter until they meet
//! its criteria. listen(2): when it is full, the *oldest* held connection is
//! terminated to make room. Entries are kept in arrival order, so the oldest
//! is always at the front and hold timeouts expire from the front too.
//!
//! A connection the queue lets go (evicted, or timed out) does not leave
//! at once: terminating or delivering it needs the listener lock, which the
//! caller may not take, so it moves to a second list, *leaving*, with what
//! is to become of it (`Leave`), until the caller's deferred work pops it
//! (`pop_leaving`). It stays findable by key meanwhile, so a socket that
//! goes away first is still taken out (`remove`), and the deferred work
//! then finds nothing to do for it. Leaving entries are not held: they
//! are not counted by `len`, nor in the capacity, nor seen by `contains`
//! or `get_mut`; they only use slots.
//!
//! Every operation a connection causes (admit, find, release, evict the
//! oldest, expire, pop a leaving one) is O(1): a peer that completes
//! handshakes and never sends must not make the next connection's upcall
//! slower. The entries live in a slab of fixed-size chunks (growing it
//! never moves an entry), linked by slot number into the held FIFO, the
//! leaving list or the free list, and an open-addressing table (linear
//! probing, deletion by backward shift, so no tombstones pile up, kept at
//! most three quarters full) finds a slot from the socket's key.
//!
//! Memory is reserved fallibly: the queue runs inside socket upcalls, where a
//! failed M_NOWAIT allocation must turn into "don't hold this connection",
//! never into a panic. `reserve_first` gives a listener one chunk when its
//! filter is attached; past that the slab grows a chunk at a time as
//! connections are held (one admission in a chunk's worth allocates, and
//! the index doubles now and then), so a filtered listener costs what it
//! holds, not what its backlog allows (`reserved` says how much).

use alloc::vec::Vec;

use crate::fair::{Fair, Source};
use crate::keymap::{bucket, fills_hole};

/// A held connection: `key` identifies the socket, `since` is when it
/// started to be held (on the caller's clock, which wraps at 2^32: ticks(9)
/// in kmod; only differences are used, see `expire`), `state` is the
/// filter's parser state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<T> {
    pub key: usize,
    pub since: u32,
    pub state: T,
}

/// What becomes of a connection on the leaving list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Terminate it (still on its listener's incomplete queue).
    Abort,
    /// Deliver it to the completed queue.
    Deliver,
    /// Already taken off the incomplete queue: only the termination is
    /// left.
    Detached,
}

/// Where a held connection sits (`held_pos`, `admit_pos`): its index
/// bucket and slot. Good until the queue next changes; `state_at` and
/// `remove_pos` check that it still names a held connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    bucket: usize,
    slot: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Held (the oldest may have been let go to make room).
    Held,
    /// No memory to hold it: the caller should pass it on unfiltered.
    /// Nothing was let go for it.
    NoMemory,
    /// Already in the queue (a repeated notification); nothing changed.
    AlreadyHeld,
}

/// Which held connection a full queue lets go (listen(2): the oldest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evict {
    /// The oldest overall: stock FreeBSD's rule, the default.
    #[default]
    Oldest,
    /// The oldest of the source holding the most (fair.rs); with
    /// `per_source` > 0, a source already holding that many lets its own
    /// oldest go for a new one, whether or not the queue is full.
    Fair { per_source: u32 },
}

/// Connections a queue let go to make room, by why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evictions {
    /// The queue was full, oldest-first policy.
    pub oldest: u64,
    /// The queue was full, fair policy: the largest source's oldest.
    pub fair: u64,
    /// Its source held `per_source` already (fair policy).
    pub cap: u64,
}

/// No slot: end of a list, or an empty index bucket.
const NIL: u32 = u32::MAX;

/// An index bucket holds a slot number in its low 24 bits and, in the top
/// 8, a fingerprint of the key's hash, so that a probe passing other keys'
/// buckets rarely has to read their slots: a miss walks a probe run for a
/// few instructions a bucket. Slot numbers stay below SLOT_MASK, so no
/// bucket in use equals NIL.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// Most slots a queue has: room for this many connections, held or
/// leaving (listenq(4)).
pub const MAX_SLOTS: usize = SLOT_MASK as usize;

/// The top 8 bits of the key's Fibonacci hash (the bucket comes from the
/// low ones: keymap::bucket).
fn fingerprint(key: usize) -> u32 {
    ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u32
}

/// What `key`'s bucket holds for slot `s`.
fn tagged(key: usize, s: u32) -> u32 {
    fingerprint(key) << SLOT_BITS | s
}

/// Bytes of one slab chunk: the size of a malloc(9) bucket, so that
/// nothing is rounded up. listenq(4) counts with it.
pub const CHUNK_BYTES: usize = 4096;

/// The longest hold limit `expire` honours, in the clock's units:
/// elapsed times are differences of a 32-bit clock, exact below 2^32
/// units, and the front entry is looked at often (kmod: every 100 ms), so
/// a limit of at most 2^31 (24.8 days of ticks at hz=1000) is always seen
/// expire long before the difference could wrap.
pub const MAX_HOLD: u32 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Free,
    Held,
    Leaving(Leave),
}

/// A slab slot: an entry and its neighbours on its list (the held FIFO or
/// the leaving list), or (free) a link in the free list through `next`.
#[derive(Debug, Clone, Copy)]
struct Slot<T> {
    key: usize,
    since: u32,
    prev: u32,
    next: u32,
    place: Place,
    state: T,
}

/// A doubly linked list of slots, oldest first.
#[derive(Debug, Clone, Copy)]
struct List {
    first: u32,
    last: u32,
    len: usize,
}

const EMPTY: List = List {
    first: NIL,
    last: NIL,
    len: 0,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Held,
    Leaving,
}

#[derive(Debug)]
pub struct HoldQueue<T> {
    /// Each chunk is allocated with room for exactly `PER` slots and never
    /// reallocated; slot `s` is `chunks[s / PER][s % PER]`.
    chunks: Vec<Vec<Slot<T>>>,
    /// Slots handed out so far (the rest of the chunks' room is unused).
    top: usize,
    /// Tagged slot numbers (`tagged`), or NIL; its length is 0 or a
    /// power of two with at least four buckets for every three slots the
    /// chunks have room for, so probes stay short and a free bucket exists.
    index: Vec<u32>,
    free: u32,
    held: List,
    leaving: List,
    capacity: usize,
    policy: Evict,
    /// The held connections' sources, with `Evict::Fair` only (empty and
    /// unallocated otherwise).
    fair: Fair,
    evictions: Evictions,
    /// Tests make the allocator "fail" past this many chunks.
    #[cfg(test)]
    chunk_limit: usize,
}

/// Index buckets for `slots` slots: at most three quarters full.
fn buckets_for(slots: usize) -> Option<usize> {
    slots
        .checked_mul(4)?
        .div_ceil(3)
        .max(1)
        .checked_next_power_of_two()
}

impl<T: Copy> HoldQueue<T> {
    /// Slots per chunk.
    const PER: usize = {
        let n = CHUNK_BYTES / core::mem::size_of::<Slot<T>>();
        if n == 0 {
            1
        } else {
            n
        }
    };

    /// Allocates nothing; see `reserve`.
    pub fn new(capacity: usize) -> Self {
        HoldQueue {
            chunks: Vec::new(),
            top: 0,
            index: Vec::new(),
            free: NIL,
            held: EMPTY,
            leaving: EMPTY,
            capacity: capacity.max(1),
            policy: Evict::Oldest,
            fair: Fair::new(),
            evictions: Evictions {
                oldest: 0,
                fair: 0,
                cap: 0,
            },
            #[cfg(test)]
            chunk_limit: usize::MAX,
        }
    }

    /// Makes room for the first chunk of entries (or fewer, for a smaller
    /// capacity) and the index for it: what a listener costs while it holds
    /// little, whatever its backlog. Past that the slab grows a chunk at a
    /// time as connections are held (`admit`), so memory follows what is
    /// held, not the backlog; letting a connection go still needs nothing
    /// (it keeps its slot on the leaving list). False when memory is short:
    /// the queue still works and grows when it admits.
    pub fn reserve_first(&mut self) -> bool {
        if !self.grow_index(Self::PER) {
            return false;
        }
        if self.chunks.is_empty() && !self.add_chunk() {
            return false;
        }
        !self.is_fair() || self.fair.reserve(self.room())
    }

    /// The eviction policy; set before the first admission (the filter's
    /// af_arg decides it when it is attached).
    pub fn set_policy(&mut self, policy: Evict) {
        if self.held.len == 0 && self.leaving.len == 0 {
            self.policy = policy;
        }
    }

    pub fn policy(&self) -> Evict {
        self.policy
    }

    fn is_fair(&self) -> bool {
        matches!(self.policy, Evict::Fair { .. })
    }

    /// Sources holding a connection (fair policy; 0 otherwise).
    pub fn sources(&self) -> usize {
        self.fair.distinct()
    }

    /// Evictions so far, by why.
    pub fn evictions(&self) -> Evictions {
        self.evictions
    }

    /// listen() again changes the backlog and so the capacity; a smaller
    /// capacity takes effect at the next admission.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Held connections (not the leaving ones).
    pub fn len(&self) -> usize {
        self.held.len
    }

    pub fn is_empty(&self) -> bool {
        self.held.len == 0
    }

    /// Connections on the leaving list.
    pub fn leaving_len(&self) -> usize {
        self.leaving.len
    }

    /// Slots the chunks have room for.
    fn room(&self) -> usize {
        self.chunks.len().saturating_mul(Self::PER)
    }

    fn slot(&self, s: u32) -> Option<&Slot<T>> {
        let s = s as usize;
        self.chunks.get(s / Self::PER)?.get(s % Self::PER)
    }

    fn slot_mut(&mut self, s: u32) -> Option<&mut Slot<T>> {
        let s = s as usize;
        self.chunks.get_mut(s / Self::PER)?.get_mut(s % Self::PER)
    }

    /// One more chunk, with the index grown for it first. Fallible; a
    /// failure leaves the entries as they were.
    fn add_chunk(&mut self) -> bool {
        let Some(room) = self.room().checked_add(Self::PER) else {
            return false;
        };
        if room > MAX_SLOTS || !self.grow_index(room) {
            return false;
        }
        #[cfg(test)]
        if self.chunks.len() >= self.chunk_limit {
            return false;
        }
        if self.chunks.len() == self.chunks.capacity() && self.chunks.try_reserve(1).is_err() {
            return false;
        }
        let mut c = Vec::new();
        if c.try_reserve_exact(Self::PER).is_err() {
            return false;
        }
        self.chunks.push(c);
        true
    }

    /// Sizes the index for `slots` slots (rehashing into a new table).
    fn grow_index(&mut self, slots: usize) -> bool {
        let Some(buckets) = buckets_for(slots) else {
            return false;
        };
        if buckets <= self.index.len() {
            return true;
        }
        let mut index = Vec::new();
        if index.try_reserve_exact(buckets).is_err() {
            return false;
        }
        index.resize(buckets, NIL);
        let old = core::mem::replace(&mut self.index, index);
        for b in old.into_iter().filter(|&b| b != NIL) {
            if let Some(key) = self.slot(b & SLOT_MASK).map(|e| e.key) {
                self.index_insert(key, b & SLOT_MASK);
            }
        }
        true
    }

    /// Whether `put` will find a slot, growing the slab if needed.
    fn slot_ready(&mut self) -> bool {
        self.free != NIL || self.top < self.room() || self.add_chunk()
    }

    /// Stores `e` in a free slot; None when there is none (`slot_ready`
    /// says whether there is, and makes one).
    fn put(&mut self, e: Slot<T>) -> Option<u32> {
        let f = self.free;
        if let Some(slot) = self.slot_mut(f) {
            let next = slot.next;
            *slot = e;
            self.free = next;
            return Some(f);
        }
        if self.top >= self.room() {
            return None;
        }
        let s = u32::try_from(self.top).ok()?;
        // The chunk was allocated with room for PER slots and holds
        // top % PER of them: this push does not allocate.
        self.chunks.get_mut(self.top / Self::PER)?.push(e);
        self.top += 1;
        Some(s)
    }

    fn mask(&self) -> usize {
        self.index.len().wrapping_sub(1)
    }

    /// Files `slot` under `key`; the bucket it took.
    fn index_insert(&mut self, key: usize, slot: u32) -> Option<usize> {
        let mask = self.mask();
        let mut i = bucket(key, mask);
        for _ in 0..self.index.len() {
            match self.index.get_mut(i) {
                Some(b) if *b == NIL => {
                    *b = tagged(key, slot);
                    return Some(i);
                }
                _ => i = (i + 1) & mask,
            }
        }
        None
    }

    /// The bucket holding `key`'s slot, and the slot.
    fn find(&self, key: usize) -> Option<(usize, u32)> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.mask();
        let fp = fingerprint(key);
        let mut i = bucket(key, mask);
        for _ in 0..self.index.len() {
            let b = *self.index.get(i)?;
            if b == NIL {
                return None;
            }
            let s = b & SLOT_MASK;
            if b >> SLOT_BITS == fp && self.slot(s)?.key == key {
                return Some((i, s));
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// The slot of a held (not leaving) `key`.
    fn find_held(&self, key: usize) -> Option<u32> {
        self.held_pos(key).map(|p| p.slot)
    }

    /// Empties bucket `i` and shifts back the entries of its probe run
    /// that would no longer be found past the hole.
    fn index_remove(&mut self, mut i: usize) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let b = match self.index.get(j) {
                Some(&b) if b != NIL => b,
                _ => break,
            };
            let Some(k) = self.slot(b & SLOT_MASK).map(|e| e.key) else {
                break;
            };
            let home = bucket(k, mask);
            if fills_hole(i, j, home) {
                if let Some(h) = self.index.get_mut(i) {
                    *h = b;
                }
                i = j;
            }
        }
        if let Some(b) = self.index.get_mut(i) {
            *b = NIL;
        }
    }

    fn list(&mut self, which: Which) -> &mut List {
        match which {
            Which::Held => &mut self.held,
            Which::Leaving => &mut self.leaving,
        }
    }

    fn link_last(&mut self, which: Which, s: u32) {
        let last = self.list(which).last;
        if let Some(e) = self.slot_mut(s) {
            e.prev = last;
            e.next = NIL;
        }
        match self.slot_mut(last) {
            Some(p) => p.next = s,
            None => self.list(which).first = s,
        }
        let l = self.list(which);
        l.last = s;
        l.len += 1;
    }

    /// Takes `s` off the list its place says it is on.
    fn unlink(&mut self, s: u32) {
        if let Some((prev, next, place)) = self.slot(s).map(|e| (e.prev, e.next, e.place)) {
            self.unlink_links(prev, next, place);
        }
    }

    /// Joins `prev` and `next`, the neighbours of a slot leaving the list
    /// `place` says.
    fn unlink_links(&mut self, prev: u32, next: u32, place: Place) {
        let which = match place {
            Place::Held => Which::Held,
            Place::Leaving(_) => Which::Leaving,
            Place::Free => return,
        };
        match self.slot_mut(prev) {
            Some(p) => p.next = next,
            None => self.list(which).first = next,
        }
        match self.slot_mut(next) {
            Some(n) => n.prev = prev,
            None => self.list(which).last = prev,
        }
        let l = self.list(which);
        l.len = l.len.saturating_sub(1);
    }

    /// Takes slot `s` (in bucket `b`) out of the queue altogether; the
    /// place it had. The slot is looked up once (a connection's release
    /// comes here).
    fn take_out(&mut self, b: usize, s: u32) -> Option<Place> {
        let free = self.free;
        let e = self.slot_mut(s)?;
        let (prev, next, place) = (e.prev, e.next, e.place);
        if place == Place::Held && matches!(self.policy, Evict::Fair { .. }) {
            self.fair.remove(s);
        }
        let e = self.slot_mut(s)?;
        e.place = Place::Free;
        e.next = free;
        e.prev = NIL;
        self.free = s;
        // The slot keeps its key, which is all the index's shift reads of
        // it (and it is past the hole by then anyway).
        self.index_remove(b);
        self.unlink_links(prev, next, place);
        Some(place)
    }

    /// Takes slot `s` (in bucket `b`) out of the queue altogether.
    fn remove_at(&mut self, b: usize, s: u32) -> Option<(Held<T>, Place)> {
        let e = *self.slot(s)?;
        let place = self.take_out(b, s)?;
        let held = Held {
            key: e.key,
            since: e.since,
            state: e.state,
        };
        Some((held, place))
    }

    /// Moves held slot `s` to the leaving list, or out of the queue.
    fn let_go(&mut self, s: u32, how: Option<Leave>) {
        match how {
            Some(how) => {
                if self.is_fair() {
                    self.fair.remove(s);
                }
                self.unlink(s);
                if let Some(e) = self.slot_mut(s) {
                    e.place = Place::Leaving(how);
                }
                self.link_last(Which::Leaving, s);
            }
            None => {
                let Some(key) = self.slot(s).map(|e| e.key) else {
                    return;
                };
                if let Some((b, _)) = self.find(key) {
                    self.remove_at(b, s);
                }
            }
        }
    }

    /// Lets the oldest held connection go: `how` gets its key and says
    /// whether it moves to the leaving list (and how it leaves) or out of
    /// the queue (None: there is nothing left to do for it).
    fn evict_oldest(&mut self, how: &mut impl FnMut(usize) -> Option<Leave>) -> bool {
        let (s, fair) = match self.policy {
            Evict::Oldest => (self.held.first, false),
            Evict::Fair { .. } => match self.fair.victim() {
                Some(s) => (s, true),
                // Not reached: every held slot is counted by a source.
                None => (self.held.first, false),
            },
        };
        if !self.evict_slot(s, how) {
            return false;
        }
        if fair {
            self.evictions.fair += 1;
        } else {
            self.evictions.oldest += 1;
        }
        true
    }

    /// Lets held slot `s` go, as `evict_oldest` does.
    fn evict_slot(&mut self, s: u32, how: &mut impl FnMut(usize) -> Option<Leave>) -> bool {
        let Some(key) = self
            .slot(s)
            .filter(|e| e.place == Place::Held)
            .map(|e| e.key)
        else {
            return false;
        };
        let h = how(key);
        self.let_go(s, h);
        true
    }

    /// Whether `key` is held (leaving entries are not).
    pub fn contains(&self, key: usize) -> bool {
        self.find_held(key).is_some()
    }

    /// Whether `key` is on the leaving list.
    pub fn is_leaving(&self, key: usize) -> bool {
        self.find(key)
            .and_then(|(_, s)| self.slot(s))
            .is_some_and(|e| matches!(e.place, Place::Leaving(_)))
    }

    /// Holds `key`. When the queue is full the oldest held connection is
    /// let go to make room; if the capacity has shrunk below the number
    /// held, the extra oldest ones first. `evict` gets each one's key and
    /// says how it leaves (see `evict_oldest`); they are let go even when
    /// the admission itself then fails with `NoMemory`, but the one that
    /// would make room for it is not.
    pub fn admit(
        &mut self,
        key: usize,
        since: u32,
        state: T,
        evict: impl FnMut(usize) -> Option<Leave>,
    ) -> Admit {
        match self.admit_pos(key, since, state, evict) {
            Ok(_) => Admit::Held,
            Err(a) => a,
        }
    }

    /// `admit`, with where the connection now sits when it is held (Ok);
    /// Err says why not (never `Admit::Held`).
    pub fn admit_pos(
        &mut self,
        key: usize,
        since: u32,
        state: T,
        evict: impl FnMut(usize) -> Option<Leave>,
    ) -> Result<Pos, Admit> {
        self.admit_from(key, Source::new(0), since, state, evict)
    }

    /// `admit_pos` for a connection from `source`, which the fair policy
    /// (`set_policy`) counts; the other policy ignores it.
    pub fn admit_from(
        &mut self,
        key: usize,
        source: Source,
        since: u32,
        state: T,
        mut evict: impl FnMut(usize) -> Option<Leave>,
    ) -> Result<Pos, Admit> {
        if self.find(key).is_some() {
            return Err(Admit::AlreadyHeld);
        }
        while self.held.len > self.capacity {
            if !self.evict_oldest(&mut evict) {
                break;
            }
        }
        // A slot before choosing a victim, so a failed allocation lets
        // nobody go for nothing: the victim may move to the leaving list,
        // keeping its slot.
        if !self.slot_ready() {
            return Err(Admit::NoMemory);
        }
        // The fair bookkeeping has room for every slot the chunks have, so
        // counting the new one below cannot fail.
        if self.is_fair() && !self.fair.reserve(self.room()) {
            return Err(Admit::NoMemory);
        }
        let cap = match self.policy {
            Evict::Fair { per_source } if per_source > 0 => Some(per_source),
            _ => None,
        };
        let capped = cap.is_some_and(|c| self.fair.count(source) >= c);
        if capped {
            // Its own oldest makes room, full queue or not: one source
            // never holds more than `per_source`.
            if let Some(s) = self.fair.oldest_of(source) {
                if self.evict_slot(s, &mut evict) {
                    self.evictions.cap += 1;
                }
            }
        } else if self.held.len >= self.capacity {
            self.evict_oldest(&mut evict);
        }
        let Some(s) = self.put(Slot {
            key,
            since,
            prev: NIL,
            next: NIL,
            place: Place::Held,
            state,
        }) else {
            // Not reached: slot_ready() made one, and letting the victim
            // go only ever frees slots.
            return Err(Admit::NoMemory);
        };
        self.link_last(Which::Held, s);
        if self.is_fair() {
            // Reserved above for every slot: does not fail.
            self.fair.add(s, source);
        }
        // The index has a free bucket: it is kept at most three quarters
        // full of the slots the chunks have room for.
        let bucket = self.index_insert(key, s).unwrap_or(usize::MAX);
        Ok(Pos { bucket, slot: s })
    }

    /// Where held `key` sits: one look in the index, for `state_at` and
    /// `remove_pos` to use without looking again.
    pub fn held_pos(&self, key: usize) -> Option<Pos> {
        let (bucket, slot) = self.find(key)?;
        (self.slot(slot)?.place == Place::Held).then_some(Pos { bucket, slot })
    }

    /// The state of the held connection at `p`.
    pub fn state_at(&mut self, p: Pos) -> Option<&mut T> {
        let e = self.slot_mut(p.slot)?;
        (e.place == Place::Held).then_some(&mut e.state)
    }

    /// Takes the held connection at `p` out of the queue; false if `p`
    /// names none (any more).
    pub fn remove_pos(&mut self, p: Pos) -> bool {
        if !self.names_held(p) {
            return false;
        }
        self.take_out(p.bucket, p.slot).is_some()
    }

    /// Moves the held connection at `p` to the leaving list, to leave
    /// `how` (a released connection the task must deliver); false if `p`
    /// names none (any more). Needs no memory: the slot goes with it.
    pub fn leave_pos(&mut self, p: Pos, how: Leave) -> bool {
        if !self.names_held(p) {
            return false;
        }
        self.let_go(p.slot, Some(how));
        true
    }

    /// `p` still names a held connection: its bucket holds its slot (a
    /// stale `p` must not reach another entry), and the slot is held.
    fn names_held(&self, p: Pos) -> bool {
        matches!(self.index.get(p.bucket), Some(&b) if b & SLOT_MASK == p.slot)
            && self.slot(p.slot).map(|e| e.place) == Some(Place::Held)
    }

    /// The state of held `key`.
    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        let s = self.find_held(key)?;
        self.slot_mut(s).map(|e| &mut e.state)
    }

    /// Takes `key` out of the queue, held or leaving.
    pub fn remove(&mut self, key: usize) -> Option<Held<T>> {
        let (b, s) = self.find(key)?;
        self.remove_at(b, s).map(|(h, _)| h)
    }

    /// Moves the oldest held connection to the leaving list, to leave
    /// `how`, if it has been held at least `timeout` (at most
    /// MAX_HOLD) at `now`, and returns its key.
    pub fn expire(&mut self, now: u32, timeout: u32, how: Leave) -> Option<usize> {
        let s = self.held.first;
        let e = self.slot(s)?;
        let key = e.key;
        if now.wrapping_sub(e.since) < timeout.min(MAX_HOLD) {
            return None;
        }
        self.let_go(s, Some(how));
        Some(key)
    }

    /// Takes the first connection of the leaving list out of the queue.
    pub fn pop_leaving(&mut self) -> Option<(usize, Leave)> {
        let s = self.leaving.first;
        let key = self.slot(s)?.key;
        let (b, _) = self.find(key)?;
        match self.remove_at(b, s)? {
            (h, Place::Leaving(how)) => Some((h.key, how)),
            _ => None,
        }
    }

    /// Takes out of the queue every leaving connection whose way out
    /// `keep` refuses (filter removal). Walks the leaving list.
    pub fn drop_leaving(&mut self, mut keep: impl FnMut(Leave) -> bool) {
        let mut s = self.leaving.first;
        while let Some(e) = self.slot(s).copied() {
            let next = e.next;
            if let Place::Leaving(how) = e.place {
                if !keep(how) {
                    if let Some((b, _)) = self.find(e.key) {
                        self.remove_at(b, s);
                    }
                }
            }
            s = next;
        }
    }

    /// Empties the held FIFO (filter removal, listener close), oldest
    /// first; the leaving list stays.
    pub fn drain(&mut self) -> impl Iterator<Item = Held<T>> + '_ {
        core::iter::from_fn(move || {
            let s = self.held.first;
            let key = self.slot(s)?.key;
            let (b, _) = self.find(key)?;
            self.remove_at(b, s).map(|(h, _)| h)
        })
    }

    /// The held connections, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Held<T>> + '_ {
        self.walk(self.held.first).map(|e| Held {
            key: e.key,
            since: e.since,
            state: e.state,
        })
    }

    /// The leaving connections, first to go first (the tests' view).
    #[cfg(test)]
    pub fn iter_leaving(&self) -> impl Iterator<Item = (usize, Leave)> + '_ {
        self.walk(self.leaving.first).filter_map(|e| match e.place {
            Place::Leaving(how) => Some((e.key, how)),
            _ => None,
        })
    }

    fn walk(&self, first: u32) -> impl Iterator<Item = &Slot<T>> + '_ {
        let mut s = first;
        core::iter::from_fn(move || {
            let e = self.slot(s)?;
            s = e.next;
            Some(e)
        })
    }
}

/// Bytes of one slab slot for a state `T` (listenq(4), kmod/src/filters.rs).
pub const fn slot_bytes<T>() -> usize {
    core::mem::size_of::<Slot<T>>()
}

/// What a queue has allocated once it holds `held` entries with a state
/// `T` (none leaving): the number of slab chunks (CHUNK_BYTES each, at
/// most; the first one from `reserve_first`) and of 4-byte index buckets.
pub fn reserved<T: Copy>(held: usize) -> (usize, usize) {
    let per = HoldQueue::<T>::PER;
    let chunks = held.max(1).div_ceil(per);
    let buckets = buckets_for(chunks.saturating_mul(per)).unwrap_or(0);
    (chunks, buckets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    fn keys<T: Copy>(q: &HoldQueue<T>) -> Vec<usize> {
        q.iter().map(|e| e.key).collect()
    }

    /// A released connection the upcall cannot deliver: it moves to the
    /// leaving list with its slot, is no longer held (the upcall ignores
    /// it), and the task finds it there to deliver; a stale position
    /// moves nothing.
    #[test]
    fn leave_pos_moves_a_held_connection_to_the_task() {
        let mut q = HoldQueue::new(4);
        assert!(q.reserve_first());
        for k in 1..=3usize {
            q.admit_from(k, Source::new(0), 0, 7u8, |_| None).unwrap();
        }
        let p = q.held_pos(2).unwrap();
        assert!(q.leave_pos(p, Leave::Deliver));
        assert_eq!(q.held_pos(2), None);
        assert!(!q.contains(2) && q.is_leaving(2), "on the leaving list");
        assert_eq!(q.len(), 2);
        assert_eq!(q.leaving_len(), 1);
        assert!(!q.leave_pos(p, Leave::Deliver), "a stale position");
        assert!(!q.remove_pos(p));
        assert_eq!(q.pop_leaving(), Some((2, Leave::Deliver)));
        assert!(!q.is_leaving(2));
        assert_eq!(keys(&q), [1, 3]);
    }

    /// A listener with a huge backlog that holds nothing costs one chunk
    /// and a small index; holding connections grows it a chunk at a time,
    /// and letting them go (evictions to the leaving list) allocates
    /// nothing more.
    #[test]
    fn memory_follows_what_is_held_not_the_backlog() {
        let per = HoldQueue::<u64>::PER;
        let mut q = HoldQueue::<u64>::new(65535);
        assert!(q.reserve_first());
        assert_eq!(q.chunks.len(), 1);
        assert!(q.index.len() <= buckets_for(per).unwrap());
        for k in 1..=per {
            q.admit_from(k, Source::new(0), 0, 0, |_| None).unwrap();
        }
        assert_eq!(q.chunks.len(), 1, "one chunk holds {per}");
        q.admit_from(per + 1, Source::new(0), 0, 0, |_| None)
            .unwrap();
        assert_eq!(q.chunks.len(), 2, "the next one adds a chunk");
        for k in per + 2..=10 * per {
            q.admit_from(k, Source::new(0), 0, 0, |_| None).unwrap();
        }
        assert_eq!(q.chunks.len(), 10);
        assert_eq!(q.index.len(), buckets_for(10 * per).unwrap());
        // A full queue lets the oldest go into its own slot.
        let mut q = HoldQueue::<u64>::new(8);
        assert!(q.reserve_first());
        for k in 1..=40usize {
            q.admit_from(k, Source::new(0), 0, 0, |_| Some(Leave::Abort))
                .unwrap();
        }
        assert_eq!(q.len(), 8);
        assert_eq!(q.leaving_len(), 32);
        assert_eq!(q.chunks.len(), 1, "evictions allocated nothing");
    }

    #[test]
    fn evicts_oldest_when_full() {
        let mut q = HoldQueue::new(3);
        let mut gone = Vec::new();
        for k in 1..=8usize {
            let r = q.admit(k, k as u32, (), |v| {
                gone.push(v);
                None
            });
            assert_eq!(r, Admit::Held);
        }
        assert_eq!(gone, [1, 2, 3, 4, 5]);
        assert_eq!(keys(&q), [6, 7, 8]);
        assert_eq!(q.leaving_len(), 0);
    }

    /// A flood from one source against a few real clients: with the fair
    /// policy the flood only ever evicts its own; oldest-first evicts the
    /// clients too.
    fn flood(policy: Evict) -> (usize, Evictions) {
        let mut q = HoldQueue::new(16);
        q.set_policy(policy);
        assert!(q.reserve_first());
        let mut next = 1usize;
        let mut clients = Vec::new();
        for round in 0..200 {
            // Five flood connections per client connection.
            for _ in 0..5 {
                q.admit_from(next, Source::new(2), round, (), |_| None)
                    .unwrap();
                next += 1;
            }
            if round % 10 == 0 && clients.len() < 4 {
                q.admit_from(next, Source::new(1), round, (), |_| None)
                    .unwrap();
                clients.push(next);
                next += 1;
            }
            assert!(q.len() <= 16);
        }
        let kept = clients.iter().filter(|&&c| q.contains(c)).count();
        (kept, q.evictions())
    }

    #[test]
    fn fair_policy_keeps_the_clients_a_flood_would_evict() {
        let (kept, ev) = flood(Evict::Fair { per_source: 0 });
        assert_eq!(kept, 4, "every client still held");
        assert_eq!(ev.oldest, 0);
        assert!(ev.fair > 900 && ev.cap == 0, "{ev:?}");
        let (kept, ev) = flood(Evict::Oldest);
        assert_eq!(kept, 0, "oldest-first evicts them all");
        assert!(ev.oldest > 900 && ev.fair == 0, "{ev:?}");
    }

    #[test]
    fn per_source_cap_evicts_its_own_oldest_before_the_queue_is_full() {
        let mut q = HoldQueue::new(100);
        q.set_policy(Evict::Fair { per_source: 3 });
        let mut gone = Vec::new();
        for k in 1..=5usize {
            q.admit_from(k, Source::new(7), 0, (), |v| {
                gone.push(v);
                None
            })
            .unwrap();
        }
        q.admit_from(6, Source::new(8), 0, (), |_| None).unwrap();
        assert_eq!(gone, [1, 2]);
        assert_eq!(keys(&q), [3, 4, 5, 6]);
        assert_eq!(q.sources(), 2);
        assert_eq!(q.evictions().cap, 2);
        // Releases, timeouts and drains keep the sources right.
        assert!(q.remove(3).is_some());
        assert_eq!(q.expire(10, 1, Leave::Abort), Some(4));
        assert_eq!(q.sources(), 2);
        assert_eq!(q.drain().count(), 2);
        assert_eq!(q.sources(), 0);
    }

    #[test]
    fn the_policy_is_fixed_once_something_is_held() {
        let mut q = HoldQueue::new(2);
        q.admit(1, 0, (), |_| None);
        q.set_policy(Evict::Fair { per_source: 0 });
        assert_eq!(q.policy(), Evict::Oldest);
    }

    proptest::proptest! {
        /// Fair policy against a model: the queue never passes its
        /// capacity, and every eviction of a full queue takes the oldest
        /// connection of a source holding the most.
        #[test]
        fn fair_eviction_matches_a_model(ops in proptest::collection::vec((0u8..4, 0u64..4), 1..400), cap in 1usize..8) {
            let mut q = HoldQueue::new(cap);
            q.set_policy(Evict::Fair { per_source: 0 });
            // key -> source, arrival order kept by key (keys only grow).
            let mut model: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
            let mut next = 1usize;
            for (op, s) in ops {
                match op {
                    0..=2 => {
                        let mut counts: std::collections::BTreeMap<u64, (usize, usize)> = Default::default();
                        for (&k, &so) in &model {
                            let e = counts.entry(so).or_insert((0, k));
                            e.0 += 1;
                        }
                        let max = counts.values().map(|c| c.0).max().unwrap_or(0);
                        let allowed: Vec<usize> = counts.values().filter(|c| c.0 == max).map(|c| c.1).collect();
                        let full = model.len() >= cap;
                        let mut victims = Vec::new();
                        let r = q.admit_from(next, Source::new(s), 0, (), |v| { victims.push(v); None });
                        proptest::prop_assert!(r.is_ok());
                        if full {
                            proptest::prop_assert_eq!(victims.len(), 1);
                            proptest::prop_assert!(allowed.contains(&victims[0]), "{:?} not in {:?}", victims, allowed);
                            model.remove(&victims[0]);
                        } else {
                            proptest::prop_assert!(victims.is_empty());
                        }
                        model.insert(next, s);
                        next += 1;
                    }
                    _ => {
                        // Release the oldest of source s, if any.
                        if let Some((&k, _)) = model.iter().find(|(_, &so)| so == s) {
                            proptest::prop_assert!(q.remove(k).is_some());
                            model.remove(&k);
                        }
                    }
                }
                proptest::prop_assert!(q.len() <= cap);
                proptest::prop_assert_eq!(q.len(), model.len());
                let distinct: std::collections::BTreeSet<u64> = model.values().copied().collect();
                proptest::prop_assert_eq!(q.sources(), distinct.len());
            }
        }
    }

    #[test]
    fn evicted_go_to_the_leaving_list_and_pop_in_order() {
        let mut q = HoldQueue::new(2);
        for k in 1..=5usize {
            q.admit(k, 0, k as u8, |v| {
                Some(if v % 2 == 0 {
                    Leave::Detached
                } else {
                    Leave::Abort
                })
            });
        }
        assert_eq!(keys(&q), [4, 5]);
        assert_eq!(q.len(), 2);
        assert_eq!(q.leaving_len(), 3);
        // Leaving ones are not held: not found as such, not counted.
        for k in 1..=3 {
            assert!(!q.contains(k) && q.get_mut(k).is_none() && q.is_leaving(k));
        }
        assert_eq!(q.admit(2, 9, 0, |_| None), Admit::AlreadyHeld);
        assert_eq!(q.pop_leaving(), Some((1, Leave::Abort)));
        assert_eq!(q.pop_leaving(), Some((2, Leave::Detached)));
        assert_eq!(q.pop_leaving(), Some((3, Leave::Abort)));
        assert_eq!(q.pop_leaving(), None);
        assert!(!q.is_leaving(1));
        assert_eq!(keys(&q), [4, 5]);
    }

    #[test]
    fn a_leaving_key_can_be_removed_before_it_is_popped() {
        let mut q = HoldQueue::new(1);
        q.admit(1, 0, (), |_| None);
        q.admit(2, 0, (), |_| Some(Leave::Abort));
        q.admit(3, 0, (), |_| Some(Leave::Detached));
        assert_eq!(q.leaving_len(), 2);
        // The socket went away first (its destructor): nothing left to do.
        assert_eq!(q.remove(1).map(|e| e.key), Some(1));
        assert_eq!(q.remove(1), None);
        assert_eq!(q.leaving_len(), 1);
        assert_eq!(q.pop_leaving(), Some((2, Leave::Detached)));
        assert_eq!(q.pop_leaving(), None);
        assert_eq!(keys(&q), [3]);
    }

    #[test]
    fn leaving_entries_do_not_count_against_the_capacity() {
        let mut q = HoldQueue::new(4);
        for k in 0..4usize {
            q.admit(k, 0, (), |_| unreachable!());
        }
        assert_eq!(q.expire(100, 50, Leave::Deliver), Some(0));
        assert_eq!(q.expire(100, 50, Leave::Deliver), Some(1));
        // Two held fewer: two more fit without evicting anyone.
        q.admit(10, 100, (), |_| unreachable!());
        q.admit(11, 100, (), |_| unreachable!());
        assert_eq!((q.len(), q.leaving_len()), (4, 2));
        let mut gone = Vec::new();
        q.admit(12, 100, (), |v| {
            gone.push(v);
            Some(Leave::Abort)
        });
        assert_eq!(gone, [2]);
        assert_eq!((q.len(), q.leaving_len()), (4, 3));
        let left: Vec<(usize, Leave)> = q.iter_leaving().collect();
        assert_eq!(
            left,
            [(0, Leave::Deliver), (1, Leave::Deliver), (2, Leave::Abort)]
        );
    }

    #[test]
    fn growth_failure_refuses_the_admission_and_lets_nobody_go() {
        let mut q = HoldQueue::<u64>::new(4);
        assert!(q.reserve_first());
        assert_eq!(q.chunks.len(), 1);
        let per = HoldQueue::<u64>::PER;
        q.chunk_limit = 1;
        // The queue's capacity is what the backlog allows; fill the one
        // chunk's other slots with leaving entries.
        q.set_capacity(per);
        for k in 0..per {
            assert_eq!(q.admit(k, 0, 0, |_| unreachable!()), Admit::Held);
        }
        q.set_capacity(1);
        let mut gone = Vec::new();
        // The extra oldest go (they need no slot), the last one stays:
        // there is no slot for the newcomer, so it is refused and nobody
        // is evicted for it.
        let r = q.admit(per, 0, 0, |v| {
            gone.push(v);
            Some(Leave::Detached)
        });
        assert_eq!(r, Admit::NoMemory);
        assert_eq!(gone, (0..per - 1).collect::<Vec<_>>());
        assert_eq!(keys(&q), [per - 1]);
        assert!(!q.contains(per));
        // Once the task has popped one, its slot takes the next arrival.
        assert_eq!(q.pop_leaving(), Some((0, Leave::Detached)));
        let r = q.admit(per, 0, 0, |v| {
            gone.push(v);
            Some(Leave::Detached)
        });
        assert_eq!(r, Admit::Held);
        assert_eq!(keys(&q), [per]);
        q.chunk_limit = usize::MAX;
        assert_eq!(q.admit(per + 1, 0, 0, |_| Some(Leave::Abort)), Admit::Held);
        assert_eq!(q.chunks.len(), 2);
    }

    #[test]
    fn shrinking_capacity_evicts_extra_oldest() {
        let mut q = HoldQueue::new(4);
        for k in 1..=4usize {
            q.admit(k, 0, (), |_| None);
        }
        q.set_capacity(2);
        let mut gone = Vec::new();
        let r = q.admit(5, 0, (), |k| {
            gone.push(k);
            None
        });
        assert_eq!(r, Admit::Held);
        assert_eq!(gone, [1, 2, 3]);
        assert_eq!(q.len(), 2);
        assert_eq!(keys(&q), [4, 5]);
    }

    #[test]
    fn duplicate_admission_is_ignored() {
        let mut q = HoldQueue::new(2);
        assert_eq!(q.admit(7, 0, 1u8, |_| None), Admit::Held);
        assert_eq!(q.admit(7, 5, 2u8, |_| None), Admit::AlreadyHeld);
        assert_eq!(q.get_mut(7).copied(), Some(1));
    }

    #[test]
    fn expiry_is_from_the_front() {
        let mut q = HoldQueue::new(8);
        q.admit(1, 100, (), |_| None);
        q.admit(2, 150, (), |_| None);
        assert!(q.expire(199, 100, Leave::Abort).is_none());
        assert_eq!(q.expire(200, 100, Leave::Abort), Some(1));
        assert!(q.expire(200, 100, Leave::Abort).is_none());
        assert_eq!(q.expire(250, 100, Leave::Deliver), Some(2));
        assert!(q.expire(1000, 0, Leave::Abort).is_none());
        let left: Vec<(usize, Leave)> = q.iter_leaving().collect();
        assert_eq!(left, [(1, Leave::Abort), (2, Leave::Deliver)]);
    }

    #[test]
    fn expiry_across_the_clock_wrap() {
        let mut q = HoldQueue::new(8);
        let t0 = u32::MAX - 50;
        q.admit(1, t0, (), |_| None);
        assert!(q.expire(t0.wrapping_add(99), 100, Leave::Abort).is_none());
        assert_eq!(q.expire(t0.wrapping_add(100), 100, Leave::Abort), Some(1));
        // Limits above MAX_HOLD count as MAX_HOLD.
        q.admit(2, 0, (), |_| None);
        assert!(q.expire(MAX_HOLD - 1, u32::MAX, Leave::Abort).is_none());
        assert_eq!(q.expire(MAX_HOLD, u32::MAX, Leave::Abort), Some(2));
    }

    #[test]
    fn a_position_finds_its_entry_once() {
        let mut q = HoldQueue::new(2);
        let p1 = q.admit_pos(1, 0, 10u32, |_| None).unwrap();
        assert_eq!(q.held_pos(1), Some(p1));
        let p2 = q.held_pos(2);
        assert!(p2.is_none());
        let p2 = q.admit_pos(2, 0, 20u32, |_| None).unwrap();
        *q.state_at(p1).unwrap() += 1;
        assert_eq!(q.get_mut(1).copied(), Some(11));
        assert_eq!(q.admit_pos(2, 0, 0, |_| None), Err(Admit::AlreadyHeld));
        assert!(q.remove_pos(p2));
        assert!(!q.contains(2));
        assert_eq!(q.len(), 1);
        // Stale: its entry is gone, and another one may have its slot.
        assert!(!q.remove_pos(p2));
        assert!(q.state_at(p2).is_none());
        // A full queue evicts the oldest to the leaving list: not held,
        // so its position no longer reaches it.
        q.admit(3, 0, 30, |_| None);
        q.admit(4, 0, 40, |_| Some(Leave::Abort));
        assert!(q.state_at(p1).is_none());
        assert!(!q.remove_pos(p1));
        assert!(q.is_leaving(1));
        assert_eq!(keys(&q), [3, 4]);
    }

    #[test]
    fn remove_and_drain() {
        let mut q = HoldQueue::new(8);
        for k in 1..=4usize {
            q.admit(k, 0, (), |_| None);
        }
        q.set_capacity(3);
        q.admit(5, 0, (), |_| Some(Leave::Detached));
        q.set_capacity(8);
        assert_eq!(q.remove(2).map(|e| e.key), Some(2));
        assert!(q.remove(2).is_none());
        let all: Vec<usize> = q.drain().map(|e| e.key).collect();
        assert_eq!(all, [3, 4, 5]);
        assert!(q.is_empty());
        assert!(!q.contains(3));
        // Drain leaves the leaving list alone; drop_leaving sorts it.
        assert_eq!(q.leaving_len(), 1);
        q.drop_leaving(|how| how == Leave::Detached);
        assert_eq!(q.leaving_len(), 1);
        q.drop_leaving(|_| false);
        assert_eq!((q.leaving_len(), q.pop_leaving()), (0, None));
    }

    #[test]
    fn drop_leaving_keeps_what_it_is_told() {
        let mut q = HoldQueue::new(1);
        let how = [
            Leave::Abort,
            Leave::Detached,
            Leave::Deliver,
            Leave::Detached,
        ];
        q.admit(0, 0, (), |_| unreachable!());
        for (k, h) in how.iter().enumerate() {
            q.admit(k + 1, 0, (), |_| Some(*h));
        }
        q.drop_leaving(|h| h == Leave::Detached);
        let left: Vec<(usize, Leave)> = q.iter_leaving().collect();
        assert_eq!(left, [(1, Leave::Detached), (3, Leave::Detached)]);
        assert!(!q.is_leaving(0) && !q.is_leaving(2));
        assert_eq!(keys(&q), [4]);
    }

    #[test]
    fn growth_matches_the_arithmetic_and_stops_at_the_capacity() {
        let mut q = HoldQueue::new(1000);
        assert!(q.reserve_first());
        assert_eq!((q.chunks.len(), q.index.len()), reserved::<u32>(1));
        for k in 0..10_000usize {
            q.admit(k * 64, 0, 0u32, |_| None);
        }
        assert_eq!((q.chunks.len(), q.index.len()), reserved::<u32>(1000));
        assert_eq!(q.len(), 1000);
    }

    #[test]
    fn socket_like_keys_collide_and_are_still_found() {
        // Addresses from one UMA zone: same low bits, close together.
        let mut q = HoldQueue::new(4096);
        let base = 0xffff_f800_0312_0000usize;
        for k in 0..4096 {
            q.admit(base + k * 0x300, k as u32, k, |_| unreachable!());
        }
        for k in (0..4096).step_by(3) {
            assert_eq!(q.remove(base + k * 0x300).map(|e| e.state), Some(k));
        }
        for k in 0..4096 {
            assert_eq!(q.contains(base + k * 0x300), k % 3 != 0, "{k}");
        }
    }

    #[test]
    fn keys_sharing_a_fingerprint_are_told_apart() {
        let base = 0xffff_f800_0312_0000usize;
        let keys: Vec<usize> = (0..200_000)
            .map(|k| base + k * 0x40)
            .filter(|&k| fingerprint(k) == 7)
            .take(300)
            .collect();
        assert_eq!(keys.len(), 300);
        let mut q = HoldQueue::new(300);
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(q.admit(k, 0, n, |_| unreachable!()), Admit::Held);
        }
        for &k in keys.iter().step_by(2) {
            assert!(q.remove(k).is_some());
        }
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(q.get_mut(k).copied(), (n % 2 == 1).then_some(n));
        }
    }

    #[test]
    fn memory_per_held_connection() {
        // The kernel's state is bigger (kmod/src/filters.rs): 40 bytes.
        assert_eq!(slot_bytes::<()>(), 8 + 4 + 4 + 4 + 1 + 3);
        assert_eq!(slot_bytes::<[u32; 4]>(), 40);
        // listenq(4): what the bench's held connections cost, and an idle
        // listener whatever its backlog.
        assert_eq!(HoldQueue::<[u32; 4]>::PER, 102);
        assert_eq!(reserved::<[u32; 4]>(0), (1, 256));
        assert_eq!(reserved::<[u32; 4]>(1000), (10, 2048));
        assert_eq!(reserved::<[u32; 4]>(4000), (40, 8192));
        assert_eq!(reserved::<[u32; 4]>(16000), (157, 32768));
    }

    /// How the model lets an evicted key go.
    fn how(k: usize) -> Option<Leave> {
        match (k / 0x240) % 3 {
            0 => None,
            1 => Some(Leave::Abort),
            _ => Some(Leave::Detached),
        }
    }

    /// The model: two FIFOs scanned linearly.
    #[derive(Debug, Clone)]
    enum Op {
        Admit(u8),
        Remove(u8),
        /// The callback's release: held_pos, state_at, remove_pos.
        Release(u8),
        Get(u8),
        Expire(u16, u16),
        Capacity(u8),
        Drain,
        PopLeaving,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => any::<u8>().prop_map(|k| Op::Admit(k % 48)),
            2 => any::<u8>().prop_map(|k| Op::Remove(k % 48)),
            2 => any::<u8>().prop_map(|k| Op::Release(k % 48)),
            1 => any::<u8>().prop_map(|k| Op::Get(k % 48)),
            1 => (any::<u16>(), any::<u16>()).prop_map(|(n, t)| Op::Expire(n % 600, t % 100)),
            1 => any::<u8>().prop_map(|c| Op::Capacity(c % 20)),
            1 => Just(Op::Drain),
            2 => Just(Op::PopLeaving),
        ]
    }

    proptest::proptest! {
        #[test]
        fn never_exceeds_capacity_and_keeps_newest(cap in 1usize..16, n in 0usize..64) {
            let mut q = HoldQueue::new(cap);
            let mut evicted = 0usize;
            for k in 0..n {
                let r = q.admit(k, 0, (), |_| {
                    evicted += 1;
                    Some(Leave::Abort)
                });
                proptest::prop_assert_eq!(r, Admit::Held);
                proptest::prop_assert!(q.len() <= cap);
            }
            proptest::prop_assert_eq!(evicted, n.saturating_sub(cap));
            proptest::prop_assert_eq!(q.leaving_len(), evicted);
            let want: Vec<usize> = (n.saturating_sub(cap)..n).collect();
            proptest::prop_assert_eq!(keys(&q), want);
        }

        #[test]
        fn behaves_like_scanned_fifos(
            cap in 1usize..20,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let mut q = HoldQueue::new(cap);
            let mut m: VecDeque<Held<u32>> = VecDeque::new();
            let mut ml: VecDeque<(usize, Leave)> = VecDeque::new();
            let mut mcap = cap;
            let mut now = 0u32;
            for (i, o) in ops.into_iter().enumerate() {
                let i = i as u32;
                match o {
                    Op::Admit(k) => {
                        let k = usize::from(k) * 0x240;
                        now += 1;
                        let mut got = Vec::new();
                        let r = q.admit(k, now, i, |v| {
                            got.push(v);
                            how(v)
                        });
                        let mut want = Vec::new();
                        let wr = if m.iter().any(|e| e.key == k) || ml.iter().any(|e| e.0 == k) {
                            Admit::AlreadyHeld
                        } else {
                            while m.len() >= mcap {
                                if let Some(v) = m.pop_front() {
                                    want.push(v.key);
                                    if let Some(h) = how(v.key) {
                                        ml.push_back((v.key, h));
                                    }
                                }
                            }
                            m.push_back(Held { key: k, since: now, state: i });
                            Admit::Held
                        };
                        proptest::prop_assert_eq!(got, want);
                        proptest::prop_assert_eq!(r, wr);
                    }
                    Op::Remove(k) => {
                        let k = usize::from(k) * 0x240;
                        let w = m.iter().position(|e| e.key == k).and_then(|p| m.remove(p));
                        let wl = ml.iter().position(|e| e.0 == k).and_then(|p| ml.remove(p));
                        let got = q.remove(k);
                        proptest::prop_assert_eq!(got.map(|e| e.key), w.map(|e| e.key).or(wl.map(|e| e.0)));
                        if w.is_some() {
                            proptest::prop_assert_eq!(got, w);
                        }
                    }
                    Op::Release(k) => {
                        let k = usize::from(k) * 0x240;
                        let w = m.iter().position(|e| e.key == k).and_then(|p| m.remove(p));
                        let p = q.held_pos(k);
                        proptest::prop_assert_eq!(p.is_some(), w.is_some());
                        if let (Some(p), Some(w)) = (p, w) {
                            proptest::prop_assert_eq!(q.state_at(p).copied(), Some(w.state));
                            proptest::prop_assert!(q.remove_pos(p));
                            proptest::prop_assert!(!q.remove_pos(p));
                        }
                    }
                    Op::Get(k) => {
                        let k = usize::from(k) * 0x240;
                        let w = m.iter_mut().find(|e| e.key == k);
                        let g = q.get_mut(k);
                        proptest::prop_assert_eq!(g.as_deref(), w.as_deref().map(|e| &e.state));
                        if let (Some(g), Some(w)) = (g, w) {
                            *g += 1000;
                            w.state += 1000;
                        }
                    }
                    Op::Expire(at, t) => {
                        let at = u32::from(at);
                        let t = u32::from(t);
                        let w = match m.front() {
                            Some(f) if at.wrapping_sub(f.since) >= t => m.pop_front(),
                            _ => None,
                        };
                        if let Some(w) = w {
                            ml.push_back((w.key, Leave::Deliver));
                        }
                        proptest::prop_assert_eq!(q.expire(at, t, Leave::Deliver), w.map(|e| e.key));
                    }
                    Op::Capacity(c) => {
                        q.set_capacity(usize::from(c));
                        mcap = usize::from(c).max(1);
                    }
                    Op::Drain => {
                        let got: Vec<Held<u32>> = q.drain().collect();
                        let want: Vec<Held<u32>> = m.drain(..).collect();
                        proptest::prop_assert_eq!(got, want);
                    }
                    Op::PopLeaving => {
                        proptest::prop_assert_eq!(q.pop_leaving(), ml.pop_front());
                    }
                }
                proptest::prop_assert_eq!(q.len(), m.len());
                proptest::prop_assert_eq!(q.leaving_len(), ml.len());
                let order: Vec<Held<u32>> = q.iter().collect();
                let want: Vec<Held<u32>> = m.iter().copied().collect();
                proptest::prop_assert_eq!(order, want);
                let order: Vec<(usize, Leave)> = q.iter_leaving().collect();
                let want: Vec<(usize, Leave)> = ml.iter().copied().collect();
                proptest::prop_assert_eq!(order, want);
                for e in m.iter() {
                    proptest::prop_assert!(q.contains(e.key) && !q.is_leaving(e.key));
                }
                for e in ml.iter() {
                    proptest::prop_assert!(!q.contains(e.0) && q.is_leaving(e.0));
                }
            }
        }
    }
}
