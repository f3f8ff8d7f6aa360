//! listenq's in-VM test runner: a static FreeBSD/amd64 program without libc
//! that runs as /sbin/init (PID 1). It sets up the console, lo0 and a tmpfs
//! on /tmp, runs the tests printing TAP to the console, then reboots (QEMU
//! runs with -no-reboot, so the VM ends). See tests/vm/README.md.

#![no_std]
#![no_main]

mod accf_util;
mod env;
mod fixture;
mod fuzz_gen;
mod fuzz_worker;
mod json;
mod kld;
mod kstack;
mod layout;
mod net;
mod record;
mod sock;
mod suite;
mod sys;
mod sysctl;
mod t_accf;
mod t_accf_counts;
mod t_accf_nomem;
mod t_accf_records;
mod t_accf_window;
mod t_bench;
mod t_bench_paired;
mod t_bench_pieces;
mod t_bench_smp;
mod t_close_in_flight;
mod t_defaults;
mod t_fair;
mod t_fuzz;
mod t_halfclosed;
mod t_listen;
mod t_listeners;
mod t_module;
mod t_repro_lor;
mod t_repro_scm;
mod t_stress;
mod t_sysctl;
mod t_version;
mod t_visible;
mod t_vnet_defaults;
mod t_wakeup_race;
mod table;
mod tap;
mod tool;

use core::ffi::CStr;
use env::Env;
use record::Recording;
use sys::Errno;
use tap::Tap;

// FreeBSD ABI note (NT_FREEBSD_ABI_TAG, osrel 1400097), so the image
// activator brands the binary even without EI_OSABI; build-runner.sh sets
// EI_OSABI to ELFOSABI_FREEBSD as well.
core::arch::global_asm!(
    ".section .note.tag,\"a\",@note",
    ".p2align 2",
    ".long 8",
    ".long 4",
    ".long 1",
    ".asciz \"FreeBSD\"",
    ".long 1400097",
    ".previous",
);

/// Where sys.rs's process entry hands over, with the arguments.
pub fn start(args: sys::Args) -> ! {
    // Run by a script (the operator layer), not as init: a command.
    if sys::getpid() != 1 && args.count() >= 2 {
        sys::exit(tool::main(args));
    }
    // Started by hand, or by a script with too few arguments: the suite
    // (which mounts /tmp and, in the operator mode, starts the script
    // again) is init's alone.
    if sys::getpid() != 1 && sys::kenv_get(c"listenq.operator", &mut [0u8; 8]).is_ok() {
        tool::say(format_args!(
            "lqinit: not init (pid {}, argc {}): nothing to do",
            sys::getpid(),
            args.count()
        ));
        sys::exit(64);
    }
    let failed = run(args.count());
    finish(if failed { 1 } else { 0 })
}

/// Ends the VM (reboot with RB_NOSYNC) when we are init; anywhere else,
/// just exits.
fn finish(code: i32) -> ! {
    if sys::getpid() == 1 {
        sys::reboot(sys::RB_NOSYNC)
    }
    sys::exit(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(l) => tap::bail_out(format_args!(
            "panic: {} at {}:{}",
            info.message(),
            l.file(),
            l.line()
        )),
        None => tap::bail_out(format_args!("panic: {}", info.message())),
    }
    finish(2)
}

/// Opens the console as fds 0, 1 and 2.
fn console() {
    for _ in 0..3 {
        match sys::open(c"/dev/console", sys::O_RDWR | sys::O_NOCTTY) {
            // Keep it open: it becomes the next of fd 0, 1, 2.
            Ok(fd) => {
                let _ = fd.into_raw();
            }
            // Nowhere to report; reboot so the harness sees no TAP at all.
            Err(_) => finish(3),
        }
    }
}

/// A tmpfs on /tmp for AF_UNIX socket files (the root is mounted
/// read-only); falls back to remounting the root read-write.
fn mount_tmp(tap: &mut Tap) -> Result<(), Errno> {
    let tmpfs: [(&CStr, &CStr); 3] = [
        (c"fstype", c"tmpfs"),
        (c"fspath", c"/tmp"),
        (c"from", c"tmpfs"),
    ];
    if let Err(e) = sys::nmount(&tmpfs, 0) {
        tap.diag(format_args!(
            "mount tmpfs on /tmp: {}; remounting / read-write",
            e
        ));
        const MNT_UPDATE: i32 = 0x0001_0000;
        let root: [(&CStr, &CStr); 3] = [
            (c"fstype", c"ufs"),
            (c"fspath", c"/"),
            (c"from", c"/dev/vtbd0"),
        ];
        sys::nmount(&root, MNT_UPDATE)?;
    }
    // The proof: an AF_UNIX socket can be bound there.
    let (fd, _) = sock::bound(sock::Kind::UnixStream)?;
    drop(fd);
    Ok(())
}

