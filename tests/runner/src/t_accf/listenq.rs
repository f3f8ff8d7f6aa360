//! Phase A, listenq loaded: registration, the cases and extensions, filter
//! removal, unload refused while a filter is in use.

use super::*;

// ---------------------------------------------------------------- phase A

/// Returns whether listenq was unloaded at the end.
pub(super) fn phase_a(
    tap: &mut Tap,
    listenq_at: &mut [Option<Option<usize>>; PARITY.len()],
) -> bool {
    let id = match au::listenq_loaded() {
        Ok(id) => {
            tap.ok(
                true,
                format_args!(
                    "[accf] listenq loaded for the accept filter tests (file id {})",
                    id
                ),
            );
            id
        }
        Err(e) => {
            tap.ok(false, "[accf] listenq loaded for the accept filter tests");
            tap.diag(format_args!("  kldload: {}", e));
            return false;
        }
    };
    registration(tap);
    inherit_reported(tap);
    crate::t_accf_window::run(tap, "dataready");
    crate::t_accf_window::run(tap, "httpready");
    for (i, c) in PARITY.iter().enumerate() {
        listenq_at[i] = report_case(tap, "listenq", c);
    }
    for c in EXTENSIONS.iter() {
        report_case(tap, "listenq", c);
    }
    crate::t_accf_records::run(tap, "listenq", false, |_| true);
    buffer_full(tap, "listenq", &["httpready", "dnsready", "tlsready"]);
    removal(tap);
    unload_busy(tap, id)
}

/// kern.ipc.listenq.accf_inherit as read while listenq is loaded: 1 when
/// the kernel gives new connections SO_ACCEPTFILTER (patched), 0 when it
/// does not. -1 (unread) until phase A read it.
pub(super) static INHERIT: core::sync::atomic::AtomicI32 = core::sync::atomic::AtomicI32::new(-1);

pub(super) fn inherit() -> i32 {
    INHERIT.load(core::sync::atomic::Ordering::Relaxed)
}

/// The module found out which kind of kernel this is (phase B checks the
/// answer against what stock accf_data does here).
pub(super) fn inherit_reported(tap: &mut Tap) {
    let r = sysctl::read_int("kern.ipc.listenq.accf_inherit");
    if let Ok(v) = r {
        INHERIT.store(v, core::sync::atomic::Ordering::Relaxed);
    }
    tap.ok(
        matches!(r, Ok(0) | Ok(1)),
        format_args!(
            "[listenq] kern.ipc.listenq.accf_inherit says which kind of kernel this is: {:?}",
            r
        ),
    );
}

