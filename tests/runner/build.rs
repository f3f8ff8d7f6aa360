//! System call and errno numbers and the layouts of the structures the
//! runner reads and writes, from the FreeBSD source tree the module builds
//! against (SYSDIR, default /usr/src/sys) and listenq.h, so that none is
//! typed by hand. Writes OUT_DIR/nr.rs (the `nr` module of src/sys.rs),
//! OUT_DIR/errno_*.rs (`Errno`'s constants and names) and OUT_DIR/layout.rs
//! (src/layout.rs: sizes, offsets and constants, which clang computes from
//! the headers for FreeBSD/amd64).

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

/// The runner's name for each system call it makes, and the kernel's.
const CALLS: &[(&str, &str)] = &[
    ("EXIT", "exit"),
    ("FORK", "fork"),
    ("READ", "read"),
    ("WRITE", "write"),
    ("OPEN", "open"),
    ("CLOSE", "close"),
    ("WAIT4", "wait4"),
    ("UNLINK", "unlink"),
    ("GETPID", "getpid"),
    ("SETUID", "setuid"),
    ("RECVMSG", "recvmsg"),
    ("SENDMSG", "sendmsg"),
    ("ACCEPT", "accept"),
    ("GETPEERNAME", "getpeername"),
    ("GETSOCKNAME", "getsockname"),
    ("KILL", "kill"),
    ("IOCTL", "ioctl"),
    ("REBOOT", "reboot"),
    ("EXECVE", "execve"),
    ("DUP2", "dup2"),
    ("FCNTL", "fcntl"),
    ("SOCKET", "socket"),
    ("CONNECT", "connect"),
    ("BIND", "bind"),
    ("SETSOCKOPT", "setsockopt"),
    ("LISTEN", "listen"),
    ("GETSOCKOPT", "getsockopt"),
    ("SENDTO", "sendto"),
    ("SHUTDOWN", "shutdown"),
    ("SOCKETPAIR", "socketpair"),
    ("GETRLIMIT", "getrlimit"),
    ("SETRLIMIT", "setrlimit"),
    ("SYSCTL", "__sysctl"),
    ("POLL", "poll"),
    ("CLOCK_GETTIME", "clock_gettime"),
    ("NANOSLEEP", "nanosleep"),
    ("MODFIND", "modfind"),
    ("KLDLOAD", "kldload"),
    ("KLDUNLOAD", "kldunload"),
    ("KLDFIND", "kldfind"),
    ("KLDSTAT", "kldstat"),
    ("JAIL", "jail"),
    ("KQUEUE", "kqueue"),
    ("NMOUNT", "nmount"),
    ("KENV", "kenv"),
    ("KLDUNLOADF", "kldunloadf"),
    ("JAIL_SET", "jail_set"),
    ("KEVENT", "kevent"),
    ("SYSCTLBYNAME", "__sysctlbyname"),
];

fn fail(msg: &str) -> ! {
    eprintln!("listenq-runner: {msg}");
    exit(1);
}

/// `#define PREFIXname<whitespace>number` lines of a header.
fn defines(path: &Path, prefix: &str) -> BTreeMap<String, i64> {
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(path).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read {} ({e}): set SYSDIR to the sys/ directory of a FreeBSD 14 source tree",
            path.display()
        ))
    });
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(value)) = (w.next(), w.next()) else {
            continue;
        };
        let Some(short) = name.strip_prefix(prefix) else {
            continue;
        };
        if let Ok(n) = value.parse::<i64>() {
            out.insert(short.to_string(), n);
        }
    }
    out
}

