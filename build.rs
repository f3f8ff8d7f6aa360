//! Build script of the `listenq-bindings` crate (kept at the top of the
//! repository because it serves the whole kernel build):
//!
//! 1. lays out the include links and option headers a FreeBSD kernel module
//!    build has (`machine/`, `x86/`, opt_global.h: sys/conf/kmod.mk and
//!    sys/conf/config.mk);
//! 2. runs bindgen over bindings/wrapper.h with the module CFLAGS and an
//!    allow-list;
//! 3. compiles the C glue (kmod/*.c: DECLARE_MODULE, SYSCTL, MALLOC_DEFINE
//!    and the helpers that stand in for macros and inline functions) with
//!    the same flags, for linking into listenq.ko; not when
//!    LISTENQ_NO_GLUE is set (bsd.kmod.mk compiles it then).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let sysdir = PathBuf::from(env::var("SYSDIR").unwrap_or_else(|_| "/usr/src/sys".into()));
    println!("cargo:rerun-if-env-changed=SYSDIR");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=LISTENQ_NO_GLUE");
    println!("cargo:rerun-if-changed=bindings/wrapper.h");
    println!("cargo:rerun-if-changed=kmod/glue.h");
    for f in [
        "module", "sysctl", "socket", "soqueue", "sockbuf", "work", "deliver", "inherit", "tag",
        "sdt",
    ] {
        println!("cargo:rerun-if-changed=kmod/{f}_glue.c");
        println!("cargo:rerun-if-changed=kmod/{f}_glue.h");
    }
    println!("cargo:rerun-if-changed=kmod/accf_glue.c");
    println!("cargo:rerun-if-changed=kmod/accf_glue.h");
    println!("cargo:rerun-if-changed=kmod/defaults_glue.c");
    println!("cargo:rerun-if-changed=kmod/defaults_glue.h");
    if !sysdir.join("sys/socketvar.h").is_file() {
        // The Makefile checks this first and skips the kernel layer; this
        // is for someone running cargo by hand.
        panic!(
            "SYSDIR={} is not a FreeBSD kernel source tree (no sys/socketvar.h); \
             set SYSDIR to the sys/ directory of a FreeBSD 14 source tree",
            sysdir.display()
        );
    }
    let top = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("..");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let inc = out.join("include");
    layout_includes(&sysdir, &inc);

    let cflags = kernel_cflags(&sysdir, &inc);

    let bindings = bindgen::Builder::default()
        .header(top.join("bindings/wrapper.h").to_string_lossy())
        .clang_args(&cflags)
        .use_core()
        .ctypes_prefix("cty")
        .layout_tests(false)
        .generate_comments(false)
        .derive_default(true)
        // Keep the surface small: what kmod/src/kern wraps, and no more.
        .allowlist_function("lq_.*")
        .allowlist_function("pffindproto")
        // What mtx_lock(9) and mtx_unlock(9) are in a module (LOCK_DEBUG):
        // the filter states' mutexes are taken with no glue call between
        // (kern/filter_arg.rs).
        .allowlist_function("__mtx_lock_flags|__mtx_unlock_flags")
        .allowlist_type("protosw")
        .allowlist_type("mtx")
        .allowlist_type("lq_.*")
        .allowlist_var("lq_.*|LQ_.*")
        .allowlist_var(
            "SU_OK|SU_ISCONNECTED|SOCK_STREAM|SOCK_SEQPACKET|PF_INET|PF_INET6|AF_UNIX|IPPROTO_TCP",
        )
        .allowlist_var("E[A-Z0-9]+")
        // ticks(9) and the microseconds a tick lasts: the clock of the
        // per-connection paths (kern/time.rs).
        .allowlist_var("ticks|tick")
        .opaque_type("socket")
        .opaque_type("thread")
        .opaque_type("sockaddr")
        .opaque_type("sockopt")
        .opaque_type("domain")
        .generate()
        .expect("bindgen failed on the FreeBSD headers");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");

    // bsd.kmod.mk (the FreeBSD-native Makefile) compiles the glue itself.
    if env::var_os("LISTENQ_NO_GLUE").is_some() {
        return;
    }
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let mut glue = cc::Build::new();
    glue.compiler(&clang)
        .no_default_flags(true)
        .cargo_warnings(true)
        .file(top.join("kmod/module_glue.c"))
        .file(top.join("kmod/sysctl_glue.c"))
        .file(top.join("kmod/socket_glue.c"))
        .file(top.join("kmod/accf_glue.c"))
        .file(top.join("kmod/tag_glue.c"))
        .file(top.join("kmod/sockbuf_glue.c"))
        .file(top.join("kmod/work_glue.c"))
        .file(top.join("kmod/deliver_glue.c"))
        .file(top.join("kmod/defaults_glue.c"))
        .file(top.join("kmod/inherit_glue.c"))
        .file(top.join("kmod/sdt_glue.c"))
        .file(top.join("kmod/soqueue_glue.c"))
        .define(
            "LISTENQ_VERSION",
            Some(
                format!(
                    "\"listenq {}\"",
                    env::var("CARGO_PKG_VERSION").unwrap_or_default()
                )
                .as_str(),
            ),
        );
    for f in &cflags {
        glue.flag(f);
    }
    for f in [
        "-O2",
        "-g",
        "-pipe",
        "-fno-common",
        "-fno-omit-frame-pointer",
        "-mno-omit-leaf-frame-pointer",
        "-fdebug-prefix-map=./machine=/usr/include/machine",
        "-Wall",
        "-Wno-unused-function",
        "-Wno-unused-parameter",
        "-Werror=implicit-function-declaration",
    ] {
        glue.flag(f);
    }
    glue.compile("listenq_glue");
}

