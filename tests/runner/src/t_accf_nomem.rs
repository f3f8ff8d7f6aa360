//! Out of memory in listenq's upcalls, hooks and tick, through its fail(9)
//! point debug.fail_point.listenq_malloc (every allocation Rust makes; a
//! held connection gets nothing of its own, so its admission can only
//! fail when its hold queue must grow). Each case turns it on, does one
//! thing, turns it off, and shows: no panic, no connection held forever
//! (every client is either accepted once it sends or reset), and the
//! counters (kern.ipc.listenq.stats.*) exactly as listenq(4) says. Phase C
//! of t_accf then checks that allocations return to 0 and kldunload works.

use crate::accf_util as au;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno, Fd};
use crate::sysctl;
use crate::t_accf_counts::{accept_n, at, judge, row_counts, silent, Stats, Step};
use crate::tap::Tap;

const MALLOC: &str = "debug.fail_point.listenq_malloc";
/// New connections skip the child index's ring for its shards, which
/// allocate (read by listenq's tick: wait 100 ms after setting it).
const RING_FULL: &str = "debug.fail_point.listenq_ring_full";

fn fail_on(point: &'static str, how: &str) -> Result<(), Step> {
    sysctl::write_str(point, how).map_err(at(point))
}

/// Turns listenq_ring_full on and waits until listenq's tick (every 100
/// ms) has read it: fail(9) counts a "N*" term down at each evaluation,
/// so the first read shows in the sysctl's value. An event to wait for,
/// not a sleep that a loaded host can outlast.
fn ring_full_seen() -> Result<(), Step> {
    fail_on(RING_FULL, "1000000*return(1)")?;
    let t0 = sys::now_ms();
    let mut armed = [0u8; 64];
    let armed = sysctl::read_string(RING_FULL, &mut armed).map_err(at(RING_FULL))?;
    let mut b = [0u8; 64];
    while sysctl::read_string(RING_FULL, &mut b).map_err(at(RING_FULL))? == armed {
        if sys::now_ms() - t0 > 5000 {
            return Err((RING_FULL, Errno::TIMEOUT));
        }
        sys::sleep_ms(10);
    }
    // The tick stores what it read right after reading it. The margin
    // the test had before the event wait stays; the failure once blamed
    // on the ring being used after the read was the race `recorded`
    // closes (the fail point turned off while the upcall still filed).
    sys::sleep_ms(300);
    Ok(())
}

/// Waits until the listen upcall has counted `n` completions since
/// stats.completed was `before`. It counts them once it has filed them, so
/// a fail point turned off after this cannot reach the filing.
/// SO_LISTENQLEN says less: solisten_enqueue() raises it before it calls
/// the upcall, and getsockopt(2) reads it without the listener's lock, so
/// a test that waited on it turned listenq_malloc off while the upcall was
/// still filing (the shard's table then allocated: nomem +0, accepted +2,
/// seen on both kernels). Reading `completed` allocates nothing.
fn recorded(before: u64, n: u64) -> Result<(), Step> {
    if au::wait_stat_at_least("completed", before.wrapping_add(n), 2000) {
        Ok(())
    } else {
        Err(("completed", Errno::TIMEOUT))
    }
}

fn all_off() {
    let _ = sysctl::write_str(MALLOC, "off");
    let _ = sysctl::write_str(RING_FULL, "off");
}

pub fn run(tap: &mut Tap) {
    listen_without_memory(tap);
    complete_needs_no_memory(tap);
    complete_in_the_shards(tap);
    complete_without_memory(tap);
    filter_without_memory(tap);
    admit_without_queue_memory(tap);
    evict_without_memory(tap);
    full_room_without_memory(tap);
    timeout_without_memory(tap);
    random_failures(tap);
    all_off();
}

/// pr_listen cannot register the listener: listen(2) still succeeds, the
/// listener is simply not in the table, and nomem says so.
fn listen_without_memory(tap: &mut Tap) {
    // Some(the row lookup) only once the case got that far.
    let mut row = None;
    let r = (|| {
        let b = Stats::read()?;
        {
            let (s, sa) = sock::bound(Kind::Tcp4).map_err(at("bind"))?;
            fail_on(MALLOC, "return(12)")?;
            let rc = sys::listen(s.raw(), 5);
            all_off();
            rc.map_err(at("listen"))?;
            row = Some(row_counts(&sa)?);
        }
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] listen(2) with listenq_malloc failing: succeeds; listens +1, nomem +1, closes +0 (never registered)"),
        r,
        Stats {
            listens: 1,
            nomem: 1,
            ..Stats::default()
        },
    );
    tap.check(
        row,
        Some(None),
        "[nomem] ... and the listener has no table row",
    );
}

