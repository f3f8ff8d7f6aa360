#!/bin/sh
# The README's test command (`make test`) lands here. Three layers:
#   host    cargo test of the pure crates, clippy, rustfmt   (always)
#   kernel  listenq.ko against SYSDIR + relocation check     (needs SYSDIR)
#   vm      the .ko in a FreeBSD VM, TAP from inside          (needs LISTENQ_KERNEL)
# A missing prerequisite skips its layer with one line saying why; a
# failure in any layer that ran fails the whole run.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
SYSDIR=${SYSDIR:-/usr/src/sys}
LISTENQ_KERNEL=${LISTENQ_KERNEL:-/var/lib/listenq/kernel}
LISTENQ_MODULES=${LISTENQ_MODULES:-$(dirname "$LISTENQ_KERNEL")/modules}
# `make bench` also boots a kernel built without INVARIANTS and WITNESS,
# what a production server runs, if there is one: every lock operation of
# a debug kernel is checked, which is not what users pay. Its stock accf
# modules sit next to it, as for LISTENQ_KERNEL.
LISTENQ_BENCH_KERNEL=${LISTENQ_BENCH_KERNEL:-$(dirname "$LISTENQ_KERNEL")/prod/kernel}
# LISTENQ_BENCH=quick: only the filter and hooks rows (about a minute).
LISTENQ_BENCH=${LISTENQ_BENCH:-1}
# The operator layer's FreeBSD userland: an installed world (an extracted
# base.txz, or one cross-built on Linux), by default DIR/world next to
# LISTENQ_KERNEL when there is one (README, "The operator layer").
if [ -z "${LISTENQ_WORLD+x}" ] && [ -x "$(dirname "$LISTENQ_KERNEL")/world/bin/sh" ]; then
	LISTENQ_WORLD=$(dirname "$LISTENQ_KERNEL")/world
fi
LISTENQ_WORLD=${LISTENQ_WORLD:-}
# A kernel whose __FreeBSD_version is not SYSDIR's (README, "Upgrading
# FreeBSD"): the module must refuse it. Not part of the matrix.
LISTENQ_OTHER_KERNEL=${LISTENQ_OTHER_KERNEL:-$(dirname "$LISTENQ_KERNEL")/other-version/kernel}
export SYSDIR LISTENQ_KERNEL LISTENQ_MODULES LISTENQ_BENCH_KERNEL LISTENQ_BENCH LISTENQ_WORLD LISTENQ_OTHER_KERNEL

mode=test
case "${1:-}" in
--host-only) mode=host ;;
--bench) mode=bench ;;
esac

passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# Sums "test result: ok. N passed; M failed" lines of cargo test.
count_cargo() {
	awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
	     END { printf "%d %d\n", p, f }' "$1"
}

