//! Phase B, FreeBSD's own accept filters: the same cases must give the
//! same hold and pass points; listenq beside them; stock's filter removal
//! and flood bound.

use super::*;

/// Whether stock accf_data holds a silent client here (1) or lets it
/// through at once (0): the kernel's own answer to what listenq probed.
pub(super) fn stock_data_holds() -> SysResult<i32> {
    let (l, sa) = au::filtered(8, "dataready", "")?;
    let _c = au::client(&sa)?;
    match au::accept_within(l.raw(), 500) {
        Ok(_) => Ok(0),
        Err(Errno::TIMEOUT) => Ok(1),
        Err(e) => Err(e),
    }
}

/// On a kernel whose connections do not inherit SO_ACCEPTFILTER, what the
/// stock filters do: every connection reaches accept(2) at once, with or
/// without bytes (they fail open; listenq(4) BUGS).
pub(super) fn stock_fails_open(tap: &mut Tap, filter: &str, name: &str) {
    let r = au::filtered(8, filter, "").and_then(|(l, sa)| {
        let _c = au::client(&sa)?;
        au::accept_within(l.raw(), 1000).map(|_| ())
    });
    tap.check(
        r,
        Ok(()),
        format_args!(
            "[stock, no SO_ACCEPTFILTER inheritance] {} lets a silent client through at once",
            name
        ),
    );
}

// ---------------------------------------------------------------- phase B

pub(super) fn load_stock(tap: &mut Tap, path: &core::ffi::CStr, name: &str) -> Option<i32> {
    if !au::in_image(path) {
        tap.skip(
            format_args!("[stock] kldload {}", name),
            "not in the image (run-vm.sh --modules)",
        );
        return None;
    }
    match kld::load(path) {
        Ok(id) => {
            tap.ok(
                true,
                format_args!("[stock] kldload {} (file id {})", name, id),
            );
            Some(id)
        }
        Err(e) => {
            tap.ok(false, format_args!("[stock] kldload {}", name));
            tap.diag(format_args!("  {}", e));
            None
        }
    }
}

pub(super) fn phase_b(tap: &mut Tap, listenq_at: &[Option<Option<usize>>; PARITY.len()]) {
    let mut stock_at = [None; PARITY.len()];
    let data = load_stock(tap, au::ACCF_DATA, "accf_data.ko");
    if data.is_some() {
        tap.check(
            stock_data_holds(),
            Ok(inherit()),
            "[stock] accf_data holds a silent client exactly when kern.ipc.listenq.accf_inherit is 1",
        );
    }
    if inherit() == 0 {
        let http = load_stock(tap, au::ACCF_HTTP, "accf_http.ko");
        let dns = load_stock(tap, au::ACCF_DNS, "accf_dns.ko");
        for (id, f, name) in [
            (data, "dataready", "accf_data"),
            (http, "httpready", "accf_http"),
            (dns, "dnsready", "accf_dns"),
        ] {
            if id.is_some() {
                stock_fails_open(tap, f, name);
            }
        }
        unload_stock(tap, data, http, dns);
        return;
    }
    if data.is_some() {
        for (i, c) in PARITY.iter().enumerate() {
            if c.filter == "dataready" {
                stock_at[i] = report_case(tap, "stock", c);
            }
        }
        beside_stock(tap);
        stock_flood(tap);
    }
    let http = load_stock(tap, au::ACCF_HTTP, "accf_http.ko");
    let dns = load_stock(tap, au::ACCF_DNS, "accf_dns.ko");
    for (i, c) in PARITY.iter().enumerate() {
        let loaded = match c.filter {
            "httpready" => http.is_some(),
            "dnsready" => dns.is_some(),
            _ => false,
        };
        if loaded {
            stock_at[i] = report_case(tap, "stock", c);
        }
    }
    crate::t_accf_records::run(tap, "stock", true, |f| match f {
        "httpready" => http.is_some(),
        "dnsready" => dns.is_some(),
        _ => false,
    });
    if dns.is_some() {
        for c in STOCK_ONLY.iter() {
            report_case(tap, "stock", c);
        }
    }
    match (http.is_some(), dns.is_some()) {
        (true, true) => buffer_full(tap, "stock", &["httpready", "dnsready"]),
        (true, false) => buffer_full(tap, "stock", &["httpready"]),
        (false, true) => buffer_full(tap, "stock", &["dnsready"]),
        (false, false) => {}
    }
    // Parity: the same hold/pass point for every case both ran.
    let mut same = true;
    let mut compared = 0;
    for (i, c) in PARITY.iter().enumerate() {
        if let (Some(s), Some(q)) = (stock_at[i], listenq_at[i]) {
            compared += 1;
            if s != q {
                same = false;
                tap.diag(format_args!(
                    "  {} {}: stock {:?}, listenq {:?}",
                    c.filter, c.label, s, q
                ));
            }
        }
    }
    if compared > 0 {
        tap.ok(
            same,
            format_args!("[stock] hold/pass points identical to listenq's in all {} data/http/dns cases run by both", compared),
        );
    } else {
        tap.skip(
            "[stock] hold/pass points identical to listenq's",
            "no stock module loaded",
        );
    }
    if data.is_some() && http.is_some() {
        stock_removal(tap);
    }
    unload_stock(tap, data, http, dns);
}

