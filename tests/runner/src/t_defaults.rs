//! Per-filter defaults (listenq(4) "Defaults for an empty af_arg"):
//! kern.ipc.listenq.<filter>.default_arg as a loader tunable (set here with
//! kenv(2) before kldload, as loader.conf would) and as a sysctl; what it
//! does to a listener that passes an empty af_arg, as nginx's
//! `accept_filter=httpready` does; refusal of bad values.
//!
//! Runs after the accept filter suite, with listenq unloaded and the stock
//! accf modules gone, and leaves listenq unloaded and the kenv clean.

use crate::accf_util as au;
use crate::env::{Env, KO_NAME, KO_PATH};
use crate::kld;
use crate::sys::{self, Errno};
use crate::sysctl;
use crate::tap::Tap;

const HTTP: &str = "kern.ipc.listenq.httpready.default_arg";
const HTTP_C: &core::ffi::CStr = c"kern.ipc.listenq.httpready.default_arg";
const TLS: &str = "kern.ipc.listenq.tlsready.default_arg";
const TLS_C: &core::ffi::CStr = c"kern.ipc.listenq.tlsready.default_arg";
const DNS: &str = "kern.ipc.listenq.dnsready.default_arg";
const DATA: &str = "kern.ipc.listenq.dataready.default_arg";

/// A PROXY v1 line and a GET, as nginx behind haproxy receives them.
const PROXY_LINE: &[u8] = b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n";
const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// Whether the log has a line with every one of `parts`, in order.
fn console_has(parts: &[&[u8]]) -> Result<bool, Errno> {
    au::msgbuf_lines(parts).map(|n| n > 0)
}

fn read(name: &str, buf: &mut [u8; 256]) -> Result<([u8; 256], usize), Errno> {
    let s = sysctl::read_string(name, buf)?;
    let mut out = [0u8; 256];
    out[..s.len()].copy_from_slice(s);
    Ok((out, s.len()))
}

/// The value of a default_arg sysctl, for comparisons.
fn value(name: &str) -> Result<Value, Errno> {
    let mut b = [0u8; 256];
    read(name, &mut b).map(|(v, n)| Value(v, n))
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Value([u8; 256], usize);

impl Value {
    fn of(s: &str) -> Value {
        let mut v = [0u8; 256];
        v[..s.len()].copy_from_slice(s.as_bytes());
        Value(v, s.len())
    }
}

impl core::fmt::Debug for Value {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "\"{}\"", au::Show(&self.0[..self.1]))
    }
}

/// Where an httpready listener with an empty af_arg lets a PROXY + GET
/// connection through: right after the PROXY line and the first part of
/// the GET (Early), or only once the request is complete (Complete).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Release {
    Early,
    Complete,
}

fn proxy_get(arg: &str) -> Result<Release, (&'static str, Errno)> {
    let (l, sa) = au::filtered(5, "httpready", arg).map_err(|e| ("listener", e))?;
    let c = au::client(&sa).map_err(|e| ("connect", e))?;
    au::send_all(c.raw(), PROXY_LINE).map_err(|e| ("send", e))?;
    au::send_all(c.raw(), &GET[..GET.len() - 1]).map_err(|e| ("send", e))?;
    sys::sleep_ms(50);
    match au::try_accept(l.raw()) {
        Ok(_) => return Ok(Release::Early),
        Err(Errno::EAGAIN) => {}
        Err(e) => return Err(("accept", e)),
    }
    au::send_all(c.raw(), &GET[GET.len() - 1..]).map_err(|e| ("send", e))?;
    au::accept_within(l.raw(), 2000).map_err(|e| ("accept after the last byte", e))?;
    Ok(Release::Complete)
}

pub fn run(tap: &mut Tap, env: &Env) {
    if let Err(e) = env.ko {
        tap.skip(
            "default_arg suite",
            format_args!("listenq.ko not in image ({})", e),
        );
        return;
    }
    if let Err(e) = env.v4 {
        tap.skip(
            "default_arg suite",
            format_args!("127.0.0.1 unusable ({})", e),
        );
        return;
    }
    if let Ok(id) = kld::find(KO_NAME) {
        let _ = kld::unload(id);
    }
    let id = tunables(tap);
    let Some(id) = id else { return };
    sysctls(tap);
    let _ = sysctl::write_string(HTTP, b"");
    crate::t_vnet_defaults::run(tap);
    tap.check(
        kld::unload_settled(id, 3000),
        Ok(()),
        "[default_arg] kldunload listenq afterwards",
    );
}