host_layer() {
	echo "== host: cargo test (policy, parsers)"
	if ! command -v cargo >/dev/null 2>&1; then
		fail "host layer: no cargo on PATH (install a Rust toolchain)"
		return
	fi
	cargo test --quiet >"$log" 2>&1
	rc=$?
	cat "$log"
	set -- $(count_cargo "$log")
	passed=$((passed + $1)); failed=$((failed + $2))
	[ "$rc" -eq 0 ] || { [ "$2" -gt 0 ] || fail "cargo test exited $rc"; }
	# The child index's lock-free ring under loom (every interleaving);
	# its own target directory, since --cfg loom rebuilds the crate.
	RUSTFLAGS="--cfg loom" cargo test --quiet -p listenq-policy --test loom_ring \
	    --release --target-dir target/loom >"$log" 2>&1
	rc=$?
	cat "$log"
	set -- $(count_cargo "$log")
	passed=$((passed + $1)); failed=$((failed + $2))
	[ "$rc" -eq 0 ] || { [ "$2" -gt 0 ] || fail "loom tests exited $rc"; }
	if cargo clippy --version >/dev/null 2>&1; then
		if cargo clippy --quiet --all-targets -- -D warnings >"$log" 2>&1; then
			echo "ok - clippy clean"; passed=$((passed + 1))
		else
			cat "$log"; fail "clippy"
		fi
		# kmod needs the bindings, so a kernel source tree, but not the
		# kernel target: clippy checks it for the host.
		if [ -f "${SYSDIR:-/usr/src/sys}/sys/socketvar.h" ]; then
			if SYSDIR=${SYSDIR:-/usr/src/sys} cargo clippy --quiet -p listenq \
			    --target-dir target/clippy-kmod -- -D warnings >"$log" 2>&1; then
				echo "ok - clippy clean (kmod)"; passed=$((passed + 1))
			else
				grep -v '^warning: listenq-bindings@' "$log"; fail "clippy (kmod)"
			fi
		else
			echo "skip clippy (kmod): no kernel source at SYSDIR"; skipped=$((skipped + 1))
		fi
	else
		echo "skip clippy: not installed (rustup component add clippy)"; skipped=$((skipped + 1))
	fi
	if cargo fmt --version >/dev/null 2>&1; then
		# The excluded projects (the in-VM runner, the fuzz targets) too.
		if cargo fmt --all --check >"$log" 2>&1 &&
		    (cd tests/runner && cargo fmt --check) >>"$log" 2>&1 &&
		    (cd accf/fuzz && cargo fmt --check) >>"$log" 2>&1; then
			echo "ok - rustfmt clean"; passed=$((passed + 1))
		else
			head -40 "$log"; fail "rustfmt"
		fi
	else
		echo "skip rustfmt: not installed (rustup component add rustfmt)"; skipped=$((skipped + 1))
	fi
}

# The manual pages as mandoc(1) (FreeBSD's man) reads them: nothing at
# the level of a warning or worse. Its STYLE notes about pages this host
# lacks (netstat(1) on Linux) are below that level.
manual_lint() {
	echo "== host: mandoc -Tlint"
	if ! command -v mandoc >/dev/null 2>&1; then
		echo "skip manual pages: no mandoc (Debian: apt-get install mandoc)"; skipped=$((skipped + 1)); return
	fi
	for m in listenq.4 listenqstat/listenqstat.8; do
		if mandoc -Tlint -Wwarning "$m" >"$log" 2>&1 && ! [ -s "$log" ]; then
			echo "ok - mandoc -Tlint $m"; passed=$((passed + 1))
		else
			cat "$log"; fail "mandoc -Tlint $m"
		fi
	done
}

# The VM judge's console patterns, against sample console text: a pattern
# that never matches would let WITNESS/INVARIANTS complaints through.
console_judge() {
	echo "== host: VM console judge self-test"
	if ! command -v bash >/dev/null 2>&1; then
		echo "skip console judge self-test: no bash"; skipped=$((skipped + 1)); return
	fi
	if bash tests/vm/console-check-test.sh >"$log" 2>&1; then
		echo "ok - console judge flags every WITNESS/INVARIANTS/panic sample and passes a clean boot ($(grep -c '^ok' "$log") cases)"
		passed=$((passed + 1))
	else
		cat "$log"; fail "console judge self-test"
	fi
}

kernel_layer() {
	echo "== kernel: listenq.ko against SYSDIR=$SYSDIR"
	LISTENQ_SKIP_OK=1 sh kmod/build-ko.sh
	rc=$?
	if [ "$rc" -eq 77 ]; then skipped=$((skipped + 1)); return 77; fi
	if [ "$rc" -ne 0 ]; then fail "listenq.ko build"; return 1; fi
	passed=$((passed + 1))
	if sh tests/check-relocs.sh listenq.ko; then passed=$((passed + 1)); else fail "relocations"; fi
	if sh tests/check-ko.sh listenq.ko; then passed=$((passed + 1)); else fail "module shape"; fi
	# The check itself must catch a module whose debug info was not split off.
	if sh tests/check-ko.sh listenq.ko.full >/dev/null; then
		fail "module shape check accepted listenq.ko.full (debug info, no debuglink)"
	else
		echo "ok - module shape check refuses the unsplit listenq.ko.full"; passed=$((passed + 1))
	fi
	# The check itself must catch a GOT-relative relocation.
	tmp=$(mktemp -d)
	echo 'extern int x; int f(void) { return x; }' >"$tmp/bad.c"
	if clang --target=x86_64-unknown-freebsd14.0 -fPIC -c -o "$tmp/bad.o" "$tmp/bad.c" 2>/dev/null; then
		if sh tests/check-relocs.sh "$tmp/bad.o" >/dev/null; then
			fail "relocation check accepted a GOTPCREL object"
		else
			echo "ok - relocation check refuses GOTPCREL"; passed=$((passed + 1))
		fi
	fi
	rm -rf "$tmp"
	return 0
}