/// A connection's completion is recorded in the child index's ring,
/// which is static: with every allocation of listenq's failing, it is
/// still counted, and so is its accept.
fn complete_needs_no_memory(tap: &mut Tap) {
    let mut row = None;
    let r = (|| {
        let (l, sa) = au::listener(5).map_err(at("listener"))?;
        let b = Stats::read()?;
        fail_on(MALLOC, "return(12)")?;
        let c1 = au::client(&sa);
        let a1 = recorded(b.completed, 1)
            .and_then(|()| au::accept_within(l.raw(), 2000).map_err(at("accept")));
        all_off();
        let _c1 = c1.map_err(at("connect"))?;
        a1?;
        row = Some(row_counts(&sa)?.map(|r| r.accepted));
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] a connection completing and accepted with listenq_malloc failing: completed +1, accepted +1, nomem +0 (the ring allocates nothing)"),
        r,
        Stats {
            completed: 1,
            accepted: 1,
            ..Stats::default()
        },
    );
    tap.check(
        row,
        Some(Some(1)),
        "[nomem] ... and the listener's row counts the accept",
    );
}

/// Connections whose ring slot is taken go to the shards (the fail point
/// sends every one there): with memory, each is recorded and its accept
/// found there, in and out of order.
fn complete_in_the_shards(tap: &mut Tap) {
    const N: usize = 20;
    let mut row = None;
    let r = (|| {
        let (l, sa) = au::listener(N as i32).map_err(at("listener"))?;
        ring_full_seen()?;
        let b = Stats::read()?;
        // Ten one at a time, then ten queued before the first accept.
        for _ in 0..N / 2 {
            let _c = au::client(&sa).map_err(at("connect"))?;
            au::accept_within(l.raw(), 2000).map_err(at("accept"))?;
        }
        let mut cs: [Option<Fd>; N / 2] = [const { None }; N / 2];
        for c in cs.iter_mut() {
            *c = Some(au::client(&sa).map_err(at("connect"))?);
        }
        sock::wait_qlen(l.raw(), (N / 2) as i32, 2000).map_err(at("queue"))?;
        for _ in 0..N / 2 {
            au::accept_within(l.raw(), 2000).map_err(at("accept"))?;
        }
        row = Some(row_counts(&sa)?.map(|r| r.accepted));
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] {} connections filed in the shards (listenq_ring_full): completed +{}, accepted +{}, nomem +0", N, N, N),
        r,
        Stats {
            completed: N as u64,
            accepted: N as u64,
            ..Stats::default()
        },
    );
    tap.check(
        row,
        Some(Some(N as i64)),
        "[nomem] ... and the listener's row counts every accept",
    );
}

/// The listen upcall cannot record a completed connection: its ring slot
/// is taken (the fail point stands in for that) and the shards need
/// memory (a shard with no connections gives its table back within a
/// tick, 100 ms, and this waits for that): nomem says so, its accept is
/// not counted (accepted +0, and the row's count stays), and the
/// listener's next connection is recorded and counted as usual.
fn complete_without_memory(tap: &mut Tap) {
    let mut row = None;
    let r = (|| {
        let (l, sa) = au::listener(5).map_err(at("listener"))?;
        ring_full_seen()?;
        let b = Stats::read()?;
        fail_on(MALLOC, "return(12)")?;
        let c1 = au::client(&sa);
        let q1 = recorded(b.completed, 1);
        all_off();
        let _c1 = c1.map_err(at("connect 1"))?;
        q1?;
        au::accept_within(l.raw(), 2000).map_err(at("accept 1"))?;
        let _c2 = au::client(&sa).map_err(at("connect 2"))?;
        au::accept_within(l.raw(), 2000).map_err(at("accept 2"))?;
        row = Some(row_counts(&sa)?.map(|r| r.accepted));
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] a connection completing with its ring slot taken and listenq_malloc failing, then one without: completed +2, nomem +1, accepted +1"),
        r,
        Stats {
            completed: 2,
            accepted: 1,
            nomem: 1,
            ..Stats::default()
        },
    );
    tap.check(
        row,
        Some(Some(1)),
        "[nomem] ... and the listener's row counts the one accept recorded",
    );
}

