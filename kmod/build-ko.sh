#!/bin/sh
# Builds listenq.ko the way sys/conf/kmod.mk builds an amd64 module, on any
# host (the GNU make path, GNUmakefile):
#   the Rust staticlib for the kernel target (core and alloc rebuilt with
#   the kernel code model) with the C glue in it, linked into one ET_REL
#   object with a build-id (listenq.ko.full), every defined symbol made
#   local (EXPORT_SYMS=NO, kmod_syms.awk), the debug info split off into
#   listenq.ko.debug and listenq.ko carrying a .gnu_debuglink to it.
#
#   kmod/build-ko.sh                      listenq.ko, listenq.ko.debug
#   kmod/build-ko.sh --rust-objects OUT   only the Rust half, as one object,
#                                         for bsd.kmod.mk (Makefile, bmake)
#
# When something it needs is missing it says what in one line and exits 1;
# with LISTENQ_SKIP_OK=1 (tests/run-all.sh) it says "skip ..." and exits 77.
set -eu

rust_objects=
if [ "${1:-}" = --rust-objects ]; then
	rust_objects=${2:?--rust-objects needs an output path}
fi

missing() {
	if [ -n "${LISTENQ_SKIP_OK:-}" ]; then
		echo "skip kernel layer: $*"
		exit 77
	fi
	echo "cannot build listenq.ko: $*" >&2
	exit 1
}

top=$(cd "$(dirname "$0")/.." && pwd)
SYSDIR=${SYSDIR:-/usr/src/sys}
out=${LISTENQ_KO:-$top/listenq.ko}
tdir=$top/target/kmod

if [ ! -f "$SYSDIR/sys/socketvar.h" ] || [ ! -f "$SYSDIR/conf/ldscript.kmod.amd64" ]; then
	missing "no FreeBSD kernel source at SYSDIR=$SYSDIR (point SYSDIR at the sys/ directory of a FreeBSD 14 source tree)"
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
	missing "no Rust toolchain that can rebuild core for the kernel (Linux: apt-get install rustc-web cargo-web rust-web-src; FreeBSD: rustup toolchain install nightly --component rust-src)"
fi
export RUSTC

# ld.lld understands the FreeBSD emulation on any host; FreeBSD's own ld is lld.
LD=${LD:-}
if [ -z "$LD" ]; then
	for c in ld.lld ld.lld-19 ld.lld-16 ld.lld-14 /usr/bin/ld; do
		if command -v "$c" >/dev/null 2>&1 && "$c" --version 2>/dev/null | grep -q LLD; then LD=$c; break; fi
	done
fi
NM=${NM:-}
if [ -z "$NM" ]; then
	for c in llvm-nm nm; do
		if command -v "$c" >/dev/null 2>&1; then NM=$c; break; fi
	done
fi
READELF=${READELF:-}
if [ -z "$READELF" ]; then
	for c in llvm-readelf-19 readelf llvm-readelf; do
		if command -v "$c" >/dev/null 2>&1; then READELF=$c; break; fi
	done
fi
[ -n "$READELF" ] || { echo "build-ko: no readelf (binutils or llvm)" >&2; exit 1; }
OBJCOPY=${OBJCOPY:-}
if [ -z "$OBJCOPY" ]; then
	for c in llvm-objcopy llvm-objcopy-16 llvm-objcopy-14 objcopy; do
		if command -v "$c" >/dev/null 2>&1; then OBJCOPY=$c; break; fi
	done
fi
if [ -z "$LD" ] || [ -z "$OBJCOPY" ] || [ -z "$NM" ] || ! command -v clang >/dev/null 2>&1; then
	missing "need clang, ld.lld, objcopy and nm (Linux: apt-get install clang lld llvm libclang-dev)"
fi

# Relocation model static + kernel code model: the kernel linker takes only
# absolute 64/32S and PC-relative relocations, never GOT-relative ones.
# Full debug info, as DEBUG_FLAGS=-g gives a kernel build; it ends up in
# listenq.ko.debug only.
export RUSTFLAGS="-C relocation-model=static -C code-model=kernel -C panic=abort -C force-frame-pointers=yes -Z plt=yes"
export CARGO_PROFILE_RELEASE_DEBUG=2
export SYSDIR
# bsd.kmod.mk compiles the C glue itself (SRCS); build.rs then leaves it out.
if [ -n "$rust_objects" ]; then
	export LISTENQ_NO_GLUE=1
else
	unset LISTENQ_NO_GLUE
fi
cd "$top"
$CARGO build -p listenq --release --target x86_64-unknown-none \
	-Zbuild-std=core,alloc --target-dir "$tdir" --quiet