# vm_layer [KERNEL MODULES]: the suite (or the bench) in a VM booting
# KERNEL (default LISTENQ_KERNEL) with the stock modules in MODULES.
vm_layer() {
	kernel=${1:-$LISTENQ_KERNEL} modules=${2:-$LISTENQ_MODULES}
	cpus=${LISTENQ_VM_CPUS:-2}
	[ "$mode" = bench ] && cpus="1 (--bench)"
	echo "== vm: FreeBSD kernel $kernel, $cpus vCPU(s)"
	if [ ! -f "$kernel" ]; then
		echo "skip vm layer: no FreeBSD test kernel at LISTENQ_KERNEL=$kernel (see README: a FreeBSD 14 amd64 kernel with XENHVM, INVARIANTS, WITNESS)"
		skipped=$((skipped + 1)); return
	fi
	runner=$(bash tests/vm/build-runner.sh | tail -n 1)
	if [ ! -f "$runner" ]; then fail "runner build: $runner"; return; fi
	set -- --kernel "$kernel" --ko "$top/listenq.ko" --runner "$runner"
	[ -d "$modules" ] && set -- "$@" --modules "$modules"
	[ "$mode" = bench ] && set -- "$@" --bench
	vm_run vm "$@"
}

# vm_run LABEL ARGS...: run-vm.sh ARGS, its TAP counted; a harness failure
# with no `not ok` of its own (a panic, a timeout) counts as one.
vm_run() {
	label=$1; shift
	bash tests/vm/run-vm.sh "$@" >"$log" 2>&1
	rc=$?
	cat "$log"
	ok=$(grep -c '^ok ' "$log")
	nok=$(grep -c '^not ok ' "$log")
	passed=$((passed + ok)); failed=$((failed + nok))
	[ "$rc" -eq 0 ] || { [ "$nok" -gt 0 ] || fail "$label harness exited $rc"; }
}

