//! Benchmark (run-vm.sh --bench, kernel env listenq.bench=1; nothing else
//! runs then): connections per second through each accept filter.
//!
//! One measurement = a fresh 127.0.0.1 listener (listen(128), the filter
//! set) and ITERS rounds of: nonblocking connect + poll, send one complete
//! request for the filter, poll + accept(2) on the listener, close the
//! client, close the accepted socket. Timed with CLOCK_MONOTONIC (guest
//! time), after WARMUP untimed rounds.
//!
//! Order: listenq loaded: dataready, httpready, dnsready, tlsready, no
//! filter; listenq unloaded, stock accf_data/http/dns loaded: dataready,
//! httpready, dnsready, no filter.

use crate::accf_util as au;
use crate::env::Env;
use crate::kld;
use crate::net::SockAddr;
use crate::sock::{self, Kind};
use crate::sys::{self, Errno};
use crate::tap::Tap;

const ITERS: u64 = 1000;
const WARMUP: u64 = 20;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
/// A DNS query for example.com A, with its 2-byte length.
const DNSQ: &[u8] = b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
/// One TLS handshake record (a short ClientHello).
const TLSREC: &[u8] = b"\x16\x03\x01\x00\x0a\x01\x00\x00\x06\xaa\xbb\xcc\xdd\xee\xff";

const FILTERS: [(&str, &[u8]); 4] = [
    ("dataready", b"x"),
    ("httpready", GET),
    ("dnsready", DNSQ),
    ("tlsready", TLSREC),
];

/// Whether the kernel environment asks for the benchmark.
pub fn wanted() -> bool {
    let mut b = [0u8; 16];
    matches!(sys::kenv_get(c"listenq.bench", &mut b), Ok(v) if v == b"1" || v == b"yes")
}

fn one(l: i32, sa: &SockAddr, req: &[u8]) -> Result<(), (&'static str, Errno)> {
    let c = sock::connect(Kind::Tcp4, sa).map_err(|e| ("connect", e))?;
    au::send_all(c.raw(), req).map_err(|e| ("send", e))?;
    let a = au::accept_within(l, sock::IO_TIMEOUT_MS).map_err(|e| ("accept", e))?;
    drop(c);
    drop(a);
    Ok(())
}

/// Connections per second (and the microseconds the timed rounds took).
fn measure(filter: Option<&str>, req: &[u8]) -> Result<(u64, u64), (&'static str, Errno)> {
    let (l, sa) = au::listener(128).map_err(|e| ("listener", e))?;
    if let Some(f) = filter {
        au::set_filter(l.raw(), f, "").map_err(|e| ("SO_ACCEPTFILTER", e))?;
    }
    for _ in 0..WARMUP {
        one(l.raw(), &sa, req)?;
    }
    let t0 = sys::now_us();
    for _ in 0..ITERS {
        one(l.raw(), &sa, req)?;
    }
    let us = sys::now_us().saturating_sub(t0).max(1);
    Ok((ITERS * 1_000_000 / us, us))
}

fn report(
    tap: &mut Tap,
    filter: &str,
    who: &str,
    r: Result<(u64, u64), (&'static str, Errno)>,
) -> Option<u64> {
    match r {
        Ok((cps, us)) => {
            tap.ok(
                true,
                format_args!(
                    "bench {} {}: {} conns/s ({} connections in {} ms)",
                    filter,
                    who,
                    cps,
                    ITERS,
                    us / 1000
                ),
            );
            crate::tap::print(format_args!("# bench {} {} {}", filter, who, cps));
            Some(cps)
        }
        Err((step, e)) => {
            tap.ok(false, format_args!("bench {} {}", filter, who));
            tap.diag(format_args!("  {}: {}", step, e));
            None
        }
    }
}

fn ratio(tap: &Tap, filter: &str, a: Option<u64>, b: Option<u64>) {
    if let (Some(a), Some(b)) = (a, b) {
        if b > 0 {
            let r = a * 100 / b;
            tap.diag(format_args!(
                "bench ratio {} listenq/stock {}.{:02}",
                filter,
                r / 100,
                r % 100
            ));
        }
    }
}

pub fn run(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.v4 {
        tap.skip("bench", format_args!("127.0.0.1 unusable ({})", e));
        return;
    }
    let t0 = sys::now_ms();
    tap.diag(format_args!(
        "bench: {} timed connections per measurement after {} warm-up",
        ITERS, WARMUP
    ));
    let mut lq = [None; 5];
    // The bench unloads listenq to measure stock: opt in (the tunable
    // kldload reads; listenq(4) UNLOADING).
    let _ = sys::kenv_set(c"kern.ipc.listenq.unloadable", c"1");
    match au::listenq_loaded() {
        Ok(id) => {
            tap.ok(true, "bench: kldload listenq");
            for (i, (f, req)) in FILTERS.iter().enumerate() {
                lq[i] = report(tap, f, "listenq", measure(Some(f), req));
            }
            lq[4] = report(tap, "none", "listenq", measure(None, b"x"));
            let settled = au::allocs_settle(2000);
            let un = kld::unload(id);
            tap.ok(
                settled.is_ok() && un.is_ok(),
                "bench: allocs 0 and kldunload listenq",
            );
            if settled.is_err() || un.is_err() {
                tap.diag(format_args!("  allocs {:?}, kldunload {:?}", settled, un));
            }
        }
        Err(e) => {
            tap.ok(false, "bench: kldload listenq");
            tap.diag(format_args!("  {}", e));
        }
    }
    let mut st = [None; 4];
    if kld::find(crate::env::KO_NAME).is_ok() {
        tap.skip("bench stock", "listenq still loaded");
    } else {
        let mods = [
            (au::ACCF_DATA, "accf_data.ko"),
            (au::ACCF_HTTP, "accf_http.ko"),
            (au::ACCF_DNS, "accf_dns.ko"),
        ];
        for (i, (path, name)) in mods.iter().enumerate() {
            let loaded = au::in_image(path) && kld::load(path).is_ok();
            if loaded {
                let (f, req) = FILTERS[i];
                st[i] = report(tap, f, "stock", measure(Some(f), req));
            } else {
                tap.ok(false, format_args!("bench: kldload {}", name));
            }
        }
        st[3] = report(tap, "none", "stock", measure(None, b"x"));
    }
    for (i, (f, _)) in FILTERS.iter().take(3).enumerate() {
        ratio(tap, f, lq[i], st[i]);
    }
    ratio(tap, "none", lq[4], st[3]);
    tap.diag(format_args!(
        "bench took {} ms (guest clock)",
        sys::now_ms() - t0
    ));
}
