//! The module refuses a kernel of another FreeBSD version (listenq(4),
//! "Upgrading FreeBSD"): it reads kernel structures at the offsets of the
//! tree it was built against. `refused` runs alone (kernel env
//! listenq.only=version, run-all.sh's version layer) on a kernel whose
//! osreldate is not the module's; `accepted` in every suite, on kernels
//! built from the module's own tree.

use crate::accf_util::msgbuf_lines;
use crate::env::KO_PATH;
use crate::kld;
use crate::sys::Errno;
use crate::sysctl;
use crate::tap::Tap;

const LINE_HEAD: &[u8] = b"listenq: built for FreeBSD ";
const LINE_TAIL: &[u8] = b": rebuild listenq.ko against this kernel's sources";

/// Decimal digits of `v`, for matching console text.
fn digits(v: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    &buf[i..]
}

/// On a kernel whose version differs: kldload fails with ENOEXEC, the
/// console says why and what to do, and nothing of the module stays.
pub fn refused(tap: &mut Tap) {
    let osrel = match sysctl::read_int("kern.osreldate") {
        Ok(v) => v,
        Err(e) => {
            tap.ok(false, format_args!("sysctl kern.osreldate: {}", e));
            return;
        }
    };
    tap.diag(format_args!("kern.osreldate {}", osrel));
    let mut b = [0u8; 12];
    let osrel_text = digits(osrel, &mut b);
    let mut but = [0u8; 40];
    let prefix = b" but the kernel is ";
    but[..prefix.len()].copy_from_slice(prefix);
    but[prefix.len()..prefix.len() + osrel_text.len()].copy_from_slice(osrel_text);
    let but = &but[..prefix.len() + osrel_text.len()];
    for round in 1..=2 {
        match kld::load(KO_PATH) {
            Ok(id) => {
                tap.ok(
                    false,
                    format_args!(
                        "kldload #{}: refused with ENOEXEC (loaded as file {})",
                        round, id
                    ),
                );
                let _ = sysctl::write_int("kern.ipc.listenq.unloadable", 1);
                let _ = kld::unload(id);
                return;
            }
            Err(e) => {
                tap.ok(
                    e == Errno::ENOEXEC,
                    format_args!("kldload #{}: refused with ENOEXEC (got {})", round, e),
                );
            }
        }
        let lines = msgbuf_lines(&[LINE_HEAD, but, LINE_TAIL]).unwrap_or(0);
        tap.ok(
            lines == round,
            format_args!(
                "  the console says 'listenq: built for FreeBSD N but the kernel is {}: rebuild ...' ({} such lines)",
                core::str::from_utf8(osrel_text).unwrap_or("?"),
                lines
            ),
        );
        tap.ok(
            kld::find(c"listenq.ko").is_err(),
            format_args!("  listenq.ko is not left loaded (kldfind)"),
        );
        tap.ok(
            sysctl::exists("kern.ipc.listenq.version") == Ok(false),
            format_args!("  no kern.ipc.listenq.* node is left"),
        );
    }
    // What it would have refused to be: not the kernel it was built for.
    let same = msgbuf_lines(&[LINE_HEAD, osrel_text, but]).unwrap_or(0);
    tap.ok(
        same == 0,
        format_args!("  the version it names is not this kernel's"),
    );
}

/// On the kernels built from the module's own tree: it loaded (the
/// suite's kldload), and said nothing about the version.
pub fn accepted(tap: &mut Tap) {
    let lines = msgbuf_lines(&[LINE_HEAD]).unwrap_or(usize::MAX);
    tap.ok(
        lines == 0,
        format_args!(
            "the kernel-version check let the module load without a line ({} lines)",
            lines
        ),
    );
}