# The kernels the VM layer runs on (make test): LISTENQ_KERNEL, then
# every other kernel kept beside it as DIR/NAME/kernel (its stock accf
# modules in DIR/NAME/modules), e.g. an unpatched, a production and a
# GENERIC kernel; or exactly the paths in LISTENQ_KERNELS (space
# separated) when that is set. Each is booted on the machine it needs
# (run-vm.sh).
matrix() {
	if [ -n "${LISTENQ_KERNELS+x}" ]; then
		echo "$LISTENQ_KERNELS"
		return
	fi
	echo "$LISTENQ_KERNEL"
	for k in "$(dirname "$LISTENQ_KERNEL")"/*/kernel; do
		[ -f "$k" ] && [ "$k" != "$LISTENQ_KERNEL" ] && [ "$k" != "$LISTENQ_OTHER_KERNEL" ] && echo "$k"
	done
}

# version_layer: listenq.ko on a kernel of another FreeBSD version
# (LISTENQ_OTHER_KERNEL): kldload must fail with ENOEXEC and say why
# (tests/runner/src/t_version.rs, kernel env listenq.only=version).
version_layer() {
	if [ ! -f "$LISTENQ_OTHER_KERNEL" ]; then
		echo "skip version layer: no kernel of another FreeBSD version at LISTENQ_OTHER_KERNEL=$LISTENQ_OTHER_KERNEL (README: \"Upgrading FreeBSD\")"
		skipped=$((skipped + 1)); return
	fi
	echo "== version: listenq.ko (built for $(awk '/^#define[[:space:]]*__FreeBSD_version/ { print $3 }' "$SYSDIR/sys/param.h")) on $LISTENQ_OTHER_KERNEL"
	saved_kenv=${LISTENQ_VM_KENV:-}
	LISTENQ_VM_KENV=listenq.only=version${saved_kenv:+,$saved_kenv}
	export LISTENQ_VM_KENV
	vm_layer "$LISTENQ_OTHER_KERNEL" "$(dirname "$LISTENQ_OTHER_KERNEL")/modules"
	LISTENQ_VM_KENV=$saved_kenv
}

# fuzz_slice: the syscall fuzzer's fixed seeds (tests/runner/src/t_fuzz.rs,
# kernel env listenq.fuzz=ci: 24 seeds, about a minute in the VM) on
# LISTENQ_KERNEL; `make fuzz-vm DURATION=SECONDS` runs a longer campaign.
fuzz_slice() {
	if [ ! -f "$LISTENQ_KERNEL" ]; then
		echo "skip fuzz slice: no FreeBSD test kernel at LISTENQ_KERNEL=$LISTENQ_KERNEL"
		skipped=$((skipped + 1)); return
	fi
	echo "== fuzz: listenq.fuzz=ci on $LISTENQ_KERNEL"
	saved_kenv=${LISTENQ_VM_KENV:-}
	LISTENQ_VM_KENV=listenq.fuzz=ci${saved_kenv:+,$saved_kenv}
	export LISTENQ_VM_KENV
	vm_layer "$LISTENQ_KERNEL" "$LISTENQ_MODULES"
	LISTENQ_VM_KENV=$saved_kenv
}

# operator_layer: tests/vm/operator.sh with the user's FreeBSD userland,
# as an admin would run it, booting LISTENQ_KERNEL.
operator_layer() {
	if [ -z "$LISTENQ_WORLD" ]; then
		echo "skip operator layer: no FreeBSD userland (LISTENQ_WORLD, or DIR/world next to LISTENQ_KERNEL; README: \"The operator layer\")"
		skipped=$((skipped + 1)); return
	fi
	echo "== operator: FreeBSD userland $LISTENQ_WORLD, kernel $LISTENQ_KERNEL"
	if [ ! -x "$LISTENQ_WORLD/bin/sh" ]; then
		echo "skip operator layer: no FreeBSD userland at LISTENQ_WORLD=$LISTENQ_WORLD (README: \"The operator layer\")"
		skipped=$((skipped + 1)); return
	fi
	if [ ! -f "$LISTENQ_KERNEL" ]; then
		echo "skip operator layer: no FreeBSD test kernel at LISTENQ_KERNEL=$LISTENQ_KERNEL"
		skipped=$((skipped + 1)); return
	fi
	runner=$(bash tests/vm/build-runner.sh | tail -n 1)
	if [ ! -f "$runner" ]; then fail "runner build: $runner"; return; fi
	set -- --kernel "$LISTENQ_KERNEL" --ko "$top/listenq.ko" --runner "$runner" \
	    --world "$LISTENQ_WORLD" --timeout 900
	[ -d "$LISTENQ_MODULES" ] && set -- "$@" --modules "$LISTENQ_MODULES"
	vm_run operator "$@"
}

if [ "$mode" != bench ]; then
	host_layer
	console_judge
	manual_lint
fi
if [ "$mode" != host ]; then
	kernel_layer
	krc=$?
	if [ "$krc" -eq 0 ]; then
		if [ "$mode" = bench ]; then
			vm_layer
		else
			for k in $(matrix); do
				if [ "$k" = "$LISTENQ_KERNEL" ]; then
					vm_layer "$k" "$LISTENQ_MODULES"
				else
					vm_layer "$k" "$(dirname "$k")/modules"
				fi
			done
			fuzz_slice
			version_layer
			operator_layer
		fi
		if [ "$mode" = bench ] && [ -f "$LISTENQ_BENCH_KERNEL" ]; then
			vm_layer "$LISTENQ_BENCH_KERNEL" "$(dirname "$LISTENQ_BENCH_KERNEL")/modules"
		elif [ "$mode" = bench ]; then
			echo "bench: no production kernel at LISTENQ_BENCH_KERNEL=$LISTENQ_BENCH_KERNEL, only the test kernel measured"
		fi
	elif [ "$krc" -eq 77 ]; then
		echo "skip vm layer: listenq.ko was not built (kernel layer skipped)"
		skipped=$((skipped + 1))
	fi
fi

echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