/// Loader tunables: set in the kernel environment before kldload.
fn tunables(tap: &mut Tap) -> Option<i32> {
    let set =
        sys::kenv_set(HTTP_C, c"proxy,methods=all").and_then(|_| sys::kenv_set(TLS_C, c"bogus"));
    let loaded = set.and_then(|_| kld::load(KO_PATH));
    let _ = sys::kenv_unset(HTTP_C);
    let _ = sys::kenv_unset(TLS_C);
    let id = match loaded {
        Ok(id) => id,
        Err(e) => {
            tap.ok(false, "[default_arg] kenv tunables set, kldload listenq");
            tap.diag(format_args!("  {}", e));
            return None;
        }
    };
    tap.check(
        value(HTTP),
        Ok(Value::of("proxy,methods=all")),
        "[default_arg] tunable httpready.default_arg=\"proxy,methods=all\" from the kernel environment is the sysctl's value",
    );
    tap.check(
        value(TLS),
        Ok(Value::of("")),
        "[default_arg] tunable tlsready.default_arg=\"bogus\" is refused at load: the default stays empty",
    );
    tap.check(
        console_has(&[
            b"<6>listenq: kern.ipc.listenq.tlsready.default_arg: \"bogus\" refused (uid 0, pid ",
            b", jail 0): unknown option",
        ]),
        Ok(true),
        "[default_arg] the refused tunable is named in the log (LOG_INFO) with who set it and the reason",
    );
    tap.check(
        console_has(&[b"Setting sysctl kern.ipc.listenq.tlsready.default_arg failed: 22"]),
        Ok(true),
        "[default_arg] the kernel's own tunable failure line (EINVAL) is on the console",
    );
    // What the tunable did: a PROXY + GET on an empty af_arg is held to the
    // end of the request.
    let r = proxy_get("");
    tap.check(
        r,
        Ok(Release::Complete),
        "[default_arg] (tunable) httpready, empty af_arg: PROXY line + GET held until the request is complete",
    );
    Some(id)
}

fn sysctls(tap: &mut Tap) {
    tap.check(
        sysctl::write_string(HTTP, b""),
        Ok(()),
        "[default_arg] httpready.default_arg cleared",
    );
    // Without a default, stock httpready: "PROXY" is no GET or HEAD and
    // passes at once. The contrast makes the next test mean something.
    tap.check(
        proxy_get(""),
        Ok(Release::Early),
        "[default_arg] no default: PROXY line + GET on an empty af_arg passes at once (stock)",
    );
    tap.check(
        sysctl::write_string(HTTP, b"proxy").and_then(|_| value(HTTP)),
        Ok(Value::of("proxy")),
        "[default_arg] sysctl httpready.default_arg=proxy is stored",
    );
    tap.check(
        proxy_get(""),
        Ok(Release::Complete),
        "[default_arg] httpready.default_arg=proxy: empty af_arg holds PROXY line + GET until the request is complete",
    );
    tap.check(
        proxy_get("proxy=off"),
        Ok(Release::Early),
        "[default_arg] a non-empty af_arg (proxy=off) is used as given, not the default",
    );
    // Filters whose default is not set are untouched.
    let r = au::filtered(5, "dataready", "").and_then(|(l, sa)| {
        let c = au::client(&sa)?;
        au::send_all(c.raw(), PROXY_LINE)?;
        au::accept_within(l.raw(), 2000).map(|_| ())
    });
    tap.check(
        r,
        Ok(()),
        "[default_arg] dataready without a default still passes on the first data",
    );

    let bad: [(&str, &[u8], &str); 4] = [
        (HTTP, b"bogus", "unknown option"),
        (DNS, b"h2", "an httpready option on dnsready"),
        (DATA, b"timeout=1,timeout=2", "an option given twice"),
        (HTTP, &[b'a'; 240], "240 bytes (af_arg holds 239)"),
    ];
    let before = value(HTTP);
    for (name, v, why) in bad {
        let was = value(name);
        let r = sysctl::write_string(name, v);
        let after = value(name);
        tap.check(
            (r, after == was),
            (Err(Errno::EINVAL), true),
            format_args!(
                "[default_arg] {} = {}: EINVAL, the old value stays",
                &name["kern.ipc.listenq.".len()..],
                why
            ),
        );
    }
    tap.check(
        value(HTTP),
        before,
        "[default_arg] httpready.default_arg still \"proxy\" after the refusals",
    );
    tap.check(
        console_has(&[
            b"<6>listenq: kern.ipc.listenq.httpready.default_arg: \"bogus\" refused (uid 0, pid 1, jail 0): unknown option",
        ]),
        Ok(true),
        "[default_arg] a refused value is named in the log (LOG_INFO) with who set it (uid, pid, jail) and the reason",
    );
    tap.check(
        proxy_get(""),
        Ok(Release::Complete),
        "[default_arg] after the refusals the default still applies",
    );
    let good: [(&str, &str); 4] = [
        (DATA, "proxy,timeout=500"),
        (DNS, "proxy=required"),
        (TLS, "clienthello"),
        (HTTP, "methods=all,h2,proxy,timeout=2000,ontimeout=drop"),
    ];
    for (name, v) in good {
        tap.check(
            sysctl::write_string(name, v.as_bytes()).and_then(|_| value(name)),
            Ok(Value::of(v)),
            format_args!(
                "[default_arg] {} = {:?} is stored",
                &name["kern.ipc.listenq.".len()..],
                v
            ),
        );
        let _ = sysctl::write_string(name, b"");
    }
}