/// What src/layout.rs gets, each as `pub const NAME: usize`: a C
/// expression over the headers below.
const LAYOUT: &[(&str, &str)] = &[
    ("KLD_FILE_STAT_SIZE", "sizeof(struct kld_file_stat)"),
    ("KLD_NAME_OFF", "__offsetof(struct kld_file_stat, name)"),
    ("KLD_NAME_LEN", "sizeof(((struct kld_file_stat *)0)->name)"),
    ("KLD_REFS_OFF", "__offsetof(struct kld_file_stat, refs)"),
    ("KLD_ID_OFF", "__offsetof(struct kld_file_stat, id)"),
    (
        "KLD_ADDRESS_OFF",
        "__offsetof(struct kld_file_stat, address)",
    ),
    ("KLD_SIZE_OFF", "__offsetof(struct kld_file_stat, size)"),
    (
        "KLD_PATHNAME_OFF",
        "__offsetof(struct kld_file_stat, pathname)",
    ),
    (
        "KLD_PATHNAME_LEN",
        "sizeof(((struct kld_file_stat *)0)->pathname)",
    ),
    ("AF_SIZE", "sizeof(struct accept_filter_arg)"),
    (
        "AF_NAME_LEN",
        "sizeof(((struct accept_filter_arg *)0)->af_name)",
    ),
    ("XL_SIZE", "sizeof(struct xlistenq)"),
    ("XL_VERSION", "XLISTENQ_VERSION"),
    ("XL_NBUCKETS", "XLISTENQ_NBUCKETS"),
    ("XO_GEN", "__offsetof(struct xlistenq, xl_gen)"),
    ("XO_PROTO", "__offsetof(struct xlistenq, xl_proto)"),
    ("XO_LPORT", "__offsetof(struct xlistenq, xl_lport)"),
    ("XO_BACKLOG", "__offsetof(struct xlistenq, xl_backlog)"),
    ("XO_LADDR", "__offsetof(struct xlistenq, xl_laddr)"),
    ("XO_QLIMIT", "__offsetof(struct xlistenq, xl_qlimit)"),
    ("XO_QLEN", "__offsetof(struct xlistenq, xl_qlen)"),
    ("XO_ACCEPTED", "__offsetof(struct xlistenq, xl_accepted)"),
    ("XO_OVERFLOWS", "__offsetof(struct xlistenq, xl_overflows)"),
    ("XO_UID", "__offsetof(struct xlistenq, xl_uid)"),
    ("XO_JID", "__offsetof(struct xlistenq, xl_jid)"),
    ("XO_LAT", "__offsetof(struct xlistenq, xl_lat)"),
    ("XO_PATH", "__offsetof(struct xlistenq, xl_path)"),
    ("XL_PROTO_TCP4", "XL_PROTO_TCP4"),
    ("XL_PROTO_TCP6", "XL_PROTO_TCP6"),
    ("XL_PROTO_TCP46", "XL_PROTO_TCP46"),
    ("XL_PROTO_STREAM", "XL_PROTO_STREAM"),
];