pub(super) fn registration(tap: &mut Tap) {
    for name in NAMES {
        let r = au::listener(5).and_then(|(l, _)| {
            au::set_filter(l.raw(), name, "")?;
            au::get_filter(l.raw())
        });
        let pass = matches!(&r, Ok(n) if au::cstr(n) == name.as_bytes());
        tap.ok(
            pass,
            format_args!(
                "[listenq] SO_ACCEPTFILTER {} on a listener; getsockopt returns the name",
                name
            ),
        );
        match r {
            Ok(n) if !pass => tap.diag(format_args!("  getsockopt: {}", Show(au::cstr(&n)))),
            Err(e) => tap.diag(format_args!("  {}", e)),
            _ => {}
        }
    }
    let r = sock::bound(Kind::Tcp4).and_then(|(s, _)| au::set_filter(s.raw(), "dataready", ""));
    tap.check(
        r,
        Err(Errno::EINVAL),
        "[listenq] SO_ACCEPTFILTER on a socket that is not listening: EINVAL",
    );
    let r = au::listener(5).and_then(|(l, _)| au::set_filter(l.raw(), "nosuchfilter", ""));
    tap.check(
        r,
        Err(Errno::ENOENT),
        "[listenq] SO_ACCEPTFILTER with an unknown name: ENOENT",
    );
    let r = au::filtered(5, "dataready", "").and_then(|(l, _)| {
        let second = au::set_filter(l.raw(), "httpready", "");
        let same = au::set_filter(l.raw(), "dataready", "");
        let kept = au::get_filter(l.raw()).map(|n| au::cstr(&n) == b"dataready");
        Ok((second, same, kept))
    });
    tap.check(
        r,
        Ok((Err(Errno::EINVAL), Err(Errno::EINVAL), Ok(true))),
        "[listenq] a second SO_ACCEPTFILTER (another or the same name): EINVAL, the first stays",
    );
    let r = au::listener(5).and_then(|(l, _)| Ok(au::get_filter(l.raw()).map(|_| ())));
    tap.check(
        r,
        Ok(Err(Errno::EINVAL)),
        "[listenq] getsockopt(SO_ACCEPTFILTER) without a filter: EINVAL",
    );
    let bad: [(&str, &str); 7] = [
        ("dataready", "bogus"),
        ("httpready", "methods=some"),
        ("dnsready", "h2"),
        ("tlsready", "timeout=-1"),
        ("httpready", "timeout=1,timeout=2"),
        ("dataready", "timeout=500,"),
        ("tlsready", "clienthello=1"),
    ];
    for (f, a) in bad {
        // After the refusal the listener has no filter and takes a good one.
        let r = au::listener(5).and_then(|(l, _)| {
            let e = au::set_filter(l.raw(), f, a);
            let none = au::get_filter(l.raw()).map(|_| ());
            let good = au::set_filter(l.raw(), f, "");
            Ok((e, none, good))
        });
        tap.check(
            r,
            Ok((Err(Errno::EINVAL), Err(Errno::EINVAL), Ok(()))),
            format_args!(
                "[listenq] {} af_arg {:?}: EINVAL, no filter left, a good one can be set",
                f, a
            ),
        );
    }
    let good: [(&str, &str); 5] = [
        ("dataready", "timeout=500,ontimeout=drop"),
        ("httpready", "methods=all,h2,proxy"),
        ("tlsready", "clienthello,proxy=required"),
        ("dnsready", "proxy=optional,timeout=0"),
        ("httpready", "parsehttpversion=0,ontimeout=deliver"),
    ];
    for (f, a) in good {
        let r = au::listener(5).and_then(|(l, _)| au::set_filter(l.raw(), f, a));
        tap.check(
            r,
            Ok(()),
            format_args!("[listenq] {} af_arg {:?}: accepted", f, a),
        );
    }
    let r = au::filtered(5, "httpready", "").and_then(|(l, _)| {
        let rm = au::remove_filter(l.raw());
        let none = au::get_filter(l.raw()).map(|_| ());
        let again = au::set_filter(l.raw(), "tlsready", "");
        Ok((rm, none, again))
    });
    tap.check(
        r,
        Ok((Ok(()), Err(Errno::EINVAL), Ok(()))),
        "[listenq] SO_ACCEPTFILTER NULL removes the filter; another can be set",
    );
    let r = sock::bound(Kind::Tcp4).and_then(|(s, _)| Ok(au::remove_filter(s.raw())));
    tap.check(
        r,
        Ok(Err(Errno::EINVAL)),
        "[listenq] SO_ACCEPTFILTER NULL on a socket that is not listening: EINVAL",
    );
}

/// A request that cannot complete in a 4 KB receive buffer fills it; the
/// filter must then let the connection through (stock's sbfull rule).
pub(super) fn buffer_full(tap: &mut Tap, who: &str, filters: &[&str]) {
    const SO_RCVBUF: i32 = 0x1002;
    for f in filters {
        let name = format_args!(
            "[{}] {}: a request larger than a 4 KB receive buffer passes once the buffer is full",
            who, f
        );
        let r = (|| -> Result<(), Failed> {
            let (l, sa) = au::listener(5).map_err(at("listener"))?;
            sock::set_int(l.raw(), sock::SOL_SOCKET, SO_RCVBUF, 4096).map_err(at("SO_RCVBUF"))?;
            au::set_filter(l.raw(), f, "").map_err(at("SO_ACCEPTFILTER"))?;
            let c = au::client(&sa).map_err(at("connect"))?;
            let head: &[u8] = match *f {
                "httpready" => b"GET / HTTP/1.1\r\nX-Long: ",
                "dnsready" => b"\xff\xff",
                _ => b"\x16\x03\x01\x40\x00",
            };
            let mut big = [b'a'; 8192];
            big[..head.len()].copy_from_slice(head);
            // Only what fits in the window goes out; the rest waits.
            sys::send(c.raw(), &big, sys::MSG_NOSIGNAL).map_err(at("send"))?;
            au::accept_within(l.raw(), PASS_MS).map_err(at("accept"))?;
            Ok(())
        })();
        tap.ok(r.is_ok(), name);
        if let Err(Failed(s, e)) = r {
            tap.diag(format_args!("  {}: {}", s, e));
        }
    }
}