fn setup(tap: &mut Tap) -> Env {
    let lo = net::setup_loopback(tap);
    let unix = mount_tmp(tap);
    let ko = env::probe_ko();
    let env = Env {
        v4: lo.v4,
        v6: lo.v6,
        unix,
        ko,
    };
    tap.diag(format_args!(
        "env: 127.0.0.1 {}, ::1 {}, /tmp {}, listenq.ko {}",
        Avail(env.v4),
        Avail(env.v6),
        Avail(env.unix),
        Avail(env.ko)
    ));
    env
}

/// "yes", or "NO (errno)".
struct Avail(Result<(), Errno>);

impl core::fmt::Display for Avail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(()) => f.write_str("yes"),
            Err(e) => write!(f, "NO ({})", e),
        }
    }
}

/// The operator layer: /bin/sh /listenq/operator.sh as a child, with
/// the console as its output; true when it failed. Its TAP goes to the
/// console unchanged, so the runner adds no test lines or plan.
fn operator(tap: &mut Tap) -> bool {
    const SCRIPT: &core::ffi::CStr = c"/listenq/operator.sh";
    match sys::fork() {
        Ok(sys::Forked::Child) => {
            let e = sys::execve(
                c"/bin/sh",
                &[c"sh", SCRIPT],
                &[
                    c"PATH=/sbin:/bin:/usr/sbin:/usr/bin:/listenq",
                    c"HOME=/tmp",
                    c"TERM=dumb",
                ],
            );
            tap.diag(format_args!("execve /bin/sh: {}", e));
            sys::exit(127)
        }
        Ok(sys::Forked::Parent(pid)) => match sys::wait4(pid) {
            Ok(0) => false,
            Ok(st) => {
                tap.diag(format_args!("operator.sh: wait status {:#x}", st));
                true
            }
            Err(e) => {
                tap.diag(format_args!("operator.sh: wait4: {}", e));
                true
            }
        },
        Err(e) => {
            tap::bail_out(format_args!("fork for operator.sh: {}", e));
            true
        }
    }
}