/// The LAYOUT values, as clang computes them for FreeBSD/amd64 from
/// SYSDIR's headers (a userland view: no _KERNEL) and listenq.h: each one
/// a global whose initializer the assembly output spells out.
fn layout(sysdir: &Path, out: &Path) -> String {
    let top =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into())).join("../..");
    let inc = out.join("include");
    let _ = fs::create_dir_all(&inc);
    for (link, target) in [("machine", "amd64/include"), ("x86", "x86/include")] {
        let l = inc.join(link);
        let _ = fs::remove_file(&l);
        if let Err(e) = std::os::unix::fs::symlink(sysdir.join(target), &l) {
            fail(&format!("cannot link {}: {e}", l.display()));
        }
    }
    let mut c = String::from(
        "#include <sys/types.h>\n#include <sys/param.h>\n#include <sys/linker.h>\n\
         #include <sys/socket.h>\n#include \"listenq.h\"\n",
    );
    for (name, expr) in LAYOUT {
        let _ = writeln!(c, "const unsigned long lq_{name} = {expr};");
    }
    let src = out.join("layout.c");
    fs::write(&src, c).unwrap_or_else(|e| fail(&format!("cannot write layout.c: {e}")));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let res = Command::new(&clang)
        .arg("-print-resource-dir")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let asm = Command::new(&clang)
        .args([
            "--target=x86_64-unknown-freebsd14.0",
            "-ffreestanding",
            "-nostdinc",
            "-S",
            "-O0",
        ])
        .arg(format!("-isystem{res}/include"))
        .arg(format!("-I{}", inc.display()))
        .arg(format!("-I{}", sysdir.display()))
        .arg(format!("-I{}", top.display()))
        .arg("-o")
        .arg("-")
        .arg(&src)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {clang}: {e}")));
    if !asm.status.success() {
        fail(&format!(
            "{clang} could not compute the layouts from {} and listenq.h:\n{}",
            sysdir.display(),
            String::from_utf8_lossy(&asm.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&asm.stdout);
    let mut rs = String::from(
        "// Generated by build.rs: clang's layout of SYSDIR's headers and listenq.h.\n",
    );
    let mut lines = text.lines();
    let mut found = 0;
    while let Some(l) = lines.next() {
        let Some(name) = l.strip_prefix("lq_").and_then(|n| n.strip_suffix(':')) else {
            continue;
        };
        let value = lines
            .next()
            .and_then(|v| v.trim().strip_prefix(".quad"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| fail(&format!("no value for {name} in clang's output")));
        let _ = writeln!(rs, "pub const {name}: usize = {value};");
        found += 1;
    }
    if found != LAYOUT.len() {
        fail(&format!(
            "clang gave {found} of {} layout values",
            LAYOUT.len()
        ));
    }
    println!("cargo:rerun-if-changed={}", top.join("listenq.h").display());
    rs
}

fn main() {
    println!("cargo:rerun-if-env-changed=SYSDIR");
    println!("cargo:rerun-if-changed=build.rs");
    let sysdir = PathBuf::from(env::var("SYSDIR").unwrap_or_else(|_| "/usr/src/sys".into()));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("cargo sets OUT_DIR")));

    let sys = defines(&sysdir.join("sys/syscall.h"), "SYS_");
    let mut nr = String::from("// Generated by build.rs from SYSDIR's sys/syscall.h.\n");
    for (ours, theirs) in CALLS {
        let Some(n) = sys.get(*theirs) else {
            fail(&format!(
                "SYS_{theirs} is not in {}/sys/syscall.h",
                sysdir.display()
            ));
        };
        let _ = writeln!(nr, "pub const {ours}: usize = {n};");
    }

    // Every numeric E* of errno.h but ELAST (an alias of the last one).
    let errs: Vec<(String, i64)> = defines(&sysdir.join("sys/errno.h"), "E")
        .into_iter()
        .filter(|(name, n)| name != "LAST" && *n > 0)
        .map(|(name, n)| (format!("E{name}"), n))
        .collect();
    if errs.len() < 40 {
        fail(&format!(
            "{}/sys/errno.h has too few errno values",
            sysdir.display()
        ));
    }
    let mut consts =
        String::from("// Generated by build.rs from SYSDIR's sys/errno.h.\nimpl Errno {\n");
    let mut names =
        String::from("// Generated by build.rs from SYSDIR's sys/errno.h.\nmatch n {\n");
    let mut seen = std::collections::BTreeSet::new();
    for (name, n) in &errs {
        let _ = writeln!(consts, "    pub const {name}: Errno = Errno({n});");
        if seen.insert(*n) {
            let _ = writeln!(names, "    {n} => \"{name}\",");
        }
    }
    names.push_str("    _ => \"E?\",\n}\n");
    consts.push_str("}\n");
    let layout = layout(&sysdir, &out);
    for (file, text) in [
        ("nr.rs", &nr),
        ("errno_consts.rs", &consts),
        ("errno_names.rs", &names),
        ("layout.rs", &layout),
    ] {
        fs::write(out.join(file), text)
            .unwrap_or_else(|e| fail(&format!("cannot write {file}: {e}")));
    }
}
