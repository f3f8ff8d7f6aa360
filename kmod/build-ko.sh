#!/bin/sh
# Builds listenq.ko: the Rust staticlib for the kernel target (core and
# alloc rebuilt with the kernel code model), then one ET_REL object linked
# the way sys/conf/kmod.mk links amd64 modules.
#
# Exit status 77 means "skipped": no FreeBSD source tree or no toolchain;
# the one line printed says which.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
SYSDIR=${SYSDIR:-/usr/src/sys}
out=${LISTENQ_KO:-$top/listenq.ko}
tdir=$top/target/kmod

if [ ! -f "$SYSDIR/sys/socketvar.h" ] || [ ! -f "$SYSDIR/conf/ldscript.kmod.amd64" ]; then
	echo "skip kernel layer: no FreeBSD kernel source at SYSDIR=$SYSDIR (point SYSDIR at the sys/ directory of a FreeBSD 14 source tree)"
	exit 77
fi

# The toolchain: Debian's rustc-web/cargo-web/rust-web-src on Linux (stable,
# unlocked with RUSTC_BOOTSTRAP for -Zbuild-std), a rustup nightly with
# rust-src on FreeBSD.
if [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library/core ]; then
	CARGO=/usr/bin/cargo
	RUSTC=/usr/bin/rustc
	export RUSTC_BOOTSTRAP=1
elif command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1 &&
    [ -d "$(rustup run nightly rustc --print sysroot)/lib/rustlib/src/rust/library/core" ]; then
	CARGO="rustup run nightly cargo"
	RUSTC=$(rustup which --toolchain nightly rustc)
else
	echo "skip kernel layer: no Rust toolchain that can rebuild core for the kernel (Linux: apt-get install rustc-web cargo-web rust-web-src; FreeBSD: rustup toolchain install nightly --component rust-src)"
	exit 77
fi
export RUSTC

# ld.lld understands the FreeBSD emulation on any host; FreeBSD's own ld is lld.
LD=${LD:-}
if [ -z "$LD" ]; then
	for c in ld.lld ld.lld-19 ld.lld-16 ld.lld-14 /usr/bin/ld; do
		if command -v "$c" >/dev/null 2>&1 && "$c" --version 2>/dev/null | grep -q LLD; then LD=$c; break; fi
	done
fi
OBJCOPY=${OBJCOPY:-}
if [ -z "$OBJCOPY" ]; then
	for c in llvm-objcopy llvm-objcopy-16 llvm-objcopy-14 objcopy; do
		if command -v "$c" >/dev/null 2>&1; then OBJCOPY=$c; break; fi
	done
fi
if [ -z "$LD" ] || [ -z "$OBJCOPY" ] || ! command -v clang >/dev/null 2>&1; then
	echo "skip kernel layer: need clang, ld.lld and objcopy (Linux: apt-get install clang lld llvm libclang-dev)"
	exit 77
fi

# Relocation model static + kernel code model: the kernel linker takes only
# absolute 64/32S and PC-relative relocations, never GOT-relative ones.
export RUSTFLAGS="-C relocation-model=static -C code-model=kernel -C panic=abort -C force-frame-pointers=yes -Z plt=yes"
export SYSDIR
cd "$top"
$CARGO build -p listenq --release --target x86_64-unknown-none \
	-Zbuild-std=core,alloc --target-dir "$tdir" --quiet

lib=$tdir/x86_64-unknown-none/release/liblistenq.a
# -u pulls the glue object (DECLARE_MODULE, SYSCTL sets) out of the archive;
# it references the Rust entry points, which pull in the rest. Nothing is
# garbage-collected: linker sets must survive.
"$LD" -m elf_x86_64_fbsd -r -d -T "$SYSDIR/conf/ldscript.kmod.amd64" \
	-u listenq_glue_anchor -o "$out.tmp" "$lib"
# Debug info and the bitcode build-std embeds are of no use to the kernel.
"$OBJCOPY" --strip-debug --remove-section=.llvmbc --remove-section=.llvmcmd "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out"