/// accf_create cannot record the listener's filter: setsockopt(2) fails
/// with EINVAL as for any refused filter, and the listener goes on
/// unfiltered (a silent client is accepted at once).
fn filter_without_memory(tap: &mut Tap) {
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::listener(5).map_err(at("listener"))?;
            fail_on(MALLOC, "return(12)")?;
            let set = au::set_filter(l.raw(), "dataready", "");
            all_off();
            if set != Err(Errno::EINVAL) {
                tap.diag(format_args!("  setsockopt: {:?}", set));
                return Err(("setsockopt did not fail with EINVAL", Errno::EINVAL));
            }
            let _c = au::client(&sa).map_err(at("connect"))?;
            au::accept_within(l.raw(), 2000).map_err(at("accept"))?;
        }
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] SO_ACCEPTFILTER dataready with listenq_malloc failing: EINVAL, nomem +1, the listener works unfiltered"),
        r,
        Stats {
            nomem: 1,
            completed: 1,
            accepted: 1,
            ..Stats::ONE_LISTENER
        },
    );
}

/// The hold queue is sized for the backlog when the filter is attached, so
/// admitting a connection allocates nothing: with every allocation of
/// listenq's failing, a silent client is still held (not accepted), and
/// once it sends (allocations back) it is released and accepted. (It was
/// passed on unfiltered when the queue grew at admission.)
fn admit_without_queue_memory(tap: &mut Tap) {
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(5, "dataready", "").map_err(at("listener"))?;
            fail_on(MALLOC, "return(12)")?;
            let c = au::client(&sa);
            sys::sleep_ms(100);
            let early = au::try_accept(l.raw());
            all_off();
            let c = c.map_err(at("connect"))?;
            match early {
                Err(Errno::EAGAIN) => {}
                Ok(_) => return Err(("not held: accepted before it sent", Errno::EINVAL)),
                Err(e) => return Err(("accept before it sent", e)),
            }
            au::send_all(c.raw(), b"!").map_err(at("send"))?;
            au::accept_within(l.raw(), 2000).map_err(at("accept after data"))?;
        }
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] listenq_malloc failing at admission: a silent dataready client is still held (nothing to allocate), accepted after data; held +1, released +1, nomem +0"),
        r,
        Stats::ONE_HELD_PASSED,
    );
}

/// listen(2), 2 held: a third arrives while no allocation succeeds. The
/// oldest must still be terminated (letting a connection go needs no
/// memory: its slot waits on the leaving list for the listener's own
/// task), the other two stay held until they send.
fn evict_without_memory(tap: &mut Tap) {
    let mut row = None;
    let mut first = None;
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(2, "dataready", "").map_err(at("listener"))?;
            let old: [Option<Fd>; 2] = silent(&sa)?;
            sys::sleep_ms(100);
            fail_on(MALLOC, "return(12)")?;
            let c = au::client(&sa);
            sys::sleep_ms(300);
            all_off();
            let c = c.map_err(at("connect"))?;
            if let Some(a) = &old[0] {
                first = Some(au::client_sees(a.raw(), 1000));
            }
            for s in [old[1].as_ref(), Some(&c)].into_iter().flatten() {
                au::send_all(s.raw(), b"!").map_err(at("send"))?;
            }
            let n = accept_n(l.raw(), 3, 1000)?;
            if n != 2 {
                tap.diag(format_args!("  accepted {} (want the 2 newest)", n));
                return Err(("accept", Errno::EINVAL));
            }
            row = row_counts(&sa)?;
        }
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] listen(2), 2 held, a 3rd with listenq_malloc failing: the oldest is reset, the 2 newest accepted after data; held +3, evicted +1, released +2"),
        r,
        Stats {
            held: 3,
            evicted: 1,
            released: 2,
            completed: 2,
            accepted: 2,
            ..Stats::ONE_LISTENER
        },
    );
    tap.ok(
        first.is_some_and(|s| s.is_reset_or_eof()) && row.map(|r| r.evicted) == Some(1),
        "[nomem] ... the oldest client saw a reset, and EVICTED says 1",
    );
    if !first.is_some_and(|s| s.is_reset_or_eof()) {
        tap.diag(format_args!("  oldest client saw {:?}", first));
    }
}

/// Slots per 4 KiB chunk of a hold queue (listenq(4) "The secondary
/// queue", kmod/src/filters.rs): a backlog of exactly this many reserves
/// one chunk, which holding that many fills.
const SLOTS_PER_CHUNK: usize = 102;