/// Runs everything; returns true when a test failed.
fn run(argc: usize) -> bool {
    console();
    let mut t = Tap::new();
    let tap = &mut t;
    tap.diag(format_args!(
        "listenq runner: pid {}, argc {}",
        sys::getpid(),
        argc
    ));
    let env = setup(tap);
    let t0 = sys::now_ms();

    // Kernel env listenq.panic=1 (LISTENQ_VM_KENV): panic the kernel, so
    // the harness's panic handling can be seen to work.
    let mut b = [0u8; 8];
    if matches!(sys::kenv_get(c"listenq.panic", &mut b), Ok(v) if v == b"1") {
        tap.diag(format_args!("listenq.panic=1: sysctl debug.kdb.panic=1"));
        let _ = sysctl::write_int("debug.kdb.panic", 1);
    }

    // Kernel env listenq.race=stock or =listenq: only the filter removal
    // race (t_stress::removal_race), against stock accf_data (which trips
    // over FreeBSD 14's own race) or listenq's dataready.
    let mut race = [0u8; 16];
    if let Ok(v) = sys::kenv_get(c"listenq.race", &mut race) {
        let loaded = match v {
            b"stock" => kld::load(accf_util::ACCF_DATA).map(|_| "stock accf_data"),
            _ => accf_util::listenq_loaded().map(|_| "listenq dataready"),
        };
        match loaded {
            Ok(label) => t_stress::removal_race(tap, label),
            Err(e) => tap.diag(format_args!("kldload: {}", e)),
        }
        tap.finish();
        return tap.failed() > 0;
    }

    // Kernel env listenq.operator=1 (run-vm.sh --world): the user's
    // FreeBSD userland is in the image; /bin/sh runs the operator
    // script, which prints its own TAP and plan.
    let mut op = [0u8; 8];
    if matches!(sys::kenv_get(c"listenq.operator", &mut op), Ok(b"1")) {
        return operator(tap);
    }

    // Kernel env listenq.repro=halfclosed: only listen(2) on a half-closed
    // TCP connection, without listenq (a stock 14 kernel panics);
    // listenq.repro=scmdrop: only the fuzzer's finding 2 (t_repro_scm.rs);
    // listenq.repro=wakeup or handshake: only finding 7 (t_wakeup_race.rs).
    let mut repro = [0u8; 16];
    match sys::kenv_get(c"listenq.repro", &mut repro) {
        Ok(b"halfclosed") => {
            t_halfclosed::repro(tap);
            tap.finish();
            return tap.failed() > 0;
        }
        // The fuzzer's finding 2 with only the stock accf_dns.
        Ok(b"scmdrop") => {
            t_repro_scm::repro(tap);
            tap.finish();
            return tap.failed() > 0;
        }
        // Finding 3 with only the stock accf_data (t_repro_lor.rs).
        Ok(b"lor") => {
            t_repro_lor::repro(tap);
            tap.finish();
            return tap.failed() > 0;
        }
        // Finding 7 with only the stock accf_data (t_wakeup_race.rs).
        Ok(b"wakeup") => {
            t_wakeup_race::repro(tap, false);
            tap.finish();
            return tap.failed() > 0;
        }
        Ok(b"handshake") => {
            t_wakeup_race::repro(tap, true);
            tap.finish();
            return tap.failed() > 0;
        }
        _ => {}
    }

    // Kernel env listenq.only=wakeup: only t_wakeup_race with listenq
    // loaded (finding 7, to replay it alone).
    let mut only = [0u8; 16];
    // listenq.only=version: on a kernel of another version, only the
    // refusal (t_version.rs).
    if matches!(sys::kenv_get(c"listenq.only", &mut only), Ok(b"version")) {
        t_version::refused(tap);
        tap.finish();
        return tap.failed() > 0;
    }
    // listenq.only=closeinflight: only t_close_in_flight.
    if let Ok(which @ (b"wakeup" | b"closeinflight")) = sys::kenv_get(c"listenq.only", &mut only) {
        let wakeup = which == b"wakeup";
        let id = t_module::load(tap, &env);
        if wakeup {
            t_wakeup_race::run(tap, &env);
        } else {
            t_close_in_flight::run(tap);
        }
        t_module::unload(tap, id);
        tap.finish();
        return tap.failed() > 0;
    }

    // Kernel env listenq.fuzz=SEED[,OPS] or listenq.fuzz=ci: only the fuzzer.
    let mut fz = [0u8; 32];
    if let Ok(v) = sys::kenv_get(c"listenq.fuzz", &mut fz) {
        t_fuzz::run(tap, &env, v);
        tap.finish();
        return tap.failed() > 0;
    }

    // Kernel env listenq.stress=N (1..99): only the unload races of
    // t_stress once, then its kldunload/kldload rounds under load N
    // times, to chase a rare interleaving without the rest of the suite.
    let mut stress = [0u8; 8];
    if let Ok(v) = sys::kenv_get(c"listenq.stress", &mut stress) {
        t_stress::unload_rounds_only(tap, &env, v);
        tap.finish();
        return tap.failed() > 0;
    }

    // run-vm.sh --bench (kernel env listenq.bench=1): only the benchmark.
    if t_bench::wanted() {
        t_bench::run(tap, &env);
        tap.finish();
        return tap.failed() > 0;
    }

    // Issue "listen(2) semantics", first run: stock kernel, asserted.
    let mut stock = Recording::new("without listenq", true);
    t_listen::run(tap, &env, &mut stock);
    tap.diag(format_args!(
        "semantic suite without listenq: {} observations, {} ms",
        stock.len(),
        sys::now_ms() - t0
    ));

    // Issue "module lifecycle": load, what a loaded listenq shows, unload.
    let id = t_module::load(tap, &env);
    if id.is_some() {
        t_version::accepted(tap);
    }
    let unloaded = t_module::unload(tap, id);

    // soacceptqueue behaves as stock once the module is gone.
    if unloaded {
        let mut after = Recording::new("after kldunload", true);
        let mut s = t_listen::Suite {
            tap: &mut *tap,
            rec: &mut after,
            env: &env,
        };
        t_sysctl::soacceptqueue_checks(&mut s);
    } else {
        tap.skip(
            "[after kldunload] kern.ipc.soacceptqueue checks",
            "module not unloaded",
        );
    }

    // Every other test, each with what it needs (suite.rs).
    suite::run_all(
        tap,
        &suite::Ctx {
            env: &env,
            stock: &stock,
        },
    );

    tap.diag(format_args!("tests took {} ms", sys::now_ms() - t0));
    tap.finish();
    tap.failed() > 0
}