lib=$tdir/x86_64-unknown-none/release/liblistenq.a

# A C library name the glue calls must reach the kernel's function. The
# staticlib's compiler-builtins defines C library functions of its own
# (its libm: log, exp, pow, ...), and in the linked module such a call
# binds to those: a call to log(9) once computed a logarithm and logged
# nothing. Refused here, where the glue's objects are still apart.
shadow_check() {
	d=$(mktemp -d)
	(cd "$d" && ar x "$lib")
	# The ELF symbol tables (readelf: nm would try the embedded bitcode,
	# which an older LLVM cannot read): undefined in the glue, defined
	# functions (global or weak) in the rest.
	for o in "$d"/*.o; do
		case $o in
		*_glue.o) "$READELF" -sW "$o" | awk '$7 == "UND" && NF >= 8 { print $8 }' >>"$d/called" ;;
		*) "$READELF" -sW "$o" | awk '$4 == "FUNC" && $5 != "LOCAL" && $7 != "UND" && NF >= 8 { print $8 }' >>"$d/defined" ;;
		esac
	done
	touch "$d/called" "$d/defined"
	sort -u -o "$d/called" "$d/called"
	sort -u -o "$d/defined" "$d/defined"
	shadow=$(comm -12 "$d/called" "$d/defined" |
	    grep -Ev '^listenq_|^(memcmp|memcpy|memmove|memset|strlen|bcmp)$' || true)
	rm -rf "$d"
	if [ -n "$shadow" ]; then
		echo "build-ko: the C glue calls $(echo $shadow), which the Rust staticlib also defines (compiler-builtins): the call would not reach the kernel's function; call it by another name (kmod/module_glue.c lq_vlog shows how)" >&2
		exit 1
	fi
}
shadow_check

if [ -n "$rust_objects" ]; then
	# Every member (the crate's LTO object and compiler_builtins) as one
	# object for OBJS; the .ko link itself is kmod.mk's.
	x=$(mktemp -d)
	trap 'rm -rf "$x"' EXIT
	(cd "$x" && ar x "$lib")
	"$LD" -m elf_x86_64_fbsd -r -o "$rust_objects.tmp" "$x"/*.o
	"$OBJCOPY" --remove-section=.llvmbc --remove-section=.llvmcmd "$rust_objects.tmp"
	mv "$rust_objects.tmp" "$rust_objects"
	echo "built $rust_objects"
	exit 0
fi

full=$out.full
# kmod.mk: ${LD} -m ${LD_EMULATION} -warn-common --build-id=sha1 -r -T
# ldscript.kmod.amd64 (no -d: lld >= 14 always allocates commons). -u pulls
# the glue object (DECLARE_MODULE, SYSCTL sets) out of the archive; it
# references the Rust entry points, which pull in the rest. Nothing is
# garbage-collected: linker sets must survive.
"$LD" -m elf_x86_64_fbsd -warn-common --build-id=sha1 -r \
	-T "$SYSDIR/conf/ldscript.kmod.amd64" \
	-u listenq_glue_anchor -o "$full.tmp" "$lib"
# The bitcode build-std embeds is of no use to the kernel.
"$OBJCOPY" --remove-section=.llvmbc --remove-section=.llvmcmd "$full.tmp"
# EXPORT_SYMS=NO, as kmod_syms.awk does it: of every defined global
# symbol, commons are stripped and the rest made local. The kernel finds
# the module through its linker sets (sections), not through symbol names.
# (kmod_syms.awk itself wants a BSD awk: mawk parses its `"cmd" ARGV[1] |
# getline` differently.)
syms=$(mktemp)
trap 'rm -f "$syms" "$syms.l" "$syms.n"' EXIT
"$NM" -g "$full.tmp" | awk 'NF == 3 && $2 != "A" && $2 != "U" {
	print ($2 == "C" ? "-N" : "-L") $3 }' >"$syms"
sed -n 's/^-L//p' "$syms" >"$syms.l"
sed -n 's/^-N//p' "$syms" >"$syms.n"
"$OBJCOPY" --localize-symbols="$syms.l" --strip-symbols="$syms.n" "$full.tmp"
mv "$full.tmp" "$full"
# MK_SPLIT_KERNEL_DEBUG: the debug info goes to listenq.ko.debug.
"$OBJCOPY" --only-keep-debug "$full" "$out.debug.tmp"
mv "$out.debug.tmp" "$out.debug"
"$OBJCOPY" --strip-debug --add-gnu-debuglink="$out.debug" "$full" "$out.tmp"
mv "$out.tmp" "$out"
echo "built $out, $out.debug"