/// listen(2) with a backlog of one chunk's slots, all held: the next one
/// needs a slot the queue must allocate, while no allocation succeeds. It
/// passes at once and evicts nobody (nomem +1; its completion is still
/// recorded, in the ring, and so is its accept); the held ones are
/// accepted once they send.
fn full_room_without_memory(tap: &mut Tap) {
    const N: usize = SLOTS_PER_CHUNK;
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(N as i32, "dataready", "").map_err(at("listener"))?;
            let old: [Option<Fd>; N] = silent(&sa)?;
            sys::sleep_ms(200);
            fail_on(MALLOC, "return(12)")?;
            let c = au::client(&sa);
            let a = au::accept_within(l.raw(), 2000);
            all_off();
            let _c = c.map_err(at("connect"))?;
            a.map_err(at("accept of the unheld client"))?;
            for s in old.iter().flatten() {
                au::send_all(s.raw(), b"!").map_err(at("send"))?;
            }
            let n = accept_n(l.raw(), N, 2000)?;
            if n != N {
                return Err(("accept of the held ones", Errno::TIMEOUT));
            }
        }
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] listen(2) of 102, 102 held, the 103rd while listenq_malloc fails: it passes at once, the 102 held are accepted after data; nomem +1, evicted +0"),
        r,
        Stats {
            held: N as u64,
            released: N as u64,
            nomem: 1,
            completed: N as u64 + 1,
            accepted: N as u64 + 1,
            ..Stats::ONE_LISTENER
        },
    );
}

/// The hold timeout fires while no allocation succeeds anywhere.
fn timeout_without_memory(tap: &mut Tap) {
    let r = (|| {
        let b = Stats::read()?;
        {
            let (l, sa) = au::filtered(5, "dataready", "timeout=300,ontimeout=drop")
                .map_err(at("listener"))?;
            let c = au::client(&sa).map_err(at("connect"))?;
            sys::sleep_ms(50);
            fail_on(MALLOC, "return(12)")?;
            let seen = au::client_sees(c.raw(), 3000);
            all_off();
            if !seen.is_reset_or_eof() {
                tap.diag(format_args!("  client saw {:?}", seen));
                return Err(("client not reset at the timeout", Errno::TIMEOUT));
            }
            sys::sleep_ms(50);
            if au::try_accept(l.raw()).is_ok() {
                return Err(("accepted after the drop", Errno::EEXIST));
            }
        }
        Ok(Stats::read()?.since(&b))
    })();
    all_off();
    judge(
        tap,
        format_args!("[nomem] timeout=300,ontimeout=drop with listenq_malloc failing: the client is reset; timeouts +1, evicted +1"),
        r,
        Stats {
            held: 1,
            timeouts: 1,
            evicted: 1,
            ..Stats::ONE_LISTENER
        },
    );
}

/// 30 clients that send one byte each while a tenth of all allocations
/// fail: every one is accepted; what was held was released; the hold and
/// accept counters agree with nomem.
fn random_failures(tap: &mut Tap) {
    const N: usize = 30;
    let name = "[nomem] 30 clients sending 1 byte with 10% of listenq's allocations failing: all 30 accepted; held = released, evicted +0, completed +30";
    let r = (|| {
        let b = Stats::read()?;
        let n = {
            let (l, sa) = au::filtered(64, "dataready", "").map_err(at("listener"))?;
            let mut cl: [Option<Fd>; N] = [const { None }; N];
            fail_on(MALLOC, "10%return(12)")?;
            let mut err = None;
            for c in cl.iter_mut() {
                match au::client(&sa).and_then(|c| au::send_all(c.raw(), b"x").map(|_| c)) {
                    Ok(fd) => *c = Some(fd),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            let n = accept_n(l.raw(), N, 2000);
            all_off();
            if let Some(e) = err {
                return Err(("connect + send", e));
            }
            n?
        };
        Ok((n, Stats::read()?.since(&b)))
    })();
    all_off();
    match r {
        Ok((n, d)) => {
            let pass = n == N
                && d.completed == N as u64
                && d.held == d.released
                && d.evicted == 0
                && d.timeouts == 0
                && d.accepted <= N as u64
                && d.accepted + d.nomem >= N as u64;
            tap.ok(pass, name);
            tap.diag(format_args!("  accepted {}; counters {:?}", n, d));
        }
        Err((s, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", s, e));
        }
    }
}