/// Unloads the stock filters so listenq gets every name back.
pub(super) fn unload_stock(tap: &mut Tap, data: Option<i32>, http: Option<i32>, dns: Option<i32>) {
    let r = sysctl::write_int("net.accf.unloadable", 1);
    tap.check(r, Ok(()), "[stock] sysctl net.accf.unloadable=1");
    for (id, name) in [
        (data, "accf_data.ko"),
        (http, "accf_http.ko"),
        (dns, "accf_dns.ko"),
    ] {
        if let Some(id) = id {
            tap.check(
                kld::unload(id),
                Ok(()),
                format_args!("[stock] kldunload {} (unloadable=1)", name),
            );
        }
    }
    let _ = sysctl::write_int("net.accf.unloadable", 0);
}

/// What stock guarantees about the incomplete queue, measured with stock
/// accf_data and a flood like flood()'s: solisten_enqueue() evicts the
/// oldest incomplete connection only while sol_incqlen > sol_qlimit and
/// then inserts, so a listen(16) listener ends up holding qlimit + 1 = 17
/// silent clients, and never more, on any number of CPUs. listenq's hold
/// queue (capacity qlimit) keeps it at 16 outside that insertion.
pub(super) fn stock_flood(tap: &mut Tap) {
    const CLIENTS: usize = 300;
    const BACKLOG: i32 = 16;
    const WINDOW: usize = 64;
    let name =
        "[stock] flood: accf_data holds qlimit + 1 = 17 silent clients of listen(16), never more";
    let r = (|| -> Result<(u64, i32, i32), Failed> {
        let (l, sa) = au::filtered(BACKLOG, "dataready", "").map_err(at("listener"))?;
        let mut ring: [Option<Fd>; WINDOW] = [const { None }; WINDOW];
        let (mut connerr, mut maxinc) = (0u64, 0i32);
        for i in 0..CLIENTS {
            if let Some(old) = ring[i % WINDOW].take() {
                au::close_rst(old);
            }
            match au::client(&sa) {
                Ok(c) => ring[i % WINDOW] = Some(c),
                Err(_) => connerr += 1,
            }
            if let Ok(q) = sock::incqlen(l.raw()) {
                maxinc = maxinc.max(q);
            }
        }
        sys::sleep_ms(300);
        let settled = sock::incqlen(l.raw()).unwrap_or(-1);
        drop(l);
        for c in ring.iter_mut() {
            if let Some(c) = c.take() {
                au::close_rst(c);
            }
        }
        Ok((connerr, maxinc, settled))
    })();
    match r {
        Ok((connerr, maxinc, settled)) => {
            tap.ok(
                connerr == 0 && maxinc == BACKLOG + 1 && settled == BACKLOG + 1,
                name,
            );
            tap.diag(format_args!(
                "  {} clients: max SO_LISTENINCQLEN {}, {} after 300 ms, {} connect errors",
                CLIENTS, maxinc, settled, connerr
            ));
        }
        Err(Failed(step, e)) => {
            tap.ok(false, name);
            tap.diag(format_args!("  {}: {}", step, e));
        }
    }
}