/// The `machine` and `x86` include links and the option headers that
/// sys/conf/config.mk generates for a module built outside a kernel build.
fn layout_includes(sysdir: &Path, inc: &Path) {
    fs::create_dir_all(inc).expect("cannot create include dir");
    for (link, target) in [("machine", "amd64/include"), ("x86", "x86/include")] {
        let l = inc.join(link);
        let _ = fs::remove_file(&l);
        std::os::unix::fs::symlink(sysdir.join(target), &l).expect("cannot create include link");
    }
    let mut global = String::from("#define SMP 1\n#define MAC 1\n#define VIMAGE 1\n");
    let defaults = fs::read_to_string(sysdir.join("amd64/conf/DEFAULTS")).unwrap_or_default();
    for line in defaults.lines() {
        let mut w = line.split_whitespace();
        if let (Some("options"), Some(opt)) = (w.next(), w.next()) {
            if !opt.starts_with("GEOM_") {
                global.push_str(&format!(
                    "#define {} 1\n",
                    opt.split('=').next().unwrap_or(opt)
                ));
            }
        }
    }
    fs::write(inc.join("opt_global.h"), global).expect("cannot write opt_global.h");
    fs::write(
        inc.join("opt_inet.h"),
        "#define INET 1\n#define TCP_OFFLOAD 1\n",
    )
    .expect("opt_inet.h");
    fs::write(inc.join("opt_inet6.h"), "#define INET6 1\n").expect("opt_inet6.h");
}

/// sys/conf/kern.mk and kmod.mk for amd64, for a non-FreeBSD clang: the
/// FreeBSD target triple gives the FreeBSD ABI and no PIE, and the stack
/// protector stays off because a host clang would reach __stack_chk_guard
/// through the GOT, a relocation the kernel linker refuses.
fn kernel_cflags(sysdir: &Path, inc: &Path) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    vec![
        "--target=x86_64-unknown-freebsd14.0".into(),
        "-D_KERNEL".into(),
        "-DKLD_MODULE".into(),
        "-nostdinc".into(),
        format!("-I{}", s(inc)),
        format!("-I{}", s(sysdir)),
        format!("-I{}", s(&sysdir.join("contrib/ck/include"))),
        "-include".into(),
        s(&inc.join("opt_global.h")),
        "-mcmodel=kernel".into(),
        "-mno-red-zone".into(),
        "-mno-mmx".into(),
        "-mno-sse".into(),
        "-msoft-float".into(),
        "-mno-aes".into(),
        "-mno-avx".into(),
        "-fno-asynchronous-unwind-tables".into(),
        "-ffreestanding".into(),
        "-fwrapv".into(),
        "-fno-pic".into(),
        "-fno-stack-protector".into(),
        "-std=gnu99".into(),
    ]
}
