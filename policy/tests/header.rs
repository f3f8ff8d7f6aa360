//! listenq.h (the public header, installed with the module) against
//! policy::xlisten (what the kernel writes): every field's offset and
//! size, the struct's size and the constants, checked by the host C
//! compiler with _Static_assert; then the EXAMPLES program of listenq(4)
//! is compiled against the header.
//!
//! Needs a C compiler: `cc`, or the one named by $CC.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use listenq_policy::xlisten::{
    FIELDS, XLISTENQ_VERSION, XL_EV_FAIR, XL_F_KFILTER, XL_PROTO_SEQPACKET, XL_PROTO_STREAM,
    XL_PROTO_TCP4, XL_PROTO_TCP46, XL_PROTO_TCP6,
};

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("listenq-header-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cc(dir: &Path, file: &str, includes: &[&Path]) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.current_dir(dir)
        .args(["-std=c11", "-Wall", "-Werror", "-c", "-o", "/dev/null"]);
    for i in includes {
        cmd.arg("-I").arg(i);
    }
    cmd.arg(file);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc} (set CC): {e}"));
    assert!(
        out.status.success(),
        "{cc} {file} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_matches_the_kernel_layout() {
    let mut c = String::from("#include <stddef.h>\n#include <listenq.h>\n");
    let mut sa = |cond: String| {
        writeln!(c, "_Static_assert({cond}, \"{}\");", cond.replace('"', "")).unwrap();
    };
    for (name, off, size) in FIELDS {
        match name {
            "sizeof" => sa(format!("sizeof(struct xlistenq) == {off}")),
            "XLISTENQ_NBUCKETS" => sa(format!("XLISTENQ_NBUCKETS == {off}")),
            _ => {
                sa(format!("offsetof(struct xlistenq, {name}) == {off}"));
                sa(format!("sizeof(((struct xlistenq *)0)->{name}) == {size}"));
            }
        }
    }
    sa(format!("XLISTENQ_VERSION == {XLISTENQ_VERSION}"));
    sa(format!("XL_PROTO_TCP4 == {XL_PROTO_TCP4}"));
    sa(format!("XL_PROTO_TCP6 == {XL_PROTO_TCP6}"));
    sa(format!("XL_PROTO_TCP46 == {XL_PROTO_TCP46}"));
    sa(format!("XL_PROTO_STREAM == {XL_PROTO_STREAM}"));
    sa(format!("XL_PROTO_SEQPACKET == {XL_PROTO_SEQPACKET}"));
    sa(format!("XL_F_KFILTER == {XL_F_KFILTER}"));
    sa(format!("XL_EV_FAIR == {XL_EV_FAIR}"));
    // The header's own field list, in order, is exactly FIELDS: a field
    // added to one side only fails here even when offsets still agree.
    let h = std::fs::read_to_string(top().join("listenq.h")).unwrap();
    let in_header: Vec<&str> = h
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let name = l
                .split(['\t', ' ', '[', ';'])
                .filter(|w| !w.is_empty())
                .nth(1)?;
            (l.ends_with(';') || l.contains(";\t")).then_some(name)
        })
        .filter(|n| n.starts_with("xl_"))
        .collect();
    let in_rust: Vec<&str> = FIELDS
        .iter()
        .map(|f| f.0)
        .filter(|n| n.starts_with("xl_"))
        .collect();
    assert_eq!(in_header, in_rust);
    let d = scratch("layout");
    std::fs::write(d.join("layout.c"), c).unwrap();
    cc(&d, "layout.c", &[&top()]);
}

/// The program in listenq(4) EXAMPLES, with mdoc's `\e` turned back into
/// a backslash.
fn example_from_manual() -> String {
    let man = std::fs::read_to_string(top().join("listenq.4")).unwrap();
    let ex = man
        .split(".Sh EXAMPLES")
        .nth(1)
        .expect("listenq(4) has an EXAMPLES section");
    let lit = ex
        .split(".Bd -literal")
        .skip(1)
        .map(|b| b.split("\n.Ed").next().unwrap_or(""))
        .find(|b| b.contains("\nmain("))
        .expect("EXAMPLES has a C program in a literal display");
    let body = lit.split_once('\n').map(|x| x.1).unwrap_or("");
    body.replace("\\e", "\\").replace("\\&", "")
}

#[test]
fn manual_example_compiles() {
    let d = scratch("example");
    let mut inc: Vec<PathBuf> = vec![top()];
    if !cfg!(target_os = "freebsd") {
        // Elsewhere (the Linux build hosts) only sysctlbyname(3) is
        // missing: declare it as FreeBSD's <sys/sysctl.h> does.
        let fake = d.join("fake");
        std::fs::create_dir_all(fake.join("sys")).unwrap();
        std::fs::write(
            fake.join("sys/sysctl.h"),
            "#include <stddef.h>\nint sysctlbyname(const char *, void *, size_t *, const void *, size_t);\n",
        )
        .unwrap();
        inc.insert(0, fake);
    }
    std::fs::write(d.join("example.c"), example_from_manual()).unwrap();
    let inc: Vec<&Path> = inc.iter().map(|p| p.as_path()).collect();
    cc(&d, "example.c", &inc);
}