/// With stock accf_data loaded, listenq loads, leaves dataready to it and
/// serves the other three names.
pub(super) fn beside_stock(tap: &mut Tap) {
    let id = match kld::load(crate::env::KO_PATH) {
        Ok(id) => {
            tap.ok(
                true,
                "[stock+listenq] kldload listenq while accf_data holds dataready",
            );
            id
        }
        Err(e) => {
            tap.ok(
                false,
                "[stock+listenq] kldload listenq while accf_data holds dataready",
            );
            tap.diag(format_args!("  {}", e));
            return;
        }
    };
    let r = au::filtered(5, "dataready", "")
        .and_then(|(l, sa)| au::table_row(au::addr_port(&sa)).map(|r| (l, r)));
    match r {
        Ok((_l, Some(row))) => {
            let pass = row.filter() == b"dataready" && row.held == -1;
            tap.ok(
                pass,
                "[stock+listenq] a dataready listener shows FILTER dataready, HELD - in kern.ipc.listenq.listeners (stock's filter)",
            );
            if !pass {
                tap.diag(format_args!(
                    "  FILTER {} HELD {}",
                    Show(row.filter()),
                    row.held
                ));
            }
        }
        Ok((_, None)) => {
            tap.ok(false, "[stock+listenq] a dataready listener shows FILTER dataready, HELD - in kern.ipc.listenq.listeners (stock's filter)");
            tap.diag(format_args!("  no row for the listener"));
        }
        Err(e) => {
            tap.ok(false, "[stock+listenq] a dataready listener shows FILTER dataready, HELD - in kern.ipc.listenq.listeners (stock's filter)");
            tap.diag(format_args!("  {}", e));
        }
    }
    let cases: [Case; 4] = [
        FIRST_BYTE,
        Case {
            label: "GET in 2 sends",
            filter: "httpready",
            arg: "",
            sends: Sends::Parts(&[b"GET / HTTP/1.0\r\n", b"\r\n"]),
            want: 2,
        },
        Case {
            label: "query in 2 sends",
            filter: "dnsready",
            arg: "",
            sends: Sends::Parts(&[b"\x00\x03ab", b"c"]),
            want: 2,
        },
        Case {
            label: "record in 2 sends",
            filter: "tlsready",
            arg: "",
            sends: Sends::Parts(&[b"\x16\x03\x01\x00\x02\x01", b"\x00"]),
            want: 2,
        },
    ];
    for c in cases.iter() {
        report_case(tap, "stock+listenq", c);
    }
    // listenq's filters (and only those) appear in its table.
    for name in ["httpready", "dnsready", "tlsready"] {
        let r = au::filtered(5, name, "")
            .and_then(|(l, sa)| au::table_row(au::addr_port(&sa)).map(|r| (l, r)));
        let pass = matches!(&r, Ok((_, Some(row))) if row.filter() == name.as_bytes());
        tap.ok(
            pass,
            format_args!(
                "[stock+listenq] a {} listener shows FILTER {} (listenq's)",
                name, name
            ),
        );
        if !pass {
            match r {
                Ok((_, Some(row))) => tap.diag(format_args!("  FILTER {}", Show(row.filter()))),
                Ok((_, None)) => tap.diag(format_args!("  no row for the listener")),
                Err(e) => tap.diag(format_args!("  {}", e)),
            }
        }
    }
    let settled = au::allocs_settle(1000);
    let un = kld::unload(id);
    let pass = settled.is_ok() && un.is_ok();
    tap.ok(
        pass,
        "[stock+listenq] allocs and memuse 0 and kldunload listenq (accf_data stays)",
    );
    if !pass {
        tap.diag(format_args!("  allocs {:?}, kldunload {:?}", settled, un));
    }
}

/// Stock's filter removal: what listenq(4) says stock does (connections
/// whose filter already ran stay held).
pub(super) fn stock_removal(tap: &mut Tap) {
    for (filter, data, what) in [
        ("dataready", &b""[..], "silent dataready connections"),
        (
            "httpready",
            &b"GET / HT"[..],
            "httpready connections with a partial GET",
        ),
    ] {
        let name = format_args!(
            "[stock] removing the filter leaves 2 examined {} held (listenq releases them)",
            what
        );
        let r = (|| -> Result<(i32, i32, usize), Failed> {
            let (l, sa) = au::filtered(10, filter, "").map_err(at("listener"))?;
            let _c: [Fd; 2] = clients(&sa, data)?;
            sys::sleep_ms(100);
            let inc = sock::incqlen(l.raw()).map_err(at("SO_LISTENINCQLEN"))?;
            au::remove_filter(l.raw()).map_err(at("remove filter"))?;
            sys::sleep_ms(100);
            let q = sock::qlen(l.raw()).map_err(at("SO_LISTENQLEN"))?;
            Ok((inc, q, drain_accept(l.raw())))
        })();
        verdict_quiet(
            tap,
            name,
            r,
            |&(inc, q, acc)| inc == 2 && q == 0 && acc == 0,
            |tap, &(inc, q, acc)| {
                tap.diag(format_args!(
                    "  incqlen before {}, qlen after {}, accepted after {}",
                    inc, q, acc
                ));
            },
        );
    }
}
