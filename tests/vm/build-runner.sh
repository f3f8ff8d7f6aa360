#!/usr/bin/env bash
# Builds tests/runner (the in-VM /sbin/init) with Debian's Rust toolchain
# for x86_64-unknown-none, as a static non-PIE ELF, then marks it as a
# FreeBSD binary (EI_OSABI = ELFOSABI_FREEBSD). Prints the output path as
# the last line of stdout.
#
# Environment: LISTENQ_CARGO / LISTENQ_RUSTC override /usr/bin/cargo and
# /usr/bin/rustc; CARGO_TARGET_DIR is honoured.
# A bash script: `sh build-runner.sh` (as tests/run-all.sh calls it) re-runs it in bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runner=$(cd "$here/../runner" && pwd)
cargo=${LISTENQ_CARGO:-/usr/bin/cargo}
rustc=${LISTENQ_RUSTC:-/usr/bin/rustc}

die() { echo "build-runner: $*" >&2; exit 1; }

[ -x "$cargo" ] || die "missing $cargo: install Debian's cargo (apt-get install cargo-web, or cargo)"
[ -x "$rustc" ] || die "missing $rustc: install Debian's rustc (apt-get install rustc-web, or rustc)"
sysroot=$("$rustc" --print sysroot)
[ -f "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ] ||
    die "missing rust-src for $rustc (no $sysroot/lib/rustlib/src/rust/library): apt-get install rust-web-src (or rust-src)"

# The linker: rust-lld if the toolchain has one (Debian's does not), else
# the system's ld.lld (Debian package lld).
linker=${LISTENQ_LD:-}
if [ -z "$linker" ]; then
    for l in "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld" rust-lld ld.lld \
        ld.lld-19 ld.lld-18 ld.lld-17 ld.lld-16 ld.lld-15 ld.lld-14; do
        if command -v "$l" >/dev/null 2>&1; then linker=$(command -v "$l"); break; fi
    done
fi
[ -n "$linker" ] || die "missing an ELF linker: no rust-lld and no ld.lld (apt-get install lld)"

target_dir=${CARGO_TARGET_DIR:-$runner/target}
out=$target_dir/x86_64-unknown-none/release/listenq-runner

# Static, non-PIE, at the usual amd64 user address; small code model (the
# target's default "kernel" model needs negative addresses).
flags=(
    -C relocation-model=static
    -C code-model=small
    -C panic=abort
    -C linker=$linker
    -C linker-flavor=ld.lld
    -C link-arg=--no-pie
    -C link-arg=-static
    -C link-arg=--image-base=0x200000
    -C link-arg=-zseparate-loadable-segments
    -C link-arg=--entry=_start
)

(
    cd "$runner"
    RUSTC="$rustc" RUSTC_BOOTSTRAP=1 RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR="$target_dir" \
        "$cargo" build --release --target x86_64-unknown-none \
        -Zbuild-std=core -Zbuild-std-features=compiler-builtins-mem >&2
)

[ -f "$out" ] || die "cargo did not produce $out"

# Check it is what FreeBSD's image activator will take: ELF64, x86-64,
# ET_EXEC, no PT_INTERP.
hdr=$(od -An -tx1 -N20 "$out" | tr -d ' \n')
[ "${hdr:0:8}" = 7f454c46 ] || die "$out is not ELF"
[ "${hdr:8:2}" = 02 ] || die "$out is not ELF64"
[ "${hdr:32:4}" = 0200 ] || die "$out is not ET_EXEC (type ${hdr:32:4}): PIE or relocatable output"
[ "${hdr:36:4}" = 3e00 ] || die "$out is not x86-64"
if command -v readelf >/dev/null 2>&1 && readelf -lW "$out" | grep -q INTERP; then
    die "$out has a PT_INTERP (dynamic); it must be static"
fi

# e_ident[EI_OSABI] (offset 7) = 9, ELFOSABI_FREEBSD.
printf '\x09' | dd of="$out" bs=1 seek=7 count=1 conv=notrunc status=none
[ "$(od -An -tx1 -j7 -N1 "$out" | tr -d ' ')" = 09 ] || die "could not set EI_OSABI in $out"

echo "$out"