/// Filter removal releases every held connection: silent ones and ones
/// whose filter has already looked at partial data.
pub(super) fn removal(tap: &mut Tap) {
    for (filter, data, what) in [
        ("dataready", &b""[..], "3 silent dataready connections"),
        (
            "httpready",
            &b"GET / HT"[..],
            "3 httpready connections with a partial GET",
        ),
    ] {
        let name = format_args!("[listenq] removing the filter releases {} at once", what);
        let r = (|| -> Result<(i32, i32, usize, usize), Failed> {
            let (l, sa) = au::filtered(10, filter, "").map_err(at("listener"))?;
            let _c: [Fd; 3] = clients(&sa, data)?;
            sys::sleep_ms(100);
            let before = drain_accept(l.raw());
            let inc = sock::incqlen(l.raw()).map_err(at("SO_LISTENINCQLEN"))?;
            au::remove_filter(l.raw()).map_err(at("remove filter"))?;
            let q = sock::qlen(l.raw()).map_err(at("SO_LISTENQLEN"))?;
            let after = drain_accept(l.raw());
            Ok((inc, q, before, after))
        })();
        verdict_quiet(
            tap,
            name,
            r,
            |&(inc, q, before, after)| inc == 3 && q == 3 && before == 0 && after == 3,
            |tap, &(inc, q, before, after)| {
                tap.diag(format_args!(
                    "  held before: incqlen {} (want 3), accepted {} (want 0); right after removal: qlen {} (want 3), accepted {} (want 3)",
                    inc, before, q, after
                ));
            },
        );
    }
}

/// kldunload while a filter is in use, and after removal while a released
/// connection waits for accept(); then the real unload. Returns whether
/// listenq was unloaded. Each check is its own TAP line, written when it
/// is made; a setup step that fails ends the test with what it reached.
pub(super) fn unload_busy(tap: &mut Tap, id: i32) -> bool {
    const FINAL: &str = "[listenq] kldunload succeeds once nothing uses its filters";
    let r = (|tap: &mut Tap| -> Result<bool, Failed> {
        let (l, sa) = au::filtered(5, "dataready", "").map_err(at("listener"))?;
        let c1 = au::client(&sa).map_err(at("connect"))?;
        sys::sleep_ms(50);
        tap.check(
            kld::unload(id),
            Err(Errno::EBUSY),
            "[listenq] kldunload while a listener uses dataready and holds a connection: EBUSY",
        );
        au::send_all(c1.raw(), b"z").map_err(at("send"))?;
        let a1 = au::accept_within(l.raw(), PASS_MS);
        tap.ok(
            a1.as_ref()
                .is_ok_and(|a| au::reads_exactly(a.raw(), b"z", 1000)),
            "[listenq] the held connection is accepted after its data arrives (module still loaded)",
        );
        let c2 = au::client(&sa).map_err(at("connect"))?;
        sys::sleep_ms(50);
        au::remove_filter(l.raw()).map_err(at("remove filter"))?;
        tap.check(
            kld::unload(id),
            Err(Errno::EBUSY),
            "[listenq] kldunload while a released connection waits for accept(): EBUSY",
        );
        tap.ok(
            au::try_accept(l.raw()).is_ok(),
            "[listenq] the released connection is accepted",
        );
        drop(a1);
        drop(c1);
        drop(c2);
        drop(l);
        let settled = au::allocs_settle(1000);
        tap.ok(
            settled.is_ok(),
            "[listenq] kern.ipc.listenq.allocs and memuse are 0 before unloading",
        );
        if let Err(n) = settled {
            tap.diag(format_args!(
                "  {} = {} 1000 ms after closing everything",
                au::ALLOCS,
                n
            ));
        }
        Ok(tap.check(kld::unload(id), Ok(()), FINAL))
    })(tap);
    match r {
        Ok(unloaded) => unloaded,
        Err(Failed(s, e)) => {
            tap.ok(
                false,
                format_args!("[listenq] kldunload while busy: {}: {}", s, e),
            );
            // Leave the module unloaded if we can, for the stock phase.
            kld::unload(id).is_ok()
        }
    }
}

/// After kldunload no filter name may still resolve: uipc_accf.c keeps
/// every entry forever, and one left under its name with a NULL callback
/// would let a listener take it and the kernel call NULL on the next
/// connection. listenq renames its entries away; setsockopt must say ENOENT
/// exactly as if listenq had never been loaded.
pub(super) fn names_gone_after_unload(tap: &mut Tap) {
    for name in ["dataready", "httpready", "dnsready", "tlsready"] {
        let r = au::listener(5).and_then(|(l, _)| au::set_filter(l.raw(), name, ""));
        tap.check(
            r,
            Err(Errno::ENOENT),
            format_args!("[unloaded] SO_ACCEPTFILTER {}: ENOENT", name),
        );
    }
}
